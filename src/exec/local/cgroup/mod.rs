//! Per-run cgroups behind one trait, with a v1 and a v2 backend (youki's layout): the executor
//! asks for a run cgroup, points the program at its `cgroup.procs` files, reads usage and the OOM
//! record from it, kills everything in it and removes it.
//!
//! Every cgroup the service creates lives under `execbox/<instance>/` (v1: in each controller's
//! hierarchy; v2: below the service's delegated cgroup), so a later start can find and remove
//! what an earlier, killed instance left behind.

pub mod v1;
pub mod v2;

use std::path::PathBuf;

use crate::policy::Limits;

/// Which cgroup hierarchy this host gives us.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CgroupVersion {
    V1,
    V2,
}

/// What the backend could set up; reported on `/readyz`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CgroupFeatures {
    pub version: CgroupVersion,
    pub memory: bool,
    /// Swap is accounted and held at zero (v1 `memory.memsw.*`, v2 `memory.swap.max`).
    pub swap_limit: bool,
    pub pids: bool,
    pub cpu_accounting: bool,
    /// Kernel socket buffers count against the run's memory limit (v2: charged to `memory.max`)
    /// or are capped at it (v1: `memory.kmem.tcp.limit_in_bytes`, which v1 leaves unlimited).
    pub socket_memory_limit: bool,
}

/// Usage and OOM record of a finished (or killed) run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CgroupUsage {
    pub cpu_time_ns: u64,
    pub peak_memory_bytes: u64,
    pub oom_kills: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("no usable cgroup hierarchy: {0}")]
    NotUsable(String),
    #[error("cgroup {path}: {op}: {source}")]
    Io {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: std::io::Error,
    },
}

/// One run's cgroup (in every hierarchy the backend uses).
pub trait RunCgroup: Send + Sync {
    /// `cgroup.procs` files the program writes "0" to before exec, one per hierarchy.
    fn procs_files(&self) -> Vec<PathBuf>;
    /// CPU time used so far, in nanoseconds (polled to enforce the CPU limit).
    fn cpu_time_ns(&self) -> u64;
    fn usage(&self) -> CgroupUsage;
    /// Change the memory (swap off) and pids limits of a cgroup that already has processes in
    /// it (a warm sandbox taking its run's limits).
    fn set_limits(&self, limits: &Limits) -> Result<(), CgroupError>;
    /// Forget the peak memory recorded so far (v1; v2 has no cgroup-wide reset), so a warm
    /// sandbox's setup does not count as its run's peak.
    fn reset_peak(&self);
    /// SIGKILL every process in the cgroup until it is empty (bounded retries).
    fn kill_all(&self);
    /// Kill what is left and remove the cgroup directories.
    fn destroy(&self) -> Result<(), CgroupError>;
}

/// A persistent sandbox's cgroup, `execbox/<instance>/<id>`: the sandbox's limits over
/// everything in it, its own processes (helper, init, supervisor) in the leaf `sup`, and one
/// child per call with the call's limits (the parent's limits still hold over their sum).
pub trait SandboxCgroup: Send + Sync {
    /// `cgroup.procs` files of the `sup` leaf, one per hierarchy: the helper joins them first.
    fn supervisor_procs(&self) -> Vec<PathBuf>;
    /// `<id>/<name>` with the call's memory (swap off) and pids limits.
    fn call(&self, name: &str, limits: &Limits) -> Result<Box<dyn RunCgroup>, CgroupError>;
    /// Kill everything in the sandbox's cgroups and remove them.
    fn destroy(&self) -> Result<(), CgroupError>;
}

/// The leaf of a sandbox's cgroup that holds the sandbox's own processes (cgroup v2 lets only
/// leaves hold processes once children have controllers).
pub const SUPERVISOR_LEAF: &str = "sup";

/// A cgroup backend (v1 or v2) rooted at `execbox/<instance>`.
pub trait CgroupBackend: Send + Sync {
    fn features(&self) -> CgroupFeatures;
    /// Create `execbox/<instance>/<run_id>` with the run's memory (swap off) and pids limits.
    fn create(&self, run_id: &str, limits: &Limits) -> Result<Box<dyn RunCgroup>, CgroupError>;
    /// Create `execbox/<instance>/<id>` for a persistent sandbox, with its `sup` leaf.
    fn create_sandbox(
        &self,
        id: &str,
        limits: &Limits,
    ) -> Result<Box<dyn SandboxCgroup>, CgroupError>;
    /// Remove every run cgroup of this instance (processes in them are killed first).
    fn sweep(&self) -> Result<usize, CgroupError>;
    /// Remove this instance's own directory (graceful stop).
    fn remove_instance(&self) -> Result<(), CgroupError>;
}

/// Detect the host's hierarchy and build the matching backend.
/// `/sys/fs/cgroup` itself a cgroup2 mount with the controllers → v2; otherwise the v1 controller
/// hierarchies (memory, pids, cpuacct) → v1.
pub fn detect(instance: &str) -> Result<Box<dyn CgroupBackend>, CgroupError> {
    detect_at(
        std::path::Path::new("/proc/self/mountinfo"),
        std::path::Path::new("/proc/self/cgroup"),
        instance,
    )
}

pub fn detect_at(
    mountinfo: &std::path::Path,
    self_cgroup: &std::path::Path,
    instance: &str,
) -> Result<Box<dyn CgroupBackend>, CgroupError> {
    let read = |p: &std::path::Path| {
        std::fs::read_to_string(p).map_err(|source| CgroupError::Io {
            path: p.to_path_buf(),
            op: "read",
            source,
        })
    };
    let mounts = read(mountinfo)?;
    let own = read(self_cgroup)?;
    let v2_err = match v2::V2::from_mountinfo(&mounts, &own, instance) {
        Ok(b) => return Ok(Box::new(b)),
        Err(e) => e,
    };
    match v1::V1::from_mountinfo(&mounts, instance) {
        Ok(b) => Ok(Box::new(b)),
        Err(v1_err) => Err(CgroupError::NotUsable(format!(
            "cgroup v2: {v2_err}; cgroup v1: {v1_err}"
        ))),
    }
}

/// Parse `/proc/self/mountinfo` into (mount point, fs type, super options) triples.
pub(crate) fn cgroup_mounts(mountinfo: &str) -> Vec<(PathBuf, String, String)> {
    mountinfo
        .lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let mount_point = left.split_whitespace().nth(4)?;
            let mut r = right.split_whitespace();
            let fstype = r.next()?.to_string();
            let _source = r.next()?;
            let super_opts = r.next().unwrap_or("").to_string();
            if fstype == "cgroup" || fstype == "cgroup2" {
                Some((
                    PathBuf::from(unescape_octal(mount_point)),
                    fstype,
                    super_opts,
                ))
            } else {
                None
            }
        })
        .collect()
}

fn unescape_octal(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}
