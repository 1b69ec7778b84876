//! `POST /v1/execute`: validate, admit, run on the chosen executor, answer the result — as one
//! JSON body, or with `Accept: text/event-stream` as Server-Sent Events while it runs.

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use axum::Json;
use tracing::Instrument;

use super::error::ErrorBody;
use super::metrics::{ExecutorLabel, RunLabels};
use super::{json_stream, ApiError, AppState};
use crate::wire::object::Object;
use crate::exec::request::ExecuteRequest;
use crate::exec::{ExecError, Executor, Job, RunResult, StreamKind};
use crate::store::{RunRecord, Team};

/// The data of a `stdout` or `stderr` event: output as it arrives, as text (invalid UTF-8
/// becomes U+FFFD, and a character is never split across events).
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct OutputEvent {
    pub data: String,
}

/// How a run answers, in the API description of both execute routes.
pub const RUN_ANSWER: &str = "The result of the run. A timeout, a memory or CPU limit, a crash or a compile error is a `status` \
of the result, not an error status. With `Accept: text/event-stream` the answer is Server-Sent Events instead: \
`event: stdout` and `event: stderr` with data `OutputEvent` (`{\"data\": \"...\"}`) as output arrives, then exactly one \
`event: result` with the full `RunResult` as data, or `event: error` with an `ErrorBody` (`internal_error`, \
`executor_unavailable`) if the service failed during the run; a `: keepalive` comment at least every 15 s. \
Closing the stream cancels the run. Errors found before the run starts are answered as JSON with the statuses below.";

#[utoipa::path(post, path = "/v1/execute", operation_id = "execute", summary = "Run a program once", tag = "runs", request_body = ExecuteRequest,
    responses(
        (status = 200, description = RUN_ANSWER, content((RunResult = "application/json"), (String = "text/event-stream"))),
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
    let (job, executor) = prepare(&state, req)?;
    respond(&state, &team, None, job, executor, &headers).await
}

/// Run `job` for `team` (in `sandbox_id` when set) and answer as JSON or as events.
pub async fn respond(
    state: &Arc<AppState>,
    team: &Team,
    sandbox_id: Option<String>,
    mut job: Job,
    executor: Arc<dyn Executor>,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let origin = Origin {
        team: team.clone(),
        sandbox_id,
    };
    if !wants_events(headers) {
        let task = admit_and_spawn(state, origin, job, executor).await?;
        let result = join(task).await?;
        return Ok(json_stream::json(result));
    }
    // Unbounded, but the executor sends only what fits under the output cap.
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    job.stream = Some(tx);
    let task = admit_and_spawn(state, origin, job, executor).await?;
    Ok(events(rx, task))
}

/// Who a run is for, for its quota and its audit record.
pub(super) struct Origin {
    pub(super) team: Team,
    pub(super) sandbox_id: Option<String>,
}

pub(super) fn wants_events(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .any(|v| v.to_str().is_ok_and(|s| s.contains("text/event-stream")))
}

/// Validate a request into a job for a ready executor that has the job's runtime.
pub(super) fn prepare(
    state: &AppState,
    req: ExecuteRequest,
) -> Result<(Job, Arc<dyn Executor>), ApiError> {
    let id = uuid::Uuid::new_v4().to_string();
    let (job, executor_name) = req.into_job(id, &state.policies, &state.runtimes)?;
    let executor = ready_executor(state, &executor_name, &job.runtime.language)?;
    Ok((job, executor))
}

/// The executor named `executor_name`, if it is ready and has `language`.
pub fn ready_executor(
    state: &AppState,
    executor_name: &str,
    language: &str,
) -> Result<Arc<dyn Executor>, ApiError> {
    let executor = state.executors.get(executor_name).cloned().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "executor_unavailable",
            format!("executor {executor_name} is not running in this service"),
        )
    })?;
    let ready = executor.readiness();
    if !ready.ready {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "executor_unavailable",
            format!(
                "the {executor_name} executor is not ready: {}; see GET /readyz",
                ready.detail
            ),
        ));
    }
    if !executor.runtimes().contains_key(language) {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "runtime_unavailable",
            format!("{language} did not pass its start-up probe on the {executor_name} executor; see GET /v1/runtimes and /readyz"),
        ));
    }
    Ok(executor)
}

