//! Many runs in one request, answered in request order — the shape reward computation in RL
//! training and benchmark harnesses need. Every item goes through the same validation, quota
//! and admission as a single run; an item that fails gets its own error in its place, and the
//! rest still run. Items start in order behind the batch's own concurrency, and the output
//! their unwritten results hold is bounded (`max_batch_output_bytes`).

use std::sync::Arc;

use serde::Deserialize;

use super::run::prepare;
use super::{AppState, ServiceError};
use crate::exec::request::ExecuteRequest;
use crate::exec::{Job, RunResult};
use crate::store::Team;
use crate::wire::object;

/// Most runs one batch may hold.
pub const MAX_BATCH: usize = 1000;
/// Most runs of one batch in flight at once.
pub const MAX_CONCURRENCY: usize = 64;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    /// The runs, each the body of `POST /v1/execute`.
    #[serde(deserialize_with = "object::vec")]
    #[schema(min_items = 1, max_items = 1000)]
    pub requests: Vec<ExecuteRequest>,
    /// Runs of this batch in flight at once, 1..=64 (default: the service's
    /// `max_concurrent_runs`, at most 64). Items beyond it wait inside the batch, not in the
    /// service's queue.
    #[serde(default, deserialize_with = "crate::wire::whole::option")]
    #[schema(minimum = 1, maximum = 64)]
    pub concurrency: Option<usize>,
}

/// One item's outcome, in request order. Dropping it (once written) frees its share of the
/// batch's output budget, which lets later items start.
pub struct ItemOutcome {
    pub outcome: Result<RunResult, ServiceError>,
    _share: Option<tokio::sync::OwnedSemaphorePermit>,
}

/// A started batch: its items in request order, as they finish.
pub struct Batch {
    items: tokio::sync::mpsc::UnboundedReceiver<Pending>,
}

impl Batch {
    /// The next item in request order, once it has finished; None after the last.
    pub async fn next(&mut self) -> Option<ItemOutcome> {
        Some(match self.items.recv().await? {
            Pending::Ready(e) => ItemOutcome {
                outcome: Err(e),
                _share: None,
            },
            Pending::Running(task, share) => ItemOutcome {
                outcome: task.await.unwrap_or_else(|e| Err(e.into())),
                _share: Some(share),
            },
        })
    }
}

/// Check a batch and start it for `team`. Items start in order (each waits for a turn and for
/// its share of the output budget); the earliest item not yet taken with [`Batch::next`]
/// always holds its share and runs, so the batch always moves on. Dropping the [`Batch`]
/// starts nothing more.
pub fn start(state: &Arc<AppState>, team: &Team, req: BatchRequest) -> Result<Batch, ServiceError> {
    if req.requests.is_empty() || req.requests.len() > MAX_BATCH {
        return Err(ServiceError::InvalidBatch(format!(
            "a batch holds 1 to {MAX_BATCH} requests; this one has {}",
            req.requests.len()
        )));
    }
    if req
        .concurrency
        .is_some_and(|c| c == 0 || c > MAX_CONCURRENCY)
    {
        return Err(ServiceError::InvalidBatch(format!(
            "concurrency must be 1..={MAX_CONCURRENCY}"
        )));
    }
    let concurrency = req
        .concurrency
        .unwrap_or(state.admission.slots())
        .clamp(1, MAX_CONCURRENCY);
    let budget = OutputBudget::new(state.max_batch_output_bytes);
    let (items_tx, items) = tokio::sync::mpsc::unbounded_channel::<Pending>();
    let gate = Arc::new(tokio::sync::Semaphore::new(concurrency));
    let (state, team) = (state.clone(), team.clone());
    tokio::spawn(async move {
        for r in req.requests {
            let turn = gate
                .clone()
                .acquire_owned()
                .await
                .expect("the batch's semaphore is never closed");
            let pending = match prepare(&state, &team, r) {
                Err(e) => Pending::Ready(e),
                Ok(mut run) => {
                    let share = budget.fit(&mut run.job);
                    let share = budget.take(share).await;
                    let state = state.clone();
                    let item = tokio::spawn(async move {
                        let _turn = turn;
                        run.start(&state).await?.outcome().await
                    });
                    Pending::Running(item, share)
                }
            };
            // The reader is gone when the client is: start nothing more.
            if items_tx.send(pending).is_err() {
                return;
            }
        }
    });
    Ok(Batch { items })
}

/// An item in the order of the request: refused already, or running with its share of the
/// output budget.
enum Pending {
    Ready(ServiceError),
    Running(
        tokio::task::JoinHandle<Result<RunResult, ServiceError>>,
        tokio::sync::OwnedSemaphorePermit,
    ),
}

/// The output (bytes of stdout and stderr, of the run and its compile step) that the results
/// of one batch not yet written may hold at once.
struct OutputBudget {
    bytes: u64,
    units: Arc<tokio::sync::Semaphore>,
}

/// The budget is counted in KiB, so that it fits a semaphore's permits.
const UNIT: u64 = 1024;

impl OutputBudget {
    fn new(bytes: u64) -> OutputBudget {
        let bytes = bytes.max(UNIT);
        OutputBudget {
            bytes,
            units: Arc::new(tokio::sync::Semaphore::new(
                (bytes / UNIT).min(u32::MAX as u64) as usize,
            )),
        }
    }

    /// The most output `job` can hold, after lowering its caps so that it fits the budget alone.
    fn fit(&self, job: &mut Job) -> u64 {
        let compiled = job.runtime.compile.is_some();
        let held = |j: &Job| {
            2 * j.limits.output_bytes
                + if compiled {
                    2 * j.compile_limits.output_bytes
                } else {
                    0
                }
        };
        if held(job) > self.bytes {
            let cap = self.bytes / if compiled { 4 } else { 2 };
            job.limits.output_bytes = job.limits.output_bytes.min(cap);
            job.compile_limits.output_bytes = job.compile_limits.output_bytes.min(cap);
        }
        held(job)
    }

    async fn take(&self, bytes: u64) -> tokio::sync::OwnedSemaphorePermit {
        let units = bytes.div_ceil(UNIT).min(self.bytes / UNIT) as u32;
        self.units
            .clone()
            .acquire_many_owned(units)
            .await
            .expect("the budget's semaphore is never closed")
    }
}
