//! Docker sandboxes: one long-lived hardened container per sandbox whose entrypoint is the
//! supervisor, labelled `execbox.sandbox=<id>` so it survives the executor's sweep and a
//! restart. Everything done in the sandbox is a message to that supervisor over its socket in
//! `<data-dir>/docker/sandboxes/<id>/run` (root, 0700); this host only makes, finds, restarts and
//! removes the container, and makes each call's cgroup below the container's.
//!
//! The work dir is on the host, `<data-dir>/docker/sandboxes/<id>/work` (the mount of the
//! sandbox's disk image, `disk.rs`, where the host can mount one), bind-mounted at `/work`: it
//! survives the container stopping (an engine restart), and a stopped container is started
//! again when the sandbox is next used.
//!
//! Each sandbox's container has its own uid (from the service's allocator, held for the
//! sandbox's life and found again after a restart from the container's `execbox.uid` label):
//! its work dir belongs to it and its programs run as it.
//!
//! Per container, not per call: memory, pids and disk are the sandbox's. A call's wall
//! deadline, output cap, CPU time, memory and pids are its own, in its own cgroup.

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::DirBuilderExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use super::disk::{self, DiskMode};
use super::supervised::SandboxHost;
use super::{Sandbox, SandboxError};
use crate::exec::call::CallCgroup;
use crate::exec::docker::container::{self, LABEL_SANDBOX};
use crate::exec::docker::{cgroup, gvisor, supervised, DockerExecutor};
use crate::exec::{BoxFuture, ExecError};
use crate::policy::{Limits, PolicySet};
use crate::supervisor::client::Supervisor;
use crate::supervisor::proto;

/// On a sandbox container: the languages its image serves (comma-separated).
const LABEL_LANGUAGES: &str = "execbox.sandbox.languages";

/// A sandbox's container as this host knows it.
#[derive(Debug, Clone)]
struct Handle {
    id: String,
    languages: Vec<String>,
}

/// Per-policy values the container is made with.
#[derive(Debug, Clone)]
struct PolicyBits {
    open_files: u64,
    runtime: Option<String>,
}

pub struct DockerSandboxes {
    exec: Arc<DockerExecutor>,
    /// `<data-dir>/docker/sandboxes` (apart from the local sandboxes' dirs, which the local host
    /// reconciles by its own records): each sandbox's `run` and `work` live in `<root>/<id>/`.
    root: PathBuf,
    policies: HashMap<String, PolicyBits>,
    /// Whether work dirs are disk images (root, loop devices) or plain directories.
    disk: DiskMode,
    /// Sandbox id → its container; filled at create, at reconcile and on first use.
    handles: Mutex<HashMap<String, Handle>>,
}

fn engine(what: &str) -> impl Fn(bollard::errors::Error) -> ExecError + '_ {
    move |e| ExecError::Unavailable("docker".into(), format!("{what}: {e}"))
}

fn unavailable(what: impl std::fmt::Display) -> SandboxError {
    SandboxError::Exec(ExecError::Unavailable("docker".into(), what.to_string()))
}

impl DockerSandboxes {
    /// Sandbox containers are made by `exec`'s engine client, labelled with its instance (so its
    /// OOM watcher sees them); each policy's `open_files` (at least 256, for compilers) and
    /// `docker_runtime` shape the containers of that policy.
    pub fn new(exec: Arc<DockerExecutor>, policies: &PolicySet, root: PathBuf) -> DockerSandboxes {
        let policies = policies
            .policies
            .iter()
            .map(|(name, p)| {
                let bits = PolicyBits {
                    open_files: p.open_files.max(256),
                    runtime: p.docker_runtime.clone(),
                };
                (name.clone(), bits)
            })
            .collect();
        let (disk, why) = disk::detect();
        if let Some(why) = why {
            tracing::warn!(%why, "docker sandboxes' work dirs are plain directories: disk_bytes is not enforced on the host");
        }
        DockerSandboxes {
            exec,
            root,
            policies,
            disk,
            handles: Mutex::new(HashMap::new()),
        }
    }

