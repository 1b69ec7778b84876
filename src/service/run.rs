//! The run path every run takes, whatever door it came through and wherever it runs (a
//! one-shot executor, a sandbox call, a context call): validated into a [`Prepared`] run, then
//! [`Prepared::start`]: the team's run quota, a run slot from admission (or a refusal), and the
//! run in a task of its own that records it in the audit log (and, while results are kept, its
//! result for `GET /v1/runs/{id}`: `crate::runs`) and the metrics.

use std::sync::Arc;
use std::time::Instant;

use tracing::Instrument;

use super::metrics::{ExecutorLabel, RunLabels};
use super::{AbortOnDrop, AppState, ServiceError};
use crate::exec::request::ExecuteRequest;
use crate::exec::{ExecError, Executor, Job, RunResult, StreamKind};
use crate::store::{RunRecord, Team};

/// A streamed run's output as it arrives (only what fits under the run's output cap).
pub type Output = tokio::sync::mpsc::UnboundedReceiver<(StreamKind, Vec<u8>)>;

/// A run validated and ready to be admitted: the job, the executor that runs it (for a
/// sandbox call, the call itself, which holds the sandbox's lock), and who it is for.
pub struct Prepared {
    pub job: Job,
    executor: Arc<dyn Executor>,
    team: Team,
    sandbox_id: Option<String>,
}

impl Prepared {
    pub(super) fn new(
        job: Job,
        executor: Arc<dyn Executor>,
        team: &Team,
        sandbox_id: Option<String>,
    ) -> Prepared {
        Prepared {
            job,
            executor,
            team: team.clone(),
            sandbox_id,
        }
    }

    /// The same run once more, under an id of its own (a door that runs one request several
    /// times: Judge0's `number_of_runs`).
    pub fn again(&self) -> Prepared {
        let mut job = self.job.clone();
        job.id = uuid::Uuid::new_v4().to_string();
        job.stream = None;
        Prepared {
            job,
            executor: self.executor.clone(),
            team: self.team.clone(),
            sandbox_id: self.sandbox_id.clone(),
        }
    }

    /// Ask for the program's output as it arrives (the result still holds all of it).
    pub fn stream(&mut self) -> Output {
        // Unbounded, but the executor sends only what fits under the output cap.
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        self.job.stream = Some(tx);
        rx
    }

    /// Take the team's run quota and a run slot (or refuse), then run in a task of its own.
    /// Dropping the [`RunTask`] does not stop the run; aborting it does (and the executors
    /// clean up on drop).
    pub async fn start(self, state: &Arc<AppState>) -> Result<RunTask, ServiceError> {
        let Prepared {
            job,
            executor,
            team,
            sandbox_id,
        } = self;
        let span = tracing::info_span!("run", run_id = %job.id, team = %team.name, executor = executor.name(), policy = %job.policy, language = %job.runtime.language);
        // The team's quota counts queued runs too, so it is taken before a slot is waited for.
        let permit = state.quotas.try_acquire_run(&team)?;
        // Visible to `GET /v1/runs/{id}` from here (queued) until its end is stored.
        let live = state
            .runs
            .track(&team, sandbox_id.as_deref(), &job, executor.name());
        let ticket = match state.admission.enter().await {
            Ok(t) => t,
            Err(_) => {
                state.metrics.rejected.inc();
                return Err(ServiceError::OverCapacity { retry_after: 1 });
            }
        };
        let st = state.clone();
        let task = async move {
            let (_ticket, _permit) = (ticket, permit);
            live.running();
            let started = Instant::now();
            // Until the run has an outcome, a drop of this task (a client that hung up on its
            // event stream, an agent run cancelled) is what the audit log records.
            let mut audit = AuditOnDrop {
                store: st.store.clone(),
                record: Some(RunRecord::without_result(
                    Some(&team),
                    sandbox_id.as_deref(),
                    &job,
                    executor.name(),
                    "cancelled",
                    0,
                )),
                started,
            };
            let result = executor.run(&job).await;
            st.metrics
                .duration
                .get_or_create(&ExecutorLabel {
                    executor: executor.name().into(),
                })
                .observe(started.elapsed().as_secs_f64());
            audit.record = None;
            let record = match &result {
                Ok(r) => {
                    let labels = RunLabels {
                        status: r.status.as_str().into(),
                        executor: r.executor.clone(),
                        language: r.language.clone(),
                    };
                    st.metrics.runs.get_or_create(&labels).inc();
                    tracing::info!(
                        status = r.status.as_str(),
                        wall_ms = r.usage.wall_time_ms,
                        "run finished"
                    );
                    RunRecord::from_result(Some(&team), sandbox_id.as_deref(), r, &job.code)
                }
                Err(e) => {
                    let status = if matches!(e, ExecError::Unavailable(..)) {
                        "executor_unavailable"
                    } else {
                        "internal_error"
                    };
                    let wall = started.elapsed().as_millis() as u64;
                    RunRecord::without_result(
                        Some(&team),
                        sandbox_id.as_deref(),
                        &job,
                        executor.name(),
                        status,
                        wall,
                    )
                }
            };
            let kept = result.as_ref().ok().map(|r| (r, job.output_encoding));
            if let Err(e) = st.runs.record(record, &team, kept).await {
                tracing::error!(error = %e, "could not write the run to the audit log");
            }
            // Shown as live until its end is stored, so a lookup never misses it.
            drop(live);
            result
        };
        Ok(RunTask(tokio::spawn(task.instrument(span))))
    }
}

