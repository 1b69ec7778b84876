//! The sandbox manager: records in the store, team scoping (another team's sandbox is exactly
//! as missing as a deleted one), quotas, one call or file operation at a time per sandbox,
//! expiry, and reconciliation with what the backends still hold after a restart.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{Sandbox, SandboxBackend};
use crate::policy::PolicySet;
use crate::store::{self, SandboxRow, Store, StoreError, Team};

#[derive(Debug, thiserror::Error)]
pub enum ManagerError {
    #[error("no sandbox {0} (it may have expired or been deleted)")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Unavailable(String),
    #[error(transparent)]
    Quota(#[from] store::QuotaExceeded),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Backend(#[from] super::SandboxError),
}

/// `POST /v1/sandboxes`, validated by the API layer's serde.
#[derive(Debug, Clone, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSandbox {
    #[serde(default)]
    pub executor: Option<String>,
    #[serde(default)]
    pub policy: Option<String>,
    /// Seconds until the sandbox is deleted, 1..=`sandboxes.max_ttl_seconds`.
    #[serde(deserialize_with = "crate::wire::whole::number")]
    pub ttl_seconds: u64,
    /// Deleted sooner after this many seconds without a call or file operation,
    /// 1..=`sandboxes.max_ttl_seconds`.
    #[serde(default, deserialize_with = "crate::wire::whole::option")]
    pub idle_timeout_seconds: Option<u64>,
    /// The base environment of every call; a call's own `env` wins.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Free labels to filter `GET /v1/sandboxes` by.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

pub struct Manager {
    store: Store,
    policies: PolicySet,
    backends: HashMap<&'static str, Arc<dyn SandboxBackend>>,
    quotas: Arc<store::Quotas>,
    max_ttl_seconds: u64,
    /// One call or file operation at a time per sandbox.
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Creates count and insert under this lock, so two cannot both pass the quota.
    creating: tokio::sync::Mutex<()>,
}

impl Manager {
    pub fn new(
        store: Store,
        policies: PolicySet,
        backends: HashMap<&'static str, Arc<dyn SandboxBackend>>,
        quotas: Arc<store::Quotas>,
        max_ttl_seconds: u64,
    ) -> Manager {
        Manager {
            store,
            policies,
            backends,
            quotas,
            max_ttl_seconds,
            locks: Mutex::new(HashMap::new()),
            creating: tokio::sync::Mutex::new(()),
        }
    }

    pub fn backend(&self, executor: &str) -> Option<Arc<dyn SandboxBackend>> {
        self.backends.get(executor).cloned()
    }

    fn to_sandbox(&self, row: SandboxRow) -> Sandbox {
        let limits = self
            .policies
            .get(&row.policy)
            .map(|p| p.defaults)
            .unwrap_or_else(|| {
                self.policies
                    .get("default")
                    .expect("a default policy")
                    .defaults
            });
        Sandbox {
            id: row.id,
            team_id: row.team_id,
            executor: row.executor,
            policy: row.policy,
            state: row.state,
            metadata: row.metadata,
            env: row.env.into_iter().collect(),
            created_at: row.created_at,
            expires_at: row.expires_at,
            last_used_at: row.last_used_at,
            idle_timeout_seconds: row.idle_timeout_seconds.map(|s| s as u64),
            ttl_seconds: row.ttl_seconds.map(|s| s as u64),
            limits,
        }
    }