    fn run_dir(&self, sb_id: &str) -> PathBuf {
        self.root.join(sb_id).join("run")
    }

    fn work_dir(&self, sb_id: &str) -> PathBuf {
        self.root.join(sb_id).join("work")
    }

    fn runtime(&self, sb: &Sandbox) -> Option<String> {
        self.policies
            .get(&sb.policy)
            .and_then(|p| p.runtime.clone())
    }

    /// The image for a new sandbox: the one serving the most probed languages (python's on a
    /// tie), with those languages. Languages of another image cannot run in this sandbox.
    async fn pick_image(&self) -> Result<(String, Vec<String>), ExecError> {
        let available = self.exec.available();
        let mut by_id: HashMap<String, (String, Vec<String>)> = HashMap::new();
        let mut names: Vec<&String> = available.keys().collect();
        names.sort();
        for lang in names {
            let Some(image) = self.exec.image_of(lang) else {
                continue;
            };
            let id = match self.exec.engine().inspect_image(image).await {
                Ok(i) => i.id.unwrap_or_else(|| image.to_string()),
                Err(_) => continue,
            };
            let e = by_id
                .entry(id)
                .or_insert_with(|| (image.to_string(), Vec::new()));
            e.1.push(lang.clone());
        }
        by_id
            .into_values()
            .max_by_key(|(_, langs)| (langs.len(), langs.iter().any(|l| l == "python")))
            .ok_or_else(|| {
                ExecError::Unavailable(
                    "docker".into(),
                    "no runtime image passed its start-up probe".into(),
                )
            })
    }

    fn remember(&self, sb_id: &str, c: &container::SandboxContainer) -> Handle {
        let languages = c
            .labels
            .get(LABEL_LANGUAGES)
            .map(|l| l.split(',').map(String::from).collect())
            .unwrap_or_default();
        let h = Handle {
            id: c.id.clone(),
            languages,
        };
        self.handles
            .lock()
            .unwrap()
            .insert(sb_id.to_string(), h.clone());
        h
    }

    /// The sandbox's container, running or not.
    async fn handle(&self, sb: &Sandbox) -> Result<Handle, SandboxError> {
        if let Some(h) = self.handles.lock().unwrap().get(&sb.id) {
            return Ok(h.clone());
        }
        if let Some(e) = self.exec.unavailable() {
            return Err(e.into());
        }
        let found = container::list_sandboxes(self.exec.engine(), self.exec.instance())
            .await
            .map_err(engine("listing sandbox containers"))?;
        let c = found
            .iter()
            .find(|c| c.sandbox == sb.id)
            .ok_or_else(|| ExecError::Setup(format!("sandbox {}'s container is gone", sb.id)))?;
        Ok(self.remember(&sb.id, c))
    }

