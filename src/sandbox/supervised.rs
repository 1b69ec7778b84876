//! The one sandbox backend, over a [`SandboxHost`] per executor (local: the helper in supervisor
//! mode; docker: one container per sandbox). Everything done in a sandbox is a message to its
//! supervisor (`supervisor::client`): calls (compile then run, each step in a cgroup of its own
//! under the sandbox's, with the host's CPU watch), files, listings and archives. The host only
//! makes, finds and removes sandboxes and their cgroups.

use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::Duration;

use super::{FileEntry, FileKind, Sandbox, SandboxBackend, SandboxError, TarStream};
use crate::exec::local::cgroup::CgroupUsage;
use crate::exec::{
    classify, BoxFuture, CompileResult, ExecError, Job, OutputSink, RunResult, StepEnd, StepResult,
    Usage,
};
use crate::policy::Limits;
use crate::supervisor::client::{SupError, Supervisor};
use crate::supervisor::proto::{
    self, CallSpec, Control, Ended, ErrorKind, InlineFile, ProcLimits, Request,
};

/// How an executor makes, finds and removes sandboxes; the backend does the rest.
pub trait SandboxHost: Send + Sync {
    /// "local" / "docker".
    fn name(&self) -> &'static str;
    fn create<'a>(&'a self, sb: &'a Sandbox) -> BoxFuture<'a, Result<(), SandboxError>>;
    /// The running supervisor's client, (re)starting it if it is not running (after a restart).
    fn supervisor<'a>(&'a self, sb: &'a Sandbox)
        -> BoxFuture<'a, Result<Supervisor, SandboxError>>;
    /// A cgroup for one call under the sandbox's, limits set; None where there is none (gVisor).
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

/// One call's cgroup; dropping it kills what is left in it and removes it.
pub trait CallCgroup: Send + Sync {
    /// `cgroup.procs` of each hierarchy, opened O_WRONLY, for the supervisor to join.
    fn procs_fds(&self) -> std::io::Result<Vec<OwnedFd>>;
    fn cpu_time_ns(&self) -> u64;
    fn usage(&self) -> CgroupUsage;
}

/// How often the host reads a call's CPU time against its limit.
const CPU_WATCH: Duration = Duration::from_millis(20);
/// How long past its wall time a call may take before the service ends it itself (the
/// supervisor keeps the deadline; this is for one that does not answer).
const DEADLINE_GRACE: Duration = Duration::from_secs(5);

pub struct Supervised {
    host: Arc<dyn SandboxHost>,
}

impl Supervised {
    pub fn new(host: Arc<dyn SandboxHost>) -> Supervised {
        Supervised { host }
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
        let sup = self.sup(sb).await.map_err(exec_error)?;
        let mut files: Vec<InlineFile> = job
            .files
            .iter()
            .map(|f| inline(&f.path, &f.content))
            .collect();
        files.push(inline(&rt.source_file, job.code.as_bytes()));
        let base = self.host.base_env(sb);
        let env = rt.env(base.clone(), &job.env);
        let mut compile = None;
        if let Some(cmd) = &rt.compile {
            // The compiled program stays in /work for the run step, as everything a call leaves.
            let r = self
                .step(
                    sb,
                    &sup,
                    Step {
                        argv: cmd.clone(),
                        env: rt.env(base, &[]),
                        files: std::mem::take(&mut files),
                        stdin: Vec::new(),
                        limits: job.compile_limits,
                        open_files: job.open_files.max(256),
                        stream: None,
                    },
                )
                .await?;
            compile = Some(CompileResult::of(&r, job.output_encoding));
            if r.status != crate::exec::Status::Ok {
                return Ok(RunResult::from_step(
                    job,
                    self.host.name(),
                    version,
                    compile,
                    StepResult::compile_failed(),
                ));
            }
        }
        let mut argv = rt.run.clone();
        argv.extend(job.args.iter().cloned());
        let r = self
            .step(
                sb,
                &sup,
                Step {
                    argv,
                    env,
                    files,
                    stdin: job.stdin.clone(),
                    limits: job.limits,
                    open_files: job.open_files,
                    stream: job.stream.clone(),
                },
            )
            .await?;
        Ok(RunResult::from_step(
            job,
            self.host.name(),
            version,
            compile,
            r,
        ))
    }

