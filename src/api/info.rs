//! What the service offers and how it is: runtimes, policies, liveness, readiness, metrics.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::AppState;

/// Only what passed its start-up probe is listed.
pub async fn runtimes(State(s): State<Arc<AppState>>) -> Json<Value> {
    let mut names: Vec<&&str> = s.executors.keys().collect();
    names.sort();
    let list: Vec<Value> = s
        .runtimes
        .runtimes
        .iter()
        .filter_map(|r| {
            let mut executors = Vec::new();
            let mut versions = serde_json::Map::new();
            let mut image = None;
            for name in &names {
                let e = &s.executors[**name];
                if let Some(v) = e.runtimes().get(&r.language) {
                    executors.push(name.to_string());
                    versions.insert(name.to_string(), json!(v));
                    image = image.or(e.image(&r.language));
                }
            }
            let version = versions.get("local").or(versions.values().next())?.clone();
            Some(json!({
                "language": r.language, "aliases": r.aliases, "version": version,
                "versions": versions, "executors": executors, "image": image,
            }))
        })
        .collect();
    Json(json!({ "runtimes": list }))
}

pub async fn policies(State(s): State<Arc<AppState>>) -> Json<Value> {
    let list: Vec<Value> = s.policies.policies.values().map(|p| serde_json::to_value(p).unwrap_or_default()).collect();
    Json(json!({ "policies": list }))
}

pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

pub async fn readyz(State(s): State<Arc<AppState>>) -> Response {
    let mut executors = serde_json::Map::new();
    // Ready while any executor can take runs; each one's own state is in the body.
    let mut ready = false;
    for (name, e) in &s.executors {
        let r = e.readiness();
        ready |= r.ready;
        executors.insert(name.to_string(), serde_json::to_value(r).unwrap_or_default());
    }
    if ready {
        Json(json!({"ready": true, "executors": executors})).into_response()
    } else {
        let body = json!({
            "error": {"code": "not_ready", "message": "no executor is ready; see executors for why"},
            "ready": false,
            "executors": executors,
        });
        (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
    }
}

pub async fn metrics(State(s): State<Arc<AppState>>) -> Response {
    s.metrics.in_flight.set(s.admission.running() as i64);
    s.metrics.queued.set(s.admission.queued() as i64);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], s.metrics.render()).into_response()
}
