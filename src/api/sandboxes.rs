//! `/v1/sandboxes`: lifecycle, calls and files of a team's persistent workspaces.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, JsonRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{json, Value};

use super::execute::{ready_executor, respond};
use super::{ApiError, AppState};
use crate::exec::request::ExecuteRequest;
use crate::exec::{BoxFuture, ExecError, Executor, Job, Readiness, RunResult};
use crate::sandbox::manager::{CreateSandbox, ManagerError};
use crate::sandbox::{Sandbox, SandboxBackend, SandboxError};
use crate::store::{rfc3339, Team};

impl From<ManagerError> for ApiError {
    fn from(e: ManagerError) -> ApiError {
        match e {
            ManagerError::NotFound(_) => ApiError::new(StatusCode::NOT_FOUND, "sandbox_not_found", e.to_string()),
            ManagerError::Invalid(m) => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_sandbox", m),
            ManagerError::Unavailable(m) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "executor_unavailable", m),
            ManagerError::Quota(q) => q.into(),
            ManagerError::Store(s) => s.into(),
            ManagerError::Backend(b) => b.into(),
        }
    }
}

impl From<SandboxError> for ApiError {
    fn from(e: SandboxError) -> ApiError {
        match e {
            SandboxError::NotFound(_) => ApiError::new(StatusCode::NOT_FOUND, "file_not_found", e.to_string()),
            SandboxError::PathRefused(_) => ApiError::new(StatusCode::BAD_REQUEST, "path_refused", e.to_string()),
            SandboxError::TooLarge { .. } => ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", e.to_string()),
            SandboxError::Exec(x) => x.into(),
            SandboxError::Io(..) => {
                tracing::error!(error = %e, "sandbox file operation failed");
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal_error", "the sandbox operation failed inside the service; it has been logged")
            }
        }
    }
}

fn view(s: &Sandbox) -> Value {
    json!({
        "id": s.id,
        "executor": s.executor,
        "policy": s.policy,
        "state": s.state,
        "created_at": rfc3339(s.created_at),
        "expires_at": rfc3339(s.expires_at),
        "last_used_at": rfc3339(s.last_used_at),
        "idle_timeout_seconds": s.idle_timeout_seconds,
        "metadata": s.metadata,
    })
}

fn manager(state: &AppState) -> Result<&Arc<crate::sandbox::manager::Manager>, ApiError> {
    state.sandboxes.as_ref().ok_or_else(|| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "sandboxes_unavailable", "sandboxes are not enabled in this service"))
}

pub async fn create(State(state): State<Arc<AppState>>, Extension(team): Extension<Team>, body: Result<Json<CreateSandbox>, JsonRejection>) -> Result<Response, ApiError> {
    let Json(req) = body?;
    let sb = manager(&state)?.create(&team, req).await?;
    Ok((StatusCode::CREATED, Json(view(&sb))).into_response())
}

/// `GET /v1/sandboxes?metadata.KEY=VALUE...`
pub async fn list(State(state): State<Arc<AppState>>, Extension(team): Extension<Team>, Query(q): Query<BTreeMap<String, String>>) -> Result<Json<Value>, ApiError> {
    let mut filter = BTreeMap::new();
    for (k, v) in q {
        match k.strip_prefix("metadata.") {
            Some(key) if !key.is_empty() => {
                filter.insert(key.to_string(), v);
            }
            _ => return Err(ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", format!("unknown query parameter \"{k}\"; filter with metadata.KEY=VALUE"))),
        }
    }
    let list = manager(&state)?.list(&team, &filter).await?;
    Ok(Json(json!({"sandboxes": list.iter().map(view).collect::<Vec<_>>()})))
}

pub async fn get(State(state): State<Arc<AppState>>, Extension(team): Extension<Team>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    Ok(Json(view(&manager(&state)?.get(&team, &id).await?)))
}

