//! Warm sandboxes: helpers started ahead of time that have already joined their cgroup,
//! unshared their namespaces and built their root, and now wait on stdin for a run. Joining a
//! cgroup v1 hierarchy waits for an RCU grace period (milliseconds), and exec-ing the helper and
//! mounting the root cost a few more; a warm sandbox pays all of it before a run waits on it.
//! Each sandbox serves exactly one run, then is destroyed; the pool refills in the background.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use tokio::process::{Child, ChildStderr, ChildStdin, ChildStdout};

use super::cgroup::{CgroupBackend, RunCgroup};
use super::spec::{self, BootSpec};
use crate::exec::ExecError;
use crate::policy::Limits;

/// A started helper waiting for its run.
pub struct Sandbox {
    pub dir: PathBuf,
    pub child: Child,
    pub stdin: ChildStdin,
    pub stdout: ChildStdout,
    pub stderr: ChildStderr,
    pub cgroup: Option<Box<dyn RunCgroup>>,
}

/// What every sandbox is made from.
pub struct Preparer {
    pub helper: PathBuf,
    pub staging_root: PathBuf,
    pub cgroups: Option<Arc<dyn CgroupBackend>>,
    /// `cgroup_procs` is filled per sandbox.
    pub boot: BootSpec,
}

/// Limits a sandbox waits under until its run sets its own.
const WAITING: Limits = Limits {
    wall_time_ms: 1,
    cpu_time_ms: 1,
    memory_bytes: 256 << 20,
    pids: 16,
    output_bytes: 0,
    disk_bytes: 64 << 20,
};

impl Preparer {
    /// A sandbox for one one-shot run.
    pub fn prepare(&self) -> Result<Sandbox, ExecError> {
        let id = format!("sb-{}", uuid::Uuid::new_v4().simple());
        let dir = self.staging_root.join(&id);
        let io = |what: &'static str| {
            let dir = dir.clone();
            move |e| ExecError::Io(format!("{what} in {}", dir.display()), e)
        };
        std::fs::create_dir(&dir).map_err(io("creating the staging dir"))?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
            .map_err(io("chmod"))?;
        let cgroup = match &self.cgroups {
            Some(cg) => Some(
                cg.create(&id, &WAITING)
                    .map_err(|e| ExecError::Setup(e.to_string()))?,
            ),
            None => None,
        };
        let boot = BootSpec {
            cgroup_procs: cgroup
                .as_ref()
                .map(|c| c.procs_files())
                .unwrap_or_default()
                .iter()
                .map(|p| p.display().to_string())
                .collect(),
            ..self.boot.clone()
        };
        let cleanup = |cgroup: Option<Box<dyn RunCgroup>>| {
            if let Some(c) = cgroup {
                let _ = c.destroy();
            }
            let _ = std::fs::remove_dir_all(&dir);
        };
        if let Err(e) = std::fs::write(
            dir.join(spec::BOOT),
            serde_json::to_vec(&boot).expect("boot spec serializes"),
        ) {
            cleanup(cgroup);
            return Err(ExecError::Io(
                format!("writing the boot spec in {}", dir.display()),
                e,
            ));
        }
        let spawned = tokio::process::Command::new(&self.helper)
            .arg("__sandbox")
            .arg(&dir)
            .env_clear()
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn();
        let mut child = match spawned {
            Ok(c) => c,
            Err(e) => {
                cleanup(cgroup);
                return Err(ExecError::Io(
                    format!("starting sandbox helper {}", self.helper.display()),
                    e,
                ));
            }
        };
        let (stdin, stdout, stderr) = (
            child.stdin.take().expect("piped"),
            child.stdout.take().expect("piped"),
            child.stderr.take().expect("piped"),
        );
        Ok(Sandbox {
            dir,
            child,
            stdin,
            stdout,
            stderr,
            cgroup,
        })
    }
}

pub struct WarmPool {
    preparer: Arc<Preparer>,
    target: usize,
    ready: Mutex<Vec<Sandbox>>,
    creating: Mutex<usize>,
    closed: std::sync::atomic::AtomicBool,
}

impl WarmPool {
    pub fn new(preparer: Preparer, target: usize) -> Arc<WarmPool> {
        Arc::new(WarmPool {
            preparer: Arc::new(preparer),
            target,
            ready: Mutex::new(Vec::new()),
            creating: Mutex::new(0),
            closed: Default::default(),
        })
    }

    /// A prepared sandbox: a warm one when there is one, else one started now.
    pub fn take(self: &Arc<Self>) -> Result<Sandbox, ExecError> {
        let warm = self.ready.lock().unwrap().pop();
        self.refill();
        match warm {
            Some(sb) => Ok(sb),
            None => self.preparer.prepare(),
        }
    }

    /// Top the pool up to its target in the background.
    pub fn refill(self: &Arc<Self>) {
        if self.target == 0 || tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        let pool = self.clone();
        tokio::spawn(async move {
            loop {
                {
                    let mut creating = pool.creating.lock().unwrap();
                    let have = pool.ready.lock().unwrap().len() + *creating;
                    if have >= pool.target || pool.closed.load(std::sync::atomic::Ordering::SeqCst)
                    {
                        return;
                    }
                    *creating += 1;
                }
                // Prepared on a runtime worker, never on the blocking pool: the helper's
                // PDEATHSIG fires when the *thread* that spawned it exits, and blocking-pool
                // threads exit when idle.
                let made = pool.preparer.prepare();
                *pool.creating.lock().unwrap() -= 1;
                match made {
                    Ok(sb) if !pool.closed.load(std::sync::atomic::Ordering::SeqCst) => {
                        pool.ready.lock().unwrap().push(sb)
                    }
                    Ok(sb) => discard(sb),
                    Err(e) => {
                        tracing::warn!(error = %e, "could not prepare a warm sandbox");
                        return;
                    }
                }
                tokio::task::yield_now().await;
            }
        });
    }

    pub fn idle(&self) -> usize {
        self.ready.lock().unwrap().len()
    }

    /// Stop refilling and destroy every waiting sandbox.
    pub fn close(&self) {
        self.closed.store(true, std::sync::atomic::Ordering::SeqCst);
        for sb in self.ready.lock().unwrap().drain(..) {
            discard(sb);
        }
    }
}

/// Kill a sandbox that will never run anything and remove what it holds.
pub fn discard(mut sb: Sandbox) {
    let _ = sb.child.start_kill();
    if let Some(cg) = sb.cgroup.take() {
        let _ = cg.destroy();
    }
    let _ = std::fs::remove_dir_all(&sb.dir);
}
