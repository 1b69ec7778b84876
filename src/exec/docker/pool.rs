//! The warm pool: started containers per [`Shape`], taken once and never returned, refilled in
//! the background up to `per_shape`, with at most `max_total` idle containers overall. A shape
//! starts being kept warm the first time it is asked for (or when pre-warmed at start); the
//! least recently used shape gives way when too many are wanted.
//!
//! A container's uid is fixed when it is made (its tmpfs belongs to it), so every container,
//! idle or running, holds a uid lease from the service's allocator until it has been removed;
//! the pool only grows while uids are free, so `max_total` idle containers plus the runs fit in
//! the range.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bollard::Docker;

use super::container::{self, Shape};
use super::supervised::{self, RunDir};
use crate::exec::uids::{UidLease, Uids};
use crate::exec::ExecError;
use crate::supervisor::client::Supervisor;
use crate::supervisor::proto::{CallSpec, ProcLimits};

/// A started container, the uid its programs run as, and its supervisor (which has answered).
pub struct Warm {
    pub id: String,
    pub uid: UidLease,
    pub run_dir: RunDir,
    pub sup: Supervisor,
}

/// What every pool container mounts: the supervisor's binary, and a run dir of its own below
/// `run_root`.
#[derive(Debug, Clone)]
pub struct PoolMounts {
    pub binary: std::path::PathBuf,
    pub run_root: std::path::PathBuf,
    pub path: String,
}

/// What a new container runs before it is handed out: per image, the `warm` commands of the
/// runtimes it serves (`runtimes.toml`), in the environment runs get. A fresh container's
/// filesystem caches are cold, and its first interpreter start would pay for that on the run's
/// clock; in the pool it is paid in the background.
#[derive(Debug, Clone, Default)]
pub struct WarmUp {
    pub commands: HashMap<String, Vec<Vec<String>>>,
    pub env: Vec<(String, String)>,
}

/// How long a warm-up command may take before the container is handed out anyway.
const WARM_UP_WAIT: Duration = Duration::from_secs(10);

pub struct Pool {
    docker: Docker,
    instance: String,
    mounts: PoolMounts,
    warm_up: WarmUp,
    per_shape: usize,
    max_total: usize,
    uids: Arc<Uids>,
    state: Mutex<State>,
}

/// How long a run waits for a uid when every one is held.
const UID_WAIT: Duration = Duration::from_secs(10);

#[derive(Default)]
struct State {
    ready: HashMap<Shape, VecDeque<Warm>>,
    creating: HashMap<Shape, usize>,
    /// Shapes kept warm, most recently used last.
    wanted: Vec<Shape>,
    closed: bool,
}

impl State {
    fn idle_total(&self) -> usize {
        self.ready.values().map(VecDeque::len).sum::<usize>()
            + self.creating.values().sum::<usize>()
    }
}

impl Pool {
    pub fn new(
        docker: Docker,
        instance: String,
        per_shape: usize,
        max_total: usize,
        uids: Arc<Uids>,
        mounts: PoolMounts,
        warm_up: WarmUp,
    ) -> Arc<Pool> {
        Arc::new(Pool {
            docker,
            instance,
            mounts,
            warm_up,
            per_shape,
            max_total,
            uids,
            state: Mutex::new(State::default()),
        })
    }

    /// A started container of `shape`: from the pool when one is ready, else made now (with a
    /// uid, waiting a while for one when all are held). Either way the pool is topped up in the
    /// background.
    pub async fn take(self: &Arc<Self>, shape: &Shape) -> Result<Warm, ExecError> {
        let ready = {
            let mut st = self.state.lock().unwrap();
            st.wanted.retain(|s| s != shape);
            st.wanted.push(shape.clone());
            st.ready.get_mut(shape).and_then(VecDeque::pop_front)
        };
        self.evict_unwanted().await;
        self.refill(shape);
        match ready {
            Some(w) => Ok(w),
            None => {
                let uid = self.uids.acquire(UID_WAIT).await?;
                self.create_started(shape, uid)
                    .await
                    .map_err(|e| ExecError::Unavailable("docker".into(), e))
            }
        }
    }

    /// Keep `shape` warm from now on.
    pub fn prewarm(self: &Arc<Self>, shape: Shape) {
        self.state.lock().unwrap().wanted.push(shape.clone());
        self.refill(&shape);
    }

    /// How many started containers wait, per shape key (for /readyz).
    pub fn idle(&self) -> usize {
        self.state
            .lock()
            .unwrap()
            .ready
            .values()
            .map(VecDeque::len)
            .sum()
    }

