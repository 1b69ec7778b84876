//! `POST /v1/execute`: the service's run path (`service::run`), answered as one JSON body, or
//! with `Accept: text/event-stream` as Server-Sent Events while it runs.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use axum::Json;

use super::error::ErrorBody;
use super::{json_stream, ApiError, AppState};
use crate::exec::request::{Encoding, ExecuteRequest, Utf8Chunks};
use crate::exec::{RunResult, StreamKind};
use crate::service::{run, AbortOnDrop};
use crate::store::Team;
use crate::wire::object::Object;

/// The data of a `stdout` or `stderr` event: output as it arrives, as text (invalid UTF-8
/// becomes U+FFFD, and a character is never split across events), or with
/// `output_encoding: base64` as base64 of the chunk's exact bytes.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct OutputEvent {
    pub data: String,
}

/// How a run answers, in the API description of both execute routes.
pub const RUN_ANSWER: &str = "The result of the run. A timeout, a memory or CPU limit, a crash or a compile error is a `status` \
of the result, not an error status. With `Accept: text/event-stream` the answer is Server-Sent Events instead: \
`event: stdout` and `event: stderr` with data `OutputEvent` (`{\"data\": \"...\"}`, in the run's `output_encoding`) as output arrives, then exactly one \
`event: result` with the full `RunResult` as data, or `event: error` with an `ErrorBody` (`internal_error`, \
`executor_unavailable`) if the service failed during the run; a `: keepalive` comment at least every 15 s. \
Closing the stream cancels the run. Errors found before the run starts are answered as JSON with the statuses below. \
The `Execbox-Run-Id` header names the run (`GET /v1/runs/{id}`), before its first event when streamed.";

#[utoipa::path(post, path = "/v1/execute", operation_id = "execute", summary = "Run a program once", tag = "runs", request_body = ExecuteRequest,
    responses(
        (status = 200, description = RUN_ANSWER, content((RunResult = "application/json"), (String = "text/event-stream")),
            headers(("Execbox-Run-Id" = String, description = "The run's id"))),
        (status = 400, description = "`malformed_json`, `invalid_request`, `invalid_body`, `unknown_language`, `unknown_executor`, `invalid_file`", body = ErrorBody),
        (status = 404, description = "`unknown_policy`", body = ErrorBody),
        (status = 413, description = "`body_too_large`: more than the service's `max_body_bytes`", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: the body must be sent as `application/json`", body = ErrorBody),
        (status = 422, description = "`executor_not_allowed`, `limit_exceeded`, `limit_below_minimum`, `input_too_large`", body = ErrorBody),
        (status = 429, description = "`quota_exceeded` (the team's concurrent runs), `over_capacity` (every slot and the queue are full)", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
        (status = 500, description = "`internal_error`: the service failed; it has been logged", body = ErrorBody),
        (status = 503, description = "`executor_unavailable`, `runtime_unavailable`: see `GET /readyz`; `sandbox_uids_exhausted`: every sandbox uid is held", body = ErrorBody),
    ))]
pub async fn execute(
    State(state): State<Arc<AppState>>,
    Extension(team): Extension<Team>,
    headers: HeaderMap,
    body: Result<Json<Object<ExecuteRequest>>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(Object(req)) = body?;
    let run = run::prepare(&state, &team, req)?;
    respond(&state, run, &headers).await
}

/// Start a prepared run and answer it as JSON or, when the client asks for them, as events.
pub(super) async fn respond(
    state: &Arc<AppState>,
    mut run: run::Prepared,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let id = HeaderValue::from_str(&run.job.id).expect("a run id is a valid header value");
    let mut answer = if !wants_events(headers) {
        // The run goes on if the client hangs up, so a sandbox is never cut off mid-cleanup.
        let result = run.start(state).await?.outcome().await?;
        json_stream::json(result)
    } else {
        let output = run.stream();
        let encoding = run.job.output_encoding;
        let task = run.start(state).await?;
        events(output, task, encoding)
    };
    answer.headers_mut().insert(RUN_ID_HEADER, id);
    Ok(answer)
}

/// The header of a run's answer that names it (for `GET /v1/runs/{id}` while it streams).
pub const RUN_ID_HEADER: &str = "execbox-run-id";

pub(super) fn wants_events(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .any(|v| v.to_str().is_ok_and(|s| s.contains("text/event-stream")))
}

/// `stdout`/`stderr` events as output arrives, then one `result` (or `error`) event, written
/// as Server-Sent Events by a task into a small channel: a slow reader makes it wait (the
/// output it has not sent yet is at most the run's output cap per stream), and the result is
/// serialized in chunks as the client reads it. Dropping the response (the client went away)
/// aborts that task, and with it the run.
fn events(mut rx: run::Output, task: run::RunTask, encoding: Encoding) -> Response {
    let (mut w, chunks) = json_stream::pair();
    let producer = tokio::spawn(async move {
        let _abort_run = AbortOnDrop(task.abort_handle());
        let mut decoders = (Utf8Chunks::default(), Utf8Chunks::default());
        let mut keepalive =
            tokio::time::interval_at(tokio::time::Instant::now() + KEEPALIVE, KEEPALIVE);
        loop {
            let next = tokio::select! {
                next = rx.recv() => next,
                _ = keepalive.tick() => {
                    if w.send_async(Bytes::from_static(b":keepalive\n\n")).await.is_err() {
                        return;
                    }
                    continue;
                }
            };
            let Some((kind, bytes)) = next else { break };
            let (name, dec) = match kind {
                StreamKind::Stdout => ("stdout", &mut decoders.0),
                StreamKind::Stderr => ("stderr", &mut decoders.1),
            };
            let text = match encoding {
                Encoding::Utf8 => dec.push(&bytes),
                Encoding::Base64 => encoding.encode(&bytes),
            };
            if !text.is_empty() && w.send_async(output_event(name, text)).await.is_err() {
                return;
            }
        }
        // Every sender is gone: the run has ended. Flush incomplete UTF-8 tails, then the result.
        for (name, dec) in [("stdout", &mut decoders.0), ("stderr", &mut decoders.1)] {
            let text = dec.finish();
            if !text.is_empty() && w.send_async(output_event(name, text)).await.is_err() {
                return;
            }
        }
        let last = task.outcome().await.map_err(ApiError::from);
        let _ = w
            .with(move |w| {
                match &last {
                    Ok(r) => {
                        w.write_all(b"event: result\ndata: ")?;
                        serde_json::to_writer(&mut *w, r)?;
                    }
                    Err(e) => {
                        w.write_all(b"event: error\ndata: ")?;
                        serde_json::to_writer(&mut *w, &ErrorBody::from(e))?;
                    }
                }
                w.write_all(b"\n\n")?;
                w.flush()
            })
            .await;
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

const KEEPALIVE: Duration = Duration::from_secs(15);

/// One `stdout` or `stderr` event (JSON has no raw newline, so the data is one line).
pub(super) fn output_event(name: &str, text: String) -> Bytes {
    let mut out = format!("event: {name}\ndata: ").into_bytes();
    serde_json::to_writer(&mut out, &OutputEvent { data: text }).expect("output serializes");
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}
