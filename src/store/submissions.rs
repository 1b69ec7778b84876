//! The judge0_submissions table: a Judge0-compatible submission as its JSON, looked up by token
//! and team, until it expires (`compat.judge0_retention_seconds` after it was created). An
//! expired row is never answered, and the sweep deletes it. One still pending when the service
//! stopped is handed back at the next start to be ended.

use rusqlite::{params, OptionalExtension};

use super::{now, Store, StoreError};

impl Store {
    /// Insert or replace a submission.
    pub fn save_submission(
        &self,
        token: &str,
        team_id: i64,
        pending: bool,
        view: &serde_json::Value,
        created_at: i64,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        self.conn()
            .execute(
                "INSERT INTO judge0_submissions (token, team_id, pending, view_json, created_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (token) DO UPDATE SET pending = excluded.pending, view_json = excluded.view_json",
                params![token, team_id, pending, view.to_string(), created_at, expires_at],
            )
            .map_err(|source| StoreError::Query { what: "saving a submission", source })?;
        Ok(())
    }

    /// A team's submissions by token, in the order asked; `None` for a token that is unknown,
    /// another team's or expired.
    pub fn submissions(
        &self,
        team_id: i64,
        tokens: &[&str],
    ) -> Result<Vec<Option<serde_json::Value>>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached("SELECT view_json FROM judge0_submissions WHERE token = ?1 AND team_id = ?2 AND expires_at > ?3")
            .map_err(|source| StoreError::Query { what: "reading a submission", source })?;
        let now = now();
        tokens
            .iter()
            .map(|token| {
                let text: Option<String> = stmt
                    .query_row(params![token, team_id, now], |r| r.get(0))
                    .optional()
                    .map_err(|source| StoreError::Query {
                        what: "reading a submission",
                        source,
                    })?;
                Ok(text.and_then(|t| serde_json::from_str(&t).ok()))
            })
            .collect()
    }

    /// Delete the submissions whose retention has passed; returns how many.
    pub fn sweep_submissions(&self) -> Result<usize, StoreError> {
        self.conn()
            .execute(
                "DELETE FROM judge0_submissions WHERE expires_at <= ?1",
                params![now()],
            )
            .map_err(|source| StoreError::Query {
                what: "sweeping expired submissions",
                source,
            })
    }

    /// Submissions saved as pending: at start, those of a service that is gone, as (token,
    /// team, view, created_at, expires_at).
    #[allow(clippy::type_complexity)]
    pub fn pending_submissions(
        &self,
    ) -> Result<Vec<(String, i64, serde_json::Value, i64, i64)>, StoreError> {
        let conn = self.conn();
        let err = |source| StoreError::Query {
            what: "listing pending submissions",
            source,
        };
        let mut stmt = conn
            .prepare("SELECT token, team_id, view_json, created_at, expires_at FROM judge0_submissions WHERE pending = 1")
            .map_err(err)?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get(1)?,
                    r.get::<_, String>(2)?,
                    r.get(3)?,
                    r.get(4)?,
                ))
            })
            .and_then(|rs| rs.collect::<Result<Vec<_>, _>>())
            .map_err(err)?;
        Ok(rows
            .into_iter()
            .filter_map(|(t, team, v, c, e)| Some((t, team, serde_json::from_str(&v).ok()?, c, e)))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_submission_is_read_by_its_team_until_it_expires_then_swept() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_in(dir.path()).unwrap();
        let a = store.ensure_team("a").unwrap();
        let b = store.ensure_team("b").unwrap();
        let now = now();
        let view = serde_json::json!({"token": "t1"});
        store
            .save_submission("t1", a.id, true, &view, now, now + 60)
            .unwrap();
        store
            .save_submission("t2", a.id, false, &view, now - 120, now - 60)
            .unwrap();
        assert_eq!(
            store.submissions(a.id, &["t1", "t2", "t3"]).unwrap(),
            vec![Some(view.clone()), None, None]
        );
        assert_eq!(store.submissions(b.id, &["t1"]).unwrap(), vec![None]);
        let pending = store.pending_submissions().unwrap();
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].0, "t1");
        store
            .save_submission("t1", a.id, false, &view, now, now + 60)
            .unwrap();
        assert!(store.pending_submissions().unwrap().is_empty());
        assert_eq!(store.sweep_submissions().unwrap(), 1);
        assert_eq!(store.sweep_submissions().unwrap(), 0);
        assert_eq!(store.submissions(a.id, &["t1"]).unwrap(), vec![Some(view)]);
    }
}
