//! `/v1/agent/runs`: start an agent run, read it, follow its messages as events, approve its
//! blocks, cancel it. The loop itself is `crate::agent`; this file gives it a sandbox of the
//! team to run code in, through the same admission, quota and audit path as every call.

use std::collections::BTreeMap;
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
use super::execute::{admit_and_spawn, join, AbortOnDrop, Origin};
use super::{contexts, sandboxes, ApiError, AppState};
use crate::agent::conversation::{CodeRunner, Decision};
use crate::agent::model::{guard, normalize_url, ClientSettings, ModelClient};
use crate::agent::request::AgentRequest;
use crate::agent::runs::{Event, ModelView, Prepared, Run, RunInfo, RunView, State as RunState};
use crate::exec::request::object::Object;
use crate::exec::request::SandboxCallRequest;
use crate::exec::{BoxFuture, RunResult};
use crate::sandbox::manager::CreateSandbox;
use crate::store::Team;

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

fn not_found(id: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "agent_run_not_found",
        format!("no agent run {id} for this team"),
    )
}

/// The client settings of the service's config.
fn client_settings(a: &crate::config::AgentSettings) -> ClientSettings {
    ClientSettings {
        timeout: Duration::from_secs(a.model_timeout_seconds.max(1)),
        max_retries: a.model_max_retries,
        backoff: Duration::from_millis(a.model_backoff_ms),
        ..ClientSettings::default()
    }
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
    let run = start_run(&state, &team, req).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(Started {
            id: run.id.clone(),
            state: run.view().state,
        }),
    )
        .into_response())
}

/// Validate a request, find or make its sandbox, and start it. Shared with `execbox agent`.
pub async fn start_run(
    state: &Arc<AppState>,
    team: &Team,
    req: AgentRequest,
) -> Result<Arc<Run>, ApiError> {
    let settings = &state.agent_settings;
    let config = req
        .loop_config(settings, &state.runtimes)
        .map_err(|m| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_agent_run", m))?;
    let policy = crate::agent::model::KeyPolicy {
        envs: settings.api_key_envs.clone(),
    };
    let resolved = req
        .model
        .resolve(&policy)
        .map_err(|m| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_model", m))?;
    let allowed = &settings.allowed_base_urls;
    let listed = allowed
        .iter()
        .any(|u| normalize_url(u) == resolved.base_url);
    if !allowed.is_empty() && !listed {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_model",
            format!("base_url {} is not one this service may call; allowed: {} (agent.allowed_base_urls)", resolved.base_url, allowed.join(", ")),
        ));
    }
    // A service shared by teams keeps their base URLs off its own network.
    let public_only = matches!(state.auth, super::auth::Auth::ApiKey)
        && !settings.allow_private_base_urls
        && !listed;
    if public_only {
        guard::check(&resolved.base_url)
            .await
            .map_err(|m| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_model", m))?;
    }
    let model = ModelView {
        provider: resolved.provider,
        model: resolved.model.clone(),
        base_url: resolved.base_url.clone(),
    };
    let client = ModelClient::new(
        resolved,
        ClientSettings {
            public_only,
            ..client_settings(settings)
        },
    )
    .map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_model",
            e.to_string(),
        )
    })?;
    let m = sandboxes::manager(state)?;
    let (sandbox, own) = match &req.sandbox_id {
        Some(id) => {
            if req.executor.is_some() || req.policy.is_some() {
                return Err(ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", "executor and policy are the sandbox's own; leave them out when giving sandbox_id"));
            }
            (m.get(team, id).await?, false)
        }
        None => {
            let ttl = (settings.max_wall_time_seconds + 600).min(state.max_sandbox_ttl_seconds);
            let create = CreateSandbox {
                executor: req.executor.clone(),
                policy: req.policy.clone(),
                ttl_seconds: ttl,
                idle_timeout_seconds: None,
                env: BTreeMap::new(),
                metadata: BTreeMap::from([("created_by".to_string(), "agent_run".to_string())]),
            };
            (m.create(team, create).await?, true)
        }
    };
    let info = RunInfo {
        model,
        executor: sandbox.executor.clone(),
        policy: sandbox.policy.clone(),
        sandbox_id: sandbox.id.clone(),
    };
    let release: Option<BoxFuture<'static, ()>> = own.then(|| {
        let (m, team, id) = (m.clone(), team.clone(), sandbox.id.clone());
        Box::pin(async move {
            if let Err(e) = m.delete(&team, &id).await {
                tracing::warn!(sandbox = %id, error = %e, "could not delete an agent run's sandbox");
            }
        }) as BoxFuture<'static, ()>
    });
    let runner = Arc::new(SandboxRunner {
        state: state.clone(),
        team: team.clone(),
        sandbox_id: sandbox.id.clone(),
        context: req.stateful.then(Default::default),
    });
    Ok(state
        .agent
        .start(
            team.id,
            Prepared {
                config,
                client,
                runner,
                info,
                release,
            },
        )
        .await)
}

/// Runs a block as a call in the run's sandbox: admission, the team's quota, metrics and the
/// audit log as for any call. Dropping the future kills the call.
struct SandboxRunner {
    state: Arc<AppState>,
    team: Team,
    sandbox_id: String,
    /// With `"stateful": true`: the context its Python blocks run in, started by the first.
    context: Option<tokio::sync::Mutex<Option<String>>>,
}

