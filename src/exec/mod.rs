//! The run contract: what a caller asks for (a validated [`Job`]), what it gets back
//! ([`RunResult`]), and the [`Executor`] seam every backend implements.
//!
//! A timeout, an OOM or a truncated stream is a *status in the result*; `Err(ExecError)` means the
//! service itself could not run the job.

pub mod call;
pub mod docker;
pub mod local;
pub mod path;
pub mod pipeline;
pub mod request;
pub mod runtime;
pub mod uids;

use std::future::Future;
use std::pin::Pin;

use serde::{Deserialize, Serialize};

use crate::policy::Limits;
use request::Encoding;
use runtime::Runtime;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// How a run ended. Exactly one of these; see README for the meaning of each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Hash, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Ok,
    Error,
    Timeout,
    CpuLimit,
    MemoryLimit,
    Killed,
    CompileError,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Error => "error",
            Status::Timeout => "timeout",
            Status::CpuLimit => "cpu_limit",
            Status::MemoryLimit => "memory_limit",
            Status::Killed => "killed",
            Status::CompileError => "compile_error",
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Usage {
    pub wall_time_ms: u64,
    pub cpu_time_ms: u64,
    pub peak_memory_bytes: u64,
}

/// The outcome of one sandboxed process (a compile step or the program itself), its output as
/// the program wrote it.
#[derive(Debug, Clone)]
pub struct StepResult {
    pub status: Status,
    pub exit_code: Option<i32>,
    pub signal: Option<String>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub stdout_truncated: bool,
    pub stderr_truncated: bool,
    pub usage: Usage,
}

/// The compile step as reported to callers.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CompileResult {
    pub status: Status,
    #[schema(required = true)]
    pub exit_code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub usage: Usage,
}

impl CompileResult {
    /// The compile step's answer, its output in the run's `output_encoding`.
    pub fn of(s: &StepResult, encoding: Encoding) -> Self {
        CompileResult {
            status: s.status,
            exit_code: s.exit_code,
            stdout: encoding.encode(&s.stdout),
            stderr: encoding.encode(&s.stderr),
            usage: s.usage,
        }
    }
}

/// The response body of `POST /v1/execute`; the one result contract of every executor.
// Option fields are always sent (as null), hence `required`. Deserialize: the kept results of
// `GET /v1/runs/{id}` are read back from the store.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RunResult {
    pub id: String,
    pub status: Status,
    #[schema(required = true)]
    pub exit_code: Option<i32>,
    #[schema(required = true)]
    pub signal: Option<String>,
    /// What the program wrote, as UTF-8 text (bytes that are not UTF-8 become U+FFFD), or with
    /// `output_encoding: base64` as base64 of the exact bytes.
    pub stdout: String,
    /// As `stdout`.
    pub stderr: String,
    pub stdout_truncated: bool,
    pub stderr_truncated: bool,
    pub usage: Usage,
    /// The compile step of compiled languages; null for interpreted ones.
    #[schema(required = true)]
    pub compile: Option<CompileResult>,
    pub executor: String,
    pub policy: String,
    pub language: String,
    pub runtime_version: String,
    /// A context call's display results (`POST /v1/sandboxes/{id}/execute` with `context`):
    /// bundles keyed by MIME type, as Jupyter's display data (`text/plain`, `image/png` as
    /// base64, `text/html`, ...), in the order the code made them. Absent for other runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    pub results: Option<Vec<serde_json::Map<String, serde_json::Value>>>,
    /// A context call's uncaught exception (null when there was none). Absent for other runs.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    #[schema(value_type = Option<DisplayError>, nullable = true)]
    pub error: Option<Option<DisplayError>>,
}

/// A field that is there, even as null, is `Some` (serde reads a null `Option<Option<T>>` as
/// `None`, which would lose the difference between "no exception" and "not a context call").
fn present<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// The uncaught exception of a context call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DisplayError {
    /// The exception's class, e.g. `ZeroDivisionError` (`KeyboardInterrupt` at a deadline).
    pub name: String,
    /// Its message (`str()` of it).
    pub value: String,
    /// The formatted traceback, as Python prints it.
    pub traceback: String,
}

/// Which of the program's streams a chunk of output came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamKind {
    Stdout,
    Stderr,
}

/// Where a streamed run's output goes as it arrives (only what fits under `output_bytes`, so
/// a slow reader can hold at most twice the cap).
pub type OutputSink = tokio::sync::mpsc::UnboundedSender<(StreamKind, Vec<u8>)>;

