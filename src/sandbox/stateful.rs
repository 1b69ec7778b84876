//! Stateful contexts and background processes of a sandbox, over its supervisor (one
//! implementation for every executor whose backend offers a [`Session`]). A context call is a
//! run like any other for the run path (admission, audit, streaming): it answers a
//! [`RunResult`] with its display `results` and `error`.

use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use serde::Serialize;

use super::{Sandbox, SandboxBackend, SandboxError};
use crate::exec::{
    ContextFailure, ExecError, Job, RunResult, Status, StepResult, StreamKind, Usage,
};
use crate::supervisor::client::{LogItem, SupError, Supervisor};
use crate::supervisor::proto::{
    self, ContextExecSpec, ContextSpec, Ended, ErrorKind, ProcLimits, ProcessInfo, ProcessSpec,
};

/// What contexts and background processes need of a sandbox's backend.
pub struct Session {
    pub sup: Supervisor,
    /// The environment every program of the sandbox starts from (before the sandbox's own).
    pub base_env: Vec<(String, String)>,
}

/// The languages a context speaks.
pub const CONTEXT_LANGUAGES: &[&str] = &["python"];

/// How much longer than its deadline a context call may take before the service gives up on
/// the supervisor (which interrupts at the deadline and kills 2 s later).
const CALL_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// A context as the API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ContextView {
    pub id: String,
    pub language: String,
    /// `idle`, `busy` (a call runs in it) or `lost` (its interpreter was killed or died; only
    /// `DELETE` is left to do).
    pub state: String,
}

/// A background process as the API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ProcessView {
    pub id: String,
    pub command: Vec<String>,
    /// `running` or `exited`.
    pub state: String,
    /// Once it exited on its own.
    #[schema(required = true)]
    pub exit_code: Option<i32>,
    /// Once it was ended by a signal (`SIGKILL`, ...).
    #[schema(required = true)]
    pub signal: Option<String>,
    #[schema(format = DateTime)]
    pub started_at: String,
}

impl From<ProcessInfo> for ProcessView {
    fn from(p: ProcessInfo) -> ProcessView {
        ProcessView {
            id: p.id,
            command: p.argv,
            state: p.state,
            exit_code: p.exit_code,
            signal: p.signal.map(crate::exec::signal_name),
            started_at: crate::store::rfc3339((p.started_at_ms / 1000) as i64),
        }
    }
}

/// What `POST .../processes` starts.
pub struct StartProcess {
    pub command: Vec<String>,
    pub env: Vec<(String, String)>,
    /// Relative to the work dir ("" is the work dir), already path-checked.
    pub cwd: String,
    pub open_files: u64,
    pub log_bytes: u64,
}

/// A process's output as it streams: output chunks, then one end.
pub type LogStream = BoxStream<'static, Result<LogItem, SandboxError>>;

fn env_of(s: &Session, sb: &Sandbox, extra: &[(String, String)]) -> Vec<(String, String)> {
    let mut env = s.base_env.clone();
    for (k, v) in sb.env.iter().chain(extra) {
        env.retain(|(ek, _)| ek != k);
        env.push((k.clone(), v.clone()));
    }
    env
}

/// A supervisor's refusal as the sandbox API's error.
fn sandbox_error(e: SupError) -> SandboxError {
    match e {
        SupError::Remote(ErrorKind::NoSuchContext, m) => SandboxError::ContextNotFound(m),
        SupError::Remote(ErrorKind::NoSuchProcess, m) => SandboxError::ProcessNotFound(m),
        SupError::Remote(ErrorKind::ContextLost, m) => SandboxError::ContextLost(m),
        SupError::Remote(ErrorKind::Refused, m) => SandboxError::PathRefused(m),
        SupError::Remote(ErrorKind::NotFound, m) => SandboxError::NotFound(m),
        SupError::Remote(ErrorKind::Conflict, m) => SandboxError::PathConflict(m),
        SupError::Remote(ErrorKind::Setup, m) => SandboxError::Exec(ExecError::Setup(m)),
        other => SandboxError::Io(
            "talking to the sandbox's supervisor".into(),
            std::io::Error::other(other.to_string()),
        ),
    }
}

pub async fn context_create(
    backend: &dyn SandboxBackend,
    sb: &Sandbox,
    language: &str,
) -> Result<String, SandboxError> {
    let s = backend.session(sb).await?;
    let spec = ContextSpec {
        language: language.into(),
        env: env_of(&s, sb, &[]),
        cwd: proto::raw_path(b""),
    };
    s.sup.context_create(spec).await.map_err(sandbox_error)
}

pub async fn context_list(
    backend: &dyn SandboxBackend,
    sb: &Sandbox,
) -> Result<Vec<ContextView>, SandboxError> {
    let s = backend.session(sb).await?;
    let list = s.sup.context_list().await.map_err(sandbox_error)?;
    Ok(list
        .into_iter()
        .map(|c| ContextView {
            id: c.id,
            language: c.language,
            state: c.state,
        })
        .collect())
}

pub async fn context_delete(
    backend: &dyn SandboxBackend,
    sb: &Sandbox,
    id: &str,
) -> Result<(), SandboxError> {
    let s = backend.session(sb).await?;
    s.sup.context_delete(id).await.map_err(sandbox_error)
}

