//! Admission control: at most `max_running` runs execute at once and at most `max_queued` wait
//! for a slot; anything beyond is refused at once (429 + Retry-After) instead of piling up.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub struct Admission {
    slots: Arc<Semaphore>,
    max_running: usize,
    max_queued: usize,
    queued: AtomicUsize,
    running: AtomicUsize,
}

/// Holding one means the run may execute; dropping it frees the slot.
pub struct Ticket {
    _permit: OwnedSemaphorePermit,
    admission: Arc<Admission>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.admission.running.fetch_sub(1, Ordering::SeqCst);
    }
}

#[derive(Debug, PartialEq, Eq)]
pub struct Full;

impl Admission {
    pub fn new(max_running: usize, max_queued: usize) -> Admission {
        Admission {
            slots: Arc::new(Semaphore::new(max_running.max(1))),
            max_running: max_running.max(1),
            max_queued,
            queued: AtomicUsize::new(0),
            running: AtomicUsize::new(0),
        }
    }

    /// Wait for a slot, or fail at once when the queue is full.
    pub async fn enter(self: &Arc<Self>) -> Result<Ticket, Full> {
        let permit = match self.slots.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                if self.queued.fetch_add(1, Ordering::SeqCst) >= self.max_queued {
                    self.queued.fetch_sub(1, Ordering::SeqCst);
                    return Err(Full);
                }
                let _queued = DecrementOnDrop(&self.queued);
                self.slots
                    .clone()
                    .acquire_owned()
                    .await
                    .expect("semaphore is never closed")
            }
        };
        self.running.fetch_add(1, Ordering::SeqCst);
        Ok(Ticket {
            _permit: permit,
            admission: self.clone(),
        })
    }

    /// How many runs may execute at once.
    /// How many runs may wait for a slot.
    pub fn max_queued(&self) -> usize {
        self.max_queued
    }

    pub fn slots(&self) -> usize {
        self.max_running
    }

    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::SeqCst)
    }

    pub fn running(&self) -> usize {
        self.running.load(Ordering::SeqCst)
    }
}

struct DecrementOnDrop<'a>(&'a AtomicUsize);

impl Drop for DecrementOnDrop<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn refuses_past_running_plus_queued() {
        let a = Arc::new(Admission::new(1, 1));
        let t1 = a.enter().await.unwrap();
        let a2 = a.clone();
        let waiter = tokio::spawn(async move { a2.enter().await.map(|_| ()) });
        while a.queued() == 0 {
            tokio::task::yield_now().await;
        }
        assert_eq!(a.enter().await.err(), Some(Full));
        drop(t1);
        assert_eq!(waiter.await.unwrap(), Ok(()));
        assert_eq!((a.queued(), a.running()), (0, 0));
    }
}
