//! The one sandbox backend, over a [`SandboxHost`] per executor (local: the helper in supervisor
//! mode; docker: one container per sandbox). Everything done in a sandbox is a message to its
//! supervisor (`supervisor::client`): calls (the one compile-then-run pipeline,
//! `exec::pipeline`, each step a call, `exec::call`, in a cgroup of its own under the
//! sandbox's), files, listings and archives. The host only makes, finds and removes sandboxes
//! and their cgroups.

use std::sync::Arc;
use std::time::Duration;

use super::warm_calls::{drop_blocking, WarmCalls};
use super::{FileEntry, FileKind, Sandbox, SandboxBackend, SandboxError, TarStream};
use crate::exec::call::{self, inline, CallCgroup, CallError, Step, Watch};
use crate::exec::pipeline::{self, compile_then_run, Compiled, Steps};
use crate::exec::{BoxFuture, ExecError, Job, RunResult, StepResult};
use crate::policy::Limits;
use crate::supervisor::client::{SupError, Supervisor};
use crate::supervisor::proto::{self, ErrorKind, InlineFile, Request};

/// How an executor makes, finds and removes sandboxes; the backend does the rest.
pub trait SandboxHost: Send + Sync {
    /// "local" / "docker".
    fn name(&self) -> &'static str;
    fn create<'a>(&'a self, sb: &'a Sandbox) -> BoxFuture<'a, Result<(), SandboxError>>;
    /// The running supervisor's client, (re)starting it if it is not running (after a restart).
    fn supervisor<'a>(&'a self, sb: &'a Sandbox)
        -> BoxFuture<'a, Result<Supervisor, SandboxError>>;
    /// A cgroup for one call under the sandbox's, with `limits` (already within the
    /// sandbox's); None where there is none (gVisor: a share of the container's).
    fn call_cgroup<'a>(
        &'a self,
        sb: &'a Sandbox,
        limits: &'a Limits,
    ) -> BoxFuture<'a, Result<Option<Box<dyn CallCgroup>>, SandboxError>>;
    /// The version of a language's runtime this host serves (for the result).
    fn runtime_version(&self, sb: &Sandbox, language: &str) -> Option<String>;
    fn destroy<'a>(&'a self, sb: &'a Sandbox) -> BoxFuture<'a, Result<(), SandboxError>>;
    fn reconcile<'a>(&'a self, known: &'a [Sandbox]) -> BoxFuture<'a, Vec<String>>;
    fn shutdown(&self) -> BoxFuture<'_, ()>;
    /// The environment every program starts from (a call's own env wins).
    fn base_env(&self, _sb: &Sandbox) -> Vec<(String, String)> {
        vec![
            ("PATH".into(), "/usr/local/bin:/usr/bin:/bin".into()),
            ("HOME".into(), "/work".into()),
            ("LANG".into(), "C.UTF-8".into()),
            ("TMPDIR".into(), "/tmp".into()),
        ]
    }
}

/// How long past its wall time a call may take before the service ends it itself (the
/// supervisor keeps the deadline; this is for one that does not answer).
const DEADLINE_GRACE: Duration = Duration::from_secs(5);

pub struct Supervised {
    host: Arc<dyn SandboxHost>,
    /// Each sandbox's next call, made ahead.
    warm: WarmCalls,
}

impl Supervised {
    pub fn new(host: Arc<dyn SandboxHost>) -> Supervised {
        Supervised {
            host,
            warm: WarmCalls::default(),
        }
    }

    pub fn host(&self) -> &Arc<dyn SandboxHost> {
        &self.host
    }

    async fn sup(&self, sb: &Sandbox) -> Result<Supervisor, SandboxError> {
        self.host.supervisor(sb).await
    }

