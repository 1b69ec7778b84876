//! The one seam between the compat doors and the run path (`service::run`): the same
//! validation, team quota, admission, run tracking and audit as `POST /v1/execute`. Everything
//! the doors run goes through these calls; what goes wrong is a `ServiceError`, which each door
//! turns into its peer's answer.

use std::sync::Arc;

use crate::exec::request::ExecuteRequest;
use crate::exec::RunResult;
use crate::service::run::{self, RunTask};
use crate::service::{AppState, ServiceError};
use crate::store::Team;

/// A run admitted and under way in a task of its own; it finishes (and is audited) even when
/// its handle is dropped.
pub type Running = RunTask;

pub use crate::service::run::Prepared;

/// Validate a run for `team` into a job for a ready executor that has its runtime; the door
/// may still adjust the job (`Prepared::job`) before it is admitted.
pub fn prepare(
    state: &AppState,
    team: &Team,
    req: ExecuteRequest,
) -> Result<Prepared, ServiceError> {
    run::prepare(state, team, req)
}

/// Take one of the team's run slots and an admission slot (waiting in the queue while it must;
/// refused at once when the queue is full), then start the run.
pub async fn admit(state: Arc<AppState>, run: Prepared) -> Result<Running, ServiceError> {
    run.start(&state).await
}

/// The run's result, or the error the service failed it with.
pub async fn finish(running: Running) -> Result<RunResult, ServiceError> {
    running.outcome().await
}
