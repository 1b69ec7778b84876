//! Judge0's submissions: `POST /submissions` (waited for with `wait=true`, else answered with
//! a token at once and run in the background), `GET /submissions/{token}`, and the batched
//! forms. Every run goes through the service's run path (quota, admission, audit); a
//! submission is kept in the store, for its team, until `compat.judge0_retention_seconds`
//! after it was created.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::request::{self, FieldErrors, Params};
use super::submission::{Fields, Rendered, Submission};
use super::verdict::{self, verdict, Judged, Verdict};
use super::Judge0Error;
use crate::api::ApiError;
use crate::compat::{judge0_config, offered, run};
use crate::exec::request::ExecuteRequest;
use crate::policy::LimitOverrides;
use crate::service::{AppState, ServiceError};
use crate::store::{now_millis, Team};

#[derive(Debug, Default, Deserialize)]
pub struct Options {
    base64_encoded: Option<String>,
    wait: Option<String>,
    fields: Option<String>,
    tokens: Option<String>,
}

impl Options {
    /// Judge0 CE 1.13.1 encodes only when asked (`base64_encoded=true`).
    fn base64(&self) -> bool {
        self.base64_encoded.as_deref() == Some("true")
    }

    fn fields(&self) -> Result<Fields, Judge0Error> {
        Fields::parse(self.fields.as_deref()).map_err(|bad| {
            Judge0Error::new(
                StatusCode::BAD_REQUEST,
                format!("invalid fields: [{}]", bad.join(", ")),
            )
        })
    }
}

/// A submission made into a job for the run path.
struct Prepared {
    params: Params,
    /// The validated run, adjusted; each of the submission's runs is one more of it.
    run: run::Prepared,
}

fn millis(seconds: f64) -> u64 {
    (seconds * 1000.0).round() as u64
}

/// The run a submission asks for: its limits in execbox's units, its arguments, and what no
/// `/v1` request asks for, applied to the validated job: compiler options before the source
/// file in the compile command, stderr joined to stdout by a shell that then execs the program.
fn prepare(state: &AppState, team: &Team, params: Params) -> Result<Prepared, ApiError> {
    let settings = &state.compat;
    let p = &params;
    let req = ExecuteRequest {
        language: p.language.runtime.language.clone(),
        code: p.source_code.clone(),
        files: Vec::new(),
        stdin: p.stdin.clone().unwrap_or_default(),
        args: p.args.clone(),
        env: Default::default(),
        executor: Some(settings.executor.clone()),
        policy: Some(settings.policy.clone()),
        limits: LimitOverrides {
            wall_time_ms: Some(millis(p.wall_time_limit)),
            cpu_time_ms: Some(millis(p.cpu_time_limit + p.cpu_extra_time).max(1)),
            memory_bytes: Some(p.memory_limit * 1024),
            pids: Some(p.max_processes_and_or_threads),
            output_bytes: Some(p.max_file_size * 1024),
            disk_bytes: None,
        },
        output_encoding: Default::default(),
    };
    let mut run = run::prepare(state, team, req)?;
    let job = &mut run.job;
    if let Some(compile) = job.runtime.compile.as_mut() {
        // Before the source file, as Judge0's `compile_cmd` has them (checked in `request`).
        if let Some(at) = compile.iter().position(|a| *a == job.runtime.source_file) {
            compile.splice(at..at, p.compiler_flags.iter().cloned());
        }
    }
    if p.redirect_stderr_to_stdout {
        let program = std::mem::take(&mut job.runtime.run);
        job.runtime.run = ["sh", "-c", "exec \"$@\" 2>&1", "sh"]
            .into_iter()
            .map(String::from)
            .chain(program)
            .collect();
    }
    Ok(Prepared { params, run })
}

/// Run a submission `number_of_runs` times, the first run already admitted, stopping after the
/// first that is not Accepted, as Judge0 does.
async fn runs(
    state: &Arc<AppState>,
    p: &Prepared,
    first: run::Running,
) -> Result<Vec<Verdict>, ApiError> {
    let judged = Judged {
        expected_output: p.params.expected_output.as_deref(),
        cpu_time_limit_ms: millis(p.params.cpu_time_limit),
        max_file_size_kb: p.params.max_file_size,
    };
    let mut verdicts = Vec::new();
    let mut next = Some(first);
    for _ in 0..p.params.number_of_runs {
        let running = match next.take() {
            Some(r) => r,
            None => run::admit(state.clone(), p.run.again()).await?,
        };
        let v = verdict(&run::finish(running).await?, &judged);
        let accepted = v.status_id == verdict::ACCEPTED;
        verdicts.push(v);
        if !accepted {
            break;
        }
    }
    Ok(verdicts)
}

async fn save(state: &AppState, team: &Team, sub: &Submission) -> Result<(), ServiceError> {
    let view = serde_json::to_value(sub).expect("a submission serializes");
    let created = sub.created_at.div_euclid(1000);
    let expires = created.saturating_add(state.compat.judge0_retention_seconds as i64);
    let (token, team_id, pending) = (sub.token.clone(), team.id, sub.pending());
    state
        .store
        .blocking(move |s| s.save_submission(&token, team_id, pending, &view, created, expires))
        .await?;
    Ok(())
}

