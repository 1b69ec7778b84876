//! `/v1/sandboxes/{id}/processes`: background processes that outlive the call that started
//! them (`service::processes`), their logs (JSON, or followed as Server-Sent Events) and their
//! end.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use futures_util::StreamExt;
use serde::Serialize;

use super::error::ErrorBody;
use super::execute::{output_event, wants_events};
use super::sandboxes::{SandboxId, NOT_FOUND};
use super::{json_stream, ApiError, AppState};
use crate::exec::request::Utf8Chunks;
use crate::sandbox::stateful::{LogStream, ProcessView};
use crate::service::processes::{self, CreateProcess, Logs, ProcessLogs};
use crate::service::AbortOnDrop;
use crate::store::Team;
use crate::supervisor::client::LogItem;
use crate::wire::object::Object;

#[derive(Serialize, utoipa::ToSchema)]
pub struct ProcessList {
    pub processes: Vec<ProcessView>,
}

/// The path parameters of `/v1/sandboxes/{id}/processes/{process_id}`, for the API description.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
struct ProcessPath {
    /// As `POST /v1/sandboxes` answered (`sb_...`).
    id: String,
    /// As `POST /v1/sandboxes/{id}/processes` answered (`proc_...`).
    process_id: String,
}

#[utoipa::path(post, path = "/v1/sandboxes/{id}/processes", operation_id = "start_process", summary = "Start a background process", tag = "processes", params(SandboxId),
    request_body = CreateProcess,
    responses(
        (status = 201, description = "Started; it outlives this request and every call, counts against the sandbox's limits and dies with the sandbox", body = ProcessView),
        (status = 400, description = "`malformed_json`, `invalid_request` (an empty command, a NUL byte, a bad env name), `invalid_body`, `path_refused` (`cwd` against the path rule)", body = ErrorBody),
        (status = 404, description = "`sandbox_not_found`, `file_not_found` (no such `cwd`)", body = ErrorBody),
        (status = 409, description = "`path_conflict`: `cwd` is not a directory, or a link is on the way", body = ErrorBody),
        (status = 413, description = "`body_too_large`", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: the body must be sent as `application/json`", body = ErrorBody),
        (status = 422, description = "`unsupported`: the sandbox's executor has no background processes", body = ErrorBody),
        (status = 500, description = "`internal_error`", body = ErrorBody),
        (status = 503, description = "`sandboxes_unavailable`, `executor_unavailable`", body = ErrorBody),
    ))]
pub async fn create(
    State(state): State<Arc<AppState>>,
    Extension(team): Extension<Team>,
    Path(id): Path<String>,
    body: Result<Json<Object<CreateProcess>>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(Object(req)) = body?;
    let view = processes::start(&state, &team, &id, req).await?;
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

#[utoipa::path(get, path = "/v1/sandboxes/{id}/processes", operation_id = "list_processes", summary = "List a sandbox's background processes", tag = "processes", params(SandboxId),
    responses(
        (status = 200, description = "Its background processes, running and exited (until deleted)", body = ProcessList),
        (status = 404, description = NOT_FOUND, body = ErrorBody),
        (status = 500, description = "`internal_error`", body = ErrorBody),
        (status = 503, description = "`sandboxes_unavailable`, `executor_unavailable`", body = ErrorBody),
    ))]
pub async fn list(
    State(state): State<Arc<AppState>>,
    Extension(team): Extension<Team>,
    Path(id): Path<String>,
) -> Result<Json<ProcessList>, ApiError> {
    let processes = processes::list(&state, &team, &id).await?;
    Ok(Json(ProcessList { processes }))
}

#[utoipa::path(delete, path = "/v1/sandboxes/{id}/processes/{process_id}", operation_id = "kill_process", summary = "Kill a background process's whole tree", tag = "processes", params(ProcessPath),
    responses(
        (status = 204, description = "It and every process it started are gone"),
        (status = 404, description = "`sandbox_not_found`, `process_not_found`", body = ErrorBody),
        (status = 500, description = "`internal_error`", body = ErrorBody),
        (status = 503, description = "`sandboxes_unavailable`, `executor_unavailable`", body = ErrorBody),
    ))]