    /// One program to its end in the sandbox, in a cgroup of its own, watched for CPU.
    async fn step(
        &self,
        sb: &Sandbox,
        sup: &Supervisor,
        step: Step,
    ) -> Result<StepResult, ExecError> {
        let limits = step.limits;
        let cg = self
            .host
            .call_cgroup(sb, &limits)
            .await
            .map_err(exec_error)?
            .map(Arc::<dyn CallCgroup>::from);
        let fds = match &cg {
            Some(c) => c
                .procs_fds()
                .map_err(|e| ExecError::Io("opening the call's cgroup".into(), e))?,
            None => Vec::new(),
        };
        let spec = CallSpec {
            argv: step.argv,
            env: step.env,
            cwd: String::new(),
            files: step.files,
            limits: ProcLimits {
                wall_time_ms: limits.wall_time_ms,
                cpu_time_ms: limits.cpu_time_ms,
                output_bytes: limits.output_bytes,
                open_files: step.open_files,
                file_bytes: limits.disk_bytes,
            },
            cgroup_fds: fds.len(),
        };
        let (control, control_rx) = tokio::sync::mpsc::channel(4);
        let cpu_limit_ns = limits.cpu_time_ms.saturating_mul(1_000_000);
        // The CPU watch: the supervisor cannot see the call's cgroup; the host can.
        let watch = cg.clone().map(|cg| {
            let control = control.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(CPU_WATCH);
                loop {
                    tick.tick().await;
                    if cg.cpu_time_ns() >= cpu_limit_ns {
                        let _ = control.send(Control::CpuLimit).await;
                        return;
                    }
                }
            })
        });
        let wall = Duration::from_millis(limits.wall_time_ms);
        let deadline = {
            let control = control.clone();
            tokio::spawn(async move {
                tokio::time::sleep(wall + DEADLINE_GRACE).await;
                let _ = control.send(Control::Deadline).await;
            })
        };
        drop(control);
        let out = tokio::time::timeout(
            wall + 2 * DEADLINE_GRACE,
            sup.exec(spec, &step.stdin, fds, step.stream, Some(control_rx)),
        )
        .await;
        if let Some(w) = watch {
            w.abort();
        }
        deadline.abort();
        let usage = cg.as_ref().map(|c| c.usage());
        if let Some(cg) = cg {
            // Kill what is left and remove the cgroup (rmdir retries sleep).
            let _ = tokio::task::spawn_blocking(move || drop(cg)).await;
        }
        let out = match out {
            Ok(Err(SupError::Remote(ErrorKind::TooLarge, msg))) => {
                return Err(ExecError::DiskFull(format!(
                    "the sandbox's disk ({} bytes) is too full for the call's files: {msg}; a call or file operation that frees space helps",
                    sb.limits.disk_bytes
                )))
            }
            Ok(r) => r.map_err(|e| exec_error(sup_error(e, 0)))?,
            Err(_) => {
                return Err(ExecError::Setup(
                    "the sandbox's supervisor did not end the call at its deadline".into(),
                ))
            }
        };
        let exit = out.exit;
        let end = match exit.ended {
            Some(Ended::Deadline) => StepEnd::Deadline,
            Some(Ended::CpuLimit) => StepEnd::CpuLimit,
            Some(Ended::Exited) | None => StepEnd::Exited {
                exit_code: exit.exit_code,
                signal: exit.signal,
            },
        };
        let (exit_code, signal, status) = classify(
            end,
            usage.is_some_and(|u| u.oom_kills > 0),
            usage
                .map(|u| u.cpu_time_ns)
                .unwrap_or(exit.cpu_time_ms.saturating_mul(1_000_000))
                >= cpu_limit_ns,
        );
        Ok(StepResult {
            status,
            exit_code,
            signal: signal.map(crate::exec::signal_name),
            stdout: out.stdout,
            stderr: out.stderr,
            stdout_truncated: exit.stdout_truncated,
            stderr_truncated: exit.stderr_truncated,
            usage: Usage {
                wall_time_ms: exit.wall_time_ms,
                cpu_time_ms: usage
                    .map(|u| u.cpu_time_ns / 1_000_000)
                    .unwrap_or(exit.cpu_time_ms),
                peak_memory_bytes: usage
                    .map(|u| u.peak_memory_bytes)
                    .unwrap_or(exit.max_rss_bytes),
            },
        })
    }
}

struct Step {
    argv: Vec<String>,
    env: Vec<(String, String)>,
    files: Vec<InlineFile>,
    stdin: Vec<u8>,
    limits: Limits,
    open_files: u64,
    stream: Option<OutputSink>,
}

fn inline(path: &str, content: &[u8]) -> InlineFile {
    use base64::Engine;
    InlineFile {
        path: proto::raw_path(path.as_bytes()),
        content: base64::engine::general_purpose::STANDARD.encode(content),
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
        self.host.destroy(sb)
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