    fn refill(self: &Arc<Self>, shape: &Shape) {
        let pool = self.clone();
        let shape = shape.clone();
        tokio::spawn(async move {
            loop {
                {
                    let mut st = pool.state.lock().unwrap();
                    let have = st.ready.get(&shape).map_or(0, VecDeque::len)
                        + st.creating.get(&shape).copied().unwrap_or(0);
                    if st.closed
                        || have >= pool.per_shape
                        || st.idle_total() >= pool.max_total
                        || !st.wanted.contains(&shape)
                    {
                        return;
                    }
                    *st.creating.entry(shape.clone()).or_default() += 1;
                }
                // An idle container holds a uid: the pool grows only while one is free.
                let Some(uid) = pool.uids.try_acquire() else {
                    *pool
                        .state
                        .lock()
                        .unwrap()
                        .creating
                        .entry(shape.clone())
                        .or_default() -= 1;
                    return;
                };
                let made = pool.create_started(&shape, uid).await;
                let made = {
                    let mut st = pool.state.lock().unwrap();
                    match made {
                        Ok(w) if !st.closed => {
                            *st.creating.entry(shape.clone()).or_default() -= 1;
                            st.ready.entry(shape.clone()).or_default().push_back(w);
                            continue;
                        }
                        // Closed while it was being made: it stays counted as `creating` until
                        // removed, so close() (which waits for that count) sees it gone.
                        Ok(w) => Ok(w),
                        Err(e) => {
                            *st.creating.entry(shape.clone()).or_default() -= 1;
                            Err(e)
                        }
                    }
                };
                match made {
                    Ok(w) => {
                        container::remove(&pool.docker, &w.id).await;
                        drop(w.uid);
                        *pool
                            .state
                            .lock()
                            .unwrap()
                            .creating
                            .entry(shape.clone())
                            .or_default() -= 1;
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(image = %shape.image, error = %e, "warm pool could not start a container");
                        return;
                    }
                }
            }
        });
    }

    /// Shapes beyond what `max_total` can hold lose their idle containers, oldest first.
    async fn evict_unwanted(&self) {
        let victims: Vec<Warm> = {
            let mut st = self.state.lock().unwrap();
            let keep = self.max_total.div_ceil(self.per_shape.max(1)).max(1);
            let drop_n = st.wanted.len().saturating_sub(keep);
            let dropped: Vec<Shape> = st.wanted.drain(..drop_n).collect();
            dropped
                .iter()
                .flat_map(|s| st.ready.remove(s).unwrap_or_default())
                .collect()
        };
        for w in victims {
            container::remove(&self.docker, &w.id).await;
        }
    }

    /// A started container whose programs run as `uid`, its supervisor answering (the uid is
    /// given back if it cannot be made).
    pub async fn create_started(&self, shape: &Shape, uid: UidLease) -> Result<Warm, String> {
        let run_dir = RunDir::create(&self.mounts.run_root).map_err(|e| {
            format!(
                "creating a run dir in {}: {e}",
                self.mounts.run_root.display()
            )
        })?;
        let mounts = container::Mounts {
            binary: self.mounts.binary.clone(),
            run_dir: run_dir.path().to_path_buf(),
            work: None,
            path: self.mounts.path.clone(),
        };
        let body = container::create_body(shape, &self.instance, uid.uid(), &mounts);
        let (id, sup) = supervised::start(&self.docker, body, run_dir.path()).await?;
        self.warm(shape, &sup).await;
        Ok(Warm {
            id,
            uid,
            run_dir,
            sup,
        })
    }

    /// Run the warm-up commands of `shape`'s image in its new container, each in a process tree
    /// of its own that leaves nothing behind (no files, no processes). A failure is only logged:
    /// the container works, its first run is merely slower.
    async fn warm(&self, shape: &Shape, sup: &Supervisor) {
        let Some(commands) = self.warm_up.commands.get(&shape.image) else {
            return;
        };
        for argv in commands {
            let spec = CallSpec {
                argv: argv.clone(),
                env: self.warm_up.env.clone(),
                cwd: String::new(),
                files: Vec::new(),
                limits: ProcLimits {
                    wall_time_ms: WARM_UP_WAIT.as_millis() as u64,
                    cpu_time_ms: WARM_UP_WAIT.as_millis() as u64,
                    output_bytes: 4096,
                    open_files: shape.open_files,
                    file_bytes: 0,
                },
                cgroup_fds: 0,
                warm: None,
            };
            let ran = tokio::time::timeout(
                WARM_UP_WAIT + Duration::from_secs(2),
                sup.exec(spec, b"", Vec::new(), None, None),
            )
            .await;
            match ran {
                Ok(Ok(out)) if out.exit.exit_code == Some(0) => {}
                Ok(Ok(out)) => {
                    tracing::debug!(image = %shape.image, ?argv, exit = ?out.exit, "a warm-up command failed")
                }
                Ok(Err(e)) => {
                    tracing::debug!(image = %shape.image, ?argv, error = %e, "a warm-up command failed")
                }
                Err(_) => {
                    tracing::debug!(image = %shape.image, ?argv, "a warm-up command timed out")
                }
            }
        }
    }

    /// Stop refilling and remove every idle container.
    pub async fn close(&self) {
        let idle: Vec<Warm> = {
            let mut st = self.state.lock().unwrap();
            st.closed = true;
            st.ready.drain().flat_map(|(_, v)| v).collect()
        };
        futures_util::future::join_all(idle.iter().map(|w| container::remove(&self.docker, &w.id)))
            .await;
        // A container still being created would appear after the caller's final sweep listed
        // the engine's containers: wait for those (the refill removes them once closed).
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(15);
        while self.state.lock().unwrap().creating.values().any(|n| *n > 0)
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}
