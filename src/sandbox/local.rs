//! Local sandboxes: the sandbox helper in supervisor mode. Each sandbox has a host directory
//! `<data-dir>/sandboxes/<id>/` holding its disk (`disk.img`, mounted at `work/`; see
//! `disk.rs`), `run/` (the supervisor's socket, bound at `/.execbox/run` inside) and `stage/`
//! (the helper's boot spec). Its helper is started at create, and again on first use after a
//! service restart (it dies with the service: PDEATHSIG); its PID 1 builds the sandbox's root
//! and serves the supervisor. The sandbox has a cgroup of its own with the policy's limits,
//! its own processes in a leaf, each call in a child with the call's limits.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::disk::{self, DiskMode};
use super::supervised::SandboxHost;
use super::{Sandbox, SandboxError};
use crate::exec::call::{open_procs, CallCgroup};
use crate::exec::local::cgroup::{CgroupError, CgroupUsage, RunCgroup, SandboxCgroup};
use crate::exec::local::spec::{self, SupervisorBoot, SUPERVISOR_SOCKET};
use crate::exec::local::LocalExecutor;
use crate::exec::uids::UidLease;
use crate::exec::{BoxFuture, ExecError};
use crate::policy::Limits;
use crate::supervisor::client::Supervisor;

const RUN: &str = "run";
const STAGE: &str = "stage";
/// The sandbox's uid, so a restart holds the same one again.
const UID_FILE: &str = "uid";
/// Processes of the sandbox's own beyond its policy's pids: the helper, init/supervisor and
/// the supervisor's threads.
const PIDS_SLACK: u64 = 16;
/// Memory of the sandbox's own beyond its policy's: the supervisor.
const MEMORY_SLACK: u64 = 32 << 20;
/// How long a started helper has to answer on its socket.
const START_TIMEOUT: Duration = Duration::from_secs(20);
const UID_WAIT: Duration = Duration::from_secs(10);

pub struct LocalHost {
    executor: Arc<LocalExecutor>,
    root: PathBuf,
    disk: DiskMode,
    sandboxes: Mutex<HashMap<String, Arc<Entry>>>,
}

/// What the service holds for one sandbox.
#[derive(Default)]
struct Entry {
    /// The sandbox's uid, held for its life.
    uid: Mutex<Option<UidLease>>,
    /// The running helper; starts are serialised by this lock.
    running: tokio::sync::Mutex<Option<Running>>,
}

struct Running {
    child: tokio::process::Child,
    cgroup: Option<Arc<dyn SandboxCgroup>>,
    socket: PathBuf,
}

impl LocalHost {
    pub fn new(executor: Arc<LocalExecutor>, root: PathBuf) -> LocalHost {
        let (disk, why) = disk::detect();
        if let Some(why) = why {
            tracing::warn!(
                "local sandboxes keep their files in plain directories: {why}; a sandbox's disk_bytes is not enforced on the host"
            );
        }
        LocalHost {
            executor,
            root,
            disk,
            sandboxes: Mutex::new(HashMap::new()),
        }
    }

    fn dir(&self, id: &str) -> PathBuf {
        self.root.join(id)
    }

    fn entry(&self, id: &str) -> Arc<Entry> {
        self.sandboxes
            .lock()
            .unwrap()
            .entry(id.to_string())
            .or_default()
            .clone()
    }

    /// The sandbox's uid: the one it holds, else the one it had before a restart, else a new
    /// one (its files are then given to it before anything runs).
    async fn uid(&self, sb: &Sandbox, entry: &Entry) -> Result<u32, SandboxError> {
        if self.executor.user_namespace() {
            return Ok(0);
        }
        if let Some(l) = entry.uid.lock().unwrap().as_ref() {
            return Ok(l.uid());
        }
        let dir = self.dir(&sb.id);
        let uids = self.executor.uids().clone();
        let old: Option<u32> = std::fs::read_to_string(dir.join(UID_FILE))
            .ok()
            .and_then(|s| s.trim().parse().ok());
        let lease = match old.map(|u| uids.reserve(u)) {
            Some(Ok(Some(l))) => l,
            _ => uids.acquire(UID_WAIT).await.map_err(SandboxError::Exec)?,
        };
        let uid = lease.uid();
        std::fs::write(dir.join(UID_FILE), format!("{uid}\n"))
            .map_err(|e| SandboxError::Io(format!("writing {}", dir.display()), e))?;
        *entry.uid.lock().unwrap() = Some(lease);
        Ok(uid)
    }

