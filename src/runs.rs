//! Runs as `GET /v1/runs/{id}` shows them to their team: a live one (queued, running) from
//! memory, an ended one from the audit log with its result while it is kept
//! (`runs.result_retention_seconds`); past that, the run is answered as expired.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::exec::request::Encoding;
use crate::exec::{Job, RunResult};
use crate::store::{now, rfc3339, EndedRun, RunRecord, Store, StoreError, Team};

/// Where a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    /// Admitted, waiting for a run slot.
    Queued,
    Running,
    /// It has a result (whatever its `status`).
    Finished,
    /// The client went away (or the service stopped) before it had a result.
    Cancelled,
    /// The service could not run it: `error` says why.
    Failed,
}

/// Why a `failed` run has no result.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RunFailure {
    /// `internal_error` or `executor_unavailable`, as the run's own answer had it.
    pub code: String,
    pub message: String,
}

/// The body of `GET /v1/runs/{id}` (named apart from the agent's `RunView` in the API description).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RunRecordView {
    pub id: String,
    pub state: RunState,
    pub language: String,
    pub executor: String,
    pub policy: String,
    /// The sandbox of a sandbox call; null for a one-shot run.
    #[schema(required = true)]
    pub sandbox_id: Option<String>,
    /// When it ended (RFC 3339); null while it is live.
    #[schema(required = true)]
    pub ended_at: Option<String>,
    /// The result as the run answered it, for a `finished` run.
    #[schema(required = true)]
    pub result: Option<RunResult>,
    /// How `result`'s `stdout` and `stderr` are given (the run's `output_encoding`); null
    /// without a result.
    #[schema(required = true)]
    pub output_encoding: Option<Encoding>,
    /// For a `failed` run.
    #[schema(required = true)]
    pub error: Option<RunFailure>,
}

