//! `/v1/sandboxes/{id}/contexts`: stateful Python interpreters in a sandbox (Jupyter-like),
//! over `service::contexts`. Their calls are `POST /v1/sandboxes/{id}/execute` with `"context"`.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};

use super::error::ErrorBody;
use super::sandboxes::{SandboxId, NOT_FOUND};
use super::{ApiError, AppState};
use crate::sandbox::stateful::ContextView;
use crate::service::contexts;
use crate::store::Team;
use crate::wire::object::Object;

/// `POST /v1/sandboxes/{id}/contexts`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateContext {
    /// `python` (or an alias of it: `py`, `python3`): contexts are Python interpreters.
    pub language: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ContextList {
    pub contexts: Vec<ContextView>,
}

/// The path parameters of `/v1/sandboxes/{id}/contexts/{context_id}`, for the API description.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
struct ContextPath {
    /// As `POST /v1/sandboxes` answered (`sb_...`).
    id: String,
    /// As `POST /v1/sandboxes/{id}/contexts` answered (`ctx_...`).
    context_id: String,
}

#[utoipa::path(post, path = "/v1/sandboxes/{id}/contexts", operation_id = "create_context", summary = "Start a stateful context", tag = "contexts", params(SandboxId),
    request_body = CreateContext,
    responses(
        (status = 201, description = "A persistent interpreter in the sandbox, ready for calls (`POST .../execute` with `context`); it lives until deleted or until its sandbox is", body = ContextView),
        (status = 400, description = "`malformed_json`, `invalid_request`, `invalid_body`", body = ErrorBody),
        (status = 404, description = NOT_FOUND, body = ErrorBody),
        (status = 413, description = "`body_too_large`", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: the body must be sent as `application/json`", body = ErrorBody),
        (status = 422, description = "`unsupported_language`: contexts speak python only; `unsupported`: the sandbox's executor has no contexts", body = ErrorBody),
        (status = 500, description = "`internal_error`", body = ErrorBody),
        (status = 503, description = "`sandboxes_unavailable`, `executor_unavailable`", body = ErrorBody),
    ))]
pub async fn create(
    State(state): State<Arc<AppState>>,
    Extension(team): Extension<Team>,
    Path(id): Path<String>,
    body: Result<Json<Object<CreateContext>>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(Object(req)) = body?;
    let view = contexts::create(&state, &team, &id, &req.language).await?;
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

#[utoipa::path(get, path = "/v1/sandboxes/{id}/contexts", operation_id = "list_contexts", summary = "List a sandbox's contexts", tag = "contexts", params(SandboxId),
    responses(
        (status = 200, description = "The sandbox's contexts", body = ContextList),
        (status = 404, description = NOT_FOUND, body = ErrorBody),
        (status = 500, description = "`internal_error`", body = ErrorBody),
        (status = 503, description = "`sandboxes_unavailable`, `executor_unavailable`", body = ErrorBody),
    ))]
pub async fn list(
    State(state): State<Arc<AppState>>,
    Extension(team): Extension<Team>,
    Path(id): Path<String>,
) -> Result<Json<ContextList>, ApiError> {
    let contexts = contexts::list(&state, &team, &id).await?;
    Ok(Json(ContextList { contexts }))
}

#[utoipa::path(delete, path = "/v1/sandboxes/{id}/contexts/{context_id}", operation_id = "delete_context", summary = "End a context", tag = "contexts", params(ContextPath),
    responses(
        (status = 204, description = "Its interpreter and everything it started are gone"),
        (status = 404, description = "`sandbox_not_found`, `context_not_found`", body = ErrorBody),
        (status = 500, description = "`internal_error`", body = ErrorBody),
        (status = 503, description = "`sandboxes_unavailable`, `executor_unavailable`", body = ErrorBody),
    ))]
pub async fn delete(
    State(state): State<Arc<AppState>>,
    Extension(team): Extension<Team>,
    Path((id, ctx)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    contexts::delete(&state, &team, &id, &ctx).await?;
    Ok(StatusCode::NO_CONTENT)
}
