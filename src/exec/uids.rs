//! One uid per run and per sandbox, from a configured range (`[sandbox_uids]`), the way
//! judge-grade sandboxes number their boxes. The kernel keeps several limits per uid rather than
//! per process or namespace (inotify instances, POSIX message queue bytes, pipe buffer pages,
//! pending signals): programs of one uid share them, so one run could starve another and see
//! its use of them. Both executors draw from this one allocator, so no two live runs or
//! sandboxes of the service share a uid.
//!
//! A uid is held by a [`UidLease`] until its processes are gone (the lease is dropped after the
//! run's cgroup or container is removed). Leases also take an advisory lock on
//! `<lock_dir>/<uid>`, so services and `execbox run` on one host never hand out the same uid at
//! once either; the kernel drops the lock when a process dies.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::ExecError;

/// The configured range, `first .. first + count`; gid = uid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UidRange {
    pub first: u32,
    pub count: u32,
}

/// uids a range may never include: root, and the docker containers' init and waiter (65533)
/// and `nobody` (65534), which every older execbox and many other tools run as.
pub const RESERVED: [u32; 3] = [0, 65533, 65534];

impl UidRange {
    pub fn check(&self) -> Result<(), String> {
        let last = self.first.checked_add(self.count).ok_or_else(|| {
            format!(
                "sandbox_uids: first {} + count {} overflows",
                self.first, self.count
            )
        })?;
        if self.count == 0 {
            return Err("sandbox_uids.count must be at least 1".into());
        }
        if self.first < 1000 {
            return Err(format!("sandbox_uids.first {} is below 1000, where system accounts live; pick an unused range", self.first));
        }
        if let Some(r) = RESERVED.iter().find(|r| (self.first..last).contains(r)) {
            return Err(format!("sandbox_uids {}..{} includes {r}, which execbox keeps for other uses; pick a range without it", self.first, last));
        }
        if last > 0x7fff_ffff {
            return Err(format!("sandbox_uids must end below 2^31, not at {last}"));
        }
        Ok(())
    }

    pub fn contains(&self, uid: u32) -> bool {
        uid >= self.first && uid - self.first < self.count
    }
}

pub struct Uids {
    range: UidRange,
    /// Host-wide locks; None when the service is not root (all runs are then the service's own
    /// uid inside a user namespace, and uids are not handed to programs at all).
    lock_dir: Option<PathBuf>,
    state: Mutex<State>,
    freed: tokio::sync::Notify,
}

#[derive(Default)]
struct State {
    used: BTreeSet<u32>,
    /// Where the next search starts: a freed uid is the last to be reused.
    next: u32,
}

/// A uid held for a run or a sandbox; released on drop.
pub struct UidLease {
    uid: u32,
    uids: Arc<Uids>,
    _lock: Option<nix::fcntl::Flock<std::fs::File>>,
}

impl std::fmt::Debug for Uids {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Uids({}..{})",
            self.range.first,
            self.range.first + self.range.count
        )
    }
}

impl std::fmt::Debug for UidLease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "UidLease({})", self.uid)
    }
}

impl UidLease {
    pub fn uid(&self) -> u32 {
        self.uid
    }
}

impl Drop for UidLease {
    fn drop(&mut self) {
        self.uids.state.lock().unwrap().used.remove(&self.uid);
        self.uids.freed.notify_waiters();
    }
}

impl Uids {
    pub fn new(range: UidRange, lock_dir: Option<PathBuf>) -> Result<Arc<Uids>, String> {
        range.check()?;
        if let Some(dir) = &lock_dir {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create the uid lock dir {}: {e}", dir.display()))?;
        }
        Ok(Arc::new(Uids {
            range,
            lock_dir,
            state: Mutex::new(State::default()),
            freed: tokio::sync::Notify::new(),
        }))
    }

    pub fn range(&self) -> UidRange {
        self.range
    }

    pub fn in_use(&self) -> usize {
        self.state.lock().unwrap().used.len()
    }

    /// A free uid now, or None when every uid of the range is held (here or, by the host-wide
    /// lock, by another service).
    pub fn try_acquire(self: &Arc<Self>) -> Option<UidLease> {
        let mut st = self.state.lock().unwrap();
        for i in 0..self.range.count {
            let offset = (st.next + i) % self.range.count;
            let uid = self.range.first + offset;
            if st.used.contains(&uid) {
                continue;
            }
            let Ok(lock) = self.lock(uid) else { continue };
            st.used.insert(uid);
            st.next = (offset + 1) % self.range.count;
            return Some(UidLease {
                uid,
                uids: self.clone(),
                _lock: lock,
            });
        }
        None
    }

