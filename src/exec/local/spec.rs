//! What the service tells the sandbox helper (`spec.json` in the run's staging directory) and
//! what the helper tells back (`report.json`). The staging directory holds:
//! `spec.json`, `files/` (copied into /work), `stdin`, `root/` and `data/` (mount points),
//! `out/` (artifacts collected from /work after the program exits) and `report.json`.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SandboxSpec {
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    /// Where a bare command name is looked up (the runtime table's PATH, never the request's).
    pub path: String,
    /// Identity of the program; ignored (stays 0 inside the namespace) when `user_namespace`.
    pub uid: u32,
    pub gid: u32,
    /// Create a user namespace (the service is not root).
    pub user_namespace: bool,
    /// Host paths bound read-only (symlinks recreated).
    pub ro_paths: Vec<String>,
    /// Size of the tmpfs holding /work, /tmp and /dev/shm.
    pub disk_bytes: u64,
    pub cpu_time_ms: u64,
    pub open_files: u64,
    /// `cgroup.procs` files the program joins before exec.
    pub cgroup_procs: Vec<String>,
    /// A file of /work copied to `out/` after the program exits (the compile step's binary).
    pub collect: Option<String>,
    pub hostname: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SandboxReport {
    /// The sandbox could not be built; the program never ran.
    pub setup_error: Option<String>,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    /// From the program's start to its end, measured inside the sandbox.
    pub wall_time_ms: u64,
    /// rusage of everything reaped inside the sandbox (fallback when no cgroup accounting).
    pub cpu_time_ms: u64,
    pub max_rss_bytes: u64,
    /// Whether `collect` was found and copied out.
    pub collected: bool,
}

pub const SPEC: &str = "spec.json";
pub const REPORT: &str = "report.json";
pub const FILES: &str = "files";
pub const STDIN: &str = "stdin";
pub const ROOT: &str = "root";
pub const DATA: &str = "data";
pub const OUT: &str = "out";
