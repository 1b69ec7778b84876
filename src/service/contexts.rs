//! Stateful contexts: persistent Python interpreters in a sandbox (Jupyter-like). A context
//! call is a run like any other for the run path: [`prepare_call`] makes it a
//! [`Prepared`](super::run::Prepared) that holds the sandbox's lock until it is over.

use std::sync::Arc;

use super::run::{ready_executor, Prepared};
use super::sandboxes::{backend_of, deleted_or, manager, unlocked, use_sandbox};
use super::{AppState, ServiceError};
use crate::exec::request::SandboxCallRequest;
use crate::exec::{BoxFuture, ExecError, Executor, Job, Readiness, RunResult};
use crate::sandbox::stateful::{self, ContextView, CONTEXT_LANGUAGES};
use crate::sandbox::{Sandbox, SandboxBackend, SandboxError};
use crate::store::Team;

/// The language a context speaks, from a name or alias of the runtime table.
fn context_language(state: &AppState, asked: &str) -> Result<String, ServiceError> {
    match state.runtimes.find(asked) {
        Some(r) if CONTEXT_LANGUAGES.contains(&r.language.as_str()) => Ok(r.language.clone()),
        _ => Err(ServiceError::UnsupportedLanguage(format!(
            "contexts speak {} only, not \"{asked}\"",
            CONTEXT_LANGUAGES.join(", ")
        ))),
    }
}

/// Whether `language` (a name or alias) is one contexts speak.
pub fn speaks(state: &AppState, language: &str) -> bool {
    context_language(state, language).is_ok()
}

/// Start a context speaking `language` in the team's sandbox `id`.
pub async fn create(
    state: &AppState,
    team: &Team,
    id: &str,
    language: &str,
) -> Result<ContextView, ServiceError> {
    let language = context_language(state, language)?;
    let sb = use_sandbox(state, team, id).await?;
    let ctx = stateful::context_create(&*sb.backend, &sb.sandbox, &language).await?;
    Ok(ContextView {
        id: ctx,
        language,
        state: "idle".into(),
    })
}

/// The sandbox's contexts (none where its executor has none).
pub async fn list(
    state: &AppState,
    team: &Team,
    id: &str,
) -> Result<Vec<ContextView>, ServiceError> {
    let (sandbox, backend) = unlocked(state, team, id).await?;
    match stateful::context_list(&*backend, &sandbox).await {
        Err(SandboxError::Unsupported(_)) => Ok(Vec::new()),
        Err(e) => Err(deleted_or(state, team, id, e).await),
        Ok(c) => Ok(c),
    }
}

/// End a context: its interpreter and everything it started.
pub async fn delete(
    state: &AppState,
    team: &Team,
    id: &str,
    ctx: &str,
) -> Result<(), ServiceError> {
    // Not behind the sandbox's lock: deleting a context stops a call running in it.
    let (sandbox, backend) = unlocked(state, team, id).await?;
    match stateful::context_delete(&*backend, &sandbox, ctx).await {
        Err(SandboxError::Unsupported(_)) => Err(SandboxError::ContextNotFound(format!(
            "no context {ctx} in this sandbox (it may have been deleted)"
        ))
        .into()),
        Err(e) => Err(deleted_or(state, team, id, e).await),
        Ok(()) => Ok(()),
    }
}

/// A context call in the team's sandbox `id` (`req.context` names the context), validated
/// and holding the sandbox's lock: the code runs in that interpreter.
pub(super) async fn prepare_call(
    state: &AppState,
    team: &Team,
    id: &str,
    req: SandboxCallRequest,
) -> Result<Prepared, ServiceError> {
    let ctx = req.context.clone().unwrap_or_default();
    if !req.files.is_empty() || !req.stdin.is_empty() || !req.args.is_empty() || !req.env.is_empty()
    {
        return Err(ServiceError::InvalidRequest(
            "a context call takes only `language`, `code`, `limits` and `context`: the interpreter is already running, so `files`, `stdin`, `args` and `env` cannot apply (write files with PUT .../files, set variables in code)".into(),
        ));
    }
    let m = manager(state)?;
    let (sandbox, guard) = m.use_sandbox(team, id).await?;
    let req = req.in_sandbox(sandbox.executor.clone(), sandbox.policy.clone());
    let (job, _) = req.into_job(
        uuid::Uuid::new_v4().to_string(),
        &state.policies,
        &state.runtimes,
    )?;
    if !CONTEXT_LANGUAGES.contains(&job.runtime.language.as_str()) {
        return Err(ServiceError::UnsupportedLanguage(format!(
            "contexts speak {} only; this call asks for {}",
            CONTEXT_LANGUAGES.join(", "),
            job.runtime.language
        )));
    }
    let executor = ready_executor(state, &sandbox.executor, &job.runtime.language)?;
    let backend = backend_of(m, &sandbox)?;
    let sandbox_id = sandbox.id.clone();
    let call = ContextCall {
        executor,
        backend,
        sandbox,
        ctx,
        _guard: guard,
    };
    Ok(Prepared::new(job, Arc::new(call), team, Some(sandbox_id)))
}

/// A context call, seen as an executor by the run path (admission, metrics, audit,
/// streaming). It holds the sandbox's lock until the call is over.
struct ContextCall {
    executor: Arc<dyn Executor>,
    backend: Arc<dyn SandboxBackend>,
    sandbox: Sandbox,
    ctx: String,
    _guard: tokio::sync::OwnedMutexGuard<()>,
}

impl Executor for ContextCall {
    fn name(&self) -> &'static str {
        self.executor.name()
    }

    fn run<'a>(&'a self, job: &'a Job) -> BoxFuture<'a, Result<RunResult, ExecError>> {
        let version = self
            .executor
            .runtimes()
            .get(&job.runtime.language)
            .cloned()
            .unwrap_or_default();
        Box::pin(stateful::context_exec(
            &*self.backend,
            &self.sandbox,
            &self.ctx,
            job,
            self.executor.name(),
            version,
        ))
    }

    fn readiness(&self) -> Readiness {
        self.executor.readiness()
    }

    fn runtimes(&self) -> std::collections::HashMap<String, String> {
        self.executor.runtimes()
    }
}
