//! The warm pool: started containers per [`Shape`], taken once and never returned, refilled in
//! the background up to `per_shape`, with at most `max_total` idle containers overall. A shape
//! starts being kept warm the first time it is asked for (or when pre-warmed at start); the
//! least recently used shape gives way when too many are wanted.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use bollard::Docker;

use super::container::{self, Shape};

pub struct Pool {
    docker: Docker,
    instance: String,
    per_shape: usize,
    max_total: usize,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    ready: HashMap<Shape, VecDeque<String>>,
    creating: HashMap<Shape, usize>,
    /// Shapes kept warm, most recently used last.
    wanted: Vec<Shape>,
    closed: bool,
}

impl State {
    fn idle_total(&self) -> usize {
        self.ready.values().map(VecDeque::len).sum::<usize>() + self.creating.values().sum::<usize>()
    }
}

impl Pool {
    pub fn new(docker: Docker, instance: String, per_shape: usize, max_total: usize) -> Arc<Pool> {
        Arc::new(Pool { docker, instance, per_shape, max_total, state: Mutex::new(State::default()) })
    }

    /// A started container of `shape`: from the pool when one is ready, else made now.
    /// Either way the pool is topped up in the background.
    pub async fn take(self: &Arc<Self>, shape: &Shape) -> Result<String, bollard::errors::Error> {
        let ready = {
            let mut st = self.state.lock().unwrap();
            st.wanted.retain(|s| s != shape);
            st.wanted.push(shape.clone());
            st.ready.get_mut(shape).and_then(VecDeque::pop_front)
        };
        self.evict_unwanted().await;
        self.refill(shape);
        match ready {
            Some(id) => Ok(id),
            None => self.create_started(shape).await,
        }
    }

    /// Keep `shape` warm from now on.
    pub fn prewarm(self: &Arc<Self>, shape: Shape) {
        self.state.lock().unwrap().wanted.push(shape.clone());
        self.refill(&shape);
    }

    /// How many started containers wait, per shape key (for /readyz).
    pub fn idle(&self) -> usize {
        self.state.lock().unwrap().ready.values().map(VecDeque::len).sum()
    }

    fn refill(self: &Arc<Self>, shape: &Shape) {
        let pool = self.clone();
        let shape = shape.clone();
        tokio::spawn(async move {
            loop {
                {
                    let mut st = pool.state.lock().unwrap();
                    let have = st.ready.get(&shape).map_or(0, VecDeque::len) + st.creating.get(&shape).copied().unwrap_or(0);
                    if st.closed || have >= pool.per_shape || st.idle_total() >= pool.max_total || !st.wanted.contains(&shape) {
                        return;
                    }
                    *st.creating.entry(shape.clone()).or_default() += 1;
                }
                let made = pool.create_started(&shape).await;
                let made = {
                    let mut st = pool.state.lock().unwrap();
                    match made {
                        Ok(id) if !st.closed => {
                            *st.creating.entry(shape.clone()).or_default() -= 1;
                            st.ready.entry(shape.clone()).or_default().push_back(id);
                            continue;
                        }
                        // Closed while it was being made: it stays counted as `creating` until
                        // removed, so close() (which waits for that count) sees it gone.
                        Ok(id) => Ok(id),
                        Err(e) => {
                            *st.creating.entry(shape.clone()).or_default() -= 1;
                            Err(e)
                        }
                    }
                };
                match made {
                    Ok(id) => {
                        container::remove(&pool.docker, &id).await;
                        *pool.state.lock().unwrap().creating.entry(shape.clone()).or_default() -= 1;
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
        let victims: Vec<String> = {
            let mut st = self.state.lock().unwrap();
            let keep = self.max_total.div_ceil(self.per_shape.max(1)).max(1);
            let drop_n = st.wanted.len().saturating_sub(keep);
            let dropped: Vec<Shape> = st.wanted.drain(..drop_n).collect();
            dropped.iter().flat_map(|s| st.ready.remove(s).unwrap_or_default()).collect()
        };
        for id in victims {
            container::remove(&self.docker, &id).await;
        }
    }

    pub async fn create_started(&self, shape: &Shape) -> Result<String, bollard::errors::Error> {
        container::create_started(&self.docker, container::create_body(shape, &self.instance)).await
    }

    /// Stop refilling and remove every idle container.
    pub async fn close(&self) {
        let ids: Vec<String> = {
            let mut st = self.state.lock().unwrap();
            st.closed = true;
            st.ready.drain().flat_map(|(_, v)| v).collect()
        };
        futures_util::future::join_all(ids.iter().map(|id| container::remove(&self.docker, id))).await;
        // A container still being created would appear after the caller's final sweep listed
        // the engine's containers: wait for those (the refill removes them once closed).
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(15);
        while self.state.lock().unwrap().creating.values().any(|n| *n > 0) && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}