/// Run a job's code in context `ctx`: the usual result plus the display `results` and `error`.
pub async fn context_exec(
    backend: &dyn SandboxBackend,
    sb: &Sandbox,
    ctx: &str,
    job: &Job,
    executor: &str,
    runtime_version: String,
) -> Result<RunResult, ExecError> {
    let s = backend.session(sb).await.map_err(|e| match e {
        SandboxError::Exec(x) => x,
        other => ExecError::Setup(other.to_string()),
    })?;
    let limits = job.limits;
    let spec = ContextExecSpec {
        id: ctx.into(),
        code: job.code.clone(),
        limits: ProcLimits {
            wall_time_ms: limits.wall_time_ms,
            cpu_time_ms: limits.cpu_time_ms,
            output_bytes: limits.output_bytes,
            open_files: job.open_files,
            file_bytes: limits.disk_bytes,
        },
    };
    let wall = std::time::Duration::from_millis(limits.wall_time_ms);
    let out = tokio::time::timeout(
        wall + CALL_GRACE,
        s.sup.context_exec(spec, job.stream.clone()),
    )
    .await
    .map_err(|_| {
        ExecError::Setup(
            "the sandbox's supervisor did not end the context call at its deadline".into(),
        )
    })?
    .map_err(|e| match sandbox_error(e) {
        SandboxError::ContextNotFound(m) => ExecError::Context(ContextFailure::NotFound, m),
        SandboxError::ContextLost(m) => ExecError::Context(ContextFailure::Lost, m),
        SandboxError::Exec(x) => x,
        SandboxError::Io(what, e) => ExecError::Io(what, e),
        other => ExecError::Setup(other.to_string()),
    })?;
    let exit = out.exit;
    let error = out.result.error;
    let (status, exit_code) = match (exit.ended, &error) {
        (Some(Ended::Deadline), _) => (Status::Timeout, None),
        (Some(Ended::CpuLimit), _) => (Status::CpuLimit, None),
        (_, Some(_)) => (Status::Error, Some(1)),
        (_, None) => (Status::Ok, Some(0)),
    };
    let step = StepResult {
        status,
        exit_code,
        signal: None,
        stdout: out.stdout,
        stderr: out.stderr,
        stdout_truncated: exit.stdout_truncated,
        stderr_truncated: exit.stderr_truncated,
        usage: Usage {
            wall_time_ms: exit.wall_time_ms,
            cpu_time_ms: exit.cpu_time_ms,
            peak_memory_bytes: exit.max_rss_bytes,
        },
    };
    let mut result = RunResult::from_step(job, executor, runtime_version, None, step);
    result.results = Some(out.result.results);
    result.error = Some(error.map(|e| crate::exec::DisplayError {
        name: e.name,
        value: e.value,
        traceback: e.traceback,
    }));
    Ok(result)
}

pub async fn process_start(
    backend: &dyn SandboxBackend,
    sb: &Sandbox,
    p: StartProcess,
) -> Result<String, SandboxError> {
    let s = backend.session(sb).await?;
    let spec = ProcessSpec {
        env: env_of(&s, sb, &p.env),
        argv: p.command,
        cwd: proto::raw_path(p.cwd.as_bytes()),
        open_files: p.open_files,
        log_bytes: p.log_bytes,
    };
    s.sup.process_start(spec).await.map_err(sandbox_error)
}

pub async fn process_list(
    backend: &dyn SandboxBackend,
    sb: &Sandbox,
) -> Result<Vec<ProcessView>, SandboxError> {
    let s = backend.session(sb).await?;
    let list = s.sup.process_list().await.map_err(sandbox_error)?;
    Ok(list.into_iter().map(ProcessView::from).collect())
}

pub async fn process_kill(
    backend: &dyn SandboxBackend,
    sb: &Sandbox,
    id: &str,
) -> Result<(), SandboxError> {
    let s = backend.session(sb).await?;
    s.sup.process_kill(id).await.map_err(sandbox_error)
}

pub async fn process_logs(
    backend: &dyn SandboxBackend,
    sb: &Sandbox,
    id: &str,
    follow: bool,
) -> Result<LogStream, SandboxError> {
    let s = backend.session(sb).await?;
    let stream = s
        .sup
        .process_logs(id, follow)
        .await
        .map_err(sandbox_error)?;
    Ok(stream.map(|item| item.map_err(sandbox_error)).boxed())
}

/// A whole (not followed) log as two texts and the process as it is.
pub async fn collect_logs(
    mut logs: LogStream,
) -> Result<(Vec<u8>, Vec<u8>, Option<ProcessView>), SandboxError> {
    let (mut out, mut err, mut end) = (Vec::new(), Vec::new(), None);
    while let Some(item) = logs.next().await {
        match item? {
            LogItem::Output(StreamKind::Stdout, b) => out.extend_from_slice(&b),
            LogItem::Output(StreamKind::Stderr, b) => err.extend_from_slice(&b),
            LogItem::End(p) => end = p.map(ProcessView::from),
        }
    }
    Ok((out, err, end))
}
