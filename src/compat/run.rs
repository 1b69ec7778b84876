//! The one seam between the compat doors and the run path: the same validation, team quota,
//! admission and audit as `POST /v1/execute`. Everything the doors run goes through these three
//! calls, so moving the run path (out of `api/`) is an edit here only.

use std::sync::Arc;

use crate::api::execute::{self, Origin};
use crate::api::{ApiError, AppState};
use crate::exec::request::ExecuteRequest;
use crate::exec::{ExecError, Executor, Job, RunResult};
use crate::store::Team;

/// A run admitted and under way in a task of its own; it finishes (and is audited) even when
/// its handle is dropped.
pub type Running = tokio::task::JoinHandle<Result<RunResult, ExecError>>;

/// Validate a run into a job for a ready executor that has its runtime.
pub fn prepare(
    state: &AppState,
    req: ExecuteRequest,
) -> Result<(Job, Arc<dyn Executor>), ApiError> {
    execute::prepare(state, req)
}

/// Take one of the team's run slots and an admission slot (waiting in the queue while it must;
/// refused at once when the queue is full), then start the run.
pub async fn admit(
    state: Arc<AppState>,
    team: Team,
    job: Job,
    executor: Arc<dyn Executor>,
) -> Result<Running, ApiError> {
    let origin = Origin {
        team,
        sandbox_id: None,
    };
    execute::admit_and_spawn(&state, origin, job, executor).await
}

/// The run's result, or the error the service failed it with.
pub async fn finish(running: Running) -> Result<RunResult, ApiError> {
    execute::join(running).await
}
