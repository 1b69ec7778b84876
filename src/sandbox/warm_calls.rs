//! Each sandbox's next call, made ahead: its cgroup (with the sandbox's limits) and, in it, a
//! tree whose init has joined it and waits for its program (`Request::Prepare`, see
//! `supervisor/server/tree/warm.rs`). On cgroup v1 a join after an idle spell waits out an RCU
//! grace period (6 to 15 ms here): made ahead, no call pays it.
//!
//! A call takes the one made for its sandbox, gives its cgroup the call's own limits and names
//! it to the supervisor; the next one is made at once, beside the call. A call that finds none
//! (the first, one that comes while the next is still being made, concurrent calls) makes its
//! cgroup itself and starts cold. The supervisor keeps at most one per sandbox; one it no longer
//! has (restarted) is started cold in the cgroup the call passes anyway.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::supervised::SandboxHost;
use super::Sandbox;
use crate::exec::call::CallCgroup;
use crate::supervisor::client::Supervisor;

/// A call made ahead.
pub struct WarmCall {
    /// The supervisor's name for the waiting tree.
    pub token: String,
    /// Its cgroup; None where the host has none per call.
    pub cgroup: Option<Box<dyn CallCgroup>>,
}

enum Slot {
    Making,
    Ready(WarmCall),
}

/// By sandbox id.
#[derive(Default, Clone)]
pub struct WarmCalls {
    slots: Arc<Mutex<HashMap<String, Slot>>>,
}

impl WarmCalls {
    /// The call made ahead for `sb`, if one is ready.
    pub fn take(&self, sb: &str) -> Option<WarmCall> {
        let mut slots = self.slots.lock().unwrap();
        if !matches!(slots.get(sb), Some(Slot::Ready(_))) {
            return None;
        }
        match slots.remove(sb) {
            Some(Slot::Ready(w)) => Some(w),
            _ => None,
        }
    }

    /// Start making `sb`'s next call, unless one is made or being made.
    pub fn refill(&self, host: &Arc<dyn SandboxHost>, sb: &Sandbox, sup: &Supervisor) {
        {
            let mut slots = self.slots.lock().unwrap();
            if slots.contains_key(&sb.id) {
                return;
            }
            slots.insert(sb.id.clone(), Slot::Making);
        }
        let (me, host, sb, sup) = (self.clone(), host.clone(), sb.clone(), sup.clone());
        tokio::spawn(async move {
            let made = make(&host, &sb, &sup).await;
            let mut slots = me.slots.lock().unwrap();
            // Forgotten meanwhile (the sandbox is going away): what was made goes too.
            let wanted = matches!(slots.get(&sb.id), Some(Slot::Making));
            match made {
                Some(w) if wanted => {
                    slots.insert(sb.id.clone(), Slot::Ready(w));
                }
                made => {
                    if wanted {
                        slots.remove(&sb.id);
                    }
                    drop(slots);
                    drop_blocking(made);
                }
            }
        });
    }

    /// Forget `sb`'s call made ahead (the sandbox is going away): its cgroup is removed now.
    pub async fn forget(&self, sb: &str) {
        let slot = self.slots.lock().unwrap().remove(sb);
        if let Some(Slot::Ready(w)) = slot {
            let _ = tokio::task::spawn_blocking(move || drop(w)).await;
        }
    }
}

/// The cgroup, with the sandbox's limits until a call sets its own, and the tree in it.
async fn make(host: &Arc<dyn SandboxHost>, sb: &Sandbox, sup: &Supervisor) -> Option<WarmCall> {
    let cgroup = match host.call_cgroup(sb, &sb.limits).await {
        Ok(c) => c,
        Err(e) => {
            tracing::debug!(sandbox = %sb.id, error = %e, "could not make a call's cgroup ahead");
            return None;
        }
    };
    let fds = match cgroup.as_deref().map(|c| c.procs_fds()).transpose() {
        Ok(f) => f.unwrap_or_default(),
        Err(e) => {
            tracing::debug!(sandbox = %sb.id, error = %e, "could not open a call's cgroup ahead");
            drop_blocking(cgroup);
            return None;
        }
    };
    let token = uuid::Uuid::new_v4().simple().to_string();
    let w = WarmCall { token, cgroup };
    match sup.prepare(w.token.clone(), fds).await {
        Ok(()) => Some(w),
        Err(e) => {
            tracing::debug!(sandbox = %sb.id, error = %e, "the supervisor made no call ahead");
            drop_blocking(w);
            None
        }
    }
}

/// Drop `v` on a blocking thread, not waited for: removing a cgroup may wait on the kernel.
pub fn drop_blocking<T: Send + 'static>(v: T) {
    drop(tokio::task::spawn_blocking(move || drop(v)));
}
