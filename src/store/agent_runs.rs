//! The agent_runs table: a run's API view, written when it starts and again when it ends. A
//! run still going when the service stopped is marked failed at the next start.

use rusqlite::{params, OptionalExtension};

use super::{now, Store, StoreError};

impl Store {
    /// Insert or replace a run's view.
    pub fn save_agent_run(
        &self,
        id: &str,
        team_id: i64,
        state: &str,
        view: &serde_json::Value,
        created_at: i64,
    ) -> Result<(), StoreError> {
        self.conn()
            .execute(
                "INSERT INTO agent_runs (id, team_id, state, view_json, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (id) DO UPDATE SET state = excluded.state, view_json = excluded.view_json, updated_at = excluded.updated_at",
                params![id, team_id, state, view.to_string(), created_at, now()],
            )
            .map_err(|source| StoreError::Query { what: "saving an agent run", source })?;
        Ok(())
    }

    /// A team's run, as last saved.
    pub fn agent_run(
        &self,
        team_id: i64,
        id: &str,
    ) -> Result<Option<serde_json::Value>, StoreError> {
        let text: Option<String> = self
            .conn()
            .query_row(
                "SELECT view_json FROM agent_runs WHERE team_id = ?1 AND id = ?2",
                params![team_id, id],
                |r| r.get(0),
            )
            .optional()
            .map_err(|source| StoreError::Query {
                what: "reading an agent run",
                source,
            })?;
        Ok(text.and_then(|t| serde_json::from_str(&t).ok()))
    }

    /// A team's runs, newest first, at most `limit`.
    pub fn agent_runs(
        &self,
        team_id: i64,
        limit: usize,
    ) -> Result<Vec<serde_json::Value>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT view_json FROM agent_runs WHERE team_id = ?1 ORDER BY created_at DESC, rowid DESC LIMIT ?2")
            .map_err(|source| StoreError::Query { what: "listing agent runs", source })?;
        let rows = stmt
            .query_map(params![team_id, limit as i64], |r| r.get::<_, String>(0))
            .and_then(|rs| rs.collect::<Result<Vec<_>, _>>())
            .map_err(|source| StoreError::Query {
                what: "listing agent runs",
                source,
            })?;
        Ok(rows
            .iter()
            .filter_map(|t| serde_json::from_str(t).ok())
            .collect())
    }

    /// At start: runs saved as queued or running belonged to a service that is gone. Each
    /// becomes `failed` with `error` saying why; returns how many.
    pub fn fail_interrupted_agent_runs(&self, why: &str) -> Result<usize, StoreError> {
        let conn = self.conn();
        let rows: Vec<(String, String)> = {
            let mut stmt = conn
                .prepare(
                    "SELECT id, view_json FROM agent_runs WHERE state IN ('queued', 'running')",
                )
                .map_err(|source| StoreError::Query {
                    what: "listing interrupted agent runs",
                    source,
                })?;
            let rows = stmt
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .and_then(|rs| rs.collect::<Result<Vec<_>, _>>())
                .map_err(|source| StoreError::Query {
                    what: "listing interrupted agent runs",
                    source,
                })?;
            rows
        };
        for (id, text) in &rows {
            let mut view: serde_json::Value =
                serde_json::from_str(text).unwrap_or_else(|_| serde_json::json!({"id": id}));
            view["state"] = "failed".into();
            view["error"] = why.into();
            conn.execute("UPDATE agent_runs SET state = 'failed', view_json = ?2, updated_at = ?3 WHERE id = ?1", params![id, view.to_string(), now()])
                .map_err(|source| StoreError::Query { what: "failing an interrupted agent run", source })?;
        }
        Ok(rows.len())
    }
}
