//! Which team the caller acts as, and how much of each of its quotas it uses now.

use serde::Serialize;

use super::auth::Auth;
use super::{AppState, ServiceError};
use crate::store::Team;

#[derive(Serialize, utoipa::ToSchema)]
pub struct TeamView {
    /// The team's name (`default` under `auth = "none"`).
    pub name: String,
    /// `none` or `api-key`: how this service ties requests to teams.
    pub auth: &'static str,
    pub quotas: TeamQuotas,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct TeamQuotas {
    /// Runs and sandbox calls running or queued (`quotas.max_concurrent_runs_per_team`).
    pub concurrent_runs: QuotaUse,
    /// Sandboxes the team has (`quotas.max_sandboxes_per_team`).
    pub sandboxes: QuotaUse,
    /// Agent runs working now, not queued or waiting for approval
    /// (`agent.max_concurrent_runs_per_team`).
    pub agent_runs: QuotaUse,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct QuotaUse {
    pub used: usize,
    /// The quota; null when unlimited.
    #[schema(required = true)]
    pub limit: Option<usize>,
}

/// `team` and its use of each quota now.
pub async fn view(state: &AppState, team: &Team) -> Result<TeamView, ServiceError> {
    let id = team.id;
    let sandboxes = state.store.blocking(move |s| s.count_sandboxes(id)).await?;
    let unlimited_as_none = |n: usize| (n != 0).then_some(n);
    let (_, agent_held) = state.agent.slots().held(team.id);
    Ok(TeamView {
        name: team.name.clone(),
        auth: match state.auth {
            Auth::None { .. } => "none",
            Auth::ApiKey => "api-key",
        },
        quotas: TeamQuotas {
            concurrent_runs: QuotaUse {
                used: state.quotas.runs_in_flight(team),
                limit: unlimited_as_none(state.quotas.max_runs()),
            },
            sandboxes: QuotaUse {
                used: sandboxes,
                limit: unlimited_as_none(state.quotas.max_sandboxes()),
            },
            agent_runs: QuotaUse {
                used: agent_held,
                limit: Some(state.agent.slots().per_team()),
            },
        },
    })
}
