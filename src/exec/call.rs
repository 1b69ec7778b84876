//! One step of a program as a call to a supervisor (`supervisor::client`), watched from the
//! host: the call's cgroup joined by descriptor, the host's CPU watch and deadline, the usage
//! read back, and the one status classification ([`classify`]). A docker one-shot step
//! (`docker/step.rs`) and every step of a sandbox call (`sandbox/supervised.rs`) run through it.

use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::time::Duration;

use super::local::cgroup::{CgroupError, CgroupUsage};
use super::{classify, signal_name, BoxFuture, OutputSink, StepEnd, StepResult, Usage};
use crate::policy::Limits;
use crate::supervisor::client::{SupError, Supervisor};
use crate::supervisor::proto::{CallSpec, Control, Ended, InlineFile, ProcLimits};

/// How often the host reads a call's CPU time against its limit.
const CPU_WATCH: Duration = Duration::from_millis(20);

/// One call's cgroup (or its share of a container's); dropping it kills what is left in it
/// and removes it.
pub trait CallCgroup: Send + Sync {
    /// `cgroup.procs` of each hierarchy, opened O_WRONLY, for the supervisor to join.
    fn procs_fds(&self) -> std::io::Result<Vec<OwnedFd>>;
    fn cpu_time_ns(&self) -> u64;
    fn usage(&self) -> CgroupUsage;
    /// A cgroup made ahead of its call (a tree waiting in it) begins the call: the call's memory
    /// and pids limits, and its measures from now (the peak memory recorded so far forgotten, a
    /// share's baseline taken again).
    fn begin(&self, limits: &Limits) -> Result<(), CgroupError>;
}

/// A file of a step as the supervisor's protocol carries it.
pub fn inline(path: &str, content: &[u8]) -> InlineFile {
    use base64::Engine;
    InlineFile {
        path: crate::supervisor::proto::raw_path(path.as_bytes()),
        content: base64::engine::general_purpose::STANDARD.encode(content),
    }
}

/// `cgroup.procs` files opened for writing, to pass along with a call.
pub fn open_procs(files: &[PathBuf]) -> std::io::Result<Vec<OwnedFd>> {
    files
        .iter()
        .map(|p| {
            std::fs::OpenOptions::new()
                .write(true)
                .open(p)
                .map(OwnedFd::from)
                .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", p.display())))
        })
        .collect()
}

/// One program to run to its end.
pub struct Step<'a> {
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    /// Written into the work dir before it starts (the source, the request's files).
    pub files: Vec<InlineFile>,
    pub stdin: &'a [u8],
    pub limits: Limits,
    pub open_files: u64,
    pub stream: Option<OutputSink>,
    /// The tree made ahead in the call's cgroup (`Request::Prepare`), if there is one.
    pub warm: Option<String>,
}

/// How the host watches a call.
pub struct Watch<'a> {
    /// The call's cgroup (or its share of the container's); None where the host sees neither,
    /// and then the supervisor's own figures for the call's tree count.
    pub cgroup: Option<&'a dyn CallCgroup>,
    /// How long after the wall time the host tells the supervisor to end the call (it keeps the
    /// deadline itself; this is for one that missed it).
    pub nudge: Duration,
    /// How long after the wall time the host stops waiting for the supervisor's answer.
    pub give_up: Duration,
    /// Where the OOM record is not in `cgroup` (under gVisor: the engine's events), asked only
    /// for a program that died of SIGKILL.
    pub oom_events: Option<&'a (dyn Fn() -> BoxFuture<'a, bool> + Send + Sync)>,
    /// Under gVisor the container's cgroup may show less CPU than gVisor's kernel counted for
    /// the call's own tasks (which `RLIMIT_CPU` goes by): then the larger figure holds.
    pub tree_cpu_floor: bool,
}

#[derive(Debug)]
pub enum CallError {
    /// The call's cgroup could not be opened for passing.
    Cgroup(std::io::Error),
    Supervisor(SupError),
    /// The supervisor did not answer within [`Watch::give_up`] of the wall time.
    NoAnswer,
}