    /// Start the sandbox's helper (after making sure its disk is mounted and its own) and wait
    /// until its supervisor answers.
    async fn start(&self, sb: &Sandbox, entry: &Entry) -> Result<Running, SandboxError> {
        let dir = self.dir(&sb.id);
        let work = dir.join(disk::WORK);
        let uid = self.uid(sb, entry).await?;
        {
            let dir = dir.clone();
            let user_namespace = self.executor.user_namespace();
            blocking("preparing the sandbox's disk", move || {
                if disk::has_image(&dir) {
                    disk::mount(&dir).map_err(|e| {
                        SandboxError::Io(
                            "mounting the sandbox's disk".into(),
                            std::io::Error::other(e.to_string()),
                        )
                    })?;
                } else if !work.is_dir() {
                    return Err(SandboxError::Exec(ExecError::Setup(format!(
                        "the files of sandbox {} are gone from {}",
                        dir.file_name().unwrap_or_default().to_string_lossy(),
                        dir.display()
                    ))));
                }
                if !user_namespace {
                    give_to(&work, uid).map_err(|e| {
                        SandboxError::Io(format!("giving {} to uid {uid}", work.display()), e)
                    })?;
                }
                for (name, mode) in [(RUN, 0o700), (STAGE, 0o700)] {
                    let p = dir.join(name);
                    if name == STAGE {
                        let _ = std::fs::remove_dir_all(&p);
                    }
                    std::fs::create_dir_all(&p)
                        .and_then(|()| set_mode(&p, mode))
                        .map_err(|e| SandboxError::Io(format!("creating {}", p.display()), e))?;
                }
                let _ = std::fs::remove_file(dir.join(RUN).join(SUPERVISOR_SOCKET));
                Ok(())
            })
            .await?;
        }
        let cgroup: Option<Arc<dyn SandboxCgroup>> = match self.executor.cgroups() {
            Some(cg) => {
                let limits = Limits {
                    memory_bytes: sb.limits.memory_bytes.saturating_add(MEMORY_SLACK),
                    pids: sb.limits.pids.saturating_add(PIDS_SLACK),
                    ..sb.limits
                };
                let id = sb.id.clone();
                // A helper that died had its cgroup removed (`stop`); one of an earlier
                // instance was swept at start.
                Some(Arc::from(
                    blocking("creating the sandbox's cgroup", move || {
                        cg.create_sandbox(&id, &limits)
                            .map_err(|e| SandboxError::Exec(ExecError::Setup(e.to_string())))
                    })
                    .await?,
                ))
            }
            None => None,
        };
        let boot = spec::BootSpec {
            cgroup_procs: cgroup
                .as_ref()
                .map(|c| c.supervisor_procs())
                .unwrap_or_default()
                .iter()
                .map(|p| p.display().to_string())
                .collect(),
            // /tmp and /dev/shm: a tmpfs whose pages count against the sandbox's memory.
            initial_disk_bytes: sb.limits.disk_bytes.max(1 << 20),
            supervisor: Some(SupervisorBoot {
                work: dir.join(disk::WORK).display().to_string(),
                run: dir.join(RUN).display().to_string(),
                uid,
                gid: uid,
            }),
            ..self.executor.boot_template()
        };
        let stage = dir.join(STAGE);
        let fail = |cgroup: &Option<Arc<dyn SandboxCgroup>>| {
            if let Some(c) = cgroup {
                let _ = c.destroy();
            }
        };
        if let Err(e) = std::fs::write(
            stage.join(spec::BOOT),
            serde_json::to_vec(&boot).expect("boot spec serializes"),
        ) {
            fail(&cgroup);
            return Err(SandboxError::Io(format!("writing {}", stage.display()), e));
        }
        // Spawned here on a runtime worker, never on the blocking pool: the helper's PDEATHSIG
        // fires when the *thread* that spawned it exits.
        let spawned = tokio::process::Command::new(self.executor.helper())
            .arg("__sandbox")
            .arg(&stage)
            .env_clear()
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn();
        let mut child = match spawned {
            Ok(c) => c,
            Err(e) => {
                fail(&cgroup);
                return Err(SandboxError::Io("starting the sandbox helper".into(), e));
            }
        };
        let socket = dir.join(RUN).join(SUPERVISOR_SOCKET);
        let started = tokio::time::Instant::now();
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                fail(&cgroup);
                let report: Option<spec::SandboxReport> = std::fs::read(stage.join(spec::REPORT))
                    .ok()
                    .and_then(|b| serde_json::from_slice(&b).ok());
                let why = report
                    .and_then(|r| r.setup_error)
                    .unwrap_or_else(|| format!("the sandbox helper ended ({status})"));
                return Err(SandboxError::Exec(ExecError::Setup(format!(
                    "starting sandbox {}: {why}",
                    sb.id
                ))));
            }
            if socket.exists() && Supervisor::new(socket.clone()).hello().await.is_ok() {
                break;
            }
            if started.elapsed() > START_TIMEOUT {
                let _ = child.start_kill();
                let _ = child.wait().await;
                fail(&cgroup);
                return Err(SandboxError::Exec(ExecError::Setup(format!(
                    "the supervisor of sandbox {} did not answer within {}s",
                    sb.id,
                    START_TIMEOUT.as_secs()
                ))));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(Running {
            child,
            cgroup,
            socket,
        })
    }

