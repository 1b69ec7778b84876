//! What can go wrong in the service, as one typed enum: every door (HTTP, MCP, the CLIs) gets
//! the same variants and decides what they mean to its callers. The HTTP layer maps each to a
//! status and a stable code in one place (`api/error.rs`); retries match variants, never text.

use crate::exec::request::RequestError;
use crate::exec::{ContextFailure, ExecError};
use crate::sandbox::manager::ManagerError;
use crate::sandbox::SandboxError;
use crate::store::{QuotaExceeded, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    // What was asked for is wrong: the caller's to fix.
    /// A run's request failed validation (language, executor, policy, limits, files).
    #[error(transparent)]
    Request(#[from] RequestError),
    /// A request the service cannot take as it is (a field that does not apply, a bad value).
    #[error("{0}")]
    InvalidRequest(String),
    /// A path against the path rule (`exec::path`), or not in the encoding it claims.
    #[error("{0}")]
    PathRefused(String),
    /// A batch with no runs, too many, or a concurrency out of range.
    #[error("{0}")]
    InvalidBatch(String),
    /// A sandbox create or keepalive the service refuses (executor, policy, TTL, env).
    #[error("{0}")]
    InvalidSandbox(String),
    /// A call's `disk_bytes` above the sandbox's own disk.
    #[error("limits.disk_bytes = {requested} exceeds this sandbox's disk of {disk} bytes")]
    SandboxDiskExceeded { requested: u64, disk: u64 },
    /// Contexts speak only some languages.
    #[error("{0}")]
    UnsupportedLanguage(String),
    /// An agent run's loop settings (task, turns, termination, language, output).
    #[error("{0}")]
    InvalidAgentRun(String),
    /// An agent run's model (base URL, key).
    #[error("{0}")]
    InvalidModel(String),

    // What was asked for is not there (or not the caller's, which looks the same).
    #[error("no sandbox {0} (it may have expired or been deleted)")]
    SandboxNotFound(String),
    #[error("no agent run {0} for this team")]
    AgentRunNotFound(String),
    /// No run of the team has the id (`GET /v1/runs/{id}`).
    #[error("{0}; runs are looked up by the id their answer gave, within the team that ran them")]
    RunNotFound(String),
    /// The run ended longer ago than its result is kept.
    #[error("{0}")]
    RunExpired(String),
    #[error("agent run {0} holds no block waiting for approval")]
    NoPendingApproval(String),
    /// A sandbox operation's own failure: a missing file or context, a path in the way, a
    /// full disk, a bad archive, an operation its executor does not offer, or its i/o.
    #[error(transparent)]
    Sandbox(SandboxError),

    // Who is asking.
    /// No API key came with a request that needs one.
    #[error("this request needs an API key")]
    NoKey,
    /// The key is not one the store knows, or it has been revoked.
    #[error("the API key is not valid or has been revoked")]
    BadKey,

    // Capacity: retry later.
    /// The team's quota (concurrent runs, sandboxes).
    #[error(transparent)]
    Quota(#[from] QuotaExceeded),
    /// Every run slot and the queue are full.
    #[error(
        "all run slots and the queue are full; retry in {retry_after} s or lower your concurrency"
    )]
    OverCapacity { retry_after: u64 },

    // The service cannot do it now.
    #[error("sandboxes are not enabled in this service")]
    SandboxesUnavailable,
    /// The executor is not running or not ready.
    #[error("{0}")]
    ExecutorUnavailable(String),
    /// The language did not pass its start-up probe on the executor.
    #[error("{0}")]
    RuntimeUnavailable(String),
    /// The executor could not run the job (see [`ExecError`]'s variants: unavailable, no uid,
    /// a full sandbox disk, a context gone, or the service's own failure).
    #[error(transparent)]
    Exec(ExecError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A task of the service ended without an answer (it panicked).
    #[error("a task of the service failed: {0}")]
    TaskFailed(String),
}

impl ServiceError {
    /// A wait for capacity: how many seconds until a retry may succeed.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            ServiceError::Quota(q) => Some(q.retry_after),
            ServiceError::OverCapacity { retry_after } => Some(*retry_after),
            ServiceError::Exec(ExecError::NoUid(_)) => Some(5),
            _ => None,
        }
    }

    /// The service's own failure (not the caller's, not capacity, not an executor that is
    /// down): shown to callers without its internals, and logged.
    pub fn is_internal(&self) -> bool {
        match self {
            ServiceError::Exec(e) => !matches!(
                e,
                ExecError::Unavailable(..)
                    | ExecError::DiskFull(_)
                    | ExecError::NoUid(_)
                    | ExecError::Context(..)
            ),
            ServiceError::Sandbox(SandboxError::Io(..))
            | ServiceError::Store(_)
            | ServiceError::TaskFailed(_) => true,
            _ => false,
        }
    }

    /// The context a call named is gone (deleted, or its interpreter died): a new one is needed.
    pub fn context_gone(&self) -> bool {
        matches!(
            self,
            ServiceError::Exec(ExecError::Context(
                ContextFailure::NotFound | ContextFailure::Lost,
                _
            )) | ServiceError::Sandbox(
                SandboxError::ContextNotFound(_) | SandboxError::ContextLost(_)
            )
        )
    }
}

impl From<ExecError> for ServiceError {
    fn from(e: ExecError) -> ServiceError {
        ServiceError::Exec(e)
    }
}

impl From<SandboxError> for ServiceError {
    fn from(e: SandboxError) -> ServiceError {
        match e {
            SandboxError::Exec(x) => ServiceError::Exec(x),
            other => ServiceError::Sandbox(other),
        }
    }
}

impl From<ManagerError> for ServiceError {
    fn from(e: ManagerError) -> ServiceError {
        match e {
            ManagerError::NotFound(id) => ServiceError::SandboxNotFound(id),
            ManagerError::Invalid(m) => ServiceError::InvalidSandbox(m),
            ManagerError::Unavailable(m) => ServiceError::ExecutorUnavailable(m),
            ManagerError::Quota(q) => ServiceError::Quota(q),
            ManagerError::Store(s) => ServiceError::Store(s),
            ManagerError::Backend(b) => b.into(),
        }
    }
}

impl From<tokio::task::JoinError> for ServiceError {
    fn from(e: tokio::task::JoinError) -> ServiceError {
        ServiceError::TaskFailed(e.to_string())
    }
}