/// Run `step` through `sup` to its end under the host's watch, and judge it.
pub async fn run(
    sup: &Supervisor,
    step: Step<'_>,
    watch: Watch<'_>,
) -> Result<StepResult, CallError> {
    let limits = step.limits;
    let fds = match watch.cgroup {
        Some(cg) => cg.procs_fds().map_err(CallError::Cgroup)?,
        None => Vec::new(),
    };
    let spec = CallSpec {
        argv: step.argv,
        env: step.env,
        cwd: String::new(),
        files: step.files,
        limits: ProcLimits {
            wall_time_ms: limits.wall_time_ms,
            cpu_time_ms: limits.cpu_time_ms,
            output_bytes: limits.output_bytes,
            open_files: step.open_files,
            file_bytes: limits.disk_bytes,
        },
        cgroup_fds: fds.len(),
        warm: step.warm,
    };
    let (control, control_rx) = tokio::sync::mpsc::channel(4);
    let call = sup.exec(spec, step.stdin, fds, step.stream, Some(control_rx));
    tokio::pin!(call);
    let wall = Duration::from_millis(limits.wall_time_ms);
    let nudge = tokio::time::sleep(wall + watch.nudge);
    tokio::pin!(nudge);
    let give_up = tokio::time::sleep(wall + watch.give_up);
    tokio::pin!(give_up);
    let cpu_limit_ns = limits.cpu_time_ms.saturating_mul(1_000_000);
    let mut cpu_tick = tokio::time::interval(CPU_WATCH);
    let (mut cpu_over, mut nudged) = (false, false);
    let out = loop {
        tokio::select! {
            out = &mut call => break out.map_err(CallError::Supervisor)?,
            _ = &mut nudge, if !nudged => {
                nudged = true;
                let _ = control.try_send(Control::Deadline);
            }
            _ = &mut give_up => return Err(CallError::NoAnswer),
            // The supervisor cannot see the call's cgroup; the host can.
            _ = cpu_tick.tick(), if !cpu_over && watch.cgroup.is_some() => {
                if watch.cgroup.is_some_and(|cg| cg.cpu_time_ns() >= cpu_limit_ns) {
                    cpu_over = true;
                    let _ = control.try_send(Control::CpuLimit);
                }
            }
        }
    };
    let exit = out.exit;
    let cg = watch.cgroup.map(|c| c.usage());
    let mut cpu_ns = cg.map_or(exit.cpu_time_ms.saturating_mul(1_000_000), |u| {
        u.cpu_time_ns
    });
    if watch.tree_cpu_floor {
        cpu_ns = cpu_ns.max(exit.cpu_time_ms.saturating_mul(1_000_000));
    }
    let mut oom = cg.is_some_and(|u| u.oom_kills > 0);
    if let (false, Some(events), Some(libc::SIGKILL)) = (oom, watch.oom_events, exit.signal) {
        oom = events().await;
    }
    let end = match exit.ended {
        Some(Ended::Deadline) => StepEnd::Deadline,
        Some(Ended::CpuLimit) => StepEnd::CpuLimit,
        Some(Ended::Exited) | None => StepEnd::Exited {
            exit_code: exit.exit_code,
            signal: exit.signal,
        },
    };
    let (exit_code, signal, status) = classify(end, oom, cpu_over || cpu_ns >= cpu_limit_ns);
    Ok(StepResult {
        status,
        exit_code,
        signal: signal.map(signal_name),
        stdout: out.stdout,
        stderr: out.stderr,
        stdout_truncated: exit.stdout_truncated,
        stderr_truncated: exit.stderr_truncated,
        usage: Usage {
            wall_time_ms: exit.wall_time_ms,
            cpu_time_ms: cpu_ns / 1_000_000,
            peak_memory_bytes: cg.map_or(exit.max_rss_bytes, |u| u.peak_memory_bytes),
        },
    })
}
