//! `GET /v1/runs/{id}`: a run of the caller's team, live or ended (`service::runs`).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::{Extension, Json};

use super::error::ErrorBody;
use super::{ApiError, AppState};
use crate::runs::RunRecordView;
use crate::service::runs;
use crate::store::Team;

#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
struct RunIdParam {
    /// A run's `id`, as its result (or the `Execbox-Run-Id` header of its answer) gave it.
    id: String,
}

#[utoipa::path(get, path = "/v1/runs/{id}", operation_id = "get_run", summary = "A run: its state while it runs, its result once it has ended", tag = "runs", params(RunIdParam),
    responses(
        (status = 200, description = "The run: `queued` or `running` while live; once ended, `finished` with the result as the run answered it (its `output_encoding`), `cancelled`, or `failed` with `error`. Kept for the service's `runs.result_retention_seconds` after it ended.", body = RunRecordView),
        (status = 404, description = "`run_not_found`: no run of this team has the id; `run_expired`: it ended longer ago than the service keeps results", body = ErrorBody),
        (status = 500, description = "`internal_error`", body = ErrorBody),
    ))]
pub async fn get(
    State(state): State<Arc<AppState>>,
    Extension(team): Extension<Team>,
    Path(id): Path<String>,
) -> Result<Json<RunRecordView>, ApiError> {
    Ok(Json(runs::get(&state, &team, &id).await?))
}