    /// A free uid, waiting up to `wait` for one to be released.
    pub async fn acquire(self: &Arc<Self>, wait: Duration) -> Result<UidLease, ExecError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let freed = self.freed.notified();
            if let Some(l) = self.try_acquire() {
                return Ok(l);
            }
            // Another service's lock is not announced here: look again now and then.
            let until = deadline.min(tokio::time::Instant::now() + Duration::from_millis(200));
            let _ = tokio::time::timeout_at(until, freed).await;
            if tokio::time::Instant::now() >= deadline {
                return self
                    .try_acquire()
                    .ok_or_else(|| ExecError::NoUid(self.exhausted()));
            }
        }
    }

    /// Hold `uid` again (a sandbox's, found after a restart). A uid outside the range is no
    /// run's, so it needs no lease (None); one already held is an error.
    pub fn reserve(self: &Arc<Self>, uid: u32) -> Result<Option<UidLease>, String> {
        if !self.range.contains(uid) {
            return Ok(None);
        }
        let mut st = self.state.lock().unwrap();
        if st.used.contains(&uid) {
            return Err(format!(
                "uid {uid} is already held by a run or another sandbox of this service"
            ));
        }
        let lock = self.lock(uid).map_err(|e| format!("uid {uid}: {e}"))?;
        st.used.insert(uid);
        Ok(Some(UidLease {
            uid,
            uids: self.clone(),
            _lock: lock,
        }))
    }

    fn exhausted(&self) -> String {
        let r = self.range;
        format!(
            "every sandbox uid ({}..{}, {} of them) is held by a run or a sandbox; retry when runs finish, delete sandboxes, or raise sandbox_uids.count",
            r.first,
            r.first + r.count,
            r.count
        )
    }

    fn lock(&self, uid: u32) -> Result<Option<nix::fcntl::Flock<std::fs::File>>, String> {
        let Some(dir) = &self.lock_dir else {
            return Ok(None);
        };
        use std::os::unix::fs::OpenOptionsExt;
        let path = dir.join(uid.to_string());
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&path)
            .map_err(|e| format!("open {}: {e}", path.display()))?;
        match nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock) {
            Ok(locked) => Ok(Some(locked)),
            Err((_, e)) => Err(format!(
                "{} is locked by another process ({e})",
                path.display()
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uids(first: u32, count: u32, dir: Option<PathBuf>) -> Arc<Uids> {
        Uids::new(UidRange { first, count }, dir).unwrap()
    }

    #[test]
    fn ranges_that_hold_reserved_uids_or_overflow_are_refused() {
        assert!(UidRange {
            first: 60000,
            count: 1000
        }
        .check()
        .is_ok());
        assert!(UidRange {
            first: 65000,
            count: 1000
        }
        .check()
        .unwrap_err()
        .contains("65533"));
        assert!(UidRange {
            first: 10,
            count: 10
        }
        .check()
        .is_err());
        assert!(UidRange {
            first: 60000,
            count: 0
        }
        .check()
        .is_err());
        assert!(UidRange {
            first: u32::MAX - 1,
            count: 10
        }
        .check()
        .is_err());
    }

    #[test]
    fn live_uids_are_never_handed_out_twice_and_freed_ones_come_back_last() {
        let u = uids(70000, 3, None);
        let a = u.try_acquire().unwrap();
        let b = u.try_acquire().unwrap();
        let c = u.try_acquire().unwrap();
        assert_eq!([a.uid(), b.uid(), c.uid()], [70000, 70001, 70002]);
        assert!(u.try_acquire().is_none(), "the range is used up");
        drop(b);
        let d = u.try_acquire().unwrap();
        assert_eq!(d.uid(), 70001);
        assert!(
            u.reserve(70000).is_err(),
            "a held uid cannot be reserved again"
        );
        assert!(
            u.reserve(65534).unwrap().is_none(),
            "outside the range: nothing to hold"
        );
        drop((a, c, d));
        assert_eq!(u.in_use(), 0);
        assert_eq!(u.reserve(70002).unwrap().unwrap().uid(), 70002);
    }

    #[tokio::test]
    async fn running_out_waits_for_a_release_then_answers_a_clear_error() {
        let u = uids(70000, 1, None);
        let a = u.try_acquire().unwrap();
        let u2 = u.clone();
        let waiter =
            tokio::spawn(async move { u2.acquire(Duration::from_secs(10)).await.map(|l| l.uid()) });
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(a);
        assert_eq!(waiter.await.unwrap().unwrap(), 70000);
        let _held = u.try_acquire().unwrap();
        let e = u.acquire(Duration::from_millis(100)).await.unwrap_err();
        assert!(
            matches!(&e, ExecError::NoUid(m) if m.contains("70000..70001")),
            "{e}"
        );
    }

    #[test]
    fn two_allocators_on_one_lock_dir_never_share_a_uid() {
        let dir = tempfile::tempdir().unwrap();
        let (one, two) = (
            uids(70000, 2, Some(dir.path().into())),
            uids(70000, 2, Some(dir.path().into())),
        );
        let a = one.try_acquire().unwrap();
        let b = two.try_acquire().unwrap();
        assert_ne!(a.uid(), b.uid());
        assert!(two.try_acquire().is_none() && one.try_acquire().is_none());
        drop(a);
        assert_eq!(two.try_acquire().unwrap().uid(), 70000);
    }
}
