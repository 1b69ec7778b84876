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

use crate::api::AppState;
use crate::config::CompatSettings;
use crate::exec::request::KNOWN_EXECUTORS;
use crate::policy::PolicySet;
use languages::Offered;

/// What the doors share, fixed at start.
#[derive(Debug, Clone)]
pub struct Compat {
    pub settings: CompatSettings,
    /// Judge0's configuration as this service applies it (`GET /judge0/config_info`).
    pub judge0: judge0::config::ConfigInfo,
}

impl Compat {
    /// Check the settings against the loaded policies: the executor must be known and allowed
    /// by the policy.
    pub fn new(
        settings: &CompatSettings,
        policies: &PolicySet,
        max_queue_size: usize,
    ) -> Result<Compat, String> {
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
        Ok(Compat {
            settings: settings.clone(),
            judge0: judge0::config::ConfigInfo::new(policy, max_queue_size),
        })
    }
}

/// The languages the doors offer now: those whose runtime passed its probe on the compat
/// executor.
pub fn offered(state: &AppState) -> Vec<Offered> {
    match state.executors.get(state.compat.settings.executor.as_str()) {
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
