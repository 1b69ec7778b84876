//! Durable state: one embedded SQLite file, `<data-dir>/execbox.db`, holding teams, API keys,
//! sandboxes and the audit log of runs. The CLI (`execbox keys ...`) and the service open the
//! same file; WAL mode lets one write while the other reads.
//!
//! Concurrency choice: one `rusqlite::Connection` behind a `std::sync::Mutex`. Every call is a
//! short indexed statement (tens of microseconds), so one connection is not a bottleneck, and it
//! keeps SQLite's single-writer rule inside this process trivially true. The methods block, so
//! async callers go through [`Store::blocking`], which runs the closure on tokio's blocking pool
//! instead of stalling a runtime worker while another process holds the write lock.

mod agent_runs;
mod keys;
pub mod quota;
mod runs;
mod sandboxes;
mod schema;
mod submissions;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension};

pub use keys::{KeyInfo, KEY_PREFIX};
pub use quota::{QuotaExceeded, Quotas, RunPermit};
#[cfg(test)]
pub use runs::RunRow;
pub use runs::{EndedRun, RunRecord};
pub use sandboxes::SandboxRow;

/// The file name of the store inside the data dir.
pub const DB_FILE: &str = "execbox.db";

/// The team every request belongs to when the service runs without authentication.
pub const DEFAULT_TEAM: &str = "default";

/// Who is calling: every `/v1` request carries one (the key's team, or [`DEFAULT_TEAM`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Team {
    pub id: i64,
    pub name: String,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("creating the store's directory {path}: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("opening the store {path}: {source}")]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("migrating the store {path} from schema version {from}: {source}")]
    Migrate {
        path: PathBuf,
        from: i64,
        source: rusqlite::Error,
    },
    #[error("the store {path} has schema version {found}, newer than this execbox knows ({known}); upgrade execbox")]
    TooNew {
        path: PathBuf,
        found: i64,
        known: i64,
    },
    #[error("team name {0:?} must be 1-64 letters, digits, '-', '_' or '.'")]
    InvalidTeam(String),
    #[error(
        "no API key matches {0:?} (give its prefix, as shown by `execbox keys list`, or its id)"
    )]
    NoSuchKey(String),
    #[error("{what}: {source}")]
    Query {
        what: &'static str,
        source: rusqlite::Error,
    },
    #[error("reading random bytes for a new key: {0}")]
    Random(getrandom::Error),
    #[error("there is no store at {0}: is --data-dir (or EXECBOX_DATA_DIR) the service's data dir? A service creates it at its first start, and `execbox keys create` does too")]
    Missing(PathBuf),
}

/// A cheap handle to the store; clones share one connection.
#[derive(Clone)]
pub struct Store {
    conn: Arc<Mutex<Connection>>,
    path: PathBuf,
    keep_code: bool,
}

