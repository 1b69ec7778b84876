//! `/v1/sandboxes`: lifecycle, calls and files of a team's persistent workspaces.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};

use super::error::ErrorBody;
use super::execute::{ready_executor, respond, RUN_ANSWER};
use super::{ApiError, AppState};
use crate::wire::object::Object;
use crate::exec::request::SandboxCallRequest;
use crate::exec::{BoxFuture, ExecError, Executor, Job, Readiness, RunResult};
use crate::sandbox::manager::{CreateSandbox, ManagerError};
use crate::sandbox::names::{self, PathEncoding};
use crate::sandbox::{FileEntry, Sandbox, SandboxBackend, SandboxError};
use crate::store::{rfc3339, Team};

impl From<ManagerError> for ApiError {
    fn from(e: ManagerError) -> ApiError {
        match e {
            ManagerError::NotFound(_) => {
                ApiError::new(StatusCode::NOT_FOUND, "sandbox_not_found", e.to_string())
            }
            ManagerError::Invalid(m) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_sandbox", m)
            }
            ManagerError::Unavailable(m) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "executor_unavailable", m)
            }
            ManagerError::Quota(q) => q.into(),
            ManagerError::Store(s) => s.into(),
            ManagerError::Backend(b) => b.into(),
        }
    }
}

impl From<SandboxError> for ApiError {
    fn from(e: SandboxError) -> ApiError {
        match e {
            SandboxError::NotFound(_) => {
                ApiError::new(StatusCode::NOT_FOUND, "file_not_found", e.to_string())
            }
            SandboxError::PathRefused(_) => {
                ApiError::new(StatusCode::BAD_REQUEST, "path_refused", e.to_string())
            }
            SandboxError::PathConflict(_) => {
                ApiError::new(StatusCode::CONFLICT, "path_conflict", e.to_string())
            }
            SandboxError::TooLarge { .. } => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", e.to_string())
            }
            SandboxError::InvalidArchive(_) => ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_archive",
                format!("{e}; send a tar (ustar, GNU or pax)"),
            ),
            SandboxError::Exec(x) => x.into(),
            SandboxError::ContextNotFound(m) => {
                ApiError::new(StatusCode::NOT_FOUND, "context_not_found", m)
            }
            SandboxError::ContextLost(m) => ApiError::new(StatusCode::GONE, "context_lost", m),
            SandboxError::ProcessNotFound(m) => {
                ApiError::new(StatusCode::NOT_FOUND, "process_not_found", m)
            }
            SandboxError::Unsupported(m) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "unsupported", m)
            }
            SandboxError::Io(..) => {
                tracing::error!(error = %e, "sandbox file operation failed");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal_error",
                    "the sandbox operation failed inside the service; it has been logged",
                )
            }
        }
    }
}

/// A sandbox as the API shows it.
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

fn view(s: &Sandbox) -> SandboxView {
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

#[derive(Serialize, utoipa::ToSchema)]
pub struct SandboxList {
    pub sandboxes: Vec<SandboxView>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct FileList {
    pub files: Vec<FileEntry>,
}

/// What `PUT .../files/{path}` wrote.
#[derive(Serialize, utoipa::ToSchema)]
pub struct FileWritten {
    /// As a listing shows it: as is when valid UTF-8, else percent-encoded.
    pub path: String,
    pub path_encoding: PathEncoding,
    pub size: usize,
}

/// The path parameter of `/v1/sandboxes/{id}...`, for the API description.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub(super) struct SandboxId {
    /// As `POST /v1/sandboxes` answered (`sb_...`).
    id: String,
}

/// The path parameters of `/v1/sandboxes/{id}/files/{path}`, for the API description.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
struct SandboxFile {
    /// As `POST /v1/sandboxes` answered (`sb_...`).
    id: String,
    /// Relative to the work dir; the rest of the URL path, so it may contain `/` (as is or
    /// percent-encoded). `..` segments and absolute paths are refused. A name that is not
    /// UTF-8 is given in its percent form with `?path_encoding=percent`.
    path: String,
}

/// How the file's path is written, on the routes of one file.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FileQuery {
    /// `utf-8` (the default): the path is the name itself. `percent`: the path is the percent
    /// form a listing shows for a name that is not UTF-8 (`%XX` for the byte XX, `%25` for `%`).
    #[serde(default)]
    #[param(inline)]
    path_encoding: Option<PathEncoding>,
}