    /// The running helper's supervisor, starting one when there is none or it died.
    async fn running<'a>(
        &self,
        sb: &Sandbox,
        entry: &'a Entry,
    ) -> Result<tokio::sync::MutexGuard<'a, Option<Running>>, SandboxError> {
        let mut running = entry.running.lock().await;
        let alive = match running.as_mut() {
            Some(r) => matches!(r.child.try_wait(), Ok(None)),
            None => false,
        };
        if !alive {
            if let Some(old) = running.take() {
                stop(old).await;
            }
            *running = Some(self.start(sb, entry).await?);
        }
        Ok(running)
    }
}

/// Kill a sandbox's helper (its PID 1 and so every process of the sandbox die with it) and
/// remove its cgroup.
async fn stop(mut r: Running) {
    let _ = r.child.start_kill();
    let _ = r.child.wait().await;
    if let Some(cg) = r.cgroup.take() {
        let _ = tokio::task::spawn_blocking(move || {
            if let Err(e) = cg.destroy() {
                tracing::warn!(error = %e, "could not remove a sandbox's cgroup");
            }
        })
        .await;
    }
}

async fn blocking<T: Send + 'static>(
    what: &'static str,
    f: impl FnOnce() -> Result<T, SandboxError> + Send + 'static,
) -> Result<T, SandboxError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| SandboxError::Io(what.into(), std::io::Error::other(e.to_string())))?
}

fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

/// Make `work` and everything in it the sandbox's uid's, when it is not yet (a sandbox from
/// before images, or one whose uid changed across a restart). Only called while nothing runs
/// in the sandbox, so nothing can swap a directory for a link under the walk; links
/// themselves are changed, never followed.
fn give_to(work: &Path, uid: u32) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    if std::fs::symlink_metadata(work)?.uid() == uid {
        return Ok(());
    }
    fn walk(p: &Path, uid: u32, dev: u64) -> std::io::Result<()> {
        let m = std::fs::symlink_metadata(p)?;
        std::os::unix::fs::lchown(p, Some(uid), Some(uid))?;
        if m.is_dir() && m.dev() == dev {
            for e in std::fs::read_dir(p)? {
                walk(&e?.path(), uid, dev)?;
            }
        }
        Ok(())
    }
    let dev = std::fs::symlink_metadata(work)?.dev();
    walk(work, uid, dev)
}