impl Store {
    /// Open (creating if needed) the store at `path` and bring its schema up to date.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let open_err = |source| StoreError::Open {
            path: path.to_path_buf(),
            source,
        };
        let mut conn = Connection::open(path).map_err(open_err)?;
        // Another process (the CLI, or a second reader) may hold the write lock briefly.
        conn.busy_timeout(Duration::from_secs(5))
            .map_err(open_err)?;
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(open_err)?;
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!(path = %path.display(), %mode, "the store could not switch to WAL mode");
        }
        conn.execute_batch("PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL;")
            .map_err(open_err)?;
        schema::migrate(&mut conn, path)?;
        Ok(Store {
            conn: Arc::new(Mutex::new(conn)),
            path: path.to_path_buf(),
            keep_code: false,
        })
    }

    /// The store of a data dir: `<data-dir>/execbox.db`.
    pub fn open_in(data_dir: &Path) -> Result<Store, StoreError> {
        Store::open(&data_dir.join(DB_FILE))
    }

    /// The store of a data dir that must already hold one: for commands that only read or change
    /// existing state, so a mistyped `--data-dir` fails instead of creating an empty store.
    pub fn open_existing_in(data_dir: &Path) -> Result<Store, StoreError> {
        let path = data_dir.join(DB_FILE);
        if !path.is_file() {
            return Err(StoreError::Missing(path));
        }
        Store::open(&path)
    }

    /// Keep each run's source code in the audit log (off by default: code can hold secrets).
    pub fn keep_code(mut self, keep: bool) -> Store {
        self.keep_code = keep;
        self
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Run blocking store calls from async code, on tokio's blocking pool.
    pub async fn blocking<T, F>(&self, f: F) -> T
    where
        F: FnOnce(&Store) -> T + Send + 'static,
        T: Send + 'static,
    {
        let store = self.clone();
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .expect("a store call panicked")
    }

    /// The team named `name`, created if it does not exist yet.
    pub fn ensure_team(&self, name: &str) -> Result<Team, StoreError> {
        validate_team_name(name)?;
        let conn = self.conn();
        conn.execute(
            "INSERT INTO teams (name, created_at) VALUES (?1, ?2) ON CONFLICT (name) DO NOTHING",
            rusqlite::params![name, now()],
        )
        .map_err(|source| StoreError::Query {
            what: "creating a team",
            source,
        })?;
        let id = conn
            .query_row("SELECT id FROM teams WHERE name = ?1", [name], |r| r.get(0))
            .map_err(|source| StoreError::Query {
                what: "reading a team",
                source,
            })?;
        Ok(Team {
            id,
            name: name.to_string(),
        })
    }

    /// The team named `name`, if it exists.
    pub fn team(&self, name: &str) -> Result<Option<Team>, StoreError> {
        self.conn()
            .query_row("SELECT id, name FROM teams WHERE name = ?1", [name], |r| {
                Ok(Team {
                    id: r.get(0)?,
                    name: r.get(1)?,
                })
            })
            .optional()
            .map_err(|source| StoreError::Query {
                what: "reading a team",
                source,
            })
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite half-written (statements are
        // atomic), so a poisoned lock is still safe to use.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn validate_team_name(name: &str) -> Result<(), StoreError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(StoreError::InvalidTeam(name.to_string()))
    }
}

/// Seconds since the Unix epoch: every time column holds this.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// `2026-01-31T12:00:00Z` for a time column (UTC, no dependency on a date crate).
pub fn rfc3339(secs: i64) -> String {
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Unix milliseconds: what times finer than the time columns' seconds are kept in.
pub fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// `2026-01-31T12:00:00.123Z` for Unix milliseconds.
pub fn rfc3339_millis(ms: i64) -> String {
    let secs = rfc3339(ms.div_euclid(1000));
    format!("{}.{:03}Z", &secs[..secs.len() - 1], ms.rem_euclid(1000))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_matches_known_dates() {
        assert_eq!(
            rfc3339_millis(1_767_225_599_007),
            "2025-12-31T23:59:59.007Z"
        );
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_767_225_599), "2025-12-31T23:59:59Z");
    }

    #[test]
    fn ensure_team_is_idempotent_and_validates_names() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_in(dir.path()).unwrap();
        let a = store.ensure_team("alpha").unwrap();
        assert_eq!(store.ensure_team("alpha").unwrap(), a);
        assert_ne!(store.ensure_team("beta").unwrap().id, a.id);
        assert_eq!(store.team("alpha").unwrap(), Some(a));
        assert_eq!(store.team("gamma").unwrap(), None);
        assert!(matches!(
            store.ensure_team("a b"),
            Err(StoreError::InvalidTeam(_))
        ));
        assert!(matches!(
            store.ensure_team(""),
            Err(StoreError::InvalidTeam(_))
        ));
    }

    #[test]
    fn the_file_is_in_wal_mode_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let team = Store::open_in(dir.path())
            .unwrap()
            .ensure_team("t")
            .unwrap();
        let store = Store::open_in(dir.path()).unwrap();
        assert_eq!(store.team("t").unwrap(), Some(team));
        let mode: String = store
            .conn()
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
    }
}
