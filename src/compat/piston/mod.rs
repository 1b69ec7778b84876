//! The Piston v2-compatible API under `/piston`: `GET /api/v2/runtimes` and
//! `POST /api/v2/execute`, each with or without a trailing slash (clients such as aiopyston
//! send one). Errors are Piston's shape, `{"message": "..."}`, which its clients read.

mod execute;
pub mod wire;

use std::sync::Arc;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};

use crate::api::ApiError;
use crate::compat::offered;
use crate::service::{AppState, ServiceError};
use wire::RuntimeItem;

pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/v2/runtimes", get(runtimes))
        .route("/api/v2/runtimes/", get(runtimes))
        .route("/api/v2/execute", post(execute::execute))
        .route("/api/v2/execute/", post(execute::execute))
}

/// `GET /api/v2/runtimes`: the languages whose runtime passed its start-up probe, with Piston's
/// names and the version probed.
async fn runtimes(
    axum::extract::State(state): axum::extract::State<Arc<AppState>>,
) -> Json<Vec<RuntimeItem>> {
    Json(
        offered(&state)
            .iter()
            .map(|l| RuntimeItem {
                language: l.row.piston.clone(),
                version: l.version.clone(),
                aliases: l.row.piston_aliases.clone(),
                runtime: l.row.piston_runtime.clone(),
            })
            .collect(),
    )
}

/// An answer other than 2xx: `{"message": ...}` with a status (400 for what is wrong with the
/// request, the service's own status for the rest).
#[derive(Debug)]
pub struct PistonError {
    pub status: StatusCode,
    pub message: String,
    pub retry_after: Option<u64>,
}

impl PistonError {
    pub fn bad(message: impl Into<String>) -> PistonError {
        PistonError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            retry_after: None,
        }
    }
}

impl From<ApiError> for PistonError {
    /// A request the run path refuses (a limit out of bounds, a bad file) is Piston's 400; the
    /// service's own refusals (full, quota, executor down) keep their status.
    fn from(e: ApiError) -> PistonError {
        let status = if e.status.is_client_error() && e.status != StatusCode::TOO_MANY_REQUESTS {
            StatusCode::BAD_REQUEST
        } else {
            e.status
        };
        PistonError {
            status,
            message: e.message,
            retry_after: e.retry_after,
        }
    }
}

impl From<ServiceError> for PistonError {
    /// As the HTTP layer maps it (status, sentence, `Retry-After`), then as above.
    fn from(e: ServiceError) -> PistonError {
        ApiError::from(e).into()
    }
}

impl IntoResponse for PistonError {
    fn into_response(self) -> Response {
        let mut resp = (
            self.status,
            Json(serde_json::json!({ "message": self.message })),
        )
            .into_response();
        if let Some(s) = self.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        resp
    }
}
