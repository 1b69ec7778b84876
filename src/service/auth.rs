//! Who is calling: every request of every door is tied to a [`Team`] before the service acts
//! for it, from its API key under `auth = "api-key"`, or the built-in team under `auth = "none"`.

use super::{AppState, ServiceError};
use crate::store::Team;

/// How callers are tied to a team.
#[derive(Debug, Clone)]
pub enum Auth {
    /// No authentication (loopback listeners only): every caller is this team.
    None { team: Team },
    /// An API key, checked against the store on every request, so a key revoked from the CLI
    /// stops working at once.
    ApiKey,
}

impl Auth {
    /// Whether teams share this service (and so must be kept off each other and its network).
    pub fn shared(&self) -> bool {
        matches!(self, Auth::ApiKey)
    }
}

/// The team of a caller that presented `key` (or none).
pub async fn team_for(state: &AppState, key: Option<&str>) -> Result<Team, ServiceError> {
    match &state.auth {
        Auth::None { team } => Ok(team.clone()),
        Auth::ApiKey => {
            let key = key.ok_or(ServiceError::NoKey)?.to_string();
            state
                .store
                .blocking(move |s| s.authenticate(&key))
                .await?
                .ok_or(ServiceError::BadKey)
        }
    }
}
