//! The only place that speaks HTTP and JSON: routes, the error answer, metrics.

pub mod auth;
mod error;
mod execute;
mod info;
pub mod metrics;
mod sandboxes;

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;

pub use error::ApiError;

use crate::admission::Admission;
use crate::exec::docker::DockerExecutor;
use crate::exec::local::LocalExecutor;
use crate::exec::runtime::RuntimeTable;
use crate::exec::Executor;
use crate::policy::PolicySet;
use crate::store::{Quotas, Store};

/// Everything the handlers share.
pub struct AppState {
    pub policies: PolicySet,
    pub runtimes: RuntimeTable,
    pub local: Arc<LocalExecutor>,
    pub docker: Option<Arc<DockerExecutor>>,
    pub executors: HashMap<&'static str, Arc<dyn Executor>>,
    pub admission: Arc<Admission>,
    pub metrics: metrics::Metrics,
    pub store: Store,
    pub auth: auth::Auth,
    pub quotas: Arc<Quotas>,
    pub sandboxes: Option<Arc<crate::sandbox::manager::Manager>>,
}

pub fn router(state: Arc<AppState>, max_body_bytes: usize) -> Router {
    Router::new()
        .route("/v1/execute", post(execute::execute))
        .route("/v1/runtimes", get(info::runtimes))
        .route("/v1/policies", get(info::policies))
        .route("/v1/sandboxes", post(sandboxes::create).get(sandboxes::list))
        .route("/v1/sandboxes/{id}", get(sandboxes::get).delete(sandboxes::delete))
        .route("/v1/sandboxes/{id}/keepalive", post(sandboxes::keepalive))
        .route("/v1/sandboxes/{id}/execute", post(sandboxes::execute))
        .route("/v1/sandboxes/{id}/files", get(sandboxes::list_files))
        .route("/v1/sandboxes/{id}/files/{*path}", get(sandboxes::get_file).put(sandboxes::put_file))
        .route("/v1/sandboxes/{id}/archive", get(sandboxes::get_archive).post(sandboxes::post_archive))
        .route("/healthz", get(info::healthz))
        .route("/readyz", get(info::readyz))
        .route("/metrics", get(info::metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(state.clone(), auth::require_team))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route; see README for the API (POST /v1/execute, GET /v1/runtimes, ...)")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "this route does not take that method; see README for the API")
}
