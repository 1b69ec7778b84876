//! A run as its team sees it by id (`GET /v1/runs/{id}`): live from the tracker while it is
//! queued or running, then its kept end (`crate::runs`).

use super::{AppState, ServiceError};
use crate::runs::{LookupError, RunRecordView};
use crate::store::Team;

/// The team's run `id`, live or ended.
pub async fn get(state: &AppState, team: &Team, id: &str) -> Result<RunRecordView, ServiceError> {
    state.runs.lookup(team, id).await.map_err(|e| match e {
        LookupError::NotFound(_) => ServiceError::RunNotFound(e.to_string()),
        LookupError::Expired { .. } => ServiceError::RunExpired(e.to_string()),
        LookupError::Store(s) => s.into(),
    })
}