    async fn create_container(&self, sb: &Sandbox) -> Result<(), SandboxError> {
        if let Some(e) = self.exec.unavailable() {
            return Err(e.into());
        }
        let (image, languages) = self.pick_image().await?;
        let (open_files, runtime) = match self.policies.get(&sb.policy) {
            Some(p) => (p.open_files, p.runtime.clone()),
            None => (256, None),
        };
        self.exec
            .ensure_runtime(runtime.as_deref(), &sb.policy)
            .await?;
        let lease = self.exec.sandbox_uid().await?;
        let uid = lease.uid();
        let (run, work) = (self.run_dir(&sb.id), self.work_dir(&sb.id));
        let io = |what: &'static str| {
            move |e: std::io::Error| SandboxError::Io(format!("creating the sandbox's {what}"), e)
        };
        supervised::private_dir(&run).map_err(io("run dir"))?;
        let dir = self.root.join(&sb.id);
        match self.disk {
            DiskMode::Image => {
                disk::create(&dir, sb.limits.disk_bytes, (uid, uid)).map_err(|e| {
                    SandboxError::Io(
                        "creating the sandbox's disk".into(),
                        std::io::Error::other(e),
                    )
                })?
            }
            DiskMode::Plain => {
                std::fs::DirBuilder::new()
                    .mode(0o755)
                    .create(&work)
                    .map_err(io("work dir"))?;
                std::os::unix::fs::chown(&work, Some(uid), Some(uid)).map_err(io("work dir"))?;
            }
        }
        let mounts = container::Mounts {
            binary: self.exec.binary().to_path_buf(),
            run_dir: run.clone(),
            work: Some(work),
            path: self.exec.sandbox_path().to_string(),
        };
        let shape = self.exec.shape(&image, sb.limits, open_files, runtime);
        let mut body = container::create_body(&shape, self.exec.instance(), uid, &mounts);
        let labels = body.labels.get_or_insert_with(Default::default);
        labels.insert(LABEL_SANDBOX.to_string(), sb.id.clone());
        labels.insert(LABEL_LANGUAGES.to_string(), languages.join(","));
        let (id, _) = match supervised::start(self.exec.engine(), body, &run).await {
            Ok(started) => started,
            Err(e) => {
                let _ = disk::destroy(&dir);
                return Err(unavailable(format!(
                    "starting the sandbox's container: {e}"
                )));
            }
        };
        tracing::info!(sandbox = %sb.id, container = %id, %image, uid, "sandbox container started");
        self.exec.hold_sandbox_uid(&id, lease);
        self.handles
            .lock()
            .unwrap()
            .insert(sb.id.clone(), Handle { id, languages });
        Ok(())
    }

    /// The supervisor, answering: a stopped container (the engine restarted) is started again,
    /// and one whose supervisor speaks another protocol version (the service's binary changed)
    /// is restarted with the current binary. Its work dir is on the host and survives both.
    async fn running_supervisor(&self, sb: &Sandbox) -> Result<Supervisor, SandboxError> {
        let h = self.handle(sb).await?;
        let run = self.run_dir(&sb.id);
        let sup = supervised::client(&run);
        if let Ok(hello) = sup.hello().await {
            if hello.version == proto::VERSION {
                return Ok(sup);
            }
            tracing::info!(sandbox = %sb.id, version = hello.version, "restarting a sandbox container whose supervisor speaks another protocol version");
        }
        if let Some(e) = self.exec.unavailable() {
            return Err(e.into());
        }
        let docker = self.exec.engine();
        let inspected = docker
            .inspect_container(
                &h.id,
                None::<bollard::query_parameters::InspectContainerOptions>,
            )
            .await;
        let running = match inspected {
            Ok(c) => c.state.and_then(|s| s.running).unwrap_or(false),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => {
                self.handles.lock().unwrap().remove(&sb.id);
                return Err(
                    ExecError::Setup(format!("sandbox {}'s container is gone", sb.id)).into(),
                );
            }
            Err(e) => return Err(engine("inspecting the sandbox's container")(e).into()),
        };
        if running {
            // Started but not answering yet (just started elsewhere), or a stale version.
            if let Ok(sup) = supervised::wait_hello(docker, &h.id, &run).await {
                if sup.hello().await.is_ok_and(|h| h.version == proto::VERSION) {
                    return Ok(sup);
                }
            }
            let opts = bollard::query_parameters::RestartContainerOptions {
                t: Some(0),
                ..Default::default()
            };
            docker
                .restart_container(&h.id, Some(opts))
                .await
                .map_err(engine("restarting the sandbox's container"))?;
        } else {
            tracing::info!(sandbox = %sb.id, container = %h.id, "starting a stopped sandbox container");
            docker
                .start_container(
                    &h.id,
                    None::<bollard::query_parameters::StartContainerOptions>,
                )
                .await
                .map_err(engine("starting the sandbox's container"))?;
        }
        supervised::wait_hello(docker, &h.id, &run)
            .await
            .map_err(unavailable)
    }

    async fn call_cgroup_of(
        &self,
        sb: &Sandbox,
        limits: &Limits,
    ) -> Result<Option<Box<dyn CallCgroup>>, SandboxError> {
        let h = self.handle(sb).await?;
        if gvisor::is_gvisor(self.runtime(sb).as_deref()) {
            return Ok(
                cgroup::ContainerShare::start(&h.id).map(|c| Box::new(c) as Box<dyn CallCgroup>)
            );
        }
        let cg = cgroup::call_cgroup(&h.id, limits)
            .map_err(|e| ExecError::Setup(format!("creating the call's cgroup: {e}")))?;
        Ok(cg.map(|c| Box::new(c) as Box<dyn CallCgroup>))
    }

    /// Remove a container, its uid lease and its sandbox's directory.
    async fn remove_container(&self, sb_id: &str, id: &str) {
        container::remove(self.exec.engine(), id).await;
        self.exec.forget_container(id);
        self.exec.release_sandbox_uid(id);
        self.remove_dir(sb_id);
    }

    /// A sandbox's host directory: its disk unmounted, everything of it deleted.
    fn remove_dir(&self, sb_id: &str) {
        let dir = self.root.join(sb_id);
        if let Err(e) = disk::destroy(&dir) {
            tracing::warn!(dir = %dir.display(), error = %e, "could not remove a sandbox's directory");
        }
    }

    /// Mount a sandbox's disk again where it is not (the host rebooted): a running container's
    /// `/work` then shows the directory beneath, so it is restarted onto the mount.
    async fn remount(&self, c: &container::SandboxContainer) {
        let dir = self.root.join(&c.sandbox);
        if !disk::has_image(&dir) || disk::is_mounted(&dir.join(disk::WORK)) {
            return;
        }
        if let Err(e) = disk::mount(&dir) {
            return tracing::warn!(sandbox = %c.sandbox, error = %e, "could not mount a sandbox's disk");
        }
        if c.running {
            let opts = bollard::query_parameters::RestartContainerOptions {
                t: Some(0),
                ..Default::default()
            };
            if let Err(e) = self
                .exec
                .engine()
                .restart_container(&c.id, Some(opts))
                .await
            {
                tracing::warn!(sandbox = %c.sandbox, error = %e, "could not restart a sandbox container onto its disk");
            }
        }
    }

    async fn remove(&self, sb: &Sandbox) -> Result<(), SandboxError> {
        let cached = self.handles.lock().unwrap().remove(&sb.id);
        let mut ids: HashSet<String> = cached.into_iter().map(|h| h.id).collect();
        if self.exec.unavailable().is_none() {
            let found = container::list_sandboxes(self.exec.engine(), self.exec.instance())
                .await
                .map_err(engine("listing sandbox containers"))?;
            ids.extend(
                found
                    .into_iter()
                    .filter(|c| c.sandbox == sb.id)
                    .map(|c| c.id),
            );
        }
        for id in ids {
            self.remove_container(&sb.id, &id).await;
        }
        self.remove_dir(&sb.id);
        Ok(())
    }

    async fn reconcile_known(&self, known: &[Sandbox]) -> Vec<String> {
        let found = match container::list_sandboxes(self.exec.engine(), self.exec.instance()).await
        {
            Ok(f) => f,
            Err(e) => {
                // Records are kept: their containers may well be there once the engine answers.
                tracing::warn!(error = %e, "could not list sandbox containers; reconciling nothing");
                return Vec::new();
            }
        };
        let known_ids: HashSet<&str> = known
            .iter()
            .filter(|s| s.executor == "docker")
            .map(|s| s.id.as_str())
            .collect();
        let mut alive = HashSet::new();
        for c in found {
            // A stopped container keeps its sandbox: the work dir is on the host, and the
            // container is started again when the sandbox is next used.
            if known_ids.contains(c.sandbox.as_str()) && alive.insert(c.sandbox.clone()) {
                self.remount(&c).await;
                let gvisor = known
                    .iter()
                    .find(|s| s.id == c.sandbox)
                    .is_some_and(|sb| gvisor::is_gvisor(self.runtime(sb).as_deref()));
                if c.running && !gvisor {
                    sweep_calls(&c).await;
                }
                self.remember(&c.sandbox, &c);
                continue;
            }
            tracing::info!(sandbox = %c.sandbox, container = %c.id, running = c.running, "removing a sandbox container without a record");
            if known_ids.contains(c.sandbox.as_str()) {
                // A duplicate: its sandbox's directory stays with the container kept.
                container::remove(self.exec.engine(), &c.id).await;
                self.exec.forget_container(&c.id);
                self.exec.release_sandbox_uid(&c.id);
            } else {
                self.remove_container(&c.sandbox, &c.id).await;
            }
        }
        self.handles
            .lock()
            .unwrap()
            .retain(|id, _| alive.contains(id));
        let lost: Vec<String> = known_ids
            .into_iter()
            .filter(|id| !alive.contains(*id))
            .map(String::from)
            .collect();
        for id in &lost {
            self.remove_dir(id);
        }
        lost
    }
}

