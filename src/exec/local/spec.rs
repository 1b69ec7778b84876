//! What the service tells the sandbox helper, in two parts. `boot.json` (in the sandbox's
//! staging directory) is everything known before a run arrives, so a sandbox can be built ahead
//! of time (a warm sandbox); the [`RunSpec`] arrives on the helper's stdin when a run takes it.
//! The staging directory also holds `stdin` (the program's), `out/` (an artifact collected from
//! /work after the program exits) and `report.json`; the sandbox's mount points `root/` and
//! `data/` exist only inside its own mount namespace.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BootSpec {
    /// Create a user namespace (the service is not root).
    pub user_namespace: bool,
    /// Host paths bound read-only (symlinks recreated).
    pub ro_paths: Vec<String>,
    /// Where a bare command name is looked up (the runtime table's PATH, never the request's).
    pub path: String,
    /// `cgroup.procs` files the helper joins first, so everything after it is accounted.
    pub cgroup_procs: Vec<String>,
    /// Size of the tmpfs holding /work, /tmp and /dev/shm until the run sets its own.
    pub initial_disk_bytes: u64,
    pub hostname: String,
    /// A persistent sandbox: PID 1 serves the sandbox's supervisor instead of waiting for a
    /// run. None for one-shot runs.
    #[serde(default)]
    pub supervisor: Option<SupervisorBoot>,
}

/// What a persistent sandbox's PID 1 needs besides the root every sandbox gets.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SupervisorBoot {
    /// The host's work dir (the sandbox's mounted disk image), bound at /work.
    pub work: String,
    /// The host dir (mode 0700, root's) bound at `/.execbox/run`: the supervisor's socket.
    pub run: String,
    /// The sandbox's uid and gid for its whole life; ignored when `user_namespace`.
    pub uid: u32,
    pub gid: u32,
}

/// Where the supervisor's run dir is inside a sandbox, and its socket there.
pub const SUPERVISOR_RUN: &str = "/.execbox/run";
pub const SUPERVISOR_SOCKET: &str = "sup.sock";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunSpec {
    /// Identity of the program, this run's own uid (gid = uid) from the service's allocator,
    /// known only when a run takes the sandbox; ignored (stays 0 inside the namespace) when
    /// `user_namespace`.
    pub uid: u32,
    pub gid: u32,
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    /// Files placed in /work.
    pub files: Vec<StagedFile>,
    pub disk_bytes: u64,
    pub cpu_time_ms: u64,
    pub open_files: u64,
    /// A file of /work copied to `out/` after the program exits (the compile step's binary).
    pub collect: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StagedFile {
    /// Relative to /work, already checked to have only normal components.
    pub path: String,
    /// Base64, so a large file stays a compact JSON string.
    pub content_b64: String,
    pub executable: bool,
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

pub const BOOT: &str = "boot.json";
pub const REPORT: &str = "report.json";
pub const STDIN: &str = "stdin";
pub const ROOT: &str = "root";
pub const DATA: &str = "data";
pub const OUT: &str = "out";
