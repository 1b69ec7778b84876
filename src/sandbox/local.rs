//! Local sandboxes: a persistent work dir on the host (`<data-dir>/sandboxes/<id>/work`),
//! copied into each call's fresh namespaces and back (see `exec/local/workspace.rs`). Between
//! calls nothing runs. File operations go through [`super::fs::WorkDir`], which never follows
//! a link out of the work dir.

use std::path::PathBuf;
use std::sync::Arc;

use super::fs::{FsError, WorkDir};
use super::{FileEntry, Sandbox, SandboxBackend, SandboxError};
use crate::exec::local::workspace::WORK;
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
        sb: &Sandbox,
        f: impl FnOnce(WorkDir) -> Result<T, FsError> + Send + 'static,
    ) -> Result<T, SandboxError> {
        let path = self.dir(&sb.id).join(WORK);
        let disk = sb.limits.disk_bytes;
        tokio::task::spawn_blocking(move || WorkDir::open(&path).and_then(f))
            .await
            .map_err(|e| {
                SandboxError::Io(
                    "a file operation".into(),
                    std::io::Error::other(e.to_string()),
                )
            })?
            .map_err(|e| match e {
                FsError::DiskFull(what) => SandboxError::TooLarge { what, max: disk },
                e => e.into(),
            })
    }
}

impl From<FsError> for SandboxError {
    fn from(e: FsError) -> SandboxError {
        match e {
            FsError::NotFound(p) => SandboxError::NotFound(p),
            FsError::Refused(r) => SandboxError::PathRefused(r),
            FsError::Conflict(r) => SandboxError::PathConflict(r),
            FsError::TooLarge { what, max } => SandboxError::TooLarge { what, max },
            // Told with the sandbox's disk where it is known (`with_workdir`).
            FsError::DiskFull(what) => {
                SandboxError::Io(what, std::io::Error::from_raw_os_error(libc::ENOSPC))
            }
            FsError::NotArchive(m) => SandboxError::InvalidArchive(m),
            FsError::Io(what, e) => SandboxError::Io(what, e),
        }
    }
}

impl SandboxBackend for LocalSandboxes {
    fn create<'a>(&'a self, sb: &'a Sandbox) -> BoxFuture<'a, Result<(), SandboxError>> {
        let path = self.dir(&sb.id).join(WORK);
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
        Box::pin(self.with_workdir(sb, move |w| {
            paths
                .iter()
                .try_for_each(|p| w.check_writable(p.as_bytes()))
        }))
    }

    fn read_file<'a>(
        &'a self,
        sb: &'a Sandbox,
        path: &'a [u8],
    ) -> BoxFuture<'a, Result<Vec<u8>, SandboxError>> {
        let (rel, max) = (path.to_vec(), sb.limits.disk_bytes);
        Box::pin(self.with_workdir(sb, move |w| {
            let mut out = Vec::new();
            w.read(&rel, max, &mut out).map(|_| out)
        }))
    }

    fn write_file<'a>(
        &'a self,
        sb: &'a Sandbox,
        path: &'a [u8],
        content: Vec<u8>,
    ) -> BoxFuture<'a, Result<(), SandboxError>> {
        let (rel, max) = (path.to_vec(), sb.limits.disk_bytes);
        Box::pin(self.with_workdir(sb, move |w| {
            let used = w.usage()?;
            if used + content.len() as u64 > max {
                return Err(FsError::TooLarge {
                    what: format!(
                        "writing {} bytes to {}",
                        content.len(),
                        super::names::shown(&rel)
                    ),
                    max,
                });
            }
            w.write(&rel, false, None, &mut content.as_slice())
                .map(drop)
        }))
    }

    fn list<'a>(
        &'a self,
        sb: &'a Sandbox,
        dir: &'a [u8],
    ) -> BoxFuture<'a, Result<Vec<FileEntry>, SandboxError>> {
        let rel = dir.to_vec();
        Box::pin(self.with_workdir(sb, move |w| {
            Ok(w.list(&rel)?
                .into_iter()
                .map(|e| FileEntry::new(&e.path, e.size, e.kind))
                .collect())
        }))
    }

    fn export_tar<'a>(&'a self, sb: &'a Sandbox) -> BoxFuture<'a, Result<Vec<u8>, SandboxError>> {
        Box::pin(self.with_workdir(sb, |w| {
            let mut out = Vec::new();
            w.export_tar(&mut out).map(|()| out)
        }))
    }

    fn import_tar<'a>(
        &'a self,
        sb: &'a Sandbox,
        tar: Vec<u8>,
    ) -> BoxFuture<'a, Result<(), SandboxError>> {
        let max = sb.limits.disk_bytes;
        Box::pin(self.with_workdir(sb, move |w| {
            let used = w.usage()?;
            w.import_tar(&mut tar.as_slice(), None, max.saturating_sub(used))
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
                .filter(|k| !self.dir(&k.id).join(WORK).is_dir())
                .map(|k| k.id.clone())
                .collect()
        })
    }

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}
