//! The HTTP door, and the only place that speaks HTTP: routes, the error answer, SSE, the API
//! description. Each handler parses what it was given, calls the service (`crate::service`) for
//! the caller's team, and serializes or streams the answer; `error.rs` maps the service's errors
//! to statuses and codes in one place.

mod agent;
mod auth;
mod batch;
pub(crate) mod contexts;
mod error;
pub(crate) mod execute;
mod info;
pub mod json_stream;
mod openapi;
mod processes;
mod runs;
pub(crate) mod sandboxes;
pub mod serve;
mod team;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::handler::Handler;
use axum::http::{Method, StatusCode};
use axum::routing::{on, MethodFilter, MethodRouter};
use axum::Router;

pub use error::{ApiError, ErrorBody};

// The service's state, which every handler takes; visible to the handlers as `super::AppState`.
use crate::service::AppState;

/// One method on one path, and the handler that answers it.
pub struct Route {
    pub method: Method,
    /// In axum's syntax: `{*path}` takes the rest of the path.
    pub path: &'static str,
    handler: MethodRouter<Arc<AppState>>,
}

fn route<H: Handler<T, Arc<AppState>>, T: 'static>(
    method: Method,
    path: &'static str,
    handler: H,
) -> Route {
    let filter = MethodFilter::try_from(method.clone()).expect("a method axum can route");
    Route {
        method,
        path,
        handler: on(filter, handler),
    }
}

/// Every route the service answers. The router is built from this one list, and
/// `tests/api/openapi.rs` checks that `/openapi.json` describes exactly these.
pub fn routes() -> Vec<Route> {
    use Method as M;
    vec![
        route(M::POST, "/v1/execute", execute::execute),
        route(M::POST, "/v1/execute/batch", batch::batch),
        route(M::GET, "/v1/runs/{id}", runs::get),
        route(M::GET, "/v1/runtimes", info::runtimes),
        route(M::GET, "/v1/policies", info::policies),
        route(M::GET, "/v1/team", team::get),
        route(M::POST, "/v1/sandboxes", sandboxes::create),
        route(M::GET, "/v1/sandboxes", sandboxes::list),
        route(M::GET, "/v1/sandboxes/{id}", sandboxes::get),
        route(M::DELETE, "/v1/sandboxes/{id}", sandboxes::delete),
        route(
            M::POST,
            "/v1/sandboxes/{id}/keepalive",
            sandboxes::keepalive,
        ),
        route(M::POST, "/v1/sandboxes/{id}/execute", sandboxes::execute),
        route(M::GET, "/v1/sandboxes/{id}/files", sandboxes::list_files),
        route(M::POST, "/v1/sandboxes/{id}/contexts", contexts::create),
        route(M::GET, "/v1/sandboxes/{id}/contexts", contexts::list),
        route(
            M::DELETE,
            "/v1/sandboxes/{id}/contexts/{context_id}",
            contexts::delete,
        ),
        route(M::POST, "/v1/sandboxes/{id}/processes", processes::create),
        route(M::GET, "/v1/sandboxes/{id}/processes", processes::list),
        route(
            M::DELETE,
            "/v1/sandboxes/{id}/processes/{process_id}",
            processes::delete,
        ),
        route(
            M::GET,
            "/v1/sandboxes/{id}/processes/{process_id}/logs",
            processes::logs,
        ),
        route(
            M::GET,
            "/v1/sandboxes/{id}/files/{*path}",
            sandboxes::get_file,
        ),
        route(
            M::PUT,
            "/v1/sandboxes/{id}/files/{*path}",
            sandboxes::put_file,
        ),
        route(M::GET, "/v1/sandboxes/{id}/archive", sandboxes::get_archive),
        route(
            M::POST,
            "/v1/sandboxes/{id}/archive",
            sandboxes::post_archive,
        ),
        route(M::POST, "/v1/agent/runs", agent::start),
        route(M::GET, "/v1/agent/runs", agent::list),
        route(M::GET, "/v1/agent/runs/{id}", agent::get),
        route(M::DELETE, "/v1/agent/runs/{id}", agent::cancel),
        route(M::GET, "/v1/agent/runs/{id}/events", agent::events),
        route(M::POST, "/v1/agent/runs/{id}/approval", agent::approve),
        route(M::GET, "/healthz", info::healthz),
        route(M::GET, "/readyz", info::readyz),
        route(M::GET, "/metrics", info::metrics),
        route(M::GET, "/openapi.json", openapi::openapi_json),
    ]
}

pub fn router(state: Arc<AppState>, max_body_bytes: usize) -> Router {
    let document = openapi::Document::build(&state);
    // Routes on one path merge into one method router (two on the same method would panic).
    routes()
        .into_iter()
        .fold(Router::new(), |r, Route { path, handler, .. }| {
            r.route(path, handler)
        })
        .merge(crate::mcp::http::router(&state, max_body_bytes))
        // The compat doors follow their peers' contracts, not this API's description.
        .merge(crate::compat::router())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(axum::Extension(document))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_team,
        ))
        .with_state(state)
        .merge(crate::console::router())
}

async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such route; see README for the API (POST /v1/execute, GET /v1/runtimes, ...)",
    )
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not take that method; see README for the API",
    )
}