async fn load(
    state: &AppState,
    team: &Team,
    tokens: Vec<String>,
) -> Result<Vec<Option<Submission>>, ServiceError> {
    let team_id = team.id;
    let views = state
        .store
        .blocking(move |s| {
            let refs: Vec<&str> = tokens.iter().map(String::as_str).collect();
            s.submissions(team_id, &refs)
        })
        .await?;
    Ok(views
        .into_iter()
        .map(|v| v.and_then(|v| serde_json::from_value(v).ok()))
        .collect())
}

type Admission = Pin<Box<dyn Future<Output = Result<run::Running, ServiceError>> + Send>>;

/// Queue a submission: its admission is asked for now, so a full service or a team at its
/// quota is refused at once; it is saved (In Queue, or Processing when a slot was free) and then
/// run in the background, saved again when it starts and when it ends.
async fn enqueue(
    state: &Arc<AppState>,
    team: &Team,
    p: Prepared,
    mut sub: Submission,
) -> Result<(), Judge0Error> {
    let mut admission: Admission = Box::pin(run::admit(state.clone(), p.run.again()));
    let admitted = match std::future::poll_fn(|cx| Poll::Ready(admission.as_mut().poll(cx))).await {
        Poll::Ready(Err(e)) => return Err(e.into()),
        Poll::Ready(Ok(running)) => {
            sub.status_id = verdict::PROCESSING;
            Some(running)
        }
        Poll::Pending => None,
    };
    save(state, team, &sub).await?;
    let (state, team) = (state.clone(), team.clone());
    tokio::spawn(async move {
        let outcome = async {
            let first = match admitted {
                Some(r) => r,
                None => {
                    let r = admission.await?;
                    sub.status_id = verdict::PROCESSING;
                    save(&state, &team, &sub).await?;
                    r
                }
            };
            runs(&state, &p, first).await
        }
        .await;
        match outcome {
            Ok(v) => sub.finish(&v, now_millis()),
            Err(e) => sub.fail(e.message, now_millis()),
        }
        if let Err(e) = save(&state, &team, &sub).await {
            tracing::error!(token = %sub.token, error = %e, "could not save a finished submission");
        }
    });
    Ok(())
}

/// A JSON object body, or none (which Judge0 reads as no attributes).
fn object(body: &Bytes) -> Result<Map<String, Value>, Judge0Error> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(Judge0Error::new(
            StatusCode::BAD_REQUEST,
            "the body must be a JSON object of submission attributes",
        )),
        Err(e) => Err(Judge0Error::new(
            StatusCode::BAD_REQUEST,
            format!("the body is not valid JSON: {e}"),
        )),
    }
}

fn not_found(token: &str) -> Judge0Error {
    Judge0Error::new(
        StatusCode::NOT_FOUND,
        format!("no submission with token {token}: it is another team's, was never made, or its retention (compat.judge0_retention_seconds) has passed"),
    )
}

/// `POST /submissions`.
pub async fn create(
    State(state): State<Arc<AppState>>,
    Extension(team): Extension<Team>,
    Query(q): Query<Options>,
    body: Bytes,
) -> Result<Response, Judge0Error> {
    let fields = q.fields()?;
    let base64 = q.base64();
    let body = object(&body)?;
    let params = request::parse(&body, base64, &judge0_config(&state), &offered(&state))
        .map_err(Judge0Error::Invalid)?;
    let prepared = prepare(&state, &team, params)?;
    let mut sub = Submission::queued(
        uuid::Uuid::new_v4().to_string(),
        &prepared.params,
        now_millis(),
    );
    if q.wait.as_deref() != Some("true") {
        let answer = sub.render(&Fields::token_only(), false);
        enqueue(&state, &team, prepared, sub).await?;
        return Ok((StatusCode::CREATED, Json(answer)).into_response());
    }
    let first = run::admit(state.clone(), prepared.run.again()).await?;
    match runs(&state, &prepared, first).await {
        Ok(v) => sub.finish(&v, now_millis()),
        Err(e) => sub.fail(e.message, now_millis()),
    }
    save(&state, &team, &sub).await?;
    Ok((StatusCode::CREATED, Json(sub.render(&fields, base64))).into_response())
}

/// `GET /submissions/{token}`.
pub async fn show(
    State(state): State<Arc<AppState>>,
    Extension(team): Extension<Team>,
    Path(token): Path<String>,
    Query(q): Query<Options>,
) -> Result<Json<Rendered>, Judge0Error> {
    let fields = q.fields()?;
    let sub = load(&state, &team, vec![token.clone()])
        .await?
        .pop()
        .flatten()
        .ok_or_else(|| not_found(&token))?;
    Ok(Json(sub.render(&fields, q.base64())))
}

