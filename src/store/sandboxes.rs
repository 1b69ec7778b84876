//! The sandboxes table: one row per live sandbox. A deleted sandbox's row is removed; the audit
//! log keeps its runs.

use std::collections::BTreeMap;

use rusqlite::{params, OptionalExtension, Row};

use super::{Store, StoreError};

/// A sandbox as stored; the manager resolves its policy's limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxRow {
    pub id: String,
    pub team_id: i64,
    pub executor: String,
    pub policy: String,
    pub state: String,
    pub metadata: BTreeMap<String, String>,
    pub env: BTreeMap<String, String>,
    pub created_at: i64,
    pub expires_at: i64,
    pub last_used_at: i64,
    pub idle_timeout_seconds: Option<i64>,
    pub ttl_seconds: Option<i64>,
}

const COLUMNS: &str = "id, team_id, executor, policy, state, metadata_json, env_json, created_at, expires_at, last_used_at, idle_timeout_seconds, ttl_seconds";

fn from_row(r: &Row<'_>) -> rusqlite::Result<SandboxRow> {
    let json = |i: usize| -> rusqlite::Result<BTreeMap<String, String>> {
        let text: String = r.get(i)?;
        serde_json::from_str(&text).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e))
        })
    };
    Ok(SandboxRow {
        id: r.get(0)?,
        team_id: r.get(1)?,
        executor: r.get(2)?,
        policy: r.get(3)?,
        state: r.get(4)?,
        metadata: json(5)?,
        env: json(6)?,
        created_at: r.get(7)?,
        expires_at: r.get(8)?,
        last_used_at: r.get(9)?,
        idle_timeout_seconds: r.get(10)?,
        ttl_seconds: r.get(11)?,
    })
}

impl Store {
    pub fn insert_sandbox(&self, s: &SandboxRow) -> Result<(), StoreError> {
        let q = |source| StoreError::Query {
            what: "creating a sandbox",
            source,
        };
        self.conn()
            .execute(
                &format!("INSERT INTO sandboxes ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"),
                params![
                    s.id,
                    s.team_id,
                    s.executor,
                    s.policy,
                    s.state,
                    serde_json::to_string(&s.metadata).expect("a map serializes"),
                    serde_json::to_string(&s.env).expect("a map serializes"),
                    s.created_at,
                    s.expires_at,
                    s.last_used_at,
                    s.idle_timeout_seconds,
                    s.ttl_seconds
                ],
            )
            .map(|_| ())
            .map_err(q)
    }

    /// The sandbox `id` if it belongs to `team_id` (another team's is exactly as missing).
    pub fn sandbox(&self, team_id: i64, id: &str) -> Result<Option<SandboxRow>, StoreError> {
        self.conn()
            .query_row(
                &format!("SELECT {COLUMNS} FROM sandboxes WHERE id = ?1 AND team_id = ?2"),
                params![id, team_id],
                from_row,
            )
            .optional()
            .map_err(|source| StoreError::Query {
                what: "reading a sandbox",
                source,
            })
    }

    /// A team's sandboxes (every team's with None), oldest first.
    pub fn sandboxes(&self, team_id: Option<i64>) -> Result<Vec<SandboxRow>, StoreError> {
        let q = |source| StoreError::Query {
            what: "listing sandboxes",
            source,
        };
        let conn = self.conn();
        let mut stmt = conn
            .prepare(&format!("SELECT {COLUMNS} FROM sandboxes WHERE ?1 IS NULL OR team_id = ?1 ORDER BY created_at, id"))
            .map_err(q)?;
        let rows = stmt.query_map(params![team_id], from_row).map_err(q)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(q)
    }

    pub fn count_sandboxes(&self, team_id: i64) -> Result<usize, StoreError> {
        self.conn()
            .query_row(
                "SELECT COUNT(*) FROM sandboxes WHERE team_id = ?1",
                [team_id],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n as usize)
            .map_err(|source| StoreError::Query {
                what: "counting sandboxes",
                source,
            })
    }

    /// Record use (an exec or a file operation): pushes back the idle timeout.
    pub fn touch_sandbox(&self, id: &str, now: i64) -> Result<(), StoreError> {
        self.conn()
            .execute(
                "UPDATE sandboxes SET last_used_at = ?2 WHERE id = ?1",
                params![id, now],
            )
            .map(|_| ())
            .map_err(|source| StoreError::Query {
                what: "touching a sandbox",
                source,
            })
    }

    pub fn extend_sandbox(&self, id: &str, expires_at: i64, now: i64) -> Result<(), StoreError> {
        self.conn()
            .execute(
                "UPDATE sandboxes SET expires_at = ?2, last_used_at = ?3 WHERE id = ?1",
                params![id, expires_at, now],
            )
            .map(|_| ())
            .map_err(|source| StoreError::Query {
                what: "extending a sandbox",
                source,
            })
    }

    pub fn delete_sandbox(&self, id: &str) -> Result<bool, StoreError> {
        self.conn()
            .execute("DELETE FROM sandboxes WHERE id = ?1", [id])
            .map(|n| n > 0)
            .map_err(|source| StoreError::Query {
                what: "deleting a sandbox",
                source,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_round_trip_and_are_scoped_to_their_team() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("t.db")).unwrap();
        let (a, b) = (
            store.ensure_team("a").unwrap(),
            store.ensure_team("b").unwrap(),
        );
        let row = SandboxRow {
            id: "sb1".into(),
            team_id: a.id,
            executor: "local".into(),
            policy: "default".into(),
            state: "running".into(),
            metadata: BTreeMap::from([("k".into(), "v".into())]),
            env: BTreeMap::from([("E".into(), "1".into())]),
            created_at: 10,
            expires_at: 20,
            last_used_at: 10,
            idle_timeout_seconds: Some(5),
            ttl_seconds: Some(10),
        };
        store.insert_sandbox(&row).unwrap();
        assert_eq!(store.sandbox(a.id, "sb1").unwrap(), Some(row.clone()));
        assert_eq!(store.sandbox(b.id, "sb1").unwrap(), None);
        assert_eq!(store.count_sandboxes(a.id).unwrap(), 1);
        store.extend_sandbox("sb1", 99, 11).unwrap();
        assert_eq!(store.sandboxes(None).unwrap()[0].expires_at, 99);
        assert!(store.delete_sandbox("sb1").unwrap());
        assert!(store.sandboxes(Some(a.id)).unwrap().is_empty());
    }
}