/// The 404 of every `/v1/sandboxes/{id}...` route.
pub(super) const NOT_FOUND: &str = "`sandbox_not_found`: the team has no such sandbox (another team's is exactly as missing), or it expired or was deleted";

pub(super) fn manager(
    state: &AppState,
) -> Result<&Arc<crate::sandbox::manager::Manager>, ApiError> {
    state.sandboxes.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "sandboxes_unavailable",
            "sandboxes are not enabled in this service",
        )
    })
}

#[utoipa::path(post, path = "/v1/sandboxes", operation_id = "create_sandbox", summary = "Create a sandbox", tag = "sandboxes", request_body = CreateSandbox,
    responses(
        (status = 201, description = "Created, with its work dir (local) or container (docker)", body = SandboxView),
        (status = 400, description = "`malformed_json`, `invalid_request`, `invalid_body`", body = ErrorBody),
        (status = 413, description = "`body_too_large`", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: the body must be sent as `application/json`", body = ErrorBody),
        (status = 422, description = "`invalid_sandbox`: unknown executor or policy, a policy that does not allow the executor, a TTL out of range, a bad env name", body = ErrorBody),
        (status = 429, description = "`quota_exceeded`: the team has as many sandboxes as it may", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
        (status = 500, description = "`internal_error`", body = ErrorBody),
        (status = 503, description = "`sandboxes_unavailable`, `executor_unavailable`, `sandbox_uids_exhausted`", body = ErrorBody),
    ))]
pub async fn create(
    State(state): State<Arc<AppState>>,
    Extension(team): Extension<Team>,
    body: Result<Json<Object<CreateSandbox>>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(Object(req)) = body?;
    let sb = manager(&state)?.create(&team, req).await?;
    Ok((StatusCode::CREATED, Json(view(&sb))).into_response())
}

/// `GET /v1/sandboxes?metadata.KEY=VALUE...`
#[utoipa::path(get, path = "/v1/sandboxes", operation_id = "list_sandboxes", summary = "List the team's sandboxes", tag = "sandboxes",
    params(("metadata.KEY" = Option<String>, Query,
        description = "A family of parameters, not one: `metadata.<key>=<value>` keeps only sandboxes whose metadata has that pair; \
repeat with other keys to require all of them (e.g. `?metadata.project=demo&metadata.owner=ana`). Any other parameter is refused.")),
    responses(
        (status = 200, description = "The calling team's sandboxes", body = SandboxList),
        (status = 400, description = "`invalid_request`: a query parameter that is not `metadata.KEY`", body = ErrorBody),
        (status = 500, description = "`internal_error`", body = ErrorBody),
        (status = 503, description = "`sandboxes_unavailable`", body = ErrorBody),
    ))]
pub async fn list(
    State(state): State<Arc<AppState>>,
    Extension(team): Extension<Team>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Result<Json<SandboxList>, ApiError> {
    let mut filter = BTreeMap::new();
    for (k, v) in q {
        match k.strip_prefix("metadata.") {
            Some(key) if !key.is_empty() => {
                filter.insert(key.to_string(), v);
            }
            _ => {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    format!("unknown query parameter \"{k}\"; filter with metadata.KEY=VALUE"),
                ))
            }
        }
    }
    let list = manager(&state)?.list(&team, &filter).await?;
    Ok(Json(SandboxList {
        sandboxes: list.iter().map(view).collect(),
    }))
}

#[utoipa::path(get, path = "/v1/sandboxes/{id}", operation_id = "get_sandbox", summary = "Get a sandbox", tag = "sandboxes", params(SandboxId),
    responses(
        (status = 200, description = "The sandbox", body = SandboxView),
        (status = 404, description = NOT_FOUND, body = ErrorBody),
        (status = 500, description = "`internal_error`", body = ErrorBody),
        (status = 503, description = "`sandboxes_unavailable`", body = ErrorBody),
    ))]