/// The call cgroups a service that died left in a running container (and the trees made ahead
/// waiting in them), removed before this service makes its own; the supervisor starts cold any
/// call whose tree is gone. Under gVisor there are none: calls share the container's cgroup.
async fn sweep_calls(c: &container::SandboxContainer) {
    let id = c.id.clone();
    match tokio::task::spawn_blocking(move || cgroup::sweep_calls(&id)).await {
        Ok(Ok(0)) => {}
        Ok(Ok(n)) => {
            tracing::info!(sandbox = %c.sandbox, removed = n, "removed call cgroups a previous service left")
        }
        Ok(Err(e)) => {
            tracing::warn!(sandbox = %c.sandbox, error = %e, "could not remove the call cgroups a previous service left")
        }
        Err(e) => {
            tracing::warn!(sandbox = %c.sandbox, error = %e, "sweeping call cgroups panicked")
        }
    }
}

impl SandboxHost for DockerSandboxes {
    fn name(&self) -> &'static str {
        "docker"
    }

    fn create<'a>(&'a self, sb: &'a Sandbox) -> BoxFuture<'a, Result<(), SandboxError>> {
        Box::pin(self.create_container(sb))
    }

    fn supervisor<'a>(
        &'a self,
        sb: &'a Sandbox,
    ) -> BoxFuture<'a, Result<Supervisor, SandboxError>> {
        Box::pin(self.running_supervisor(sb))
    }

    fn call_cgroup<'a>(
        &'a self,
        sb: &'a Sandbox,
        limits: &'a Limits,
    ) -> BoxFuture<'a, Result<Option<Box<dyn CallCgroup>>, SandboxError>> {
        Box::pin(self.call_cgroup_of(sb, limits))
    }

    /// The probed version, when this sandbox's image serves the language (after a restart,
    /// before the container was looked up, any probed language is taken at its word; a call
    /// in a language of another image then fails to start its program).
    fn runtime_version(&self, sb: &Sandbox, language: &str) -> Option<String> {
        let serves = self
            .handles
            .lock()
            .unwrap()
            .get(&sb.id)
            .is_none_or(|h| h.languages.iter().any(|l| l == language));
        serves
            .then(|| self.exec.available().get(language).cloned())
            .flatten()
    }

    fn destroy<'a>(&'a self, sb: &'a Sandbox) -> BoxFuture<'a, Result<(), SandboxError>> {
        Box::pin(self.remove(sb))
    }

    fn reconcile<'a>(&'a self, known: &'a [Sandbox]) -> BoxFuture<'a, Vec<String>> {
        Box::pin(self.reconcile_known(known))
    }

    /// Sandbox containers outlive a graceful stop by design; the next start reconciles them.
    fn shutdown(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }

    fn base_env(&self, _sb: &Sandbox) -> Vec<(String, String)> {
        self.exec.base_env()
    }
}