    pub async fn create(&self, team: &Team, req: CreateSandbox) -> Result<Sandbox, ManagerError> {
        let executor = req.executor.unwrap_or_else(|| "local".into());
        let Some(backend) = self.backends.get(executor.as_str()).cloned() else {
            let known: Vec<&str> = self.backends.keys().copied().collect();
            return Err(ManagerError::Invalid(format!(
                "unknown executor \"{executor}\" for sandboxes; available: {}",
                known.join(", ")
            )));
        };
        let policy_name = req.policy.unwrap_or_else(|| "default".into());
        let policy = self
            .policies
            .get(&policy_name)
            .ok_or_else(|| ManagerError::Invalid(format!("unknown policy \"{policy_name}\"")))?;
        if !policy.executors.contains(&executor) {
            return Err(ManagerError::Invalid(format!(
                "policy \"{policy_name}\" does not allow executor \"{executor}\""
            )));
        }
        if req.ttl_seconds == 0 || req.ttl_seconds > self.max_ttl_seconds {
            return Err(ManagerError::Invalid(format!(
                "ttl_seconds must be 1..={} (sandboxes.max_ttl_seconds)",
                self.max_ttl_seconds
            )));
        }
        if req
            .idle_timeout_seconds
            .is_some_and(|s| s == 0 || s > self.max_ttl_seconds)
        {
            return Err(ManagerError::Invalid(format!(
                "idle_timeout_seconds must be 1..={} (sandboxes.max_ttl_seconds) when given",
                self.max_ttl_seconds
            )));
        }
        // Every call runs with this env, so it must pass a call's own rules.
        for (k, v) in &req.env {
            if !crate::exec::request::valid_env_name(k) || v.contains('\0') {
                return Err(ManagerError::Invalid(format!(
                    "env name \"{k}\" is not a valid variable name (not empty, no = or NUL, not starting with a digit), or its value has a NUL byte"
                )));
            }
        }
        let team_id = team.id;
        let _one_at_a_time = self.creating.lock().await;
        let current = self
            .store
            .blocking(move |s| s.count_sandboxes(team_id))
            .await?;
        if !self.quotas.sandboxes_allowed(team, current) {
            return Err(self.quotas.sandboxes_exceeded(team).into());
        }
        let now = store::now();
        let row = SandboxRow {
            id: format!("sb_{}", uuid::Uuid::new_v4().simple()),
            team_id,
            executor,
            policy: policy_name,
            state: "running".into(),
            metadata: req.metadata,
            env: req.env,
            created_at: now,
            expires_at: now + req.ttl_seconds as i64,
            last_used_at: now,
            idle_timeout_seconds: req.idle_timeout_seconds.map(|s| s as i64),
            ttl_seconds: Some(req.ttl_seconds as i64),
        };
        let sandbox = self.to_sandbox(row.clone());
        backend.create(&sandbox).await?;
        if let Err(e) = self.store.blocking(move |s| s.insert_sandbox(&row)).await {
            let _ = backend.destroy(&sandbox).await;
            return Err(e.into());
        }
        Ok(sandbox)
    }

    pub async fn get(&self, team: &Team, id: &str) -> Result<Sandbox, ManagerError> {
        let (team_id, key) = (team.id, id.to_string());
        let row = self
            .store
            .blocking(move |s| s.sandbox(team_id, &key))
            .await?;
        row.map(|r| self.to_sandbox(r))
            .ok_or_else(|| ManagerError::NotFound(id.to_string()))
    }

    /// A team's sandboxes whose metadata has every `filter` pair.
    pub async fn list(
        &self,
        team: &Team,
        filter: &BTreeMap<String, String>,
    ) -> Result<Vec<Sandbox>, ManagerError> {
        let team_id = team.id;
        let rows = self
            .store
            .blocking(move |s| s.sandboxes(Some(team_id)))
            .await?;
        Ok(rows
            .into_iter()
            .filter(|r| filter.iter().all(|(k, v)| r.metadata.get(k) == Some(v)))
            .map(|r| self.to_sandbox(r))
            .collect())
    }

    /// Exclusive use of a sandbox for one call or file operation; records the use.
    pub async fn use_sandbox(
        &self,
        team: &Team,
        id: &str,
    ) -> Result<(Sandbox, tokio::sync::OwnedMutexGuard<()>), ManagerError> {
        let sandbox = self.get(team, id).await?;
        let lock = self
            .locks
            .lock()
            .unwrap()
            .entry(sandbox.id.clone())
            .or_default()
            .clone();
        let guard = lock.lock_owned().await;
        // It may have been deleted while we waited.
        let sandbox = self.get(team, id).await?;
        let key = sandbox.id.clone();
        self.store
            .blocking(move |s| s.touch_sandbox(&key, store::now()))
            .await?;
        Ok((sandbox, guard))
    }

