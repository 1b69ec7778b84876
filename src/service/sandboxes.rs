//! A team's sandboxes: lifecycle through the manager (scoped to the team, under its quota),
//! and calls in them, which take the run path like any run with the sandbox's backend
//! standing in as the executor.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;

use super::run::{ready_executor, Prepared};
use super::{contexts, AppState, ServiceError};
use crate::exec::request::SandboxCallRequest;
use crate::exec::{BoxFuture, ExecError, Executor, Job, Readiness, RunResult};
use crate::sandbox::manager::{CreateSandbox, Manager};
use crate::sandbox::{Sandbox, SandboxBackend, SandboxError};
use crate::store::{rfc3339, Team};

/// A sandbox as callers see it.
#[derive(Serialize, utoipa::ToSchema)]
pub struct SandboxView {
    pub id: String,
    pub executor: String,
    pub policy: String,
    pub state: String,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub expires_at: String,
    #[schema(format = DateTime)]
    pub last_used_at: String,
    #[schema(required = true)]
    pub idle_timeout_seconds: Option<u64>,
    pub metadata: BTreeMap<String, String>,
}

impl From<&Sandbox> for SandboxView {
    fn from(s: &Sandbox) -> SandboxView {
        SandboxView {
            id: s.id.clone(),
            executor: s.executor.clone(),
            policy: s.policy.clone(),
            state: s.state.clone(),
            created_at: rfc3339(s.created_at),
            expires_at: rfc3339(s.expires_at),
            last_used_at: rfc3339(s.last_used_at),
            idle_timeout_seconds: s.idle_timeout_seconds,
            metadata: s.metadata.clone(),
        }
    }
}

/// The sandbox manager, if sandboxes are enabled.
pub(super) fn manager(state: &AppState) -> Result<&Arc<Manager>, ServiceError> {
    state
        .sandboxes
        .as_ref()
        .ok_or(ServiceError::SandboxesUnavailable)
}

/// The backend of the sandbox's executor.
pub(super) fn backend_of(
    m: &Manager,
    sandbox: &Sandbox,
) -> Result<Arc<dyn SandboxBackend>, ServiceError> {
    m.backend(&sandbox.executor).ok_or_else(|| {
        ServiceError::ExecutorUnavailable(format!(
            "the {} executor of this sandbox is not running",
            sandbox.executor
        ))
    })
}

/// A sandbox of the team, held for one operation: its record, its backend and its lock
/// (released when this is dropped).
pub(super) struct InUse {
    pub sandbox: Sandbox,
    pub backend: Arc<dyn SandboxBackend>,
    pub guard: tokio::sync::OwnedMutexGuard<()>,
}

/// Wait for the team's sandbox `id`'s lock, and hold it.
pub(super) async fn use_sandbox(
    state: &AppState,
    team: &Team,
    id: &str,
) -> Result<InUse, ServiceError> {
    let m = manager(state)?;
    let (sandbox, guard) = m.use_sandbox(team, id).await?;
    let backend = backend_of(m, &sandbox)?;
    Ok(InUse {
        sandbox,
        backend,
        guard,
    })
}

/// The team's sandbox `id` and its backend, for an operation not behind the sandbox's lock
/// (one that stops a call in flight, or only looks); see [`deleted_or`] for its errors.
pub(super) async fn unlocked(
    state: &AppState,
    team: &Team,
    id: &str,
) -> Result<(Sandbox, Arc<dyn SandboxBackend>), ServiceError> {
    let m = manager(state)?;
    let sandbox = m.get(team, id).await?;
    let backend = backend_of(m, &sandbox)?;
    Ok((sandbox, backend))
}

/// The error of an operation not behind the sandbox's lock: the sandbox may have been deleted
/// meanwhile (its record goes first, then its supervisor, and with it the operation's
/// connection), and then it is just gone.
pub(super) async fn deleted_or(
    state: &AppState,
    team: &Team,
    id: &str,
    e: SandboxError,
) -> ServiceError {
    match get(state, team, id).await {
        Err(gone) => gone,
        Ok(_) => e.into(),
    }
}

