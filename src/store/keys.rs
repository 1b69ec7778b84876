//! API keys: `exb_` + 64 hex digits (32 random bytes). The store keeps only the SHA-256 of a key
//! and its first 8 hex digits (the prefix, to find and list it); the key itself is shown once.
//!
//! Why SHA-256 and not a slow password hash: a slow hash (argon2, bcrypt) protects guessable,
//! low-entropy passwords. These keys are 256 random bits, so inverting the hash of one is as
//! hopeless as guessing the key itself, however fast the hash; a slow hash would only add
//! milliseconds of CPU to every request.

use rusqlite::{params, OptionalExtension};
use sha2::{Digest, Sha256};

use super::{now, Store, StoreError, Team};

/// Every key starts with this, so leaked keys are easy to recognise (and to scan for).
pub const KEY_PREFIX: &str = "exb_";
const RANDOM_BYTES: usize = 32;
const PREFIX_LEN: usize = 8;

/// A key as listed: never the key itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    pub id: i64,
    pub team: String,
    /// The first 8 hex digits after `exb_`; [`KeyInfo::display_prefix`] is what users see.
    pub prefix: String,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

impl KeyInfo {
    /// `exb_1a2b3c4d`: the beginning of the key, as a user would recognise it.
    pub fn display_prefix(&self) -> String {
        format!("{KEY_PREFIX}{}", self.prefix)
    }
}

fn hash(key: &str) -> Vec<u8> {
    Sha256::digest(key.as_bytes()).to_vec()
}

/// Compare without an early exit, so the time taken says nothing about where two hashes differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len()
        && std::hint::black_box(a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y))) == 0
}

/// The prefix of a well-formed key, or None for anything that cannot be one of ours.
fn prefix_of(key: &str) -> Option<&str> {
    let body = key.strip_prefix(KEY_PREFIX)?;
    let well_formed = body.len() == RANDOM_BYTES * 2
        && body.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    well_formed.then(|| &body[..PREFIX_LEN])
}

fn new_key() -> Result<String, StoreError> {
    let mut bytes = [0u8; RANDOM_BYTES];
    getrandom::fill(&mut bytes).map_err(StoreError::Random)?;
    let mut key = String::with_capacity(KEY_PREFIX.len() + RANDOM_BYTES * 2);
    key.push_str(KEY_PREFIX);
    for b in bytes {
        key.push_str(&format!("{b:02x}"));
    }
    Ok(key)
}

const SELECT_INFO: &str = "SELECT k.id, t.name, k.prefix, k.created_at, k.revoked_at FROM api_keys k JOIN teams t ON t.id = k.team_id";

fn info_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<KeyInfo> {
    Ok(KeyInfo {
        id: r.get(0)?,
        team: r.get(1)?,
        prefix: r.get(2)?,
        created_at: r.get(3)?,
        revoked_at: r.get(4)?,
    })
}

impl Store {
    /// A new key for `team` (created if new). The plaintext is returned once and never stored.
    pub fn create_key(&self, team: &str) -> Result<(KeyInfo, String), StoreError> {
        let team = self.ensure_team(team)?;
        let conn = self.conn();
        // Prefixes are unique so that a prefix names one key; a clash (1 in 4 billion per
        // existing key) just draws a new key.
        for _ in 0..8 {
            let key = new_key()?;
            let prefix = prefix_of(&key)
                .expect("a new key is well formed")
                .to_string();
            let created_at = now();
            match conn.execute(
                "INSERT INTO api_keys (team_id, prefix, hash, created_at) VALUES (?1, ?2, ?3, ?4)",
                params![team.id, prefix, hash(&key), created_at],
            ) {
                Ok(_) => {
                    let info = KeyInfo {
                        id: conn.last_insert_rowid(),
                        team: team.name,
                        prefix,
                        created_at,
                        revoked_at: None,
                    };
                    return Ok((info, key));
                }
                Err(rusqlite::Error::SqliteFailure(e, _))
                    if e.code == rusqlite::ErrorCode::ConstraintViolation =>
                {
                    continue
                }
                Err(source) => {
                    return Err(StoreError::Query {
                        what: "storing a new key",
                        source,
                    })
                }
            }
        }
        unreachable!("eight random 32-bit prefixes in a row clashed with existing keys")
    }

    /// Every key, revoked ones included, oldest first.
    pub fn list_keys(&self) -> Result<Vec<KeyInfo>, StoreError> {
        let err = |source| StoreError::Query {
            what: "listing keys",
            source,
        };
        let conn = self.conn();
        let mut stmt = conn
            .prepare(&format!("{SELECT_INFO} ORDER BY k.id"))
            .map_err(err)?;
        let rows = stmt.query_map([], info_row).map_err(err)?;
        rows.collect::<Result<_, _>>().map_err(err)
    }