impl RunResult {
    /// The answer for `job` from its run step (and compile step, if any) on `executor`.
    pub fn from_step(
        job: &Job,
        executor: &str,
        runtime_version: String,
        compile: Option<CompileResult>,
        r: StepResult,
    ) -> RunResult {
        RunResult {
            id: job.id.clone(),
            status: r.status,
            exit_code: r.exit_code,
            signal: r.signal,
            stdout: job.output_encoding.encode(&r.stdout),
            stderr: job.output_encoding.encode(&r.stderr),
            stdout_truncated: r.stdout_truncated,
            stderr_truncated: r.stderr_truncated,
            usage: r.usage,
            compile,
            executor: executor.to_string(),
            policy: job.policy.clone(),
            language: job.runtime.language.clone(),
            runtime_version,
            results: None,
            error: None,
        }
    }
}

/// A file placed beside the main source, already decoded and path-checked.
#[derive(Debug, Clone)]
pub struct JobFile {
    /// Relative path with only normal components.
    pub path: String,
    pub content: Vec<u8>,
}

/// A validated request: every limit resolved against its policy, every path checked.
#[derive(Debug, Clone)]
pub struct Job {
    pub id: String,
    pub runtime: Runtime,
    pub policy: String,
    pub limits: Limits,
    pub compile_limits: Limits,
    /// RLIMIT_NOFILE, from the policy.
    pub open_files: u64,
    /// The OCI runtime the policy asks the docker executor for (e.g. `runsc`).
    pub docker_runtime: Option<String>,
    pub code: String,
    pub files: Vec<JobFile>,
    pub stdin: Vec<u8>,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// How the result (and streamed events) give the program's output.
    pub output_encoding: Encoding,
    /// Set for streamed runs: the program's output as it arrives (not the compile step's).
    pub stream: Option<OutputSink>,
}

/// The service failed to run a job (never a property of the user's program).
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("executor {0} is not available: {1}")]
    Unavailable(String, String),
    #[error("sandbox setup failed: {0}")]
    Setup(String),
    #[error("i/o error while {0}: {1}")]
    Io(String, #[source] std::io::Error),
    /// A sandbox's disk is too full to take the call's files (its program never ran).
    #[error("{0}")]
    DiskFull(String),
    /// Every uid of `sandbox_uids` is held by a live run or sandbox (it is never shared).
    #[error("no sandbox uid is free: {0}")]
    NoUid(String),
    /// A context call found no usable context (the caller's to fix, not the service's failure).
    #[error("{1}")]
    Context(ContextFailure, String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContextFailure {
    /// No such context in the sandbox (never created, or deleted).
    NotFound,
    /// Its interpreter was killed (it ignored the interrupt at a deadline) or died.
    Lost,
}

/// Readiness as shown on `/readyz`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Readiness {
    pub ready: bool,
    pub degraded: bool,
    pub detail: String,
    pub features: serde_json::Value,
}

/// The executor seam: a validated job in, a result out.
pub trait Executor: Send + Sync {
    fn name(&self) -> &'static str;
    fn run<'a>(&'a self, job: &'a Job) -> BoxFuture<'a, Result<RunResult, ExecError>>;
    fn readiness(&self) -> Readiness;
    /// Languages that passed this executor's start-up probe, with their versions.
    fn runtimes(&self) -> std::collections::HashMap<String, String>;
    /// The container image behind a language, for executors that have one.
    fn image(&self, _language: &str) -> Option<String> {
        None
    }
}

/// How a step's program ended, as its executor saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepEnd {
    /// It ended by itself (or was killed by something other than the executor's watch).
    Exited {
        exit_code: Option<i32>,
        signal: Option<i32>,
    },
    /// The executor stopped it at its wall-clock deadline.
    Deadline,
    /// The executor stopped it when its CPU time reached the limit.
    CpuLimit,
}

/// The one status classification of a step, for every executor path: `oom` is the kernel's
/// OOM record of the step's cgroup, `cpu_over` whether its CPU time reached the limit.
/// Returns the exit code and signal to report, and the status.
pub fn classify(end: StepEnd, oom: bool, cpu_over: bool) -> (Option<i32>, Option<i32>, Status) {
    match end {
        StepEnd::Deadline => (None, Some(libc::SIGKILL), Status::Timeout),
        StepEnd::CpuLimit => (None, Some(libc::SIGKILL), Status::CpuLimit),
        StepEnd::Exited { exit_code, signal } => {
            let status = match (exit_code, signal) {
                (Some(0), _) => Status::Ok,
                _ if oom => Status::MemoryLimit,
                (_, Some(libc::SIGXCPU)) => Status::CpuLimit,
                (_, Some(libc::SIGKILL)) if cpu_over => Status::CpuLimit,
                (_, Some(_)) => Status::Killed,
                _ => Status::Error,
            };
            (exit_code, signal, status)
        }
    }
}

/// Signal number to its conventional name (`9` → `"SIGKILL"`).
pub fn signal_name(sig: i32) -> String {
    nix::sys::signal::Signal::try_from(sig)
        .map(|s| s.as_str().to_string())
        .unwrap_or_else(|_| format!("SIG{sig}"))
}