fn batch_size_error(n: usize, max: usize) -> Option<Judge0Error> {
    if n > max {
        Some(Judge0Error::new(
            StatusCode::BAD_REQUEST,
            format!("number of submissions in a batch should be less than or equal to {max}"),
        ))
    } else if n == 0 {
        Some(Judge0Error::new(
            StatusCode::BAD_REQUEST,
            "there should be at least one submission in a batch",
        ))
    } else {
        None
    }
}

/// One item of a batch's answer.
#[derive(Serialize)]
#[serde(untagged)]
enum Made {
    Token { token: String },
    Invalid(FieldErrors),
    Error { error: String },
}

/// `POST /submissions/batch`: each submission queued as a single one is, answered in order
/// with its token or what is wrong with it; 201 when at least one was made, else 422.
pub async fn create_batch(
    State(state): State<Arc<AppState>>,
    Extension(team): Extension<Team>,
    Query(q): Query<Options>,
    body: Bytes,
) -> Result<Response, Judge0Error> {
    let body = object(&body)?;
    let items = match body.get("submissions") {
        Some(Value::Array(items)) => items.as_slice(),
        _ => &[],
    };
    if let Some(e) = batch_size_error(items.len(), judge0_config(&state).max_submission_batch_size)
    {
        return Err(e);
    }
    let languages = offered(&state);
    let mut answers = Vec::with_capacity(items.len());
    let mut made = false;
    for item in items {
        let empty = Map::new();
        let attributes = item.as_object().unwrap_or(&empty);
        let params =
            match request::parse(attributes, q.base64(), &judge0_config(&state), &languages) {
                Ok(p) => p,
                Err(errors) => {
                    answers.push(Made::Invalid(errors));
                    continue;
                }
            };
        let queued = async {
            let prepared = prepare(&state, &team, params)?;
            let sub = Submission::queued(
                uuid::Uuid::new_v4().to_string(),
                &prepared.params,
                now_millis(),
            );
            let token = sub.token.clone();
            enqueue(&state, &team, prepared, sub).await?;
            Ok::<_, Judge0Error>(token)
        }
        .await;
        answers.push(match queued {
            Ok(token) => {
                made = true;
                Made::Token { token }
            }
            Err(Judge0Error::Invalid(errors)) => Made::Invalid(errors),
            Err(Judge0Error::Error { message, .. }) => Made::Error { error: message },
        });
    }
    let status = if made {
        StatusCode::CREATED
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    Ok((status, Json(answers)).into_response())
}

/// `GET /submissions/batch?tokens=...` (or a `tokens` header): each submission, or `null` for a
/// token that names none of the team's.
pub async fn show_batch(
    State(state): State<Arc<AppState>>,
    Extension(team): Extension<Team>,
    Query(q): Query<Options>,
    headers: HeaderMap,
) -> Result<Json<Found>, Judge0Error> {
    let fields = q.fields()?;
    let listed = headers
        .get("tokens")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| q.tokens.clone())
        .unwrap_or_default();
    let listed = listed.trim();
    let tokens: Vec<String> = if listed.is_empty() {
        Vec::new()
    } else {
        listed.split(',').map(str::to_string).collect()
    };
    if let Some(e) = batch_size_error(
        tokens.len(),
        judge0_config(&state).max_submission_batch_size,
    ) {
        return Err(e);
    }
    let base64 = q.base64();
    let found = load(&state, &team, tokens).await?;
    Ok(Json(Found {
        submissions: found
            .iter()
            .map(|s| s.as_ref().map(|s| s.render(&fields, base64)))
            .collect(),
    }))
}

#[derive(Serialize)]
pub struct Found {
    submissions: Vec<Option<Rendered>>,
}

/// At start: a submission still pending belonged to a service that is gone; it ends as an
/// Internal Error saying so.
pub async fn end_interrupted(state: &Arc<AppState>) -> anyhow::Result<()> {
    let store = state.store.clone();
    let ended = store
        .blocking(|s| {
            let pending = s.pending_submissions()?;
            for (token, team_id, view, created, expires) in &pending {
                let Ok(mut sub) = serde_json::from_value::<Submission>(view.clone()) else {
                    continue;
                };
                sub.fail(
                    "the service stopped before this submission finished; submit it again".into(),
                    now_millis(),
                );
                let view = serde_json::to_value(&sub).expect("a submission serializes");
                s.save_submission(token, *team_id, false, &view, *created, *expires)?;
            }
            Ok::<_, crate::store::StoreError>(pending.len())
        })
        .await?;
    if ended > 0 {
        tracing::warn!(
            submissions = ended,
            "Judge0 submissions left pending by an earlier service were ended as Internal Error"
        );
    }
    Ok(())
}

/// Delete expired submissions every minute (or every retention period, when shorter).
pub fn spawn_sweeper(state: Arc<AppState>) {
    let every = state.compat.judge0_retention_seconds.clamp(1, 60);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(every));
        loop {
            tick.tick().await;
            match state.store.blocking(|s| s.sweep_submissions()).await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(submissions = n, "expired Judge0 submissions swept"),
                Err(e) => tracing::error!(error = %e, "could not sweep expired Judge0 submissions"),
            }
        }
    });
}
