//! Per-call cgroups inside a container's cgroup, from the host: a call of a supervised container
//! runs in `<container's cgroup>/execbox/calls/<call>` (v1: in the memory, pids and cpuacct
//! hierarchies; v2: below the container's cgroup, whose own processes move to a leaf so it may
//! hand controllers down). The host creates it with the call's limits and opens its
//! `cgroup.procs` files; the supervisor makes the call's first process join them through the
//! descriptors, so nothing inside the container needs a view of the host's cgroupfs.
//!
//! Only with the engine on this host (its cgroupfs), and not under gVisor, whose container
//! cgroup holds gVisor's kernel rather than the program's processes.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::exec::call::{open_procs, CallCgroup};
use crate::exec::local::cgroup::v1::V1;
use crate::exec::local::cgroup::v2::V2;
use crate::exec::local::cgroup::{
    cgroup_mounts, CgroupBackend, CgroupError, CgroupUsage, RunCgroup,
};
use crate::policy::Limits;

/// The name below `<container>/execbox/` the calls live in.
const CALLS: &str = "calls";

/// The container's cgroup directory below a hierarchy's mount, under the engine's usual layouts
/// (cgroupfs or systemd driver).
fn container_dir(mount: &Path, id: &str) -> Option<PathBuf> {
    [
        format!("docker/{id}"),
        format!("system.slice/docker-{id}.scope"),
    ]
    .into_iter()
    .map(|rel| mount.join(rel))
    .find(|d| d.is_dir())
}

/// A backend rooted at `<container's cgroup>/execbox/calls`; None when the container's cgroup
/// is not on this host's cgroupfs, or, with `existing`, when it has no calls directory yet
/// (making one on v2 moves the container's own processes, which a sweep must not start).
fn calls_backend(id: &str, existing: bool) -> Result<Option<Box<dyn CgroupBackend>>, CgroupError> {
    let mountinfo =
        std::fs::read_to_string("/proc/self/mountinfo").map_err(|source| CgroupError::Io {
            path: "/proc/self/mountinfo".into(),
            op: "read",
            source,
        })?;
    let mounts = cgroup_mounts(&mountinfo);
    let not_usable = |e: String| CgroupError::NotUsable(format!("container {id}: {e}"));
    let v1 = |controller: &str| {
        mounts
            .iter()
            .find(|(_, fstype, opts)| {
                fstype == "cgroup" && opts.split(',').any(|o| o == controller)
            })
            .and_then(|(mount, _, _)| container_dir(mount, id))
    };
    let absent = |dir: &Path| existing && !dir.join("execbox").join(CALLS).is_dir();
    if let (Some(memory), Some(pids), Some(cpuacct)) = (v1("memory"), v1("pids"), v1("cpuacct")) {
        if absent(&memory) {
            return Ok(None);
        }
        return V1::at(&memory, &pids, &cpuacct, CALLS)
            .map(|b| Some(Box::new(b) as Box<dyn CgroupBackend>))
            .map_err(not_usable);
    }
    let v2 = mounts
        .iter()
        .filter(|(_, fstype, _)| fstype == "cgroup2")
        .find_map(|(mount, _, _)| container_dir(mount, id));
    match v2 {
        Some(dir) if absent(&dir) => Ok(None),
        Some(dir) => V2::at(dir, CALLS)
            .map(|b| Some(Box::new(b) as Box<dyn CgroupBackend>))
            .map_err(not_usable),
        None => Ok(None),
    }
}

/// One call's cgroup in container `id`, with `limits`' memory (swap off) and pids (plus one for
/// the call's own init, the first process of its pid namespace). None when the container's
/// cgroup is not on this host.
pub fn call_cgroup(id: &str, limits: &Limits) -> Result<Option<DockerCallCgroup>, CgroupError> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let Some(backend) = calls_backend(id, false)? else {
        return Ok(None);
    };
    let name = format!(
        "c{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let run = backend.create(&name, &with_init(limits))?;
    Ok(Some(DockerCallCgroup { run: Some(run) }))
}