pub async fn create(
    state: &AppState,
    team: &Team,
    req: CreateSandbox,
) -> Result<Sandbox, ServiceError> {
    Ok(manager(state)?.create(team, req).await?)
}

/// The team's sandboxes whose metadata holds every pair of `filter`.
pub async fn list(
    state: &AppState,
    team: &Team,
    filter: &BTreeMap<String, String>,
) -> Result<Vec<Sandbox>, ServiceError> {
    Ok(manager(state)?.list(team, filter).await?)
}

pub async fn get(state: &AppState, team: &Team, id: &str) -> Result<Sandbox, ServiceError> {
    Ok(manager(state)?.get(team, id).await?)
}

/// Delete the sandbox and everything it holds.
pub async fn delete(state: &AppState, team: &Team, id: &str) -> Result<(), ServiceError> {
    Ok(manager(state)?.delete(team, id).await?)
}

/// Move the sandbox's expiry to `ttl_seconds` from now (its own TTL when None).
pub async fn keepalive(
    state: &AppState,
    team: &Team,
    id: &str,
    ttl_seconds: Option<u64>,
) -> Result<Sandbox, ServiceError> {
    Ok(manager(state)?.keepalive(team, id, ttl_seconds).await?)
}

/// A call in the team's sandbox `id`, validated and holding the sandbox's lock until it is
/// over: in the context `req.context` names, or else a plain call. The sandbox's executor and
/// policy apply, and its `env` is the base of the call's.
pub async fn prepare_call(
    state: &AppState,
    team: &Team,
    id: &str,
    req: SandboxCallRequest,
) -> Result<Prepared, ServiceError> {
    if req.context.is_some() {
        return contexts::prepare_call(state, team, id, req).await;
    }
    let m = manager(state)?;
    let (sandbox, guard) = m.use_sandbox(team, id).await?;
    let mut req = req.in_sandbox(sandbox.executor.clone(), sandbox.policy.clone());
    // The sandbox's env is the base; the call's own env wins.
    for (k, v) in &sandbox.env {
        req.env.entry(k.clone()).or_insert_with(|| v.clone());
    }
    let (job, _) = req.into_job(
        uuid::Uuid::new_v4().to_string(),
        &state.policies,
        &state.runtimes,
    )?;
    // A call's files become the workspace's: it may not bring a bigger disk than the sandbox has.
    if job.limits.disk_bytes > sandbox.limits.disk_bytes {
        return Err(ServiceError::SandboxDiskExceeded {
            requested: job.limits.disk_bytes,
            disk: sandbox.limits.disk_bytes,
        });
    }
    let executor = ready_executor(state, &sandbox.executor, &job.runtime.language)?;
    let backend = backend_of(m, &sandbox)?;
    // What the call writes must land as files in the work dir a program may have changed: a
    // link, a file or a directory in the way is the caller's to fix, not a failure mid-call.
    let rt = &job.runtime;
    let writes = job
        .files
        .iter()
        .map(|f| f.path.clone())
        .chain([rt.source_file.clone()])
        .chain(rt.artifact.clone())
        .collect();
    backend.check_call_paths(&sandbox, writes).await?;
    let sandbox_id = sandbox.id.clone();
    let call = SandboxCall {
        executor,
        backend,
        sandbox,
        _guard: guard,
    };
    Ok(Prepared::new(job, Arc::new(call), team, Some(sandbox_id)))
}

/// A call in a sandbox, seen as an executor by the run path (admission, metrics, audit,
/// streaming). It holds the sandbox's lock until the call is over.
struct SandboxCall {
    executor: Arc<dyn Executor>,
    backend: Arc<dyn SandboxBackend>,
    sandbox: Sandbox,
    _guard: tokio::sync::OwnedMutexGuard<()>,
}

impl Executor for SandboxCall {
    fn name(&self) -> &'static str {
        self.executor.name()
    }

    fn run<'a>(&'a self, job: &'a Job) -> BoxFuture<'a, Result<RunResult, ExecError>> {
        self.backend.exec(&self.sandbox, job)
    }

    fn readiness(&self) -> Readiness {
        self.executor.readiness()
    }

    fn runtimes(&self) -> std::collections::HashMap<String, String> {
        self.executor.runtimes()
    }
}