#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    #[error("no run {0} for this team")]
    NotFound(String),
    #[error("run {id} ended more than {retention} s ago; its result is kept for {retention} s (runs.result_retention_seconds)")]
    Expired { id: String, retention: u64 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

struct Live {
    team_id: i64,
    running: bool,
    language: String,
    executor: String,
    policy: String,
    sandbox_id: Option<String>,
}

pub struct RunTracker {
    live: Mutex<HashMap<String, Live>>,
    store: Store,
    retention_seconds: u64,
}

/// A run this tracker shows as live until it is dropped (after its end is stored).
pub struct LiveRun {
    tracker: Arc<RunTracker>,
    id: String,
}

impl LiveRun {
    /// It has its run slot.
    pub fn running(&self) {
        if let Some(l) = self.tracker.live.lock().unwrap().get_mut(&self.id) {
            l.running = true;
        }
    }
}

impl Drop for LiveRun {
    fn drop(&mut self) {
        self.tracker.live.lock().unwrap().remove(&self.id);
    }
}

impl RunTracker {
    pub fn new(store: Store, retention_seconds: u64) -> Arc<RunTracker> {
        Arc::new(RunTracker {
            live: Mutex::new(HashMap::new()),
            store,
            retention_seconds,
        })
    }

    /// Show `job` as queued for `team` until the returned guard is dropped.
    pub fn track(
        self: &Arc<Self>,
        team: &Team,
        sandbox_id: Option<&str>,
        job: &Job,
        executor: &str,
    ) -> LiveRun {
        self.live.lock().unwrap().insert(
            job.id.clone(),
            Live {
                team_id: team.id,
                running: false,
                language: job.runtime.language.clone(),
                executor: executor.to_string(),
                policy: job.policy.clone(),
                sandbox_id: sandbox_id.map(str::to_string),
            },
        );
        LiveRun {
            tracker: self.clone(),
            id: job.id.clone(),
        }
    }

    /// Write an ended run's audit record and, when results are kept, its result.
    pub async fn record(
        &self,
        record: RunRecord,
        team: &Team,
        result: Option<(&RunResult, Encoding)>,
    ) -> Result<(), StoreError> {
        let kept = result.filter(|_| self.retention_seconds > 0).map(|(r, e)| {
            let json = serde_json::to_string(r).expect("a run result serializes");
            (r.id.clone(), e, json)
        });
        let team_id = team.id;
        self.store
            .blocking(move |s| {
                s.record_run(record)?;
                match kept {
                    Some((id, e, json)) => s.keep_result(team_id, &id, e, &json),
                    None => Ok(()),
                }
            })
            .await
    }

    /// Remove the results past retention (the lookup refuses them anyway).
    pub async fn purge(&self) -> Result<usize, StoreError> {
        let retention = self.retention_seconds;
        self.store
            .blocking(move |s| s.purge_results(retention))
            .await
    }

    pub fn retention_seconds(&self) -> u64 {
        self.retention_seconds
    }

    /// The team's run `id`: live, ended within retention, or the reason it is not shown.
    pub async fn lookup(&self, team: &Team, id: &str) -> Result<RunRecordView, LookupError> {
        if let Some(l) = self
            .live
            .lock()
            .unwrap()
            .get(id)
            .filter(|l| l.team_id == team.id)
        {
            return Ok(RunRecordView {
                id: id.to_string(),
                state: if l.running {
                    RunState::Running
                } else {
                    RunState::Queued
                },
                language: l.language.clone(),
                executor: l.executor.clone(),
                policy: l.policy.clone(),
                sandbox_id: l.sandbox_id.clone(),
                ended_at: None,
                result: None,
                output_encoding: None,
                error: None,
            });
        }
        let (t, key) = (team.clone(), id.to_string());
        let ended = self.store.blocking(move |s| s.ended_run(&t, &key)).await?;
        let Some(run) = ended else {
            return Err(LookupError::NotFound(id.to_string()));
        };
        let past = now().saturating_sub(run.ended_at) > self.retention_seconds as i64;
        let view = view(id, run);
        // A finished run whose result is no longer kept (or never was: retention 0).
        if past || (view.state == RunState::Finished && view.result.is_none()) {
            return Err(LookupError::Expired {
                id: id.to_string(),
                retention: self.retention_seconds,
            });
        }
        Ok(view)
    }
}

fn view(id: &str, run: EndedRun) -> RunRecordView {
    let (state, error) = match run.status.as_str() {
        "cancelled" => (RunState::Cancelled, None),
        code @ ("internal_error" | "executor_unavailable") => (
            RunState::Failed,
            Some(RunFailure {
                code: code.to_string(),
                message: match code {
                    "executor_unavailable" => format!(
                        "the {} executor was not available to run it; see GET /readyz",
                        run.executor
                    ),
                    _ => "the service failed while running it; it has been logged".to_string(),
                },
            }),
        ),
        _ => (RunState::Finished, None),
    };
    let (result, output_encoding) = match run.result {
        Some((r, e)) => (Some(r), Some(e)),
        None => (None, None),
    };
    RunRecordView {
        id: id.to_string(),
        state,
        language: run.language,
        executor: run.executor,
        policy: run.policy,
        sandbox_id: run.sandbox_id,
        ended_at: Some(rfc3339(run.ended_at)),
        result,
        output_encoding,
        error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::request::ExecuteRequest;
    use crate::exec::runtime::RuntimeTable;
    use crate::policy::PolicySet;

    fn job_of(id: &str) -> Job {
        let req: ExecuteRequest =
            serde_json::from_value(serde_json::json!({"language": "py", "code": ""})).unwrap();
        let (job, _) = req
            .into_job(
                id.into(),
                &PolicySet::embedded().unwrap(),
                &RuntimeTable::embedded(),
            )
            .unwrap();
        job
    }

    fn result(job: &Job) -> RunResult {
        let step = crate::exec::StepResult {
            status: crate::exec::Status::Ok,
            exit_code: Some(0),
            signal: None,
            stdout: b"\xffhi".to_vec(),
            stderr: Vec::new(),
            stdout_truncated: false,
            stderr_truncated: false,
            usage: Default::default(),
        };
        RunResult::from_step(job, "local", "Python 3".into(), None, step)
    }

    #[tokio::test]
    async fn a_run_is_queued_running_then_finished_for_its_team_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_in(dir.path()).unwrap();
        let (a, b) = (
            store.ensure_team("a").unwrap(),
            store.ensure_team("b").unwrap(),
        );
        let runs = RunTracker::new(store, 60);
        let mut job = job_of("r1");
        job.output_encoding = Encoding::Base64;
        let live = runs.track(&a, Some("sb_1"), &job, "local");
        let v = runs.lookup(&a, "r1").await.unwrap();
        assert_eq!(
            (v.state, v.sandbox_id.as_deref()),
            (RunState::Queued, Some("sb_1"))
        );
        live.running();
        assert_eq!(
            runs.lookup(&a, "r1").await.unwrap().state,
            RunState::Running
        );
        assert!(matches!(
            runs.lookup(&b, "r1").await,
            Err(LookupError::NotFound(_))
        ));
        let r = result(&job);
        let record = RunRecord::from_result(Some(&a), Some("sb_1"), &r, "");
        runs.record(record, &a, Some((&r, Encoding::Base64)))
            .await
            .unwrap();
        drop(live);
        let v = runs.lookup(&a, "r1").await.unwrap();
        assert_eq!(
            (
                v.state,
                v.output_encoding,
                v.result.as_ref().map(|r| r.stdout.as_str())
            ),
            (RunState::Finished, Some(Encoding::Base64), Some("/2hp"))
        );
        assert!(matches!(
            runs.lookup(&b, "r1").await,
            Err(LookupError::NotFound(_))
        ));
        assert!(matches!(
            runs.lookup(&a, "r2").await,
            Err(LookupError::NotFound(_))
        ));
    }

    #[tokio::test]
    async fn without_retention_a_finished_run_is_expired_and_a_failed_one_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_in(dir.path()).unwrap();
        let a = store.ensure_team("a").unwrap();
        let runs = RunTracker::new(store.clone(), 0);
        let job = job_of("r1");
        let r = result(&job);
        let record = RunRecord::from_result(Some(&a), None, &r, "");
        runs.record(record, &a, Some((&r, Encoding::Utf8)))
            .await
            .unwrap();
        assert!(matches!(
            runs.lookup(&a, "r1").await,
            Err(LookupError::Expired { retention: 0, .. })
        ));
        let kept = RunTracker::new(store, 60);
        let failed = RunRecord::without_result(
            Some(&a),
            None,
            &job_of("r2"),
            "docker",
            "executor_unavailable",
            3,
        );
        kept.record(failed, &a, None).await.unwrap();
        let v = kept.lookup(&a, "r2").await.unwrap();
        assert_eq!(v.state, RunState::Failed);
        assert_eq!(v.error.unwrap().code, "executor_unavailable");
        assert!(v.result.is_none() && v.ended_at.is_some());
    }
}