    pub async fn keepalive(
        &self,
        team: &Team,
        id: &str,
        ttl_seconds: Option<u64>,
    ) -> Result<Sandbox, ManagerError> {
        let sandbox = self.get(team, id).await?;
        let now = store::now();
        // Without one, the sandbox's own TTL starts again from now.
        let ttl = ttl_seconds.or(sandbox.ttl_seconds).unwrap_or(3600);
        if ttl == 0 || ttl > self.max_ttl_seconds {
            return Err(ManagerError::Invalid(format!(
                "ttl_seconds must be 1..={} (sandboxes.max_ttl_seconds)",
                self.max_ttl_seconds
            )));
        }
        let key = sandbox.id.clone();
        self.store
            .blocking(move |s| s.extend_sandbox(&key, now + ttl as i64, now))
            .await?;
        self.get(team, id).await
    }

    pub async fn delete(&self, team: &Team, id: &str) -> Result<(), ManagerError> {
        let (sandbox, _guard) = self.use_sandbox(team, id).await?;
        self.remove(&sandbox).await
    }

    async fn remove(&self, sandbox: &Sandbox) -> Result<(), ManagerError> {
        let key = sandbox.id.clone();
        self.store.blocking(move |s| s.delete_sandbox(&key)).await?;
        if let Some(b) = self.backends.get(sandbox.executor.as_str()) {
            b.destroy(sandbox).await?;
        }
        self.locks.lock().unwrap().remove(&sandbox.id);
        Ok(())
    }

    /// Delete sandboxes past their TTL or idle timeout (not while a call runs in them).
    pub async fn reap(&self) -> usize {
        let rows = match self.store.blocking(|s| s.sandboxes(None)).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "reaper could not list sandboxes");
                return 0;
            }
        };
        let now = store::now();
        let mut reaped = 0;
        for row in rows {
            let idle = row
                .idle_timeout_seconds
                .is_some_and(|t| now - row.last_used_at >= t);
            if now < row.expires_at && !idle {
                continue;
            }
            let lock = self
                .locks
                .lock()
                .unwrap()
                .entry(row.id.clone())
                .or_default()
                .clone();
            let Ok(_guard) = lock.try_lock_owned() else {
                continue;
            };
            let sandbox = self.to_sandbox(row);
            match self.remove(&sandbox).await {
                Ok(()) => {
                    reaped += 1;
                    tracing::info!(sandbox = %sandbox.id, "reaped an expired sandbox");
                }
                Err(e) => {
                    tracing::warn!(sandbox = %sandbox.id, error = %e, "could not reap a sandbox")
                }
            }
        }
        reaped
    }

    /// At start: what survived is reattached, records without resources are dropped, and
    /// resources without records are removed (by each backend).
    pub async fn reconcile(&self) -> Result<(), ManagerError> {
        let rows = self.store.blocking(|s| s.sandboxes(None)).await?;
        let all: Vec<Sandbox> = rows.into_iter().map(|r| self.to_sandbox(r)).collect();
        for (name, backend) in &self.backends {
            let known: Vec<Sandbox> = all
                .iter()
                .filter(|s| s.executor == *name)
                .cloned()
                .collect();
            for lost in backend.reconcile(&known).await {
                tracing::warn!(sandbox = %lost, executor = name, "sandbox's resources are gone; removing its record");
                self.store
                    .blocking(move |s| s.delete_sandbox(&lost))
                    .await?;
            }
        }
        Ok(())
    }

    /// Run the reaper every `every` until the process ends.
    pub fn spawn_reaper(self: &Arc<Self>, every: Duration) {
        let m = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                m.reap().await;
            }
        });
    }

    pub async fn shutdown(&self) {
        for b in self.backends.values() {
            b.shutdown().await;
        }
    }
}
