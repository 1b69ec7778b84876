//! The audit log: one row per run that was admitted (team, sandbox, language, status, usage,
//! time), whatever its outcome: a result's status, or `internal_error`, `executor_unavailable`
//! or `cancelled` for a run that gave none. The source code is kept only when the store was
//! opened with `keep_code(true)`. Beside it, the results kept for `GET /v1/runs/{id}`
//! (`run_results`), removed once older than the service's retention.

use rusqlite::params;

use super::{now, Store, StoreError, Team};
use crate::exec::request::Encoding;
use crate::exec::{Job, RunResult};

/// One run to record. `code` is dropped unless the store keeps code.
#[derive(Debug, Clone)]
pub struct RunRecord {
    pub id: String,
    pub team_id: Option<i64>,
    pub sandbox_id: Option<String>,
    pub language: String,
    pub executor: String,
    pub policy: String,
    pub status: String,
    pub wall_ms: u64,
    pub cpu_ms: Option<u64>,
    pub peak_memory_bytes: Option<u64>,
    pub code: Option<String>,
}

impl RunRecord {
    /// The record of a finished run, as the API answered it.
    pub fn from_result(
        team: Option<&Team>,
        sandbox_id: Option<&str>,
        result: &RunResult,
        code: &str,
    ) -> RunRecord {
        RunRecord {
            id: result.id.clone(),
            team_id: team.map(|t| t.id),
            sandbox_id: sandbox_id.map(str::to_string),
            language: result.language.clone(),
            executor: result.executor.clone(),
            policy: result.policy.clone(),
            status: result.status.as_str().to_string(),
            wall_ms: result.usage.wall_time_ms,
            cpu_ms: Some(result.usage.cpu_time_ms),
            peak_memory_bytes: Some(result.usage.peak_memory_bytes),
            code: Some(code.to_string()),
        }
    }
}

impl RunRecord {
    /// The record of a run that gave no result: the service failed (`internal_error`,
    /// `executor_unavailable`) or the client cancelled it (`cancelled`). Usage is unknown.
    pub fn without_result(
        team: Option<&Team>,
        sandbox_id: Option<&str>,
        job: &Job,
        executor: &str,
        status: &str,
        wall_ms: u64,
    ) -> RunRecord {
        RunRecord {
            id: job.id.clone(),
            team_id: team.map(|t| t.id),
            sandbox_id: sandbox_id.map(str::to_string),
            language: job.runtime.language.clone(),
            executor: executor.to_string(),
            policy: job.policy.clone(),
            status: status.to_string(),
            wall_ms,
            cpu_ms: None,
            peak_memory_bytes: None,
            code: Some(job.code.clone()),
        }
    }
}

/// A recorded run, as read back. Nothing in the service reads the audit log yet (operators
/// query the SQLite file); the unit tests do.
#[cfg(test)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRow {
    pub id: String,
    pub team_id: Option<i64>,
    pub sandbox_id: Option<String>,
    pub language: String,
    pub executor: String,
    pub policy: String,
    pub status: String,
    pub wall_ms: i64,
    pub cpu_ms: Option<i64>,
    pub peak_memory_bytes: Option<i64>,
    pub code: Option<String>,
    pub created_at: i64,
}

/// An ended run of a team, as the audit log and (while kept) its result have it.
#[derive(Debug, Clone)]
pub struct EndedRun {
    pub sandbox_id: Option<String>,
    pub language: String,
    pub executor: String,
    pub policy: String,
    /// A result's status, or `internal_error`, `executor_unavailable`, `cancelled`.
    pub status: String,
    /// When it was recorded (its end), in seconds since the epoch.
    pub ended_at: i64,
    /// The kept result and the encoding of its output, while kept.
    pub result: Option<(RunResult, Encoding)>,
}

