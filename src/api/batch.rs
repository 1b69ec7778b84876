//! `POST /v1/execute/batch`: many runs in one request, answered in request order — the shape
//! reward computation in RL training and benchmark harnesses need. Every item goes through the
//! same validation, quota and admission control as `POST /v1/execute`; an item that fails gets
//! its own error object in its place, and the rest still run. The answer is written as items
//! finish, and the output its unwritten results hold is bounded (`max_batch_output_bytes`).

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use std::io::Write;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};

use super::error::{ErrorBody, ErrorDetail};
use super::execute::{admit_and_spawn, join, prepare, Origin};
use super::{json_stream, ApiError, AppState};
use crate::wire::object::{self, Object};
use crate::exec::request::ExecuteRequest;
use crate::exec::{Job, RunResult};
use crate::store::Team;

/// Most runs one batch may hold.
pub const MAX_BATCH: usize = 1000;
/// Most runs of one batch in flight at once.
pub const MAX_CONCURRENCY: usize = 64;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    /// The runs, each the body of `POST /v1/execute`.
    #[serde(deserialize_with = "object::vec")]
    #[schema(min_items = 1, max_items = 1000)]
    pub requests: Vec<ExecuteRequest>,
    /// Runs of this batch in flight at once, 1..=64 (default: the service's
    /// `max_concurrent_runs`, at most 64). Items beyond it wait inside the batch, not in the
    /// service's queue.
    #[serde(default, deserialize_with = "crate::wire::whole::option")]
    #[schema(minimum = 1, maximum = 64)]
    pub concurrency: Option<usize>,
}

/// One item's outcome: the run's result, or the error it would have got alone.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum BatchItem {
    Result(Box<RunResult>),
    Error(ErrorBody),
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BatchResponse {
    /// In the order of `requests`.
    pub results: Vec<BatchItem>,
}

fn item_error(e: ApiError) -> BatchItem {
    BatchItem::Error(ErrorBody {
        error: ErrorDetail {
            code: e.code,
            message: e.message,
        },
    })
}

#[utoipa::path(post, path = "/v1/execute/batch", operation_id = "execute_batch", summary = "Run many programs, answered in order", tag = "runs", request_body = BatchRequest,
    responses(
        (status = 200, description = "One item per request, in order: a run result, or an error object (`{error: {code, message}}`, the code `POST /v1/execute` would have answered). \
The body is written as items finish, in order. The output the batch holds at once is bounded by the service's `max_batch_output_bytes`: \
an item waits to start until the output caps of the items before it that are not yet written fit beside its own, and an item whose \
caps alone exceed it runs with its caps lowered to fit (its output then comes back cut, with `stdout_truncated`/`stderr_truncated`).", body = BatchResponse),
        (status = 400, description = "`malformed_json`, `invalid_request`, `invalid_body`", body = ErrorBody),
        (status = 413, description = "`body_too_large`: more than the service's `max_body_bytes`", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: the body must be sent as `application/json`", body = ErrorBody),
        (status = 422, description = "`invalid_batch`: no requests, more than 1000, or concurrency not 1..=64", body = ErrorBody),
        (status = 500, description = "`internal_error`: the service failed; it has been logged", body = ErrorBody),
    ))]
