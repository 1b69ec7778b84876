//! One step of a one-shot run in a pool container: one `Exec` request to the container's
//! supervisor, under the host's deadline and CPU watch, then judged. The program's output only
//! ever arrives inside the protocol's output frames, so nothing it prints can be taken for the
//! service's or the engine's own messages.

use std::time::Duration;

use base64::Engine as _;

use super::{host_cgroup_usage, oom::OomWatch, StepInput};
use crate::exec::{ExecError, Status, StepResult, Usage};
use crate::policy::Limits;
use crate::sandbox::supervised::CallCgroup;
use crate::supervisor::client::{SupError, Supervisor};
use crate::supervisor::proto::{
    raw_path, CallSpec, Control, Ended, ErrorKind, InlineFile, ProcLimits, Request,
};

/// The supervisor keeps a call's deadline itself; the host tells it again this long after
/// (a supervisor that missed it), and stops waiting for its answer after [`GRACE`].
const NUDGE: Duration = Duration::from_secs(2);
const GRACE: Duration = Duration::from_secs(5);

/// Where a step runs: the container, its supervisor and the call's cgroup (None under gVisor
/// or with a remote engine: the container's own cgroup is read instead, from `baseline` on).
pub(crate) struct Target<'a> {
    pub id: &'a str,
    pub sup: &'a Supervisor,
    pub cgroup: Option<&'a dyn CallCgroup>,
    pub baseline: Usage,
    pub ooms: &'a OomWatch,
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

pub(crate) fn sup_error(what: &str, e: SupError) -> ExecError {
    match e {
        SupError::Remote(ErrorKind::Setup, m) => ExecError::Setup(format!("{what}: {m}")),
        e => ExecError::Unavailable("docker".into(), format!("{what}: {e}")),
    }
}

