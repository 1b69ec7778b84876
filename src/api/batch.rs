//! `POST /v1/execute/batch`: many runs in one request, answered in request order — the shape
//! reward computation in RL training and benchmark harnesses need. Every item goes through the
//! same validation, quota and admission control as `POST /v1/execute`; an item that fails gets
//! its own error object in its place, and the rest still run.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};

use super::error::{ErrorBody, ErrorDetail};
use super::execute::{admit_and_spawn, join, prepare, Origin};
use super::{ApiError, AppState};
use crate::exec::request::object::{self, Object};
use crate::exec::request::ExecuteRequest;
use crate::exec::RunResult;
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
    #[serde(default, deserialize_with = "crate::exec::request::whole::option")]
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
    BatchItem::Error(ErrorBody { error: ErrorDetail { code: e.code, message: e.message } })
}

#[utoipa::path(post, path = "/v1/execute/batch", operation_id = "execute_batch", summary = "Run many programs, answered in order", tag = "runs", request_body = BatchRequest,
    responses(
        (status = 200, description = "One item per request, in order: a run result, or an error object (`{error: {code, message}}`, the code `POST /v1/execute` would have answered)", body = BatchResponse),
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
) -> Result<Json<BatchResponse>, ApiError> {
    let Json(Object(req)) = body?;
    if req.requests.is_empty() || req.requests.len() > MAX_BATCH {
        return Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_batch", format!("a batch holds 1 to {MAX_BATCH} requests; this one has {}", req.requests.len())));
    }
    if req.concurrency.is_some_and(|c| c == 0 || c > MAX_CONCURRENCY) {
        return Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_batch", format!("concurrency must be 1..={MAX_CONCURRENCY}")));
    }
    let concurrency = req.concurrency.unwrap_or(state.admission.slots()).clamp(1, MAX_CONCURRENCY);
    let gate = Arc::new(tokio::sync::Semaphore::new(concurrency));
    let items = req.requests.into_iter().map(|r| {
        let (state, team, gate) = (state.clone(), team.clone(), gate.clone());
        async move {
            let _turn = gate.acquire_owned().await.expect("the batch's semaphore is never closed");
            let (job, executor) = match prepare(&state, r) {
                Ok(p) => p,
                Err(e) => return item_error(e),
            };
            let origin = Origin { team, sandbox_id: None };
            let task = match admit_and_spawn(&state, origin, job, executor).await {
                Ok(t) => t,
                Err(e) => return item_error(e),
            };
            match join(task).await {
                Ok(r) => BatchItem::Result(Box::new(r)),
                Err(e) => item_error(e),
            }
        }
    });
    let results = futures_util::future::join_all(items).await;
    Ok(Json(BatchResponse { results }))
}
