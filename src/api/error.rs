//! The one error answer: `{"error": {"code": "...", "message": "..."}}` with a stable code.
//! Client errors keep their status; internal errors are logged once and answered without
//! internals.

use axum::extract::rejection::JsonRejection;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use crate::exec::request::RequestError;
use crate::exec::{ContextFailure, ExecError};

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn overloaded(retry_after: u64) -> ApiError {
        ApiError {
            retry_after: Some(retry_after),
            ..ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "over_capacity",
                format!("all run slots and the queue are full; retry in {retry_after} s or lower your concurrency"),
            )
        }
    }
}

/// The body of every error answer (and the data of a stream's `error` event).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable and machine-readable, e.g. `unknown_language`; each route's responses list its codes.
    #[schema(value_type = String)]
    pub code: &'static str,
    /// For people: what was wrong and what to do about it.
    pub message: String,
}

impl From<&ApiError> for ErrorBody {
    fn from(e: &ApiError) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail {
                code: e.code,
                message: e.message.clone(),
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(ErrorBody::from(&self));
        let mut resp = (self.status, body).into_response();
        if let Some(s) = self.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        resp
    }
}

impl From<RequestError> for ApiError {
    fn from(e: RequestError) -> ApiError {
        let status = match &e {
            RequestError::UnknownLanguage(..) | RequestError::UnknownExecutor(..) => {
                StatusCode::BAD_REQUEST
            }
            RequestError::UnknownPolicy(..) => StatusCode::NOT_FOUND,
            RequestError::InvalidFile { .. } | RequestError::InvalidField(..) => {
                StatusCode::BAD_REQUEST
            }
            RequestError::ExecutorNotAllowed { .. }
            | RequestError::LimitExceeded { .. }
            | RequestError::LimitBelowMinimum { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            RequestError::InputTooLarge { .. } => StatusCode::UNPROCESSABLE_ENTITY,
        };
        ApiError::new(status, e.code(), e.to_string())
    }
}

impl From<ExecError> for ApiError {
    fn from(e: ExecError) -> ApiError {
        match e {
            ExecError::Unavailable(..) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "executor_unavailable",
                e.to_string(),
            ),
            ExecError::Context(ContextFailure::NotFound, m) => {
                ApiError::new(StatusCode::NOT_FOUND, "context_not_found", m)
            }
            ExecError::Context(ContextFailure::Lost, m) => {
                ApiError::new(StatusCode::GONE, "context_lost", m)
            }
            ExecError::DiskFull(..) => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", e.to_string())
            }
            ExecError::NoUid(..) => ApiError {
                retry_after: Some(5),
                ..ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "sandbox_uids_exhausted",
                    e.to_string(),
                )
            },
            other => {
                tracing::error!(error = %other, "run failed inside the service");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal_error",
                    "the service failed to run this request; it has been logged, retry or contact the operator",
                )
            }
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> ApiError {
        match r {
            JsonRejection::JsonSyntaxError(e) => {
                ApiError::new(StatusCode::BAD_REQUEST, "malformed_json", format!("the body is not valid JSON: {}", e.body_text()))
            }
            JsonRejection::JsonDataError(e) => ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", e.body_text()),
            JsonRejection::MissingJsonContentType(_) => ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as JSON with Content-Type: application/json",
            ),
            other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                "the request body is larger than this service accepts (max_body_bytes); send less or raise the limit",
            ),
            other => ApiError::new(other.status(), "invalid_body", other.body_text()),
        }
    }
}