/// SQLite integers are signed: saturate rather than fail on absurd values.
fn sql_int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Store {
    pub fn record_run(&self, run: RunRecord) -> Result<(), StoreError> {
        let code = if self.keep_code { run.code } else { None };
        self.conn()
            .execute(
                "INSERT INTO runs (id, team_id, sandbox_id, language, executor, policy, status, wall_ms, cpu_ms, peak_memory_bytes, code, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                params![
                    run.id,
                    run.team_id,
                    run.sandbox_id,
                    run.language,
                    run.executor,
                    run.policy,
                    run.status,
                    sql_int(run.wall_ms),
                    run.cpu_ms.map(sql_int),
                    run.peak_memory_bytes.map(sql_int),
                    code,
                    now()
                ],
            )
            .map_err(|source| StoreError::Query { what: "recording a run", source })?;
        Ok(())
    }

    /// Keep a finished run's result (`result_json`, a [`RunResult`], its output as it was
    /// answered) for `GET /v1/runs/{id}`.
    pub fn keep_result(
        &self,
        team_id: i64,
        id: &str,
        encoding: Encoding,
        result_json: &str,
    ) -> Result<(), StoreError> {
        let err = |source| StoreError::Query {
            what: "keeping a run's result",
            source,
        };
        let encoding = match encoding {
            Encoding::Utf8 => "utf8",
            Encoding::Base64 => "base64",
        };
        self.conn()
            .execute(
                "INSERT OR REPLACE INTO run_results (id, team_id, output_encoding, result_json, finished_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![id, team_id, encoding, result_json, now()],
            )
            .map_err(err)?;
        Ok(())
    }

    /// The team's ended run `id` from the audit log, with its result while one is kept.
    pub fn ended_run(&self, team: &Team, id: &str) -> Result<Option<EndedRun>, StoreError> {
        let err = |source| StoreError::Query {
            what: "reading an ended run",
            source,
        };
        let conn = self.conn();
        let row = conn.query_row(
            "SELECT r.sandbox_id, r.language, r.executor, r.policy, r.status, r.created_at, k.output_encoding, k.result_json
             FROM runs r LEFT JOIN run_results k ON k.id = r.id AND k.team_id = r.team_id
             WHERE r.id = ?1 AND r.team_id = ?2",
            params![id, team.id],
            |r| {
                Ok((
                    EndedRun {
                        sandbox_id: r.get(0)?,
                        language: r.get(1)?,
                        executor: r.get(2)?,
                        policy: r.get(3)?,
                        status: r.get(4)?,
                        ended_at: r.get(5)?,
                        result: None,
                    },
                    r.get::<_, Option<String>>(6)?,
                    r.get::<_, Option<String>>(7)?,
                ))
            },
        );
        let (mut run, encoding, json) = match row {
            Ok(found) => found,
            Err(rusqlite::Error::QueryReturnedNoRows) => return Ok(None),
            Err(e) => return Err(err(e)),
        };
        if let (Some(encoding), Some(json)) = (encoding, json) {
            let encoding = if encoding == "base64" {
                Encoding::Base64
            } else {
                Encoding::Utf8
            };
            let result = serde_json::from_str(&json).map_err(|e| {
                err(rusqlite::Error::FromSqlConversionFailure(
                    7,
                    rusqlite::types::Type::Text,
                    Box::new(e),
                ))
            })?;
            run.result = Some((result, encoding));
        }
        Ok(Some(run))
    }

    /// Remove the results kept longer than `retention_seconds`; how many went.
    pub fn purge_results(&self, retention_seconds: u64) -> Result<usize, StoreError> {
        let before = now().saturating_sub(sql_int(retention_seconds));
        self.conn()
            .execute(
                "DELETE FROM run_results WHERE finished_at < ?1",
                params![before],
            )
            .map_err(|source| StoreError::Query {
                what: "removing expired run results",
                source,
            })
    }

    /// The team's latest runs, newest first.
    #[cfg(test)]
    pub fn recent_runs(&self, team: &Team, limit: usize) -> Result<Vec<RunRow>, StoreError> {
        let err = |source| StoreError::Query {
            what: "reading recent runs",
            source,
        };
        let conn = self.conn();
        let mut stmt = conn
            .prepare(
                "SELECT id, team_id, sandbox_id, language, executor, policy, status, wall_ms, cpu_ms, peak_memory_bytes, code, created_at
                 FROM runs WHERE team_id = ?1 ORDER BY created_at DESC, rowid DESC LIMIT ?2",
            )
            .map_err(err)?;
        let rows = stmt
            .query_map(params![team.id, sql_int(limit as u64)], |r| {
                Ok(RunRow {
                    id: r.get(0)?,
                    team_id: r.get(1)?,
                    sandbox_id: r.get(2)?,
                    language: r.get(3)?,
                    executor: r.get(4)?,
                    policy: r.get(5)?,
                    status: r.get(6)?,
                    wall_ms: r.get(7)?,
                    cpu_ms: r.get(8)?,
                    peak_memory_bytes: r.get(9)?,
                    code: r.get(10)?,
                    created_at: r.get(11)?,
                })
            })
            .map_err(err)?;
        rows.collect::<Result<_, _>>().map_err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, team: &Team) -> RunRecord {
        RunRecord {
            id: id.into(),
            team_id: Some(team.id),
            sandbox_id: None,
            language: "python".into(),
            executor: "local".into(),
            policy: "default".into(),
            status: "ok".into(),
            wall_ms: 12,
            cpu_ms: Some(8),
            peak_memory_bytes: Some(1 << 20),
            code: Some("print(1)".into()),
        }
    }

    #[test]
    fn runs_are_listed_per_team_newest_first_without_code_by_default() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_in(dir.path()).unwrap();
        let (a, b) = (
            store.ensure_team("a").unwrap(),
            store.ensure_team("b").unwrap(),
        );
        for id in ["r1", "r2", "r3"] {
            store.record_run(record(id, &a)).unwrap();
        }
        store.record_run(record("other", &b)).unwrap();
        let runs = store.recent_runs(&a, 2).unwrap();
        assert_eq!(
            runs.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
            ["r3", "r2"]
        );
        assert_eq!(
            (
                runs[0].wall_ms,
                runs[0].cpu_ms,
                runs[0].status.as_str(),
                runs[0].code.as_deref()
            ),
            (12, Some(8), "ok", None)
        );
    }

    #[test]
    fn code_is_kept_when_configured() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_in(dir.path()).unwrap().keep_code(true);
        let t = store.ensure_team("a").unwrap();
        store.record_run(record("r1", &t)).unwrap();
        assert_eq!(
            store.recent_runs(&t, 10).unwrap()[0].code.as_deref(),
            Some("print(1)")
        );
    }
}
