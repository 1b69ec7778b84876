//! Doors that speak other code runners' APIs: Judge0 CE 1.13.1 under `/judge0` and Piston v2
//! under `/piston`. Each translates a request into an `ExecuteRequest`, runs it through the
//! same path as `POST /v1/execute` (`run.rs`: validation, team quota, admission, audit) and
//! translates the result back, with the peer's own field names, verdicts and error shapes.

pub mod judge0;
pub mod languages;
pub mod piston;
mod run;

use std::sync::Arc;

use axum::Router;

use crate::config::CompatSettings;
use crate::policy::PolicySet;
use crate::policy::KNOWN_EXECUTORS;
use crate::service::AppState;
use languages::Offered;

/// Check the doors' settings against the loaded policies at start: the executor must be known
/// and allowed by the policy. (The settings themselves are the service's `compat`.)
pub fn check(settings: &CompatSettings, policies: &PolicySet) -> Result<(), String> {
    if !KNOWN_EXECUTORS.contains(&settings.executor.as_str()) {
        return Err(format!(
            "compat.executor \"{}\" is not one of {}",
            settings.executor,
            KNOWN_EXECUTORS.join(", ")
        ));
    }
    let policy = policies.get(&settings.policy).ok_or_else(|| {
        format!(
            "compat.policy \"{}\" is not a loaded policy ({})",
            settings.policy,
            policies
                .policies
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        )
    })?;
    if !policy.executors.contains(&settings.executor) {
        return Err(format!(
            "compat.policy \"{}\" does not allow compat.executor \"{}\"; it allows {}",
            settings.policy,
            settings.executor,
            policy.executors.join(", ")
        ));
    }
    Ok(())
}

/// Judge0's configuration as this service applies it (`GET /judge0/config_info`): the compat
/// policy's maxima and the service's queue.
pub fn judge0_config(state: &AppState) -> judge0::config::ConfigInfo {
    let policy = state
        .policies
        .get(&state.compat.policy)
        .expect("compat.policy was checked at start");
    judge0::config::ConfigInfo::new(policy, state.admission.max_queued())
}

/// The languages the doors offer now: those whose runtime passed its probe on the compat
/// executor.
pub fn offered(state: &AppState) -> Vec<Offered> {
    match state.executors.get(state.compat.executor.as_str()) {
        Some(e) => languages::offered(&state.runtimes, e.as_ref()),
        None => Vec::new(),
    }
}

/// Both doors, mounted under `/judge0` and `/piston`.
pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .nest("/judge0", judge0::router())
        .nest("/piston", piston::router())
}

/// At start: end the Judge0 submissions an earlier service left pending, and sweep expired
/// ones now and then.
pub async fn start(state: &Arc<AppState>) -> anyhow::Result<()> {
    judge0::submissions::end_interrupted(state).await?;
    judge0::submissions::spawn_sweeper(state.clone());
    Ok(())
}