pub async fn get(
    State(state): State<Arc<AppState>>,
    Extension(team): Extension<Team>,
    Path(id): Path<String>,
) -> Result<Json<SandboxView>, ApiError> {
    Ok(Json(view(&manager(&state)?.get(&team, &id).await?)))
}

#[utoipa::path(delete, path = "/v1/sandboxes/{id}", operation_id = "delete_sandbox", summary = "Delete a sandbox and everything it holds", tag = "sandboxes", params(SandboxId),
    responses(
        (status = 204, description = "Deleted, with everything it held"),
        (status = 404, description = NOT_FOUND, body = ErrorBody),
        (status = 500, description = "`internal_error`", body = ErrorBody),
        (status = 503, description = "`sandboxes_unavailable`", body = ErrorBody),
    ))]
pub async fn delete(
    State(state): State<Arc<AppState>>,
    Extension(team): Extension<Team>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    manager(&state)?.delete(&team, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The optional body of a keepalive.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Keepalive {
    /// Seconds from now until the sandbox expires, 1..=`sandboxes.max_ttl_seconds`; the
    /// sandbox's own TTL when left out.
    #[serde(default, deserialize_with = "crate::wire::whole::option")]
    ttl_seconds: Option<u64>,
}

#[utoipa::path(post, path = "/v1/sandboxes/{id}/keepalive", operation_id = "keep_sandbox_alive", summary = "Extend a sandbox's expiry", tag = "sandboxes", params(SandboxId),
    request_body(content = Option<Keepalive>, description = "Optional; without a body (an empty one, whatever its Content-Type) the sandbox's own TTL is renewed"),
    responses(
        (status = 200, description = "The sandbox with its new `expires_at`", body = SandboxView),
        (status = 400, description = "`malformed_json`, `invalid_request`, `invalid_body`", body = ErrorBody),
        (status = 404, description = NOT_FOUND, body = ErrorBody),
        (status = 413, description = "`body_too_large`", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: a body must be sent as `application/json`", body = ErrorBody),
        (status = 422, description = "`invalid_sandbox`: `ttl_seconds` out of range", body = ErrorBody),
        (status = 500, description = "`internal_error`", body = ErrorBody),
        (status = 503, description = "`sandboxes_unavailable`", body = ErrorBody),
    ))]
pub async fn keepalive(
    State(state): State<Arc<AppState>>,
    Extension(team): Extension<Team>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<SandboxView>, ApiError> {
    // No body (zero bytes) is fine whatever the Content-Type (clients send `application/json`
    // by habit); any other body must be JSON, so whitespace alone is malformed JSON.
    let body = body_bytes(body)?;
    let ttl = if body.is_empty() {
        None
    } else {
        let json = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                let mime = v
                    .split(';')
                    .next()
                    .unwrap_or_default()
                    .trim()
                    .to_ascii_lowercase();
                mime == "application/json"
                    || (mime.starts_with("application/") && mime.ends_with("+json"))
            });
        if !json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as JSON with Content-Type: application/json",
            ));
        }
        // `null` is no body too; an array is not an object.
        Json::<Option<Object<Keepalive>>>::from_bytes(&body)?
            .0
            .and_then(|Object(k)| k.ttl_seconds)
    };
    Ok(Json(view(
        &manager(&state)?.keepalive(&team, &id, ttl).await?,
    )))
}

