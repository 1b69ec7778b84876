//! What the service offers and how it is (`service::info`): runtimes, policies, liveness,
//! readiness, metrics.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use super::error::ErrorDetail;
use super::AppState;
use crate::exec::Readiness;
use crate::policy::{Limits, Policy, MINIMUMS};
use crate::service::info::{self, RuntimeInfo};

#[derive(Serialize, utoipa::ToSchema)]
pub struct RuntimeList {
    pub runtimes: Vec<RuntimeInfo>,
}

/// Only what passed its start-up probe is listed.
#[utoipa::path(get, path = "/v1/runtimes", operation_id = "list_runtimes", summary = "List the languages that can run now", tag = "service",
    responses((status = 200, description = "The languages this service can run now", body = RuntimeList)))]
pub async fn runtimes(State(s): State<Arc<AppState>>) -> Json<RuntimeList> {
    Json(RuntimeList {
        runtimes: info::runtimes(&s),
    })
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct PolicyList {
    pub policies: Vec<Policy>,
    /// The least of each limit a run may ask for, whatever the policy or executor; a request
    /// below one is refused with `limit_below_minimum`.
    pub minimums: Limits,
}

#[utoipa::path(get, path = "/v1/policies", operation_id = "list_policies", summary = "List the resource policies", tag = "service",
    responses((status = 200, description = "Every policy, with its defaults and maxima, and the minimums of every limit", body = PolicyList)))]
pub async fn policies(State(s): State<Arc<AppState>>) -> Json<PolicyList> {
    Json(PolicyList {
        policies: s.policies.policies.values().cloned().collect(),
        minimums: MINIMUMS,
    })
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Health {
    /// Always `ok`.
    pub status: &'static str,
}

#[utoipa::path(get, path = "/healthz", operation_id = "healthz", summary = "Liveness", tag = "service",
    responses((status = 200, description = "The process is up", body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// `/readyz`: ready while any executor can take runs; each one's own state is in `executors`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ReadyBody {
    /// Only when not ready: `not_ready`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub error: Option<ErrorDetail>,
    pub ready: bool,
    pub executors: BTreeMap<String, Readiness>,
}

#[utoipa::path(get, path = "/readyz", operation_id = "readyz", summary = "Readiness, per executor", tag = "service",
    responses(
        (status = 200, description = "At least one executor can take runs", body = ReadyBody),
        (status = 503, description = "No executor is ready (`not_ready`); `executors` says why", body = ReadyBody),
    ))]
pub async fn readyz(State(s): State<Arc<AppState>>) -> Response {
    let executors = info::readiness(&s);
    if executors.values().any(|r| r.ready) {
        return Json(ReadyBody {
            error: None,
            ready: true,
            executors,
        })
        .into_response();
    }
    let error = ErrorDetail {
        code: "not_ready",
        message: "no executor is ready; see executors for why".into(),
    };
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(ReadyBody {
            error: Some(error),
            ready: false,
            executors,
        }),
    )
        .into_response()
}

#[utoipa::path(get, path = "/metrics", operation_id = "metrics", summary = "Prometheus metrics", tag = "service",
    responses((status = 200, description = "Prometheus text exposition format (version 0.0.4)", body = String, content_type = "text/plain")))]
pub async fn metrics(State(s): State<Arc<AppState>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        info::metrics(&s),
    )
        .into_response()
}