    /// Revoke the key named by its prefix (`exb_1a2b3c4d` or `1a2b3c4d`) or its id. Revoking a
    /// revoked key keeps its first revocation time.
    pub fn revoke_key(&self, prefix_or_id: &str) -> Result<KeyInfo, StoreError> {
        let err = |source| StoreError::Query {
            what: "revoking a key",
            source,
        };
        let conn = self.conn();
        let wanted = prefix_or_id
            .strip_prefix(KEY_PREFIX)
            .unwrap_or(prefix_or_id);
        let by_prefix = conn
            .query_row(
                &format!("{SELECT_INFO} WHERE k.prefix = ?1"),
                [wanted],
                info_row,
            )
            .optional()
            .map_err(err)?;
        let found = match (by_prefix, wanted.parse::<i64>()) {
            (Some(k), _) => Some(k),
            (None, Ok(id)) => conn
                .query_row(&format!("{SELECT_INFO} WHERE k.id = ?1"), [id], info_row)
                .optional()
                .map_err(err)?,
            (None, Err(_)) => None,
        };
        let mut key = found.ok_or_else(|| StoreError::NoSuchKey(prefix_or_id.to_string()))?;
        if key.revoked_at.is_none() {
            let at = now();
            conn.execute(
                "UPDATE api_keys SET revoked_at = ?1 WHERE id = ?2 AND revoked_at IS NULL",
                params![at, key.id],
            )
            .map_err(err)?;
            key.revoked_at = Some(at);
        }
        Ok(key)
    }

    /// The team of a valid, unrevoked key; None for anything else (malformed, unknown, revoked).
    pub fn authenticate(&self, key: &str) -> Result<Option<Team>, StoreError> {
        let Some(prefix) = prefix_of(key) else {
            return Ok(None);
        };
        let found: Option<(Vec<u8>, Option<i64>, i64, String)> = self
            .conn()
            .query_row(
                "SELECT k.hash, k.revoked_at, t.id, t.name FROM api_keys k JOIN teams t ON t.id = k.team_id WHERE k.prefix = ?1",
                [prefix],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()
            .map_err(|source| StoreError::Query { what: "looking up a key", source })?;
        Ok(match found {
            Some((stored, None, id, name)) if constant_time_eq(&stored, &hash(key)) => {
                Some(Team { id, name })
            }
            _ => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_in(dir.path()).unwrap();
        (dir, store)
    }

    #[test]
    fn a_created_key_authenticates_as_its_team_until_revoked() {
        let (_d, store) = store();
        let (info, key) = store.create_key("alpha").unwrap();
        assert!(key.starts_with("exb_") && key.len() == 68, "{key}");
        assert_eq!(info.display_prefix(), key[..12]);
        let team = store.authenticate(&key).unwrap().expect("valid key");
        assert_eq!(team.name, "alpha");
        assert_eq!(
            store.revoke_key(&info.display_prefix()).unwrap().id,
            info.id
        );
        assert_eq!(store.authenticate(&key).unwrap(), None);
    }

    #[test]
    fn near_misses_do_not_authenticate() {
        let (_d, store) = store();
        let (_, key) = store.create_key("alpha").unwrap();
        let last = if key.ends_with('0') { "1" } else { "0" };
        let wrong_tail = format!("{}{last}", &key[..key.len() - 1]);
        for bad in [
            wrong_tail.as_str(),
            &key[..key.len() - 1],
            &key.to_uppercase(),
            "",
            "exb_",
            &format!("{key}0"),
        ] {
            assert_eq!(store.authenticate(bad).unwrap(), None, "{bad:?}");
        }
    }

    #[test]
    fn the_store_holds_the_hash_not_the_key() {
        let (_d, store) = store();
        let (_, key) = store.create_key("alpha").unwrap();
        let stored: Vec<u8> = store
            .conn()
            .query_row("SELECT hash FROM api_keys", [], |r| r.get(0))
            .unwrap();
        assert_eq!(stored, hash(&key));
        let db = std::fs::read(store.path()).unwrap_or_default();
        let wal = std::fs::read(store.path().with_extension("db-wal")).unwrap_or_default();
        let needle = &key.as_bytes()[12..];
        assert!(![db, wal]
            .iter()
            .any(|f| f.windows(needle.len()).any(|w| w == needle)));
    }

    #[test]
    fn list_shows_every_key_and_revoke_takes_prefix_or_id() {
        let (_d, store) = store();
        let (a, _) = store.create_key("alpha").unwrap();
        let (b, _) = store.create_key("beta").unwrap();
        assert_eq!(store.list_keys().unwrap(), vec![a.clone(), b.clone()]);
        let revoked = store.revoke_key(&b.id.to_string()).unwrap();
        assert!(revoked.revoked_at.is_some());
        assert_eq!(
            store.revoke_key(&b.prefix).unwrap().revoked_at,
            revoked.revoked_at
        );
        assert_eq!(store.list_keys().unwrap()[1].revoked_at, revoked.revoked_at);
        assert!(matches!(
            store.revoke_key("exb_nothere"),
            Err(StoreError::NoSuchKey(_))
        ));
        assert_eq!(store.list_keys().unwrap()[0].revoked_at, None);
    }

    #[test]
    fn constant_time_eq_compares_lengths_and_bytes() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
