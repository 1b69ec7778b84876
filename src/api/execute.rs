//! `POST /v1/execute`: validate, admit, run on the chosen executor, answer the result.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use tracing::Instrument;

use super::metrics::{ExecutorLabel, RunLabels};
use super::{ApiError, AppState};
use crate::exec::request::ExecuteRequest;
use crate::exec::RunResult;

pub async fn execute(
    State(state): State<Arc<AppState>>,
    body: Result<Json<ExecuteRequest>, JsonRejection>,
) -> Result<Json<RunResult>, ApiError> {
    let Json(req) = body?;
    let id = uuid::Uuid::new_v4().to_string();
    let (job, executor_name) = req.into_job(id.clone(), &state.policies, &state.runtimes)?;
    let executor = state.executors.get(executor_name.as_str()).cloned().ok_or_else(|| {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "executor_unavailable", format!("executor {executor_name} is not running in this service"))
    })?;
    let ready = executor.readiness();
    if !ready.ready {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "executor_unavailable",
            format!("the {executor_name} executor is not ready: {}; see GET /readyz", ready.detail),
        ));
    }
    if !executor.runtimes().contains_key(&job.runtime.language) {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "runtime_unavailable",
            format!("{} did not pass its start-up probe on the {executor_name} executor; see GET /v1/runtimes and /readyz", job.runtime.language),
        ));
    }

    let span = tracing::info_span!("run", run_id = %id, executor = %executor_name, policy = %job.policy, language = %job.runtime.language);
    let ticket = match state.admission.enter().await {
        Ok(t) => t,
        Err(_) => {
            state.metrics.rejected.inc();
            return Err(ApiError::overloaded(1));
        }
    };
    // The run is its own task: a client that hangs up does not cut a sandbox off mid-cleanup.
    let st = state.clone();
    let task = tokio::spawn(
        async move {
            let _ticket = ticket;
            let started = Instant::now();
            let result = executor.run(&job).await;
            let secs = started.elapsed().as_secs_f64();
            st.metrics.duration.get_or_create(&ExecutorLabel { executor: executor.name().into() }).observe(secs);
            if let Ok(r) = &result {
                st.metrics
                    .runs
                    .get_or_create(&RunLabels { status: r.status.as_str().into(), executor: r.executor.clone(), language: r.language.clone() })
                    .inc();
                tracing::info!(status = r.status.as_str(), wall_ms = r.usage.wall_time_ms, "run finished");
            }
            result
        }
        .instrument(span),
    );
    let result = task.await.map_err(|e| {
        tracing::error!(error = %e, "run task failed");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal_error", "the run failed inside the service; it has been logged")
    })??;
    Ok(Json(result))
}
