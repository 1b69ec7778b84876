//! Containers whose entrypoint is the supervisor: the host directory its socket lives in, and
//! starting one until its supervisor answers.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bollard::models::ContainerCreateBody;
use bollard::Docker;

use super::container::{self, SOCKET};
use crate::supervisor::client::Supervisor;

/// How long a new container's supervisor may take to answer (gVisor boots a kernel first).
pub const HELLO_WAIT: Duration = Duration::from_secs(20);

/// A directory only root can enter (0700), created with its parents.
pub fn private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    // An existing one keeps its mode through create: make sure.
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

/// A pool container's run dir, `<root>/<random>`: removed when dropped.
#[derive(Debug)]
pub struct RunDir {
    path: PathBuf,
}

impl RunDir {
    pub fn create(root: &Path) -> std::io::Result<RunDir> {
        private_dir(root)?;
        static NEXT: AtomicU64 = AtomicU64::new(0);
        loop {
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let path = root.join(format!("{}-{n}", std::process::id()));
            match std::fs::DirBuilder::new().mode(0o700).create(&path) {
                Ok(()) => return Ok(RunDir { path }),
                // Left by an earlier process of the same pid: take the next name.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// The supervisor's client for a run dir on the host.
pub fn client(run_dir: &Path) -> Supervisor {
    Supervisor::new(run_dir.join(SOCKET))
}

/// Wait until the supervisor of the started container `id` answers `Hello` on its socket in
/// `run_dir`. A container that stops meanwhile fails at once, with the end of its log.
pub async fn wait_hello(docker: &Docker, id: &str, run_dir: &Path) -> Result<Supervisor, String> {
    let sup = client(run_dir);
    let started = Instant::now();
    let mut tries = 0u32;
    loop {
        let last = match sup.hello().await {
            Ok(_) => return Ok(sup),
            Err(e) => e.to_string(),
        };
        tries += 1;
        if tries.is_multiple_of(20) {
            let running = docker
                .inspect_container(
                    id,
                    None::<bollard::query_parameters::InspectContainerOptions>,
                )
                .await
                .ok()
                .and_then(|c| c.state)
                .and_then(|s| s.running);
            if running == Some(false) {
                return Err(format!(
                    "the container's supervisor exited: {}",
                    log_tail(docker, id).await
                ));
            }
        }
        if started.elapsed() > HELLO_WAIT {
            return Err(format!(
                "the container's supervisor did not answer within {} s: {last}",
                HELLO_WAIT.as_secs()
            ));
        }
        tokio::time::sleep(Duration::from_millis(if tries < 50 { 5 } else { 50 })).await;
    }
}

/// The last lines a container wrote (why its supervisor stopped).
async fn log_tail(docker: &Docker, id: &str) -> String {
    use futures_util::StreamExt;
    let opts = bollard::query_parameters::LogsOptions {
        stdout: true,
        stderr: true,
        tail: "5".into(),
        ..Default::default()
    };
    let mut logs = docker.logs(id, Some(opts));
    let mut text = String::new();
    while let Some(Ok(chunk)) = logs.next().await {
        text.push_str(&chunk.to_string());
    }
    text.trim().to_string()
}

/// Create and start a container from `body` and wait for its supervisor; nothing is left behind
/// when that fails.
pub async fn start(
    docker: &Docker,
    body: ContainerCreateBody,
    run_dir: &Path,
) -> Result<(String, Supervisor), String> {
    let id = container::create_started(docker, body)
        .await
        .map_err(|e| format!("starting a container: {e}"))?;
    match wait_hello(docker, &id, run_dir).await {
        Ok(sup) => Ok((id, sup)),
        Err(e) => {
            container::remove(docker, &id).await;
            Err(e)
        }
    }
}