/// Kill and remove every call cgroup of container `id`: what a service that died left there (a
/// call in flight at its kill -9, trees made ahead still waiting in theirs). The number removed.
pub fn sweep_calls(id: &str) -> Result<usize, CgroupError> {
    match calls_backend(id, true)? {
        Some(backend) => backend.sweep(),
        None => Ok(0),
    }
}

/// A call's cgroup; dropped, it kills what is left in it and is removed.
pub struct DockerCallCgroup {
    /// Taken only by drop.
    run: Option<Box<dyn RunCgroup>>,
}

impl DockerCallCgroup {
    fn run(&self) -> &dyn RunCgroup {
        self.run.as_deref().expect("taken only by drop")
    }
}

impl CallCgroup for DockerCallCgroup {
    fn procs_fds(&self) -> std::io::Result<Vec<OwnedFd>> {
        open_procs(&self.run().procs_files())
    }

    fn cpu_time_ns(&self) -> u64 {
        self.run().cpu_time_ns()
    }

    fn usage(&self) -> CgroupUsage {
        self.run().usage()
    }

    fn begin(&self, limits: &Limits) -> Result<(), CgroupError> {
        self.run().set_limits(&with_init(limits))?;
        self.run().reset_peak();
        Ok(())
    }
}

/// A call's limits plus one pid for its init, the first process of its pid namespace.
fn with_init(limits: &Limits) -> Limits {
    Limits {
        pids: limits.pids + 1,
        ..*limits
    }
}

impl Drop for DockerCallCgroup {
    /// Killing and removing may wait on the kernel (bounded retries): off the async threads.
    fn drop(&mut self) {
        let Some(run) = self.run.take() else { return };
        let destroy = move || {
            if let Err(e) = run.destroy() {
                tracing::warn!(error = %e, "could not remove a call's cgroup");
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => drop(rt.spawn_blocking(destroy)),
            Err(_) => destroy(),
        }
    }
}

/// Under gVisor there is no cgroup of the call's own: the container's cgroup holds gVisor's
/// kernel, which works for the call, not the call's processes. A call is then measured on the
/// container's cgroup from a baseline taken when it starts, which gives the host its CPU watch
/// and the call its usage; nothing is joined.
pub struct ContainerShare {
    id: String,
    baseline: std::sync::Mutex<crate::exec::Usage>,
}

impl ContainerShare {
    /// None when the container's cgroup is not on this host.
    pub fn start(id: &str) -> Option<ContainerShare> {
        super::host_cgroup_usage(id).map(|baseline| ContainerShare {
            id: id.to_string(),
            baseline: std::sync::Mutex::new(baseline),
        })
    }
}

impl CallCgroup for ContainerShare {
    fn procs_fds(&self) -> std::io::Result<Vec<OwnedFd>> {
        Ok(Vec::new())
    }

    fn cpu_time_ns(&self) -> u64 {
        self.usage().cpu_time_ns
    }

    fn usage(&self) -> CgroupUsage {
        let now = super::host_cgroup_usage(&self.id).unwrap_or_default();
        let baseline = *self.baseline.lock().unwrap();
        CgroupUsage {
            cpu_time_ns: now
                .cpu_time_ms
                .saturating_sub(baseline.cpu_time_ms)
                .saturating_mul(1_000_000),
            peak_memory_bytes: now.peak_memory_bytes,
            // The OOM killer takes the whole gVisor sandbox: the call's connection ends with it.
            oom_kills: 0,
        }
    }

    /// Nothing of the call's own to limit (the container's limits hold): measured from now.
    fn begin(&self, _limits: &Limits) -> Result<(), CgroupError> {
        if let Some(now) = super::host_cgroup_usage(&self.id) {
            *self.baseline.lock().unwrap() = now;
        }
        Ok(())
    }
}