impl Target<'_> {
    /// CPU time of the call so far, in ms.
    fn cpu_ms(&self) -> Option<u64> {
        match self.cgroup {
            Some(cg) => Some(cg.cpu_time_ns() / 1_000_000),
            None => host_cgroup_usage(self.id)
                .map(|u| u.cpu_time_ms.saturating_sub(self.baseline.cpu_time_ms)),
        }
    }

    /// CPU and peak memory of the call, and whether the OOM killer struck in it.
    async fn usage(&self, killed: bool) -> (Usage, bool) {
        match self.cgroup {
            Some(cg) => {
                let u = cg.usage();
                let usage = Usage {
                    wall_time_ms: 0,
                    cpu_time_ms: u.cpu_time_ns / 1_000_000,
                    peak_memory_bytes: u.peak_memory_bytes,
                };
                (usage, u.oom_kills > 0)
            }
            None => {
                let u = host_cgroup_usage(self.id).unwrap_or_default();
                let usage = Usage {
                    cpu_time_ms: u.cpu_time_ms.saturating_sub(self.baseline.cpu_time_ms),
                    ..u
                };
                // Only a SIGKILL can be the OOM killer's work; then wait briefly for the event.
                let oom = killed && self.ooms.check(self.id, Duration::from_millis(300)).await;
                (usage, oom)
            }
        }
    }

    /// Run `input` under `limits`; with `collect`, the bytes of that file of /work afterwards.
    pub async fn run(
        &self,
        limits: &Limits,
        open_files: u64,
        input: StepInput<'_>,
        collect: Option<&str>,
    ) -> Result<(StepResult, Option<Vec<u8>>), ExecError> {
        let fds = match self.cgroup {
            Some(cg) => cg
                .procs_fds()
                .map_err(|e| ExecError::Io("opening the call's cgroup".into(), e))?,
            None => Vec::new(),
        };
        let spec = CallSpec {
            argv: input.argv,
            env: input.env,
            cwd: String::new(),
            files: input
                .files
                .iter()
                .map(|f| InlineFile {
                    path: raw_path(f.path.as_bytes()),
                    content: b64(&f.content),
                })
                .collect(),
            limits: ProcLimits {
                wall_time_ms: limits.wall_time_ms,
                cpu_time_ms: limits.cpu_time_ms,
                output_bytes: limits.output_bytes,
                open_files,
                file_bytes: limits.disk_bytes,
            },
            cgroup_fds: fds.len(),
        };
        if let Some(f) = input.executable {
            let write = Request::Write {
                path: raw_path(f.path.as_bytes()),
                executable: true,
            };
            let body =
                futures_util::stream::iter([Ok::<_, std::convert::Infallible>(f.content.clone())]);
            self.sup
                .write_stream(write, body)
                .await
                .map_err(|e| sup_error("writing the compiled program", e))?;
        }
        self.ooms.forget(self.id);
        let (control, control_rx) = tokio::sync::mpsc::channel(4);
        let call = self
            .sup
            .exec(spec, input.stdin, fds, input.stream, Some(control_rx));
        tokio::pin!(call);
        let wall = Duration::from_millis(limits.wall_time_ms);
        let deadline = tokio::time::sleep(wall + NUDGE);
        tokio::pin!(deadline);
        let backstop = tokio::time::sleep(wall + GRACE);
        tokio::pin!(backstop);
        let mut cpu_tick = tokio::time::interval(Duration::from_millis(20));
        let (mut cpu_over, mut past_deadline) = (false, false);
        let out = loop {
            tokio::select! {
                out = &mut call => match out {
                    Ok(out) => break out,
                    // Under gVisor the OOM killer takes the whole sandbox, supervisor included.
                    Err(SupError::Protocol(_)) if self.cgroup.is_none() && self.ooms.check(self.id, Duration::from_millis(500)).await => {
                        return Ok((oom_killed(), None));
                    }
                    Err(e) => return Err(sup_error("running the program", e)),
                },
                _ = &mut deadline, if !past_deadline => {
                    past_deadline = true;
                    let _ = control.try_send(Control::Deadline);
                }
                _ = &mut backstop => {
                    return Err(ExecError::Unavailable("docker".into(), format!("the container's supervisor did not end the program within {} s of its deadline", GRACE.as_secs())));
                }
                _ = cpu_tick.tick(), if !cpu_over => {
                    if self.cpu_ms().is_some_and(|ms| ms >= limits.cpu_time_ms) {
                        cpu_over = true;
                        let _ = control.try_send(Control::CpuLimit);
                    }
                }
            }
        };
        let exit = &out.exit;
        let killed = exit.signal == Some(libc::SIGKILL);
        let (mut usage, oom) = self.usage(killed).await;
        if self.cgroup.is_none() {
            // Under gVisor the container's cgroup may show less than gVisor's kernel counted
            // for the call's own tasks (which RLIMIT_CPU goes by): the larger figure holds.
            usage.cpu_time_ms = usage.cpu_time_ms.max(exit.cpu_time_ms);
        }
        let cpu_over = cpu_over || usage.cpu_time_ms >= limits.cpu_time_ms;
        let (status, exit_code, signal) = match exit.ended {
            Some(Ended::Deadline) => (Status::Timeout, None, Some(libc::SIGKILL)),
            Some(Ended::CpuLimit) => (Status::CpuLimit, None, Some(libc::SIGKILL)),
            _ => match (exit.exit_code, exit.signal) {
                (Some(0), _) => (Status::Ok, Some(0), None),
                _ if oom => (Status::MemoryLimit, None, Some(libc::SIGKILL)),
                (_, Some(s)) if s == libc::SIGXCPU || (s == libc::SIGKILL && cpu_over) => {
                    (Status::CpuLimit, None, Some(s))
                }
                (_, Some(s)) => (Status::Killed, None, Some(s)),
                (c, None) => (Status::Error, c, None),
            },
        };
        let result = StepResult {
            status,
            exit_code,
            signal: signal.map(crate::exec::signal_name),
            stdout: out.stdout,
            stderr: out.stderr,
            stdout_truncated: exit.stdout_truncated,
            stderr_truncated: exit.stderr_truncated,
            usage: Usage {
                wall_time_ms: exit.wall_time_ms,
                ..usage
            },
        };
        let collected = match collect {
            Some(path) if result.status == Status::Ok => {
                let read = Request::Read {
                    path: raw_path(path.as_bytes()),
                    max: limits.disk_bytes,
                };
                match self.sup.read_all(read, limits.disk_bytes).await {
                    Ok(bytes) => Some(bytes),
                    Err(SupError::Remote(ErrorKind::NotFound | ErrorKind::TooLarge, _)) => None,
                    Err(e) => return Err(sup_error("collecting the compiled program", e)),
                }
            }
            _ => None,
        };
        Ok((result, collected))
    }
}

/// A step whose container the OOM killer took whole (gVisor): no output or usage survives it.
fn oom_killed() -> StepResult {
    StepResult {
        status: Status::MemoryLimit,
        exit_code: None,
        signal: Some(crate::exec::signal_name(libc::SIGKILL)),
        stdout: Vec::new(),
        stderr: Vec::new(),
        stdout_truncated: false,
        stderr_truncated: false,
        usage: Usage::default(),
    }
}