    async fn run_job(&self, sb: &Sandbox, job: &Job) -> Result<RunResult, ExecError> {
        let rt = &job.runtime;
        let version = self.host.runtime_version(sb, &rt.language).ok_or_else(|| {
            ExecError::Unavailable(
                self.host.name().into(),
                format!("runtime {} is not available in this sandbox", rt.language),
            )
        })?;
        let steps = CallSteps {
            backend: self,
            sb,
            sup: self.sup(sb).await.map_err(exec_error)?,
            job,
        };
        compile_then_run(job, &steps, self.host.name(), version).await
    }

    /// One program to its end in the sandbox, in a cgroup of its own, watched for CPU.
    async fn step(
        &self,
        sb: &Sandbox,
        sup: &Supervisor,
        mut step: Step<'_>,
    ) -> Result<StepResult, ExecError> {
        // A call never gets more than its sandbox has: over it, the sandbox's limit would act
        // and the call's own record would not show why it was killed.
        step.limits = Limits {
            memory_bytes: step.limits.memory_bytes.min(sb.limits.memory_bytes),
            pids: step.limits.pids.min(sb.limits.pids),
            ..step.limits
        };
        let warm = self.warm.take(&sb.id).and_then(|w| match &w.cgroup {
            Some(c) => match c.begin(&step.limits) {
                Ok(()) => Some(w),
                Err(e) => {
                    tracing::warn!(sandbox = %sb.id, error = %e, "a call's cgroup made ahead took no limits; starting cold");
                    drop_blocking(w);
                    None
                }
            },
            None => Some(w),
        });
        self.warm.refill(&self.host, sb, sup);
        let cg = match warm {
            Some(w) => {
                step.warm = Some(w.token);
                w.cgroup
            }
            None => self
                .host
                .call_cgroup(sb, &step.limits)
                .await
                .map_err(exec_error)?,
        };
        let watch = Watch {
            cgroup: cg.as_deref(),
            nudge: DEADLINE_GRACE,
            give_up: 2 * DEADLINE_GRACE,
            oom_events: None,
            tree_cpu_floor: false,
        };
        let out = call::run(sup, step, watch).await;
        if let Some(cg) = cg {
            // Kill what is left and remove the cgroup (rmdir retries sleep), off the call's
            // clock: the supervisor has already killed the call's whole tree, and a removal
            // waits on the cgroup mutex, which the next call's join made ahead may hold
            // through an RCU grace period.
            drop_blocking(cg);
        }
        out.map_err(|e| match e {
            CallError::Supervisor(SupError::Remote(ErrorKind::TooLarge, msg)) => ExecError::DiskFull(format!(
                "the sandbox's disk ({} bytes) is too full for the call's files: {msg}; a call or file operation that frees space helps",
                sb.limits.disk_bytes
            )),
            CallError::Supervisor(e) => exec_error(sup_error(e, 0)),
            CallError::Cgroup(e) => ExecError::Io("opening the call's cgroup".into(), e),
            CallError::NoAnswer => ExecError::Setup(
                "the sandbox's supervisor did not end the call at its deadline".into(),
            ),
        })
    }
}

/// A call's steps, all in the sandbox's persistent /work: the compiled program stays there for
/// the run step, as everything a call leaves does.
struct CallSteps<'a> {
    backend: &'a Supervised,
    sb: &'a Sandbox,
    sup: Supervisor,
    job: &'a Job,
}

impl CallSteps<'_> {
    fn files(&self) -> Vec<InlineFile> {
        pipeline::files(self.job)
            .iter()
            .map(|f| inline(&f.path, &f.content))
            .collect()
    }
}

