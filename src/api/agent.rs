//! `/v1/agent/runs`: start an agent run, read it, follow its messages as events, approve its
//! blocks, cancel it, over `service::agent`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use futures_util::Stream;
use serde::{Deserialize, Serialize};

use super::error::ErrorBody;
use super::{ApiError, AppState};
use crate::agent::conversation::Decision;
use crate::agent::request::AgentRequest;
use crate::service::agent;
use crate::service::agent::runs::{EndEvent, Event, Run, RunSummary, RunView, State as RunState};
use crate::service::AbortOnDrop;
use crate::store::Team;
use crate::wire::object::Object;

/// The answer to `POST /v1/agent/runs`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Started {
    pub id: String,
    pub state: RunState,
}

/// The body of `POST /v1/agent/runs/{id}/approval`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Approval {
    pub approved: bool,
    /// Told to the model with a rejection.
    #[serde(default)]
    pub comment: Option<String>,
}

/// The data of an `event: delta`: a streamed piece of a model's reply.
#[derive(Serialize, utoipa::ToSchema)]
pub struct DeltaEvent {
    pub source: String,
    pub text: String,
}

/// The path parameter of `/v1/agent/runs/{id}...`, for the API description.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
struct RunId {
    /// As `POST /v1/agent/runs` answered (`ar_...`).
    id: String,
}

#[utoipa::path(post, path = "/v1/agent/runs", operation_id = "start_agent_run", summary = "Start an agent run", tag = "agent", request_body = AgentRequest,
    responses(
        (status = 202, description = "Started (or `queued` behind `agent.max_concurrent_runs` others); follow it with GET or its events", body = Started),
        (status = 400, description = "`malformed_json`, `invalid_request` (also `executor`/`policy` together with `sandbox_id`), `invalid_body`", body = ErrorBody),
        (status = 404, description = "`sandbox_not_found`: `sandbox_id` is not a sandbox of this team", body = ErrorBody),
        (status = 413, description = "`body_too_large`", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`", body = ErrorBody),
        (status = 422, description = "`invalid_agent_run` (task, max_turns, termination, default_language, max_output_chars), `invalid_model` (base_url, api_key, api_key_env), `invalid_sandbox` (executor, policy)", body = ErrorBody),
        (status = 429, description = "`quota_exceeded`: the team has as many sandboxes as it may (each run makes one unless given `sandbox_id`)", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
        (status = 503, description = "`sandboxes_unavailable`, `executor_unavailable`", body = ErrorBody),
    ))]
pub async fn start(
    State(state): State<Arc<AppState>>,
    Extension(team): Extension<Team>,
    body: Result<Json<Object<AgentRequest>>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(Object(req)) = body?;
    let run = agent::start_run(&state, &team, req).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(Started {
            id: run.id.clone(),
            state: run.summary().state,
        }),
    )
        .into_response())
}

/// `GET /v1/agent/runs`: the team's runs, newest first, without their messages.
#[derive(Serialize, utoipa::ToSchema)]
pub struct RunList {
    pub runs: Vec<RunSummary>,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// At most this many (1..=1000, default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
}

#[utoipa::path(get, path = "/v1/agent/runs", operation_id = "list_agent_runs", summary = "The team's agent runs", tag = "agent", params(ListQuery),
    responses(
        (status = 200, description = "Newest first, without messages", body = RunList),
        (status = 400, description = "`invalid_request`: an unknown query parameter or a limit out of range", body = ErrorBody),
    ))]
pub async fn list(
    State(state): State<Arc<AppState>>,
    Extension(team): Extension<Team>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<RunList>, ApiError> {
    let Query(q) = query
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", e.body_text()))?;
    let runs = agent::list(&state, &team, q.limit.unwrap_or(100)).await?;
    Ok(Json(RunList { runs }))
}

#[utoipa::path(get, path = "/v1/agent/runs/{id}", operation_id = "get_agent_run", summary = "An agent run and its messages", tag = "agent", params(RunId),
    responses(
        (status = 200, description = "The run: state, stop_reason, usage and every message so far", body = RunView),
        (status = 404, description = "`agent_run_not_found`", body = ErrorBody),
    ))]
pub async fn get(
    State(state): State<Arc<AppState>>,
    Extension(team): Extension<Team>,
    Path(id): Path<String>,
) -> Result<Json<RunView>, ApiError> {
    Ok(Json(agent::get(&state, &team, &id).await?))
}

#[utoipa::path(delete, path = "/v1/agent/runs/{id}", operation_id = "cancel_agent_run", summary = "Cancel an agent run", tag = "agent", params(RunId),
    responses(
        (status = 200, description = "The run as it ended: `cancelled`, with any execution in flight killed and its own sandbox deleted; a run that had already ended is answered as it is", body = RunView),
        (status = 404, description = "`agent_run_not_found`", body = ErrorBody),
    ))]
pub async fn cancel(
    State(state): State<Arc<AppState>>,
    Extension(team): Extension<Team>,
    Path(id): Path<String>,
) -> Result<Json<RunView>, ApiError> {
    Ok(Json(agent::cancel(&state, &team, &id).await?))
}

#[utoipa::path(post, path = "/v1/agent/runs/{id}/approval", operation_id = "decide_agent_approval", summary = "Approve or reject the block an agent run holds", tag = "agent", params(RunId),
    request_body = Approval,
    responses(
        (status = 200, description = "The decision was delivered; the run goes on", body = Started),
        (status = 400, description = "`malformed_json`, `invalid_request`", body = ErrorBody),
        (status = 404, description = "`agent_run_not_found`", body = ErrorBody),
        (status = 413, description = "`body_too_large`", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`", body = ErrorBody),
        (status = 409, description = "`no_pending_approval`: the run holds no block (it was not started with `require_approval`, has ended, or the block was already decided)", body = ErrorBody),
    ))]
