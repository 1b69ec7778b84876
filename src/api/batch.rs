//! `POST /v1/execute/batch`: the service's batch (`service::batch`), written as its items
//! finish, in request order; an item that failed is the error object it would have got alone.

use std::io::Write;
use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Serialize;

use super::error::{ErrorBody, ErrorDetail};
use super::{json_stream, ApiError, AppState};
use crate::exec::RunResult;
use crate::service::batch::{self, BatchRequest};
use crate::store::Team;
use crate::wire::object::Object;

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
    let mut items = batch::start(&state, &team, req)?;
    let (w, body) = json_stream::channel();
    tokio::spawn(async move {
        let write = async move {
            let mut w = w.with(|w| w.write_all(b"{\"results\":[")).await?;
            let mut first = true;
            while let Some(item) = items.next().await {
                let answer = match item.outcome {
                    Ok(r) => BatchItem::Result(Box::new(r)),
                    Err(e) => item_error(e.into()),
                };
                let comma = !std::mem::take(&mut first);
                w = w
                    .with(move |w| {
                        if comma {
                            w.write_all(b",")?;
                        }
                        serde_json::to_writer(&mut *w, &answer).map_err(std::io::Error::from)
                    })
                    .await?;
                // Written (into chunks at most a few of which wait for the client): the rest
                // of the item, its share of the output budget, goes now.
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
