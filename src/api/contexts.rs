//! `/v1/sandboxes/{id}/contexts`: stateful Python interpreters in a sandbox (Jupyter-like),
//! and the context calls of `POST /v1/sandboxes/{id}/execute` with `"context"`.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};

use super::error::ErrorBody;
use super::execute::{ready_executor, respond};
use super::sandboxes::{backend_of, manager, SandboxId, NOT_FOUND};
use super::{ApiError, AppState};
use crate::wire::object::Object;
use crate::exec::request::SandboxCallRequest;
use crate::exec::{BoxFuture, ExecError, Executor, Job, Readiness, RunResult};
use crate::sandbox::stateful::{self, ContextView, CONTEXT_LANGUAGES};
use crate::sandbox::{Sandbox, SandboxBackend};
use crate::store::Team;

/// `POST /v1/sandboxes/{id}/contexts`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateContext {
    /// `python` (or an alias of it: `py`, `python3`): contexts are Python interpreters.
    pub language: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ContextList {
    pub contexts: Vec<ContextView>,
}

/// The path parameters of `/v1/sandboxes/{id}/contexts/{context_id}`, for the API description.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
struct ContextPath {
    /// As `POST /v1/sandboxes` answered (`sb_...`).
    id: String,
    /// As `POST /v1/sandboxes/{id}/contexts` answered (`ctx_...`).
    context_id: String,
}

/// The language a context speaks, from a name or alias of `GET /v1/runtimes`.
fn context_language(state: &AppState, asked: &str) -> Result<String, ApiError> {
    match state.runtimes.find(asked) {
        Some(r) if CONTEXT_LANGUAGES.contains(&r.language.as_str()) => Ok(r.language.clone()),
        _ => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unsupported_language",
            format!(
                "contexts speak {} only, not \"{asked}\"",
                CONTEXT_LANGUAGES.join(", ")
            ),
        )),
    }
}

#[utoipa::path(post, path = "/v1/sandboxes/{id}/contexts", operation_id = "create_context", summary = "Start a stateful context", tag = "contexts", params(SandboxId),
    request_body = CreateContext,
    responses(
        (status = 201, description = "A persistent interpreter in the sandbox, ready for calls (`POST .../execute` with `context`); it lives until deleted or until its sandbox is", body = ContextView),
        (status = 400, description = "`malformed_json`, `invalid_request`, `invalid_body`", body = ErrorBody),
        (status = 404, description = NOT_FOUND, body = ErrorBody),
        (status = 413, description = "`body_too_large`", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: the body must be sent as `application/json`", body = ErrorBody),
        (status = 422, description = "`unsupported_language`: contexts speak python only; `unsupported`: the sandbox's executor has no contexts", body = ErrorBody),
        (status = 500, description = "`internal_error`", body = ErrorBody),
        (status = 503, description = "`sandboxes_unavailable`, `executor_unavailable`", body = ErrorBody),
    ))]
pub async fn create(
    State(state): State<Arc<AppState>>,
    Extension(team): Extension<Team>,
    Path(id): Path<String>,
    body: Result<Json<Object<CreateContext>>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(Object(req)) = body?;
    let language = context_language(&state, &req.language)?;
    let m = manager(&state)?;
    let (sandbox, _guard) = m.use_sandbox(&team, &id).await?;
    let backend = backend_of(m, &sandbox)?;
    let ctx = stateful::context_create(&*backend, &sandbox, &language).await?;
    let view = ContextView {
        id: ctx,
        language,
        state: "idle".into(),
    };
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

#[utoipa::path(get, path = "/v1/sandboxes/{id}/contexts", operation_id = "list_contexts", summary = "List a sandbox's contexts", tag = "contexts", params(SandboxId),
    responses(
        (status = 200, description = "The sandbox's contexts", body = ContextList),
        (status = 404, description = NOT_FOUND, body = ErrorBody),
        (status = 500, description = "`internal_error`", body = ErrorBody),
        (status = 503, description = "`sandboxes_unavailable`, `executor_unavailable`", body = ErrorBody),
    ))]
