//! Schema migrations, numbered by SQLite's `user_version` pragma: migration `i` takes the file
//! from version `i` to `i + 1` inside one transaction. Append new steps; never edit old ones.

use std::path::Path;

use rusqlite::Connection;

use super::StoreError;

const MIGRATIONS: &[&str] = &[
    // 0 -> 1: teams, keys, sandboxes and the run audit log. Times are Unix seconds.
    r#"
    CREATE TABLE teams (
        id          INTEGER PRIMARY KEY,
        name        TEXT NOT NULL UNIQUE,
        created_at  INTEGER NOT NULL
    );
    CREATE TABLE api_keys (
        id          INTEGER PRIMARY KEY,
        team_id     INTEGER NOT NULL REFERENCES teams (id),
        prefix      TEXT NOT NULL UNIQUE,
        hash        BLOB NOT NULL,
        created_at  INTEGER NOT NULL,
        revoked_at  INTEGER
    );
    CREATE TABLE sandboxes (
        id                    TEXT PRIMARY KEY,
        team_id               INTEGER NOT NULL REFERENCES teams (id),
        executor              TEXT NOT NULL,
        policy                TEXT NOT NULL,
        state                 TEXT NOT NULL,
        metadata_json         TEXT NOT NULL DEFAULT '{}',
        env_json              TEXT NOT NULL DEFAULT '{}',
        created_at            INTEGER NOT NULL,
        expires_at            INTEGER NOT NULL,
        last_used_at          INTEGER NOT NULL,
        idle_timeout_seconds  INTEGER
    );
    CREATE INDEX sandboxes_by_team ON sandboxes (team_id);
    -- The audit log outlives sandboxes, so sandbox_id is not a foreign key.
    CREATE TABLE runs (
        id                 TEXT PRIMARY KEY,
        team_id            INTEGER REFERENCES teams (id),
        sandbox_id         TEXT,
        language           TEXT NOT NULL,
        executor           TEXT NOT NULL,
        policy             TEXT NOT NULL,
        status             TEXT NOT NULL,
        wall_ms            INTEGER NOT NULL,
        cpu_ms             INTEGER,
        peak_memory_bytes  INTEGER,
        code               TEXT,
        created_at         INTEGER NOT NULL
    );
    CREATE INDEX runs_by_team ON runs (team_id, created_at);
    "#,
    // 1 -> 2: a sandbox's own TTL, which a keepalive without one restarts.
    r#"
    ALTER TABLE sandboxes ADD COLUMN ttl_seconds INTEGER;
    "#,
    // 2 -> 3: agent runs, each kept as its API view (JSON) once it has ended.
    r#"
    CREATE TABLE agent_runs (
        id          TEXT PRIMARY KEY,
        team_id     INTEGER NOT NULL REFERENCES teams (id),
        state       TEXT NOT NULL,
        view_json   TEXT NOT NULL,
        created_at  INTEGER NOT NULL,
        updated_at  INTEGER NOT NULL
    );
    CREATE INDEX agent_runs_by_team ON agent_runs (team_id, created_at);
    "#,
    // 3 -> 4: Judge0-compatible submissions, kept as their JSON until they expire.
    r#"
    CREATE TABLE judge0_submissions (
        token       TEXT PRIMARY KEY,
        team_id     INTEGER NOT NULL REFERENCES teams (id),
        pending     INTEGER NOT NULL,
        view_json   TEXT NOT NULL,
        created_at  INTEGER NOT NULL,
        expires_at  INTEGER NOT NULL
    );
    CREATE INDEX judge0_submissions_by_expiry ON judge0_submissions (expires_at);
    "#,
    // 4 -> 5: a finished run's result (JSON, its output in `output_encoding`) for
    // `GET /v1/runs/{id}`, kept for `runs.result_retention_seconds`.
    r#"
    CREATE TABLE run_results (
        id               TEXT PRIMARY KEY,
        team_id          INTEGER NOT NULL REFERENCES teams (id),
        output_encoding  TEXT NOT NULL,
        result_json      TEXT NOT NULL,
        finished_at      INTEGER NOT NULL
    );
    CREATE INDEX run_results_by_age ON run_results (finished_at);
    "#,
];

/// The schema version this build writes.
pub const VERSION: i64 = MIGRATIONS.len() as i64;

pub fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    let version =
        |conn: &Connection| conn.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0));
    let found = version(conn).map_err(|source| StoreError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    if found > VERSION {
        return Err(StoreError::TooNew {
            path: path.to_path_buf(),
            found,
            known: VERSION,
        });
    }
    for (from, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let err = |source| StoreError::Migrate {
            path: path.to_path_buf(),
            from: from as i64,
            source,
        };
        // IMMEDIATE takes the write lock first, so two processes opening a new file at once
        // cannot both run the same step; the loser re-reads the version after waiting.
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(err)?;
        if version(&tx).map_err(err)? > from as i64 {
            continue;
        }
        tx.execute_batch(sql).map_err(err)?;
        tx.pragma_update(None, "user_version", from as i64 + 1)
            .map_err(err)?;
        tx.commit().map_err(err)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_file_reaches_the_latest_version_and_a_newer_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let mut conn = Connection::open(&path).unwrap();
        migrate(&mut conn, &path).unwrap();
        migrate(&mut conn, &path).unwrap();
        let v: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, VERSION);
        conn.pragma_update(None, "user_version", VERSION + 1)
            .unwrap();
        let err = migrate(&mut conn, &path).unwrap_err();
        assert!(
            err.to_string().contains("newer than this execbox knows"),
            "{err}"
        );
    }
}