/// `POST /v1/sandboxes/{id}/execute`: the `/v1/execute` body without `executor` and `policy`.
#[utoipa::path(post, path = "/v1/sandboxes/{id}/execute", operation_id = "sandbox_execute", summary = "Run a program in a sandbox", tag = "sandboxes", params(SandboxId),
    request_body(content = SandboxCallRequest, description = "The `/v1/execute` body without `executor` and `policy` (the sandbox's own); \
the sandbox's `env` is the base of the call's"),
    responses(
        (status = 200, description = RUN_ANSWER, content((RunResult = "application/json"), (String = "text/event-stream"))),
        (status = 400, description = "`malformed_json`, `invalid_request` (also for a body with `executor` or `policy`), `invalid_body`, `unknown_language`, `invalid_file`", body = ErrorBody),
        (status = 404, description = "`sandbox_not_found`, `unknown_policy` (the sandbox's policy is no longer configured)", body = ErrorBody),
        (status = 413, description = "`body_too_large`", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: the body must be sent as `application/json`", body = ErrorBody),
        (status = 409, description = "`path_conflict`: the path is well-formed, but what the work dir holds now is in the way: one of the call's files would go through a link or a file the sandbox holds, or replace a directory", body = ErrorBody),
        (status = 422, description = "`limit_exceeded` (also `disk_bytes` above the sandbox's own disk), `limit_below_minimum`, `input_too_large`, `executor_not_allowed`", body = ErrorBody),
        (status = 429, description = "`quota_exceeded`, `over_capacity`", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
        (status = 500, description = "`internal_error`", body = ErrorBody),
        (status = 503, description = "`sandboxes_unavailable`, `executor_unavailable`, `sandbox_uids_exhausted`, `runtime_unavailable`", body = ErrorBody),
    ))]
pub async fn execute(
    State(state): State<Arc<AppState>>,
    Extension(team): Extension<Team>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Json<Object<SandboxCallRequest>>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(Object(req)) = body?;
    if req.context.is_some() {
        return super::contexts::execute(&state, &team, &id, req, &headers).await;
    }
    let (job, call) = call(&state, &team, &id, req).await?;
    let sandbox_id = call.sandbox.id.clone();
    respond(
        &state,
        &team,
        Some(sandbox_id),
        job,
        Arc::new(call),
        &headers,
    )
    .await
}

/// A call in the team's sandbox `id`, validated and holding the sandbox's lock: the job and
/// the executor that runs it there. The sandbox's executor and policy apply.
pub(super) async fn call(
    state: &AppState,
    team: &Team,
    id: &str,
    req: SandboxCallRequest,
) -> Result<(Job, SandboxCall), ApiError> {
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
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "limit_exceeded",
            format!(
                "limits.disk_bytes = {} exceeds this sandbox's disk of {} bytes",
                job.limits.disk_bytes, sandbox.limits.disk_bytes
            ),
        ));
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
    Ok((
        job,
        SandboxCall {
            executor,
            backend,
            sandbox,
            _guard: guard,
        },
    ))
}

/// A call in a sandbox, seen as an executor by the run path (admission, metrics, audit,
/// streaming). It holds the sandbox's lock until the call is over.
pub(super) struct SandboxCall {
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

pub(super) fn backend_of(
    m: &crate::sandbox::manager::Manager,
    sandbox: &Sandbox,
) -> Result<Arc<dyn SandboxBackend>, ApiError> {
    m.backend(&sandbox.executor).ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "executor_unavailable",
            format!(
                "the {} executor of this sandbox is not running",
                sandbox.executor
            ),
        )
    })
}

fn path_refused(e: impl ToString) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "path_refused", e.to_string())
}

/// A file path from the URL (already percent-decoded by the router) in its `encoding`, as raw
/// bytes by the one path rule of `exec::path` — so `%2e%2e/` arrives as `../` and is refused,
/// in either encoding.
fn rel_path(shown: &str, encoding: PathEncoding) -> Result<Vec<u8>, ApiError> {
    let raw = names::decode(shown, encoding).map_err(path_refused)?;
    crate::exec::path::check_raw(&raw).map_err(path_refused)?;
    Ok(raw)
}

fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    q.map(|Query(q)| q)
        .map_err(|r| ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", r.body_text()))
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

#[utoipa::path(put, path = "/v1/sandboxes/{id}/files/{path}", operation_id = "write_file", summary = "Write a file", tag = "files", params(SandboxFile, FileQuery),
    request_body(content(("application/octet-stream")), description = "The file's bytes, whatever the Content-Type; parent directories are created"),
    responses(
        (status = 200, description = "Written", body = FileWritten),
        (status = 400, description = "`path_refused`, `invalid_body`, `invalid_request` (an unknown `path_encoding`)", body = ErrorBody),
        (status = 404, description = NOT_FOUND, body = ErrorBody),
        (status = 409, description = "`path_conflict`: the path is well-formed, but what the work dir holds now is in the way: a symlink or a file where a directory belongs, or a directory where the file would go", body = ErrorBody),
        (status = 413, description = "`body_too_large` (the service's `max_body_bytes`), `too_large` (the sandbox's disk limit)", body = ErrorBody),
        (status = 500, description = "`internal_error`", body = ErrorBody),
        (status = 503, description = "`sandboxes_unavailable`, `executor_unavailable`", body = ErrorBody),
    ))]
