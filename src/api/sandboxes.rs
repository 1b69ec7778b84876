//! `/v1/sandboxes`: lifecycle, calls and files of a team's persistent workspaces, over
//! `service::sandboxes` and `service::files`.

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
use super::execute::{respond, RUN_ANSWER};
use super::{ApiError, AppState};
use crate::exec::request::SandboxCallRequest;
use crate::exec::RunResult;
use crate::sandbox::manager::CreateSandbox;
use crate::sandbox::names::PathEncoding;
use crate::sandbox::FileEntry;
use crate::service::files::{self, FileWritten};
use crate::service::sandboxes::{self, SandboxView};
use crate::store::Team;
use crate::wire::object::Object;

#[derive(Serialize, utoipa::ToSchema)]
pub struct SandboxList {
    pub sandboxes: Vec<SandboxView>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct FileList {
    pub files: Vec<FileEntry>,
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
    let sb = sandboxes::create(&state, &team, req).await?;
    Ok((StatusCode::CREATED, Json(SandboxView::from(&sb))).into_response())
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
    let list = sandboxes::list(&state, &team, &filter).await?;
    Ok(Json(SandboxList {
        sandboxes: list.iter().map(SandboxView::from).collect(),
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
    Ok(Json(SandboxView::from(
        &sandboxes::get(&state, &team, &id).await?,
    )))
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
    sandboxes::delete(&state, &team, &id).await?;
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
    Ok(Json(SandboxView::from(
        &sandboxes::keepalive(&state, &team, &id, ttl).await?,
    )))
}

/// `POST /v1/sandboxes/{id}/execute`: the `/v1/execute` body without `executor` and `policy`.
#[utoipa::path(post, path = "/v1/sandboxes/{id}/execute", operation_id = "sandbox_execute", summary = "Run a program in a sandbox", tag = "sandboxes", params(SandboxId),
    request_body(content = SandboxCallRequest, description = "The `/v1/execute` body without `executor` and `policy` (the sandbox's own); \
the sandbox's `env` is the base of the call's"),
    responses(
        (status = 200, description = RUN_ANSWER, content((RunResult = "application/json"), (String = "text/event-stream")),
            headers(("Execbox-Run-Id" = String, description = "The run's id"))),
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
    let call = sandboxes::prepare_call(&state, &team, &id, req).await?;
    respond(&state, call, &headers).await
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
    let rel = files::file_path(&path, query(q)?.path_encoding.unwrap_or_default())?;
    let content = body_bytes(body)?.to_vec();
    Ok(Json(files::write(&state, &team, &id, &rel, content).await?))
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
    let rel = files::file_path(&path, query(q)?.path_encoding.unwrap_or_default())?;
    let bytes = files::read(&state, &team, &id, &rel).await?;
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
    let dir = q.path.as_deref().unwrap_or_default();
    let encoding = q.path_encoding.unwrap_or_default();
    let files = files::list(&state, &team, &id, dir, encoding).await?;
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
    // The sandbox stays locked until the whole archive is sent (or the client goes away).
    let tar = files::export_tar(&state, &team, &id).await?;
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
    files::import_tar(&state, &team, &id, tar).await?;
    Ok(StatusCode::NO_CONTENT)
}