pub async fn list(
    State(state): State<Arc<AppState>>,
    Extension(team): Extension<Team>,
    Path(id): Path<String>,
) -> Result<Json<ContextList>, ApiError> {
    let m = manager(&state)?;
    let sandbox = m.get(&team, &id).await?;
    let backend = backend_of(m, &sandbox)?;
    // A backend without contexts has none.
    let contexts = match stateful::context_list(&*backend, &sandbox).await {
        Err(crate::sandbox::SandboxError::Unsupported(_)) => Vec::new(),
        Err(e) => {
            m.get(&team, &id).await?; // deleted meanwhile: just gone
            return Err(e.into());
        }
        Ok(c) => c,
    };
    Ok(Json(ContextList { contexts }))
}

#[utoipa::path(delete, path = "/v1/sandboxes/{id}/contexts/{context_id}", operation_id = "delete_context", summary = "End a context", tag = "contexts", params(ContextPath),
    responses(
        (status = 204, description = "Its interpreter and everything it started are gone"),
        (status = 404, description = "`sandbox_not_found`, `context_not_found`", body = ErrorBody),
        (status = 500, description = "`internal_error`", body = ErrorBody),
        (status = 503, description = "`sandboxes_unavailable`, `executor_unavailable`", body = ErrorBody),
    ))]
pub async fn delete(
    State(state): State<Arc<AppState>>,
    Extension(team): Extension<Team>,
    Path((id, ctx)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let m = manager(&state)?;
    // Not behind the sandbox's lock: deleting a context stops a call running in it.
    let sandbox = m.get(&team, &id).await?;
    let backend = backend_of(m, &sandbox)?;
    match stateful::context_delete(&*backend, &sandbox, &ctx).await {
        Err(crate::sandbox::SandboxError::Unsupported(_)) => Err(no_context(&ctx)),
        Err(e) => {
            // The sandbox may have been deleted meanwhile (its record goes first, then its
            // supervisor, and with it this operation's connection): then it is just gone.
            m.get(&team, &id).await?;
            Err(ApiError::from(e))
        }
        Ok(()) => Ok(()),
    }?;
    Ok(StatusCode::NO_CONTENT)
}

fn no_context(ctx: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "context_not_found",
        format!("no context {ctx} in this sandbox (it may have been deleted)"),
    )
}

/// `POST /v1/sandboxes/{id}/execute` with `context`: the code runs in that interpreter.
pub(super) async fn execute(
    state: &Arc<AppState>,
    team: &Team,
    id: &str,
    req: SandboxCallRequest,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let (job, call) = context_call(state, team, id, req).await?;
    let sandbox_id = call.sandbox.id.clone();
    respond(state, team, Some(sandbox_id), job, Arc::new(call), headers).await
}

/// A context call in the team's sandbox `id`, validated and holding the sandbox's lock: the
/// job and the executor that runs it in the context.
pub(super) async fn context_call(
    state: &AppState,
    team: &Team,
    id: &str,
    req: SandboxCallRequest,
) -> Result<(Job, ContextCall), ApiError> {
    let ctx = req.context.clone().unwrap_or_default();
    if !req.files.is_empty() || !req.stdin.is_empty() || !req.args.is_empty() || !req.env.is_empty()
    {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "a context call takes only `language`, `code`, `limits` and `context`: the interpreter is already running, so `files`, `stdin`, `args` and `env` cannot apply (write files with PUT .../files, set variables in code)",
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
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unsupported_language",
            format!(
                "contexts speak {} only; this call asks for {}",
                CONTEXT_LANGUAGES.join(", "),
                job.runtime.language
            ),
        ));
    }
    let executor = ready_executor(state, &sandbox.executor, &job.runtime.language)?;
    let backend = backend_of(m, &sandbox)?;
    Ok((
        job,
        ContextCall {
            executor,
            backend,
            sandbox,
            ctx,
            _guard: guard,
        },
    ))
}

/// Start a context in the team's sandbox `id` (for an agent run's stateful blocks).
pub(super) async fn start_context(
    state: &AppState,
    team: &Team,
    id: &str,
    language: &str,
) -> Result<String, ApiError> {
    let language = context_language(state, language)?;
    let m = manager(state)?;
    let (sandbox, _guard) = m.use_sandbox(team, id).await?;
    let backend = backend_of(m, &sandbox)?;
    Ok(stateful::context_create(&*backend, &sandbox, &language).await?)
}

/// Whether `language` (a name or alias) is one contexts speak.
pub(super) fn speaks(state: &AppState, language: &str) -> bool {
    context_language(state, language).is_ok()
}

/// A context call, seen as an executor by the run path (admission, metrics, audit,
/// streaming). It holds the sandbox's lock until the call is over.
pub(super) struct ContextCall {
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