impl Steps for CallSteps<'_> {
    type Artifact = ();

    fn compile(&self, argv: Vec<String>) -> BoxFuture<'_, Result<Compiled<()>, ExecError>> {
        Box::pin(async move {
            let step = Step {
                argv,
                env: pipeline::compile_env(self.backend.host.base_env(self.sb), self.job),
                files: self.files(),
                stdin: b"",
                limits: self.job.compile_limits,
                open_files: self.job.open_files.max(256),
                stream: None,
                warm: None,
            };
            let r = self.backend.step(self.sb, &self.sup, step).await?;
            Ok((r, Some(())))
        })
    }

    fn run(
        &self,
        argv: Vec<String>,
        compiled: Option<()>,
    ) -> BoxFuture<'_, Result<StepResult, ExecError>> {
        Box::pin(async move {
            let step = Step {
                argv,
                env: pipeline::env(self.backend.host.base_env(self.sb), self.job),
                // After a compile step the files are in /work already.
                files: if compiled.is_some() {
                    Vec::new()
                } else {
                    self.files()
                },
                stdin: &self.job.stdin,
                limits: self.job.limits,
                open_files: self.job.open_files,
                stream: self.job.stream.clone(),
                warm: None,
            };
            self.backend.step(self.sb, &self.sup, step).await
        })
    }
}

/// A supervisor's answer as the sandbox API's error; `max` is the bound a `TooLarge` concerns.
fn sup_error(e: SupError, max: u64) -> SandboxError {
    match e {
        SupError::Remote(kind, msg) => match kind {
            ErrorKind::NotFound => SandboxError::NotFound(msg),
            ErrorKind::Refused => SandboxError::PathRefused(msg),
            ErrorKind::Conflict => SandboxError::PathConflict(msg),
            ErrorKind::TooLarge => SandboxError::TooLarge { what: msg, max },
            ErrorKind::InvalidArchive => SandboxError::InvalidArchive(msg),
            ErrorKind::Setup => SandboxError::Exec(ExecError::Setup(msg)),
            _ => SandboxError::Io(
                "an operation in the sandbox".into(),
                std::io::Error::other(format!("{kind:?}: {msg}")),
            ),
        },
        other => SandboxError::Io(
            "talking to the sandbox's supervisor".into(),
            std::io::Error::other(other.to_string()),
        ),
    }
}

/// A sandbox error met while running a call: the service's failure, never the program's.
fn exec_error(e: SandboxError) -> ExecError {
    match e {
        SandboxError::Exec(x) => x,
        SandboxError::Io(what, e) => ExecError::Io(what, e),
        other => ExecError::Setup(other.to_string()),
    }
}

fn entry(e: proto::Entry) -> Result<FileEntry, SandboxError> {
    let bytes = proto::path_bytes(&e.path)
        .map_err(|m| SandboxError::Io("reading a listing".into(), std::io::Error::other(m)))?;
    let kind = match e.kind.as_str() {
        "dir" => FileKind::Dir,
        "symlink" => FileKind::Symlink,
        _ => FileKind::File,
    };
    Ok(FileEntry::new(&bytes, e.size, kind))
}

impl SandboxBackend for Supervised {
    fn create<'a>(&'a self, sb: &'a Sandbox) -> BoxFuture<'a, Result<(), SandboxError>> {
        self.host.create(sb)
    }

