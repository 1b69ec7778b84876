//! Agent runs for a team: [`start_run`] validates the request, resolves the model and its key,
//! gives the run a sandbox (its own, or the one named), and hands the loop a code runner that
//! goes through the sandbox call path (`runner.rs`); the rest reads, follows, approves and
//! cancels runs (`runs.rs` keeps them, live and saved).

mod runner;
pub mod runs;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use self::runner::SandboxRunner;
use self::runs::{ModelView, Prepared, Run, RunInfo, RunSummary, RunView};
use super::sandboxes::manager;
use super::{AppState, ServiceError};
use crate::agent::conversation::Decision;
use crate::agent::model::{guard, normalize_url, ClientSettings, KeyPolicy, ModelClient};
use crate::agent::request::AgentRequest;
use crate::exec::BoxFuture;
use crate::sandbox::manager::CreateSandbox;
use crate::store::Team;

/// Most runs one list answers.
pub const MAX_LIST: usize = 1000;

/// The client settings of the service's config.
fn client_settings(a: &crate::config::AgentSettings) -> ClientSettings {
    ClientSettings {
        timeout: Duration::from_secs(a.model_timeout_seconds.max(1)),
        max_retries: a.model_max_retries,
        backoff: Duration::from_millis(a.model_backoff_ms),
        ..ClientSettings::default()
    }
}

/// Validate a request, find or make its sandbox, and start the run for `team`; it is `queued`
/// until one of the service's agent slots is free.
pub async fn start_run(
    state: &Arc<AppState>,
    team: &Team,
    req: AgentRequest,
) -> Result<Arc<Run>, ServiceError> {
    let settings = &state.agent_settings;
    let config = req
        .loop_config(settings, &state.runtimes)
        .map_err(ServiceError::InvalidAgentRun)?;
    let policy = KeyPolicy {
        envs: settings.api_key_envs.clone(),
    };
    let resolved = req
        .model
        .resolve(&policy)
        .map_err(ServiceError::InvalidModel)?;
    let allowed = &settings.allowed_base_urls;
    let listed = allowed
        .iter()
        .any(|u| normalize_url(u) == resolved.base_url);
    if !allowed.is_empty() && !listed {
        return Err(ServiceError::InvalidModel(format!(
            "base_url {} is not one this service may call; allowed: {} (agent.allowed_base_urls)",
            resolved.base_url,
            allowed.join(", ")
        )));
    }
    // A service shared by teams keeps their base URLs off its own network.
    let public_only = state.auth.shared() && !settings.allow_private_base_urls && !listed;
    if public_only {
        guard::check(&resolved.base_url)
            .await
            .map_err(ServiceError::InvalidModel)?;
    }
    let model = ModelView {
        provider: resolved.provider,
        model: resolved.model.clone(),
        base_url: resolved.base_url.clone(),
    };
    let client = ModelClient::new(
        resolved,
        ClientSettings {
            public_only,
            ..client_settings(settings)
        },
    )
    .map_err(|e| ServiceError::InvalidModel(e.to_string()))?;
    let m = manager(state)?;
    let (sandbox, own) = match &req.sandbox_id {
        Some(id) => {
            if req.executor.is_some() || req.policy.is_some() {
                return Err(ServiceError::InvalidRequest(
                    "executor and policy are the sandbox's own; leave them out when giving sandbox_id".into(),
                ));
            }
            (m.get(team, id).await?, false)
        }
        None => {
            let ttl = (settings.max_wall_time_seconds + 600).min(state.max_sandbox_ttl_seconds);
            let create = CreateSandbox {
                executor: req.executor.clone(),
                policy: req.policy.clone(),
                ttl_seconds: ttl,
                idle_timeout_seconds: None,
                env: BTreeMap::new(),
                metadata: BTreeMap::from([("created_by".to_string(), "agent_run".to_string())]),
            };
            (m.create(team, create).await?, true)
        }
    };
    let info = RunInfo {
        model,
        executor: sandbox.executor.clone(),
        policy: sandbox.policy.clone(),
        sandbox_id: sandbox.id.clone(),
    };
    let release: Option<BoxFuture<'static, ()>> = own.then(|| {
        let (m, team, id) = (m.clone(), team.clone(), sandbox.id.clone());
        Box::pin(async move {
            if let Err(e) = m.delete(&team, &id).await {
                tracing::warn!(sandbox = %id, error = %e, "could not delete an agent run's sandbox");
            }
        }) as BoxFuture<'static, ()>
    });
    let runner = Arc::new(SandboxRunner::new(
        state.clone(),
        team.clone(),
        sandbox.id.clone(),
        req.stateful,
    ));
    Ok(state
        .agent
        .start(
            team.id,
            Prepared {
                config,
                client,
                runner,
                info,
                release,
            },
        )
        .await)
}

/// The team's run `id` with its messages: live, or as saved once ended.
pub async fn get(state: &AppState, team: &Team, id: &str) -> Result<RunView, ServiceError> {
    state
        .agent
        .view(team.id, id)
        .await?
        .ok_or_else(|| ServiceError::AgentRunNotFound(id.to_string()))
}

/// The team's runs, newest first, at most `limit` (1..=[`MAX_LIST`]), without messages.
pub async fn list(
    state: &AppState,
    team: &Team,
    limit: usize,
) -> Result<Vec<RunSummary>, ServiceError> {
    if !(1..=MAX_LIST).contains(&limit) {
        return Err(ServiceError::InvalidRequest(format!(
            "limit must be 1..={MAX_LIST}"
        )));
    }
    Ok(state.agent.list(team.id, limit).await?)
}

/// The team's run `id` while it is live (to follow it or answer its approvals); None once it
/// has ended (or when it is not the team's).
pub fn live(state: &AppState, team: &Team, id: &str) -> Option<Arc<Run>> {
    state.agent.live(team.id, id)
}

/// Cancel the run (any execution in flight is killed, its own sandbox deleted) and answer it
/// as it ended; a run that had already ended is answered as it is.
pub async fn cancel(state: &AppState, team: &Team, id: &str) -> Result<RunView, ServiceError> {
    state.agent.cancel(team.id, id).await;
    get(state, team, id).await
}

/// Answer the block the run holds for approval; the run as it is then.
pub async fn approve(
    state: &AppState,
    team: &Team,
    id: &str,
    decision: Decision,
) -> Result<RunSummary, ServiceError> {
    let Some(run) = live(state, team, id) else {
        return match state.agent.view(team.id, id).await? {
            Some(_) => Err(ServiceError::NoPendingApproval(id.to_string())),
            None => Err(ServiceError::AgentRunNotFound(id.to_string())),
        };
    };
    if !run.decide(decision) {
        return Err(ServiceError::NoPendingApproval(id.to_string()));
    }
    Ok(run.summary())
}