/// One call's cgroup under its sandbox's.
struct LocalCall {
    cgroup: Box<dyn RunCgroup>,
}

impl CallCgroup for LocalCall {
    fn procs_fds(&self) -> std::io::Result<Vec<OwnedFd>> {
        open_procs(&self.cgroup.procs_files())
    }

    fn cpu_time_ns(&self) -> u64 {
        self.cgroup.cpu_time_ns()
    }

    fn usage(&self) -> CgroupUsage {
        self.cgroup.usage()
    }

    fn begin(&self, limits: &Limits) -> Result<(), CgroupError> {
        self.cgroup.set_limits(limits)?;
        self.cgroup.reset_peak();
        Ok(())
    }
}

impl Drop for LocalCall {
    fn drop(&mut self) {
        if let Err(e) = self.cgroup.destroy() {
            tracing::warn!(error = %e, "could not remove a call's cgroup");
        }
    }
}

impl SandboxHost for LocalHost {
    fn name(&self) -> &'static str {
        "local"
    }

    fn create<'a>(&'a self, sb: &'a Sandbox) -> BoxFuture<'a, Result<(), SandboxError>> {
        Box::pin(async move {
            let dir = self.dir(&sb.id);
            let entry = self.entry(&sb.id);
            let made = async {
                {
                    let (root, dir) = (self.root.clone(), dir.clone());
                    blocking("creating the sandbox's dir", move || {
                        std::fs::create_dir_all(&root)
                            .and_then(|()| std::fs::create_dir(&dir))
                            .and_then(|()| set_mode(&dir, 0o700))
                            .map_err(|e| SandboxError::Io(format!("creating {}", dir.display()), e))
                    })
                    .await?;
                }
                let uid = self.uid(sb, &entry).await?;
                let (mode, dir2, bytes) = (self.disk, dir.clone(), sb.limits.disk_bytes);
                blocking("creating the sandbox's disk", move || match mode {
                    DiskMode::Image => disk::create(&dir2, bytes, (uid, uid)).map_err(|e| {
                        SandboxError::Exec(ExecError::Setup(format!(
                            "the sandbox's disk of {bytes} bytes cannot be made: {e}"
                        )))
                    }),
                    DiskMode::Plain => {
                        let work = dir2.join(disk::WORK);
                        std::fs::create_dir(&work).map_err(|e| {
                            SandboxError::Io(format!("creating {}", work.display()), e)
                        })
                    }
                })
                .await?;
                let r = self.start(sb, &entry).await?;
                *entry.running.lock().await = Some(r);
                Ok(())
            }
            .await;
            if made.is_err() {
                let _ = self.destroy(sb).await;
            }
            made
        })
    }

    fn supervisor<'a>(
        &'a self,
        sb: &'a Sandbox,
    ) -> BoxFuture<'a, Result<Supervisor, SandboxError>> {
        Box::pin(async move {
            let entry = self.entry(&sb.id);
            let running = self.running(sb, &entry).await?;
            let socket = running.as_ref().expect("started").socket.clone();
            Ok(Supervisor::new(socket))
        })
    }

    fn call_cgroup<'a>(
        &'a self,
        sb: &'a Sandbox,
        limits: &'a Limits,
    ) -> BoxFuture<'a, Result<Option<Box<dyn CallCgroup>>, SandboxError>> {
        Box::pin(async move {
            let entry = self.entry(&sb.id);
            let Some(cg) = self
                .running(sb, &entry)
                .await?
                .as_ref()
                .and_then(|r| r.cgroup.clone())
            else {
                return Ok(None);
            };
            let limits = *limits;
            let name = format!("call-{}", uuid::Uuid::new_v4().simple());
            let call = blocking("creating a call's cgroup", move || {
                cg.call(&name, &limits)
                    .map_err(|e| SandboxError::Exec(ExecError::Setup(e.to_string())))
            })
            .await?;
            Ok(Some(
                Box::new(LocalCall { cgroup: call }) as Box<dyn CallCgroup>
            ))
        })
    }

    fn runtime_version(&self, _sb: &Sandbox, language: &str) -> Option<String> {
        self.executor.available().get(language).cloned()
    }

    fn base_env(&self, _sb: &Sandbox) -> Vec<(String, String)> {
        self.executor.base_env()
    }

    fn destroy<'a>(&'a self, sb: &'a Sandbox) -> BoxFuture<'a, Result<(), SandboxError>> {
        Box::pin(async move {
            let entry = self.sandboxes.lock().unwrap().remove(&sb.id);
            if let Some(entry) = &entry {
                if let Some(r) = entry.running.lock().await.take() {
                    stop(r).await;
                }
            }
            let dir = self.dir(&sb.id);
            blocking("removing the sandbox", move || {
                disk::destroy(&dir).map_err(|e| {
                    SandboxError::Io(
                        "removing the sandbox".into(),
                        std::io::Error::other(e.to_string()),
                    )
                })
            })
            .await?;
            // The uid goes last, once nothing of the sandbox is left.
            drop(entry);
            Ok(())
        })
    }

    fn reconcile<'a>(&'a self, known: &'a [Sandbox]) -> BoxFuture<'a, Vec<String>> {
        Box::pin(async move {
            let root = self.root.clone();
            let ids: Vec<String> = known.iter().map(|k| k.id.clone()).collect();
            let lost = blocking("reconciling sandboxes", move || {
                let _ = std::fs::create_dir_all(&root);
                let on_disk: Vec<String> = std::fs::read_dir(&root)
                    .map(|d| {
                        d.flatten()
                            .filter(|e| e.path().is_dir())
                            .map(|e| e.file_name().to_string_lossy().into_owned())
                            .collect()
                    })
                    .unwrap_or_default();
                for name in on_disk.iter().filter(|n| !ids.contains(n)) {
                    tracing::info!(dir = %name, "removing a sandbox dir with no record");
                    if let Err(e) = disk::destroy(&root.join(name)) {
                        tracing::warn!(dir = %name, error = %e, "could not remove a sandbox dir");
                    }
                }
                let mut lost = Vec::new();
                for id in &ids {
                    let dir = root.join(id);
                    if disk::has_image(&dir) {
                        // Mounted again now (after a host reboot), so its files are there.
                        if let Err(e) = disk::mount(&dir) {
                            tracing::warn!(sandbox = %id, error = %e, "could not mount a sandbox's disk");
                        }
                    } else if !dir.join(disk::WORK).is_dir() {
                        lost.push(id.clone());
                    }
                }
                Ok(lost)
            })
            .await
            .unwrap_or_default();
            // Hold each surviving sandbox's uid again before any run can take it.
            if !self.executor.user_namespace() {
                for k in known.iter().filter(|k| !lost.contains(&k.id)) {
                    let old = std::fs::read_to_string(self.dir(&k.id).join(UID_FILE))
                        .ok()
                        .and_then(|s| s.trim().parse().ok());
                    if let Some(uid) = old {
                        match self.executor.uids().reserve(uid) {
                            Ok(Some(l)) => *self.entry(&k.id).uid.lock().unwrap() = Some(l),
                            Ok(None) => {}
                            Err(e) => {
                                tracing::warn!(sandbox = %k.id, error = %e, "a sandbox's uid is taken; it gets another")
                            }
                        }
                    }
                }
            }
            lost
        })
    }

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let entries: Vec<(String, Arc<Entry>)> =
                self.sandboxes.lock().unwrap().drain().collect();
            for (_, entry) in entries {
                if let Some(r) = entry.running.lock().await.take() {
                    stop(r).await;
                }
            }
            // The next start mounts them again; a stopped service leaves no mounts behind.
            for e in std::fs::read_dir(&self.root)
                .into_iter()
                .flatten()
                .flatten()
            {
                if let Err(err) = disk::unmount(&e.path()) {
                    tracing::warn!(dir = %e.path().display(), error = %err, "could not unmount a sandbox's disk");
                }
            }
        })
    }
}