pub async fn delete(State(state): State<Arc<AppState>>, Extension(team): Extension<Team>, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    manager(&state)?.delete(&team, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Keepalive {
    #[serde(default)]
    ttl_seconds: Option<u64>,
}

pub async fn keepalive(
    State(state): State<Arc<AppState>>,
    Extension(team): Extension<Team>,
    Path(id): Path<String>,
    body: Option<Json<Keepalive>>,
) -> Result<Json<Value>, ApiError> {
    let ttl = body.and_then(|Json(k)| k.ttl_seconds);
    Ok(Json(view(&manager(&state)?.keepalive(&team, &id, ttl).await?)))
}

/// `POST /v1/sandboxes/{id}/execute`: the `/v1/execute` body without `executor` and `policy`.
pub async fn execute(
    State(state): State<Arc<AppState>>,
    Extension(team): Extension<Team>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Json<ExecuteRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(mut req) = body?;
    if req.executor.is_some() || req.policy.is_some() {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", "executor and policy are the sandbox's own; leave them out of a sandbox call"));
    }
    let m = manager(&state)?;
    let (sandbox, guard) = m.use_sandbox(&team, &id).await?;
    // The sandbox's env is the base; the call's own env wins.
    for (k, v) in &sandbox.env {
        req.env.entry(k.clone()).or_insert_with(|| v.clone());
    }
    req.executor = Some(sandbox.executor.clone());
    req.policy = Some(sandbox.policy.clone());
    let (job, _) = req.into_job(uuid::Uuid::new_v4().to_string(), &state.policies, &state.runtimes)?;
    let executor = ready_executor(&state, &sandbox.executor, &job.runtime.language)?;
    let backend = backend_of(m, &sandbox)?;
    let call: Arc<dyn Executor> = Arc::new(SandboxCall { executor, backend, sandbox: sandbox.clone(), _guard: guard });
    respond(&state, &team, Some(sandbox.id), job, call, &headers).await
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

fn backend_of(m: &crate::sandbox::manager::Manager, sandbox: &Sandbox) -> Result<Arc<dyn SandboxBackend>, ApiError> {
    m.backend(&sandbox.executor).ok_or_else(|| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "executor_unavailable", format!("the {} executor of this sandbox is not running", sandbox.executor)))
}

/// A file path from the URL (already percent-decoded by the router): relative to the work
/// dir, no `..`, no absolute paths — so `%2e%2e/` arrives as `../` and is refused.
fn rel_path(raw: &str) -> Result<String, ApiError> {
    crate::exec::request::check_relative_path(raw).map_err(|m| ApiError::new(StatusCode::BAD_REQUEST, "path_refused", m))
}

fn body_bytes(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|r| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large", "the body is larger than this service accepts (max_body_bytes); send less or raise the limit")
        } else {
            ApiError::new(r.status(), "invalid_body", r.body_text())
        }
    })
}

pub async fn put_file(
    State(state): State<Arc<AppState>>,
    Extension(team): Extension<Team>,
    Path((id, path)): Path<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let rel = rel_path(&path)?;
    let content = body_bytes(body)?.to_vec();
    let size = content.len();
    let m = manager(&state)?;
    let (sandbox, _guard) = m.use_sandbox(&team, &id).await?;
    let backend = backend_of(m, &sandbox)?;
    backend.write_file(&sandbox, &rel, content).await?;
    Ok(Json(json!({"path": rel, "size": size})))
}

pub async fn get_file(State(state): State<Arc<AppState>>, Extension(team): Extension<Team>, Path((id, path)): Path<(String, String)>) -> Result<Response, ApiError> {
    let rel = rel_path(&path)?;
    let m = manager(&state)?;
    let (sandbox, _guard) = m.use_sandbox(&team, &id).await?;
    let backend = backend_of(m, &sandbox)?;
    let bytes = backend.read_file(&sandbox, &rel).await?;
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    #[serde(default)]
    path: Option<String>,
}

pub async fn list_files(
    State(state): State<Arc<AppState>>,
    Extension(team): Extension<Team>,
    Path(id): Path<String>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let dir = match q.path.as_deref() {
        None | Some("") | Some(".") => String::new(),
        Some(p) => rel_path(p.trim_end_matches('/'))?,
    };
    let m = manager(&state)?;
    let (sandbox, _guard) = m.use_sandbox(&team, &id).await?;
    let backend = backend_of(m, &sandbox)?;
    let files = backend.list(&sandbox, &dir).await?;
    Ok(Json(json!({ "files": files })))
}

/// `GET /v1/sandboxes/{id}/archive`: the whole work dir as a tar.
pub async fn get_archive(State(state): State<Arc<AppState>>, Extension(team): Extension<Team>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let m = manager(&state)?;
    let (sandbox, _guard) = m.use_sandbox(&team, &id).await?;
    let backend = backend_of(m, &sandbox)?;
    let tar = backend.export_tar(&sandbox).await?;
    Ok(([(header::CONTENT_TYPE, "application/x-tar")], tar).into_response())
}

/// `POST /v1/sandboxes/{id}/archive`: unpack a tar into the work dir.
pub async fn post_archive(
    State(state): State<Arc<AppState>>,
    Extension(team): Extension<Team>,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<StatusCode, ApiError> {
    let tar = body_bytes(body)?.to_vec();
    let m = manager(&state)?;
    let (sandbox, _guard) = m.use_sandbox(&team, &id).await?;
    let backend = backend_of(m, &sandbox)?;
    backend.import_tar(&sandbox, tar).await?;
    Ok(StatusCode::NO_CONTENT)
}