pub async fn put_file(
    State(state): State<Arc<AppState>>,
    Extension(team): Extension<Team>,
    Path((id, path)): Path<(String, String)>,
    q: Result<Query<FileQuery>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<FileWritten>, ApiError> {
    let rel = rel_path(&path, query(q)?.path_encoding.unwrap_or_default())?;
    let content = body_bytes(body)?.to_vec();
    let size = content.len();
    let m = manager(&state)?;
    let (sandbox, _guard) = m.use_sandbox(&team, &id).await?;
    let backend = backend_of(m, &sandbox)?;
    backend.write_file(&sandbox, &rel, content).await?;
    let (path, path_encoding) = names::encode(&rel);
    Ok(Json(FileWritten {
        path,
        path_encoding,
        size,
    }))
}

#[utoipa::path(get, path = "/v1/sandboxes/{id}/files/{path}", operation_id = "read_file", summary = "Read a file", tag = "files", params(SandboxFile, FileQuery),
    responses(
        (status = 200, description = "The file's bytes", content(("application/octet-stream"))),
        (status = 400, description = "`path_refused`: against the path rule, or not the percent form `path_encoding=percent` asks for; `invalid_request` (an unknown `path_encoding`)", body = ErrorBody),
        (status = 404, description = "`sandbox_not_found`, `file_not_found`", body = ErrorBody),
        (status = 409, description = "`path_conflict`: the path is well-formed, but what the work dir holds now is in the way: the path is a directory, a symlink or not a regular file, or a link is on the way", body = ErrorBody),
        (status = 413, description = "`too_large`: larger than the sandbox's disk limit", body = ErrorBody),
        (status = 500, description = "`internal_error`", body = ErrorBody),
        (status = 503, description = "`sandboxes_unavailable`, `executor_unavailable`", body = ErrorBody),
    ))]
pub async fn get_file(
    State(state): State<Arc<AppState>>,
    Extension(team): Extension<Team>,
    Path((id, path)): Path<(String, String)>,
    q: Result<Query<FileQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let rel = rel_path(&path, query(q)?.path_encoding.unwrap_or_default())?;
    let m = manager(&state)?;
    let (sandbox, _guard) = m.use_sandbox(&team, &id).await?;
    let backend = backend_of(m, &sandbox)?;
    let bytes = backend.read_file(&sandbox, &rel).await?;
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// A directory relative to the work dir; the whole work dir when left out.
    #[serde(default)]
    path: Option<String>,
    /// How `path` is written: `utf-8` (the default) or `percent` (the form a listing shows for
    /// a name that is not UTF-8).
    #[serde(default)]
    #[param(inline)]
    path_encoding: Option<PathEncoding>,
}

#[utoipa::path(get, path = "/v1/sandboxes/{id}/files", operation_id = "list_files", summary = "List files", tag = "files", params(SandboxId, ListQuery),
    responses(
        (status = 200, description = "Everything below the directory, recursively; links are listed, never followed. \
Each `path` is the name as is when it is valid UTF-8 (`path_encoding: utf-8`), else its percent form (`path_encoding: percent`)", body = FileList),
        (status = 400, description = "`path_refused`: against the path rule; `invalid_request` (an unknown query parameter)", body = ErrorBody),
        (status = 404, description = "`sandbox_not_found`, `file_not_found`", body = ErrorBody),
        (status = 409, description = "`path_conflict`: the path is well-formed, but what the work dir holds now is in the way: the path is not a directory, or a link is on the way", body = ErrorBody),
        (status = 413, description = "`too_large`: the listing is too large", body = ErrorBody),
        (status = 500, description = "`internal_error`", body = ErrorBody),
        (status = 503, description = "`sandboxes_unavailable`, `executor_unavailable`", body = ErrorBody),
    ))]
