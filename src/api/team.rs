//! `GET /v1/team`: which team the caller acts as, and how much of each of its quotas it uses
//! now (`service::team`), so a client (the web console) can show who it is and what is left.

use std::sync::Arc;

use super::{ApiError, AppState};
use crate::service::team::{self, TeamView};
use crate::store::Team;
use axum::extract::State;
use axum::{Extension, Json};

#[utoipa::path(get, path = "/v1/team", operation_id = "get_team", summary = "The caller's team and its quota use", tag = "service",
    responses((status = 200, description = "The team this request acts as, and its use of each quota now", body = TeamView)))]
pub async fn get(
    State(state): State<Arc<AppState>>,
    Extension(team): Extension<Team>,
) -> Result<Json<TeamView>, ApiError> {
    Ok(Json(team::view(&state, &team).await?))
}