    fn exec<'a>(
        &'a self,
        sb: &'a Sandbox,
        job: &'a Job,
    ) -> BoxFuture<'a, Result<RunResult, ExecError>> {
        Box::pin(self.run_job(sb, job))
    }

    fn check_call_paths<'a>(
        &'a self,
        sb: &'a Sandbox,
        paths: Vec<String>,
    ) -> BoxFuture<'a, Result<(), SandboxError>> {
        Box::pin(async move {
            let raw = paths
                .iter()
                .map(|p| proto::raw_path(p.as_bytes()))
                .collect();
            self.sup(sb)
                .await?
                .simple(Request::CheckPaths { paths: raw })
                .await
                .map(|_| ())
                .map_err(|e| sup_error(e, sb.limits.disk_bytes))
        })
    }

    fn read_file<'a>(
        &'a self,
        sb: &'a Sandbox,
        path: &'a [u8],
    ) -> BoxFuture<'a, Result<Vec<u8>, SandboxError>> {
        Box::pin(async move {
            let max = sb.limits.disk_bytes;
            self.sup(sb)
                .await?
                .read_all(
                    Request::Read {
                        path: proto::raw_path(path),
                        max,
                    },
                    max,
                )
                .await
                .map_err(|e| sup_error(e, max))
        })
    }

    fn write_file<'a>(
        &'a self,
        sb: &'a Sandbox,
        path: &'a [u8],
        content: Vec<u8>,
    ) -> BoxFuture<'a, Result<(), SandboxError>> {
        Box::pin(async move {
            let max = sb.limits.disk_bytes;
            let what = format!(
                "writing {} bytes to {}",
                content.len(),
                super::names::shown(path)
            );
            let body = futures_util::stream::once(async move { Ok::<_, std::io::Error>(content) });
            let request = Request::Write {
                path: proto::raw_path(path),
                executable: false,
            };
            self.sup(sb)
                .await?
                .write_stream(request, body)
                .await
                .map(|_| ())
                .map_err(|e| match sup_error(e, max) {
                    SandboxError::TooLarge { max, .. } => SandboxError::TooLarge { what, max },
                    other => other,
                })
        })
    }

    fn list<'a>(
        &'a self,
        sb: &'a Sandbox,
        dir: &'a [u8],
    ) -> BoxFuture<'a, Result<Vec<FileEntry>, SandboxError>> {
        Box::pin(async move {
            let path = proto::raw_path(dir);
            self.sup(sb)
                .await?
                .simple(Request::List { path })
                .await
                .map_err(|e| sup_error(e, sb.limits.disk_bytes))?
                .entries
                .unwrap_or_default()
                .into_iter()
                .map(entry)
                .collect()
        })
    }

    fn export_tar<'a>(&'a self, sb: &'a Sandbox) -> BoxFuture<'a, Result<TarStream, SandboxError>> {
        Box::pin(async move {
            use futures_util::StreamExt;
            let max = sb.limits.disk_bytes;
            let stream = self
                .sup(sb)
                .await?
                .read_stream(Request::TarOut)
                .await
                .map_err(|e| sup_error(e, max))?;
            Ok(stream
                .map(move |chunk| {
                    chunk
                        .map(bytes::Bytes::from)
                        .map_err(|e| match sup_error(e, max) {
                            SandboxError::Io(_, e) => e,
                            other => std::io::Error::other(other.to_string()),
                        })
                })
                .boxed())
        })
    }

    fn import_tar<'a>(
        &'a self,
        sb: &'a Sandbox,
        tar: TarStream,
    ) -> BoxFuture<'a, Result<(), SandboxError>> {
        Box::pin(async move {
            let max = sb.limits.disk_bytes;
            use futures_util::StreamExt;
            let body = tar.map(|chunk| chunk.map(|b| b.to_vec()));
            self.sup(sb)
                .await?
                .write_stream(Request::TarIn, body)
                .await
                .map(|_| ())
                .map_err(|e| match sup_error(e, max) {
                    SandboxError::TooLarge { max, .. } => SandboxError::TooLarge {
                        what: "unpacking the archive".into(),
                        max,
                    },
                    other => other,
                })
        })
    }

    fn destroy<'a>(&'a self, sb: &'a Sandbox) -> BoxFuture<'a, Result<(), SandboxError>> {
        Box::pin(async move {
            self.warm.forget(&sb.id).await;
            self.host.destroy(sb).await
        })
    }

    fn reconcile<'a>(&'a self, known: &'a [Sandbox]) -> BoxFuture<'a, Vec<String>> {
        self.host.reconcile(known)
    }

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        self.host.shutdown()
    }

    fn session<'a>(
        &'a self,
        sb: &'a Sandbox,
    ) -> BoxFuture<'a, Result<super::stateful::Session, SandboxError>> {
        Box::pin(async move {
            Ok(super::stateful::Session {
                sup: self.sup(sb).await?,
                base_env: self.host.base_env(sb),
            })
        })
    }
}