pub async fn approve(
    State(state): State<Arc<AppState>>,
    Extension(team): Extension<Team>,
    Path(id): Path<String>,
    body: Result<Json<Object<Approval>>, JsonRejection>,
) -> Result<Json<Started>, ApiError> {
    let Json(Object(a)) = body?;
    let decision = Decision {
        approved: a.approved,
        comment: a.comment,
    };
    let run = agent::approve(&state, &team, &id, decision).await?;
    Ok(Json(Started {
        id: run.id,
        state: run.state,
    }))
}

const EVENTS: &str = "Server-Sent Events: every message so far, then each new one as it happens (`event: message`, data \
a message as in `RunView.messages`), streamed pieces of model replies (`event: delta`, data `DeltaEvent`; not kept), and \
last `event: end` with `EndEvent`, after which the stream closes. Closing the stream does not cancel the run.";

#[utoipa::path(get, path = "/v1/agent/runs/{id}/events", operation_id = "follow_agent_run", summary = "Follow an agent run", tag = "agent", params(RunId),
    responses(
        (status = 200, description = EVENTS, body = String, content_type = "text/event-stream"),
        (status = 404, description = "`agent_run_not_found`", body = ErrorBody),
    ))]
pub async fn events(
    State(state): State<Arc<AppState>>,
    Extension(team): Extension<Team>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let keepalive = KeepAlive::new()
        .interval(Duration::from_secs(15))
        .text("keepalive");
    if let Some(run) = agent::live(&state, &team, &id) {
        return Ok(Sse::new(follow(run)).keep_alive(keepalive).into_response());
    }
    // Ended: replay what was saved.
    let view = agent::get(&state, &team, &id).await?;
    let mut out: Vec<SseEvent> = view
        .messages
        .iter()
        .map(|m| json_event("message", m))
        .collect();
    out.push(json_event("end", &EndEvent::from(&view.run)));
    Ok(Sse::new(futures_util::stream::iter(
        out.into_iter().map(Ok::<_, Infallible>),
    ))
    .keep_alive(keepalive)
    .into_response())
}

fn json_event<T: Serialize>(name: &str, data: &T) -> SseEvent {
    SseEvent::default()
        .event(name)
        .json_data(data)
        .expect("an event serializes")
}

/// A live run's events: the messages so far, then what follows. A subscriber that falls
/// behind loses deltas only: missed messages are read back from the run.
fn follow(run: Arc<Run>) -> impl Stream<Item = Result<SseEvent, Infallible>> {
    let (tx, rx) = tokio::sync::mpsc::channel::<SseEvent>(64);
    let producer = tokio::spawn(async move {
        let (messages, end, mut sub) = run.subscribe();
        let mut next = 0;
        for m in messages {
            next = m.index + 1;
            if tx.send(json_event("message", &m)).await.is_err() {
                return;
            }
        }
        if let Some(end) = end {
            let _ = tx.send(json_event("end", &end)).await;
            return;
        }
        loop {
            let ev = match sub.recv().await {
                Ok(ev) => ev,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                    for m in run.view().messages.into_iter().skip(next) {
                        next = m.index + 1;
                        if tx.send(json_event("message", &m)).await.is_err() {
                            return;
                        }
                    }
                    continue;
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            };
            let sent = match ev {
                Event::Message(m) if m.index < next => continue,
                Event::Message(m) => {
                    next = m.index + 1;
                    tx.send(json_event("message", &m)).await
                }
                Event::Delta { source, text } => {
                    tx.send(json_event("delta", &DeltaEvent { source, text }))
                        .await
                }
                Event::End(end) => {
                    let _ = tx.send(json_event("end", &end)).await;
                    return;
                }
            };
            if sent.is_err() {
                return;
            }
        }
    });
    let guard = AbortOnDrop(producer.abort_handle());
    futures_util::stream::unfold((rx, guard), |(mut rx, guard)| async move {
        rx.recv().await.map(|e| (Ok(e), (rx, guard)))
    })
}
