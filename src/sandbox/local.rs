//! Local sandboxes: a persistent work dir on the host (`<data-dir>/sandboxes/<id>/work`),
//! copied into each call's fresh namespaces and back (see `exec/local/workspace.rs`). Between
//! calls nothing runs. File operations go through [`super::fs::WorkDir`], which never follows
//! a link out of the work dir.

use std::path::PathBuf;
use std::sync::Arc;

use super::fs::{FsError, WorkDir};
use super::{FileEntry, Sandbox, SandboxBackend, SandboxError};
use crate::exec::local::LocalExecutor;
use crate::exec::{BoxFuture, ExecError, Job, RunResult};

pub struct LocalSandboxes {
    executor: Arc<LocalExecutor>,
    root: PathBuf,
}

impl LocalSandboxes {
    pub fn new(executor: Arc<LocalExecutor>, root: PathBuf) -> LocalSandboxes {
        LocalSandboxes { executor, root }
    }

    fn dir(&self, id: &str) -> PathBuf {
        self.root.join(id)
    }

    async fn with_workdir<T: Send + 'static>(
        &self,
        id: &str,
        f: impl FnOnce(WorkDir) -> Result<T, FsError> + Send + 'static,
    ) -> Result<T, SandboxError> {
        let path = self.dir(id).join(crate::exec::local::workspace::WORK);
        tokio::task::spawn_blocking(move || WorkDir::open(&path).and_then(f))
            .await
            .map_err(|e| {
                SandboxError::Io(
                    "a file operation".into(),
                    std::io::Error::other(e.to_string()),
                )
            })?
            .map_err(SandboxError::from)
    }
}

impl From<FsError> for SandboxError {
    fn from(e: FsError) -> SandboxError {
        match e {
            FsError::NotFound(p) => SandboxError::NotFound(p),
            FsError::Refused(r) => SandboxError::PathRefused(r),
            FsError::Conflict(r) => SandboxError::PathConflict(r),
            FsError::TooLarge { what, max } => SandboxError::TooLarge { what, max },
            FsError::NotArchive(m) => SandboxError::InvalidArchive(m),
            FsError::Io(what, e) => SandboxError::Io(what, e),
        }
    }
}

impl SandboxBackend for LocalSandboxes {
    fn create<'a>(&'a self, sb: &'a Sandbox) -> BoxFuture<'a, Result<(), SandboxError>> {
        let path = self.dir(&sb.id).join(crate::exec::local::workspace::WORK);
        Box::pin(async move {
            tokio::task::spawn_blocking(move || WorkDir::create(&path).map(|_| ()))
                .await
                .map_err(|e| {
                    SandboxError::Io(
                        "creating a work dir".into(),
                        std::io::Error::other(e.to_string()),
                    )
                })?
                .map_err(SandboxError::from)
        })
    }

    fn exec<'a>(
        &'a self,
        sb: &'a Sandbox,
        job: &'a Job,
    ) -> BoxFuture<'a, Result<RunResult, ExecError>> {
        Box::pin(async move { self.executor.run_in_workspace(job, &self.dir(&sb.id)).await })
    }

    fn check_call_paths<'a>(
        &'a self,
        sb: &'a Sandbox,
        paths: Vec<String>,
    ) -> BoxFuture<'a, Result<(), SandboxError>> {
        Box::pin(self.with_workdir(&sb.id, move |w| {
            paths.iter().try_for_each(|p| w.check_writable(p))
        }))
    }

    fn read_file<'a>(
        &'a self,
        sb: &'a Sandbox,
        path: &'a str,
    ) -> BoxFuture<'a, Result<Vec<u8>, SandboxError>> {
        let (rel, max) = (path.to_string(), sb.limits.disk_bytes);
        Box::pin(self.with_workdir(&sb.id, move |w| w.read(&rel, max)))
    }

    fn write_file<'a>(
        &'a self,
        sb: &'a Sandbox,
        path: &'a str,
        content: Vec<u8>,
    ) -> BoxFuture<'a, Result<(), SandboxError>> {
        let (rel, max) = (path.to_string(), sb.limits.disk_bytes);
        Box::pin(self.with_workdir(&sb.id, move |w| {
            let used = w.usage()?;
            if used + content.len() as u64 > max {
                return Err(FsError::TooLarge {
                    what: format!("writing {} bytes to {rel}", content.len()),
                    max,
                });
            }
            w.write(&rel, &content)
        }))
    }

    fn list<'a>(
        &'a self,
        sb: &'a Sandbox,
        dir: &'a str,
    ) -> BoxFuture<'a, Result<Vec<FileEntry>, SandboxError>> {
        let rel = dir.to_string();
        Box::pin(self.with_workdir(&sb.id, move |w| w.list(&rel)))
    }

    fn export_tar<'a>(&'a self, sb: &'a Sandbox) -> BoxFuture<'a, Result<Vec<u8>, SandboxError>> {
        Box::pin(self.with_workdir(&sb.id, |w| w.export_tar()))
    }

    fn import_tar<'a>(
        &'a self,
        sb: &'a Sandbox,
        tar: Vec<u8>,
    ) -> BoxFuture<'a, Result<(), SandboxError>> {
        let max = sb.limits.disk_bytes;
        Box::pin(self.with_workdir(&sb.id, move |w| {
            let used = w.usage()?;
            w.import_tar(&tar, max.saturating_sub(used))
        }))
    }

    fn destroy<'a>(&'a self, sb: &'a Sandbox) -> BoxFuture<'a, Result<(), SandboxError>> {
        let dir = self.dir(&sb.id);
        Box::pin(async move {
            tokio::task::spawn_blocking(move || match std::fs::remove_dir_all(&dir) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    Err(SandboxError::Io(format!("removing {}", dir.display()), e))
                }
                _ => Ok(()),
            })
            .await
            .map_err(|e| {
                SandboxError::Io(
                    "removing a sandbox".into(),
                    std::io::Error::other(e.to_string()),
                )
            })?
        })
    }

    fn reconcile<'a>(&'a self, known: &'a [Sandbox]) -> BoxFuture<'a, Vec<String>> {
        Box::pin(async move {
            let _ = std::fs::create_dir_all(&self.root);
            let on_disk: Vec<String> = std::fs::read_dir(&self.root)
                .map(|d| {
                    d.flatten()
                        .filter(|e| e.path().is_dir())
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect()
                })
                .unwrap_or_default();
            for name in on_disk
                .iter()
                .filter(|n| !known.iter().any(|k| &k.id == *n))
            {
                tracing::info!(dir = %name, "removing a sandbox dir with no record");
                let _ = std::fs::remove_dir_all(self.root.join(name));
            }
            known
                .iter()
                .filter(|k| {
                    !self
                        .dir(&k.id)
                        .join(crate::exec::local::workspace::WORK)
                        .is_dir()
                })
                .map(|k| k.id.clone())
                .collect()
        })
    }

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}