pub async fn delete(
    State(state): State<Arc<AppState>>,
    Extension(team): Extension<Team>,
    Path((id, process)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    processes::kill(&state, &team, &id, &process).await?;
    Ok(StatusCode::NO_CONTENT)
}

const LOGS_ANSWER: &str = "Its kept output (the newest bytes of each stream, up to the sandbox policy's `output_bytes`) and the process. \
With `Accept: text/event-stream`, Server-Sent Events that follow it: `event: stdout` and `event: stderr` with data `OutputEvent` \
(`{\"data\": \"...\"}`), first what is kept, then output as it comes, then one `event: end` with the `ProcessView` once it has \
exited (or `event: error` with an `ErrorBody`); a `: keepalive` comment at least every 15 s. Closing the stream leaves the process running.";

#[utoipa::path(get, path = "/v1/sandboxes/{id}/processes/{process_id}/logs", operation_id = "process_logs", summary = "A background process's output", tag = "processes", params(ProcessPath),
    responses(
        (status = 200, description = LOGS_ANSWER, content((ProcessLogs = "application/json"), (String = "text/event-stream"))),
        (status = 404, description = "`sandbox_not_found`, `process_not_found`", body = ErrorBody),
        (status = 500, description = "`internal_error`", body = ErrorBody),
        (status = 503, description = "`sandboxes_unavailable`, `executor_unavailable`", body = ErrorBody),
    ))]
pub async fn logs(
    State(state): State<Arc<AppState>>,
    Extension(team): Extension<Team>,
    Path((id, process)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let follow = wants_events(&headers);
    match processes::logs(&state, &team, &id, &process, follow).await? {
        Logs::Collected(logs) => Ok(Json(logs).into_response()),
        Logs::Followed(stream) => Ok(events(stream)),
    }
}

const KEEPALIVE: Duration = Duration::from_secs(15);

/// The followed logs as Server-Sent Events; dropping the response stops following.
fn events(mut logs: LogStream) -> Response {
    let (mut w, chunks) = json_stream::pair();
    let producer = tokio::spawn(async move {
        let mut decoders = (Utf8Chunks::default(), Utf8Chunks::default());
        let mut keepalive =
            tokio::time::interval_at(tokio::time::Instant::now() + KEEPALIVE, KEEPALIVE);
        loop {
            let item = tokio::select! {
                item = logs.next() => item,
                _ = keepalive.tick() => {
                    if w.send_async(Bytes::from_static(b":keepalive\n\n")).await.is_err() {
                        return;
                    }
                    continue;
                }
            };
            let event = match item {
                Some(Ok(LogItem::Output(kind, bytes))) => {
                    let (name, dec) = match kind {
                        crate::exec::StreamKind::Stdout => ("stdout", &mut decoders.0),
                        crate::exec::StreamKind::Stderr => ("stderr", &mut decoders.1),
                    };
                    let text = dec.push(&bytes);
                    if text.is_empty() {
                        continue;
                    }
                    output_event(name, text)
                }
                Some(Ok(LogItem::End(process))) => {
                    for (name, dec) in [("stdout", &mut decoders.0), ("stderr", &mut decoders.1)] {
                        let text = dec.finish();
                        if !text.is_empty() && w.send_async(output_event(name, text)).await.is_err()
                        {
                            return;
                        }
                    }
                    let mut out = b"event: end\ndata: ".to_vec();
                    serde_json::to_writer(&mut out, &process.map(ProcessView::from))
                        .expect("a process serializes");
                    out.extend_from_slice(b"\n\n");
                    let _ = w.send_async(Bytes::from(out)).await;
                    return;
                }
                Some(Err(e)) => {
                    let e = ApiError::from(crate::service::ServiceError::from(e));
                    let mut out = b"event: error\ndata: ".to_vec();
                    serde_json::to_writer(&mut out, &ErrorBody::from(&e))
                        .expect("an error serializes");
                    out.extend_from_slice(b"\n\n");
                    let _ = w.send_async(Bytes::from(out)).await;
                    return;
                }
                None => return,
            };
            if w.send_async(event).await.is_err() {
                return;
            }
        }
    });
    let guard = AbortOnDrop(producer.abort_handle());
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        json_stream::body(chunks, guard),
    )
        .into_response()
}
