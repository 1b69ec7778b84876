//! The one error answer: `{"error": {"code": "...", "message": "..."}}` with a stable code, and
//! the one mapping of the service's errors ([`ServiceError`]) to a status and that code.
//! Client errors keep their status; internal errors are logged once and answered without
//! internals.

use axum::extract::rejection::JsonRejection;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use crate::exec::request::RequestError;
use crate::exec::{ContextFailure, ExecError};
use crate::sandbox::SandboxError;
use crate::service::ServiceError;

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

    fn retry_after(mut self, seconds: Option<u64>) -> ApiError {
        self.retry_after = seconds;
        self
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
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

/// The one mapping of the service's errors to HTTP: a status, a stable code and a sentence.
/// Internal errors are logged here, once, and answered without their internals.
impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> ApiError {
        use StatusCode as S;
        let message = e.to_string();
        let retry_after = e.retry_after();
        let (status, code) = match e {
            ServiceError::Request(r) => return request_error(r),
            ServiceError::Sandbox(s) => return sandbox_error(s),
            ServiceError::Exec(x) => return exec_error(x),
            ServiceError::InvalidRequest(_) => (S::BAD_REQUEST, "invalid_request"),
            ServiceError::PathRefused(_) => (S::BAD_REQUEST, "path_refused"),
            ServiceError::InvalidBatch(_) => (S::UNPROCESSABLE_ENTITY, "invalid_batch"),
            ServiceError::InvalidSandbox(_) => (S::UNPROCESSABLE_ENTITY, "invalid_sandbox"),
            ServiceError::SandboxDiskExceeded { .. } => (S::UNPROCESSABLE_ENTITY, "limit_exceeded"),
            ServiceError::UnsupportedLanguage(_) => {
                (S::UNPROCESSABLE_ENTITY, "unsupported_language")
            }
            ServiceError::InvalidAgentRun(_) => (S::UNPROCESSABLE_ENTITY, "invalid_agent_run"),
            ServiceError::InvalidModel(_) => (S::UNPROCESSABLE_ENTITY, "invalid_model"),
            ServiceError::SandboxNotFound(_) => (S::NOT_FOUND, "sandbox_not_found"),
            ServiceError::AgentRunNotFound(_) => (S::NOT_FOUND, "agent_run_not_found"),
            ServiceError::RunNotFound(_) => (S::NOT_FOUND, "run_not_found"),
            ServiceError::RunExpired(_) => (S::NOT_FOUND, "run_expired"),
            ServiceError::NoPendingApproval(_) => (S::CONFLICT, "no_pending_approval"),
            ServiceError::NoKey => {
                return ApiError::new(S::UNAUTHORIZED, "unauthorized", "this route needs an API key: send Authorization: Bearer KEY (on /judge0 also X-Auth-Token: KEY, on /piston also Authorization: KEY; an operator creates keys with `execbox keys create --team NAME`)");
            }
            ServiceError::BadKey => (S::UNAUTHORIZED, "unauthorized"),
            ServiceError::Quota(_) => (S::TOO_MANY_REQUESTS, "quota_exceeded"),
            ServiceError::OverCapacity { .. } => (S::TOO_MANY_REQUESTS, "over_capacity"),
            ServiceError::SandboxesUnavailable => (S::SERVICE_UNAVAILABLE, "sandboxes_unavailable"),
            ServiceError::ExecutorUnavailable(_) => {
                (S::SERVICE_UNAVAILABLE, "executor_unavailable")
            }
            ServiceError::RuntimeUnavailable(_) => (S::SERVICE_UNAVAILABLE, "runtime_unavailable"),
            ServiceError::Store(e) => {
                tracing::error!(error = %e, "the store failed");
                return internal("the service's state store failed; it has been logged, retry or contact the operator");
            }
            ServiceError::TaskFailed(e) => {
                tracing::error!(error = %e, "run task failed");
                return internal("the run failed inside the service; it has been logged");
            }
        };
        ApiError::new(status, code, message).retry_after(retry_after)
    }
}

fn internal(message: &str) -> ApiError {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal_error", message)
}

fn request_error(e: RequestError) -> ApiError {
    use StatusCode as S;
    let (status, code) = match &e {
        RequestError::UnknownLanguage(..) => (S::BAD_REQUEST, "unknown_language"),
        RequestError::UnknownExecutor(..) => (S::BAD_REQUEST, "unknown_executor"),
        RequestError::UnknownPolicy(..) => (S::NOT_FOUND, "unknown_policy"),
        RequestError::InvalidFile { .. } => (S::BAD_REQUEST, "invalid_file"),
        RequestError::InvalidField(..) => (S::BAD_REQUEST, "invalid_request"),
        RequestError::ExecutorNotAllowed { .. } => {
            (S::UNPROCESSABLE_ENTITY, "executor_not_allowed")
        }
        RequestError::LimitExceeded { .. } => (S::UNPROCESSABLE_ENTITY, "limit_exceeded"),
        RequestError::LimitBelowMinimum { .. } => (S::UNPROCESSABLE_ENTITY, "limit_below_minimum"),
        RequestError::InputTooLarge { .. } => (S::UNPROCESSABLE_ENTITY, "input_too_large"),
    };
    ApiError::new(status, code, e.to_string())
}

fn sandbox_error(e: SandboxError) -> ApiError {
    use StatusCode as S;
    let message = e.to_string();
    let (status, code) = match e {
        SandboxError::Exec(x) => return exec_error(x),
        SandboxError::NotFound(_) => (S::NOT_FOUND, "file_not_found"),
        SandboxError::PathRefused(_) => (S::BAD_REQUEST, "path_refused"),
        SandboxError::PathConflict(_) => (S::CONFLICT, "path_conflict"),
        SandboxError::TooLarge { .. } => (S::PAYLOAD_TOO_LARGE, "too_large"),
        SandboxError::InvalidArchive(_) => {
            return ApiError::new(
                S::BAD_REQUEST,
                "invalid_archive",
                format!("{message}; send a tar (ustar, GNU or pax)"),
            )
        }
        SandboxError::ContextNotFound(_) => (S::NOT_FOUND, "context_not_found"),
        SandboxError::ContextLost(_) => (S::GONE, "context_lost"),
        SandboxError::ProcessNotFound(_) => (S::NOT_FOUND, "process_not_found"),
        SandboxError::Unsupported(_) => (S::UNPROCESSABLE_ENTITY, "unsupported"),
        SandboxError::Io(..) => {
            tracing::error!(error = %message, "sandbox file operation failed");
            return internal("the sandbox operation failed inside the service; it has been logged");
        }
    };
    ApiError::new(status, code, message)
}

fn exec_error(e: ExecError) -> ApiError {
    use StatusCode as S;
    let message = e.to_string();
    match e {
        ExecError::Unavailable(..) => {
            ApiError::new(S::SERVICE_UNAVAILABLE, "executor_unavailable", message)
        }
        ExecError::Context(ContextFailure::NotFound, m) => {
            ApiError::new(S::NOT_FOUND, "context_not_found", m)
        }
        ExecError::Context(ContextFailure::Lost, m) => ApiError::new(S::GONE, "context_lost", m),
        ExecError::DiskFull(..) => ApiError::new(S::PAYLOAD_TOO_LARGE, "too_large", message),
        ExecError::NoUid(..) => {
            ApiError::new(S::SERVICE_UNAVAILABLE, "sandbox_uids_exhausted", message)
                .retry_after(Some(5))
        }
        other => {
            tracing::error!(error = %other, "run failed inside the service");
            internal("the service failed to run this request; it has been logged, retry or contact the operator")
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