/// Validate a request into a run for `team` on a ready executor that has the job's runtime.
pub fn prepare(
    state: &AppState,
    team: &Team,
    req: ExecuteRequest,
) -> Result<Prepared, ServiceError> {
    let id = uuid::Uuid::new_v4().to_string();
    let (job, executor_name) = req.into_job(id, &state.policies, &state.runtimes)?;
    let executor = ready_executor(state, &executor_name, &job.runtime.language)?;
    Ok(Prepared::new(job, executor, team, None))
}

/// Run a request for `team` to its end: [`prepare`], [`Prepared::start`],
/// [`RunTask::outcome`].
pub async fn execute(
    state: &Arc<AppState>,
    team: &Team,
    req: ExecuteRequest,
) -> Result<RunResult, ServiceError> {
    prepare(state, team, req)?
        .start(state)
        .await?
        .outcome()
        .await
}

/// The executor named `executor_name`, if it is ready and has `language`.
pub fn ready_executor(
    state: &AppState,
    executor_name: &str,
    language: &str,
) -> Result<Arc<dyn Executor>, ServiceError> {
    let executor = state.executors.get(executor_name).cloned().ok_or_else(|| {
        ServiceError::ExecutorUnavailable(format!(
            "executor {executor_name} is not running in this service"
        ))
    })?;
    let ready = executor.readiness();
    if !ready.ready {
        return Err(ServiceError::ExecutorUnavailable(format!(
            "the {executor_name} executor is not ready: {}; see GET /readyz",
            ready.detail
        )));
    }
    if !executor.runtimes().contains_key(language) {
        return Err(ServiceError::RuntimeUnavailable(format!(
            "{language} did not pass its start-up probe on the {executor_name} executor; see GET /v1/runtimes and /readyz"
        )));
    }
    Ok(executor)
}

/// A run admitted and running in its own task.
pub struct RunTask(tokio::task::JoinHandle<Result<RunResult, ExecError>>);

impl RunTask {
    /// The run's result. Dropping this future leaves the run going to its end (so a sandbox
    /// is never cut off mid-cleanup, and the audit log gets its outcome).
    pub async fn outcome(self) -> Result<RunResult, ServiceError> {
        Ok(self.0.await??)
    }

    /// The run's result; dropping this future kills the run (a cancelled agent run).
    pub async fn outcome_or_kill(self) -> Result<RunResult, ServiceError> {
        let _kill_on_drop = AbortOnDrop(self.0.abort_handle());
        self.outcome().await
    }

    /// Aborting it kills the run (a client that went away).
    pub fn abort_handle(&self) -> tokio::task::AbortHandle {
        self.0.abort_handle()
    }
}

/// Records a run as `cancelled` when its task is dropped before the run had an outcome.
struct AuditOnDrop {
    store: crate::store::Store,
    record: Option<RunRecord>,
    started: Instant,
}

impl Drop for AuditOnDrop {
    fn drop(&mut self) {
        let Some(mut record) = self.record.take() else {
            return;
        };
        record.wall_ms = self.started.elapsed().as_millis() as u64;
        tracing::info!(run_id = %record.id, "run cancelled");
        let store = self.store.clone();
        // Dropped inside the runtime (an abort); at shutdown there may be none left to ask.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn_blocking(move || {
                if let Err(e) = store.record_run(record) {
                    tracing::error!(error = %e, "could not write a cancelled run to the audit log");
                }
            });
        }
    }
}