pub async fn batch(
    State(state): State<Arc<AppState>>,
    Extension(team): Extension<Team>,
    body: Result<Json<Object<BatchRequest>>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(Object(req)) = body?;
    if req.requests.is_empty() || req.requests.len() > MAX_BATCH {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_batch",
            format!(
                "a batch holds 1 to {MAX_BATCH} requests; this one has {}",
                req.requests.len()
            ),
        ));
    }
    if req
        .concurrency
        .is_some_and(|c| c == 0 || c > MAX_CONCURRENCY)
    {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_batch",
            format!("concurrency must be 1..={MAX_CONCURRENCY}"),
        ));
    }
    let concurrency = req
        .concurrency
        .unwrap_or(state.admission.slots())
        .clamp(1, MAX_CONCURRENCY);
    let budget = OutputBudget::new(state.max_batch_output_bytes);
    // Items start in order (each waits for a turn and for its share of the output budget) and
    // are written in order; the earliest unwritten item always holds its share and runs, so
    // the batch always moves on.
    let (items_tx, mut items_rx) = tokio::sync::mpsc::unbounded_channel::<Pending>();
    let gate = Arc::new(tokio::sync::Semaphore::new(concurrency));
    tokio::spawn(async move {
        for r in req.requests {
            let turn = gate
                .clone()
                .acquire_owned()
                .await
                .expect("the batch's semaphore is never closed");
            let pending = match prepare(&state, r) {
                Err(e) => Pending::Ready(item_error(e)),
                Ok((mut job, executor)) => {
                    let share = budget.fit(&mut job);
                    let share = budget.take(share).await;
                    let origin = Origin {
                        team: team.clone(),
                        sandbox_id: None,
                    };
                    let state = state.clone();
                    let item = tokio::spawn(async move {
                        let _turn = turn;
                        let task = match admit_and_spawn(&state, origin, job, executor).await {
                            Ok(t) => t,
                            Err(e) => return item_error(e),
                        };
                        match join(task).await {
                            Ok(r) => BatchItem::Result(Box::new(r)),
                            Err(e) => item_error(e),
                        }
                    });
                    Pending::Running(item, share)
                }
            };
            // The writer is gone when the client is: start nothing more.
            if items_tx.send(pending).is_err() {
                return;
            }
        }
    });
    let (w, body) = json_stream::channel();
    tokio::spawn(async move {
        let write = async move {
            let mut w = w.with(|w| w.write_all(b"{\"results\":[")).await?;
            let mut first = true;
            while let Some(pending) = items_rx.recv().await {
                let (item, share) = match pending {
                    Pending::Ready(item) => (item, None),
                    Pending::Running(task, share) => (
                        task.await.unwrap_or_else(|e| {
                            tracing::error!(error = %e, "batch item task failed");
                            item_error(ApiError::new(
                                StatusCode::INTERNAL_SERVER_ERROR,
                                "internal_error",
                                "the run failed inside the service; it has been logged",
                            ))
                        }),
                        Some(share),
                    ),
                };
                let comma = !std::mem::take(&mut first);
                w = w
                    .with(move |w| {
                        if comma {
                            w.write_all(b",")?;
                        }
                        serde_json::to_writer(&mut *w, &item).map_err(std::io::Error::from)
                    })
                    .await?;
                // Written (into chunks at most a few of which wait for the client): its share is free.
                drop(share);
            }
            w.with(|w| {
                w.write_all(b"]}")?;
                w.flush()
            })
            .await
        };
        if let Err(e) = write.await {
            tracing::debug!(error = %e, "batch answer not written whole");
        }
    });
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// An item in the order of the request: answered already, or running with its share of the
/// output budget.
enum Pending {
    Ready(BatchItem),
    Running(
        tokio::task::JoinHandle<BatchItem>,
        tokio::sync::OwnedSemaphorePermit,
    ),
}

/// The output (bytes of stdout and stderr, of the run and its compile step) that the results
/// of one batch not yet written may hold at once.
struct OutputBudget {
    bytes: u64,
    units: Arc<tokio::sync::Semaphore>,
}

/// The budget is counted in KiB, so that it fits a semaphore's permits.
const UNIT: u64 = 1024;

impl OutputBudget {
    fn new(bytes: u64) -> OutputBudget {
        let bytes = bytes.max(UNIT);
        OutputBudget {
            bytes,
            units: Arc::new(tokio::sync::Semaphore::new(
                (bytes / UNIT).min(u32::MAX as u64) as usize,
            )),
        }
    }

    /// The most output `job` can hold, after lowering its caps so that it fits the budget alone.
    fn fit(&self, job: &mut Job) -> u64 {
        let compiled = job.runtime.compile.is_some();
        let held = |j: &Job| {
            2 * j.limits.output_bytes
                + if compiled {
                    2 * j.compile_limits.output_bytes
                } else {
                    0
                }
        };
        if held(job) > self.bytes {
            let cap = self.bytes / if compiled { 4 } else { 2 };
            job.limits.output_bytes = job.limits.output_bytes.min(cap);
            job.compile_limits.output_bytes = job.compile_limits.output_bytes.min(cap);
        }
        held(job)
    }

    async fn take(&self, bytes: u64) -> tokio::sync::OwnedSemaphorePermit {
        let units = bytes.div_ceil(UNIT).min(self.bytes / UNIT) as u32;
        self.units
            .clone()
            .acquire_many_owned(units)
            .await
            .expect("the budget's semaphore is never closed")
    }
}
