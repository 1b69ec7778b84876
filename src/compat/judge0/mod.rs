//! The Judge0 CE 1.13.1-compatible API under `/judge0`: submissions (single and batched, waited
//! for or read back by token), languages, statuses, about and config_info. Errors are Judge0's
//! shapes, which its clients read: 422 with `{field: [messages]}` for an invalid submission,
//! `{"error": "..."}` for the rest.

pub mod config;
pub mod encoding;
mod info;
pub mod request;
pub mod submission;
pub mod submissions;
pub mod verdict;

use std::sync::Arc;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, MethodRouter};
use axum::{Json, Router};

use crate::api::ApiError;
use crate::service::{AppState, ServiceError};
use request::FieldErrors;

/// Judge0's routes; each also answers with a trailing slash, as Rails does.
pub fn router() -> Router<Arc<AppState>> {
    let routes: Vec<(&str, MethodRouter<Arc<AppState>>)> = vec![
        ("/submissions", post(submissions::create)),
        (
            "/submissions/batch",
            post(submissions::create_batch).get(submissions::show_batch),
        ),
        ("/submissions/{token}", get(submissions::show)),
        ("/languages", get(info::languages)),
        ("/languages/{id}", get(info::language)),
        ("/statuses", get(info::statuses)),
        ("/about", get(info::about)),
        ("/config_info", get(info::config_info)),
    ];
    routes
        .into_iter()
        .fold(Router::new(), |r, (path, handler)| {
            r.route(path, handler.clone())
                .route(&format!("{path}/"), handler)
        })
}

/// An answer other than 2xx, in Judge0's shapes.
#[derive(Debug)]
pub enum Judge0Error {
    /// 422: the submission's attributes and what is wrong with each.
    Invalid(FieldErrors),
    /// `{"error": message}` with a status (and `Retry-After` for a full service).
    Error {
        status: StatusCode,
        message: String,
        retry_after: Option<u64>,
    },
}

impl Judge0Error {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Judge0Error {
        Judge0Error::Error {
            status,
            message: message.into(),
            retry_after: None,
        }
    }
}

impl From<ApiError> for Judge0Error {
    /// The service's own refusals (a full queue, the team's quota, an executor down), with
    /// their status and sentence.
    fn from(e: ApiError) -> Judge0Error {
        Judge0Error::Error {
            status: e.status,
            message: e.message,
            retry_after: e.retry_after,
        }
    }
}

impl From<ServiceError> for Judge0Error {
    /// As the HTTP layer maps it (status, sentence, `Retry-After`), then as above.
    fn from(e: ServiceError) -> Judge0Error {
        ApiError::from(e).into()
    }
}

impl IntoResponse for Judge0Error {
    fn into_response(self) -> Response {
        match self {
            Judge0Error::Invalid(errors) => {
                (StatusCode::UNPROCESSABLE_ENTITY, Json(errors)).into_response()
            }
            Judge0Error::Error {
                status,
                message,
                retry_after,
            } => {
                let mut resp =
                    (status, Json(serde_json::json!({ "error": message }))).into_response();
                if let Some(s) = retry_after {
                    resp.headers_mut()
                        .insert(header::RETRY_AFTER, HeaderValue::from(s));
                }
                resp
            }
        }
    }
}