pub async fn list_files(
    State(state): State<Arc<AppState>>,
    Extension(team): Extension<Team>,
    Path(id): Path<String>,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<FileList>, ApiError> {
    let q = query(q)?;
    let shown = q.path.as_deref().unwrap_or_default();
    let raw = names::decode(shown, q.path_encoding.unwrap_or_default()).map_err(path_refused)?;
    let dir = crate::exec::path::check_dir_raw(&raw).map_err(path_refused)?;
    let m = manager(&state)?;
    let (sandbox, _guard) = m.use_sandbox(&team, &id).await?;
    let backend = backend_of(m, &sandbox)?;
    let files = backend.list(&sandbox, dir).await?;
    Ok(Json(FileList { files }))
}

/// `GET /v1/sandboxes/{id}/archive`: the whole work dir as a tar.
#[utoipa::path(get, path = "/v1/sandboxes/{id}/archive", operation_id = "download_archive", summary = "Download the work dir as a tar", tag = "files", params(SandboxId),
    responses(
        (status = 200, description = "The whole work dir as a tar", content(("application/x-tar"))),
        (status = 404, description = NOT_FOUND, body = ErrorBody),
        (status = 413, description = "`too_large`: the archive is too large", body = ErrorBody),
        (status = 500, description = "`internal_error`", body = ErrorBody),
        (status = 503, description = "`sandboxes_unavailable`, `executor_unavailable`", body = ErrorBody),
    ))]
pub async fn get_archive(
    State(state): State<Arc<AppState>>,
    Extension(team): Extension<Team>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let m = manager(&state)?;
    let (sandbox, guard) = m.use_sandbox(&team, &id).await?;
    let backend = backend_of(m, &sandbox)?;
    let tar = backend.export_tar(&sandbox).await?;
    // The sandbox stays locked until the whole archive is sent (or the client goes away).
    use futures_util::StreamExt;
    let tar = tar.map(move |chunk| {
        let _held = &guard;
        chunk
    });
    Ok((
        [(header::CONTENT_TYPE, "application/x-tar")],
        axum::body::Body::from_stream(tar),
    )
        .into_response())
}

/// `POST /v1/sandboxes/{id}/archive`: unpack a tar into the work dir.
#[utoipa::path(post, path = "/v1/sandboxes/{id}/archive", operation_id = "upload_archive", summary = "Upload a tar into the work dir", tag = "files", params(SandboxId),
    request_body(content(("application/x-tar")), description = "A tar to unpack into the work dir, whatever the Content-Type; \
unpacked entry by entry, each checked before it is written: a refused entry stops the unpack, with the entries before it written"),
    responses(
        (status = 204, description = "Unpacked"),
        (status = 400, description = "`path_refused`: an entry outside the work dir, through a link or against the path rule; `invalid_archive`: the body is not a tar; `invalid_body`", body = ErrorBody),
        (status = 404, description = NOT_FOUND, body = ErrorBody),
        (status = 409, description = "`path_conflict`: the path is well-formed, but what the work dir holds now is in the way: an entry would go through a link, or replace a directory with a file", body = ErrorBody),
        (status = 413, description = "`body_too_large` (the service's `max_body_bytes`), `too_large` (the sandbox's disk limit)", body = ErrorBody),
        (status = 500, description = "`internal_error`", body = ErrorBody),
        (status = 503, description = "`sandboxes_unavailable`, `executor_unavailable`", body = ErrorBody),
    ))]
pub async fn post_archive(
    State(state): State<Arc<AppState>>,
    Extension(team): Extension<Team>,
    Path(id): Path<String>,
    body: axum::body::Body,
) -> Result<StatusCode, ApiError> {
    use futures_util::TryStreamExt;
    // Streamed into the sandbox as it arrives: its disk, not the service's memory, bounds it.
    let tar = body.into_data_stream().map_err(std::io::Error::other);
    let tar: crate::sandbox::TarStream = Box::pin(tar);
    let m = manager(&state)?;
    let (sandbox, _guard) = m.use_sandbox(&team, &id).await?;
    let backend = backend_of(m, &sandbox)?;
    backend.import_tar(&sandbox, tar).await?;
    Ok(StatusCode::NO_CONTENT)
}