/// Wait for a run slot (or refuse with 429), then run as a task of its own. Dropping the
/// handle does not stop the run; aborting it does (and the executors clean up on drop).
pub(super) async fn admit_and_spawn(
    state: &Arc<AppState>,
    origin: Origin,
    job: Job,
    executor: Arc<dyn Executor>,
) -> Result<tokio::task::JoinHandle<Result<RunResult, ExecError>>, ApiError> {
    let span = tracing::info_span!("run", run_id = %job.id, team = %origin.team.name, executor = executor.name(), policy = %job.policy, language = %job.runtime.language);
    // The team's quota counts queued runs too, so it is taken before a slot is waited for.
    let permit = state.quotas.try_acquire_run(&origin.team)?;
    let ticket = match state.admission.enter().await {
        Ok(t) => t,
        Err(_) => {
            state.metrics.rejected.inc();
            return Err(ApiError::overloaded(1));
        }
    };
    let st = state.clone();
    Ok(tokio::spawn(
        async move {
            let (_ticket, _permit) = (ticket, permit);
            let started = Instant::now();
            // Until the run has an outcome, a drop of this task (a client that hung up on its
            // event stream, an agent run cancelled) is what the audit log records.
            let mut audit = AuditOnDrop {
                store: st.store.clone(),
                record: Some(RunRecord::without_result(
                    Some(&origin.team),
                    origin.sandbox_id.as_deref(),
                    &job,
                    executor.name(),
                    "cancelled",
                    0,
                )),
                started,
            };
            let result = executor.run(&job).await;
            st.metrics
                .duration
                .get_or_create(&ExecutorLabel {
                    executor: executor.name().into(),
                })
                .observe(started.elapsed().as_secs_f64());
            audit.record = None;
            let record = match &result {
                Ok(r) => {
                    let labels = RunLabels {
                        status: r.status.as_str().into(),
                        executor: r.executor.clone(),
                        language: r.language.clone(),
                    };
                    st.metrics.runs.get_or_create(&labels).inc();
                    tracing::info!(
                        status = r.status.as_str(),
                        wall_ms = r.usage.wall_time_ms,
                        "run finished"
                    );
                    RunRecord::from_result(
                        Some(&origin.team),
                        origin.sandbox_id.as_deref(),
                        r,
                        &job.code,
                    )
                }
                Err(e) => {
                    let status = if matches!(e, ExecError::Unavailable(..)) {
                        "executor_unavailable"
                    } else {
                        "internal_error"
                    };
                    let wall = started.elapsed().as_millis() as u64;
                    RunRecord::without_result(
                        Some(&origin.team),
                        origin.sandbox_id.as_deref(),
                        &job,
                        executor.name(),
                        status,
                        wall,
                    )
                }
            };
            if let Err(e) = st.store.blocking(move |s| s.record_run(record)).await {
                tracing::error!(error = %e, "could not write the run to the audit log");
            }
            result
        }
        .instrument(span),
    ))
}

/// Records a run as `cancelled` when its task is dropped before the run had an outcome.
struct AuditOnDrop {
    store: crate::store::Store,
    record: Option<RunRecord>,
    started: Instant,
}

impl Drop for AuditOnDrop {
    fn drop(&mut self) {
        let Some(mut record) = self.record.take() else {
            return;
        };
        record.wall_ms = self.started.elapsed().as_millis() as u64;
        tracing::info!(run_id = %record.id, "run cancelled");
        let store = self.store.clone();
        // Dropped inside the runtime (an abort); at shutdown there may be none left to ask.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn_blocking(move || {
                if let Err(e) = store.record_run(record) {
                    tracing::error!(error = %e, "could not write a cancelled run to the audit log");
                }
            });
        }
    }
}

pub(super) async fn join(
    task: tokio::task::JoinHandle<Result<RunResult, ExecError>>,
) -> Result<RunResult, ApiError> {
    let result = task.await.map_err(|e| {
        tracing::error!(error = %e, "run task failed");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "the run failed inside the service; it has been logged",
        )
    })?;
    Ok(result?)
}

/// Cancels the run when the client goes away (the event stream is dropped).
pub(super) struct AbortOnDrop(pub(super) tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// `stdout`/`stderr` events as output arrives, then one `result` (or `error`) event, written
/// as Server-Sent Events by a task into a small channel: a slow reader makes it wait (the
/// output it has not sent yet is at most the run's output cap per stream), and the result is
/// serialized in chunks as the client reads it. Dropping the response (the client went away)
/// aborts that task, and with it the run.
fn events(
    mut rx: tokio::sync::mpsc::UnboundedReceiver<(StreamKind, Vec<u8>)>,
    task: tokio::task::JoinHandle<Result<RunResult, ExecError>>,
) -> Response {
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
            let text = dec.push(&bytes);
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
        let last = join(task).await;
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

/// Turns byte chunks into text without splitting a UTF-8 sequence across events; invalid bytes
/// become U+FFFD, as in the JSON result.
#[derive(Default)]
pub(super) struct Utf8Chunks {
    pending: Vec<u8>,
}

impl Utf8Chunks {
    pub(super) fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let valid = match std::str::from_utf8(&self.pending) {
            Ok(_) => self.pending.len(),
            // An incomplete sequence at the end waits for the next chunk; anything else is lossy.
            Err(e) if e.error_len().is_none() => e.valid_up_to(),
            Err(_) => self.pending.len(),
        };
        let text = String::from_utf8_lossy(&self.pending[..valid]).into_owned();
        self.pending.drain(..valid);
        text
    }

    pub(super) fn finish(&mut self) -> String {
        String::from_utf8_lossy(&std::mem::take(&mut self.pending)).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::Utf8Chunks;

    #[test]
    fn a_sequence_split_across_chunks_is_kept_whole() {
        let mut d = Utf8Chunks::default();
        let euro = "€".as_bytes();
        assert_eq!(d.push(&[b'a', euro[0]]), "a");
        assert_eq!(d.push(&euro[1..]), "€");
        assert_eq!(d.push(&[0xff, b'b']), "\u{fffd}b");
        assert_eq!(d.push(&[0xe2]), "");
        assert_eq!(d.finish(), "\u{fffd}");
    }
}