impl CodeRunner for SandboxRunner {
    fn run<'a>(
        &'a self,
        language: &'a str,
        code: &'a str,
    ) -> BoxFuture<'a, Result<RunResult, String>> {
        Box::pin(async move {
            // A full service is a reason to wait, not to fail the run.
            let mut waits = 0;
            loop {
                match self.call(language, code).await {
                    Ok(r) => return Ok(r),
                    Err(e)
                        if matches!(e.code, "over_capacity" | "quota_exceeded") && waits < 300 =>
                    {
                        waits += 1;
                        tokio::time::sleep(Duration::from_secs(
                            e.retry_after.unwrap_or(1).clamp(1, 5),
                        ))
                        .await;
                    }
                    Err(e) => {
                        return Err(format!(
                            "the sandbox could not run a block ({}): {}",
                            e.code, e.message
                        ))
                    }
                }
            }
        })
    }
}

impl SandboxRunner {
    async fn call(&self, language: &str, code: &str) -> Result<RunResult, ApiError> {
        let mut req = SandboxCallRequest {
            language: language.to_string(),
            code: code.to_string(),
            files: vec![],
            stdin: String::new(),
            args: vec![],
            env: Default::default(),
            limits: Default::default(),
            context: None,
            output_encoding: Default::default(),
        };
        let origin = Origin {
            team: self.team.clone(),
            sandbox_id: Some(self.sandbox_id.clone()),
        };
        let stateful = self
            .context
            .as_ref()
            .filter(|_| contexts::speaks(&self.state, language));
        let Some(slot) = stateful else {
            let (job, call) =
                sandboxes::call(&self.state, &self.team, &self.sandbox_id, req).await?;
            let task = admit_and_spawn(&self.state, origin, job, Arc::new(call)).await?;
            let _kill_on_drop = AbortOnDrop(task.abort_handle());
            return join(task).await;
        };
        // One block at a time in the context (blocks of a reply run in order anyway).
        let mut ctx = slot.lock().await;
        let id = match &*ctx {
            Some(id) => id.clone(),
            None => {
                let id =
                    contexts::start_context(&self.state, &self.team, &self.sandbox_id, language)
                        .await?;
                *ctx = Some(id.clone());
                id
            }
        };
        req.context = Some(id);
        let (job, call) =
            contexts::context_call(&self.state, &self.team, &self.sandbox_id, req).await?;
        let task = admit_and_spawn(&self.state, origin, job, Arc::new(call)).await?;
        let _kill_on_drop = AbortOnDrop(task.abort_handle());
        match join(task).await {
            Ok(r) => Ok(as_output(r)),
            Err(e) => {
                if e.code == "context_lost" || e.code == "context_not_found" {
                    // The next block starts a fresh interpreter.
                    *ctx = None;
                }
                Err(e)
            }
        }
    }
}

/// A context call's display results and error, folded into its output the way a notebook
/// shows them, for the model to read: each result's text after stdout, the traceback after
/// stderr.
fn as_output(mut r: RunResult) -> RunResult {
    for bundle in r.results.iter().flatten() {
        let text = match bundle.get("text/plain").and_then(|v| v.as_str()) {
            Some(t) => t.to_string(),
            None => "<a display result without text>".to_string(),
        };
        if !r.stdout.is_empty() && !r.stdout.ends_with('\n') {
            r.stdout.push('\n');
        }
        r.stdout.push_str(&text);
        r.stdout.push('\n');
        if bundle.contains_key("image/png") {
            r.stdout.push_str("[an image/png figure was displayed]\n");
        }
    }
    if let Some(Some(e)) = &r.error {
        if !r.stderr.is_empty() && !r.stderr.ends_with('\n') {
            r.stderr.push('\n');
        }
        r.stderr.push_str(&e.traceback);
    }
    r
}

/// `GET /v1/agent/runs`: the team's runs, newest first, without their messages.
#[derive(Serialize, utoipa::ToSchema)]
pub struct RunList {
    /// Each a `RunView` without `messages`.
    pub runs: Vec<serde_json::Value>,
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
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "limit must be 1..=1000",
        ));
    }
    Ok(Json(RunList {
        runs: state.agent.list(team.id, limit).await?,
    }))
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
) -> Result<Json<serde_json::Value>, ApiError> {
    match state.agent.view(team.id, &id).await? {
        Some(v) => Ok(Json(v)),
        None => Err(not_found(&id)),
    }
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
) -> Result<Json<serde_json::Value>, ApiError> {
    state.agent.cancel(team.id, &id).await;
    get(State(state), Extension(team), Path(id)).await
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
    let Some(run) = state.agent.live(team.id, &id) else {
        return match state.agent.view(team.id, &id).await? {
            Some(_) => Err(no_pending(&id)),
            None => Err(not_found(&id)),
        };
    };
    if !run.decide(Decision {
        approved: a.approved,
        comment: a.comment,
    }) {
        return Err(no_pending(&id));
    }
    Ok(Json(Started {
        id: run.id.clone(),
        state: run.view().state,
    }))
}

fn no_pending(id: &str) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "no_pending_approval",
        format!("agent run {id} holds no block waiting for approval"),
    )
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
    if let Some(run) = state.agent.live(team.id, &id) {
        return Ok(Sse::new(follow(run)).keep_alive(keepalive).into_response());
    }
    let Some(view) = state.agent.view(team.id, &id).await? else {
        return Err(not_found(&id));
    };
    // Ended: replay what was saved.
    let mut out: Vec<SseEvent> = view["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| json_event("message", m))
        .collect();
    let end = serde_json::json!({"id": view["id"], "state": view["state"], "stop_reason": view["stop_reason"], "error": view["error"], "usage": view["usage"]});
    out.push(json_event("end", &end));
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
