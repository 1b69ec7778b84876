//! One step of a one-shot run in a pool container: the compiled program written in first when
//! there is one, then one call to the container's supervisor (`exec::call`: the host's deadline
//! and CPU watch, the one classification), then a compile artifact read back. The program's
//! output only ever arrives inside the protocol's output frames, so nothing it prints can be
//! taken for the service's or the engine's own messages.

use std::time::Duration;

use super::{oom::OomWatch, StepInput};
use crate::exec::call::{self, inline, CallCgroup, CallError, Watch};
use crate::exec::{BoxFuture, ExecError, Status, StepResult, Usage};
use crate::policy::Limits;
use crate::supervisor::client::{SupError, Supervisor};
use crate::supervisor::proto::{raw_path, ErrorKind, Request};

/// The supervisor keeps a call's deadline itself; the host tells it again this long after
/// (a supervisor that missed it), and stops waiting for its answer after [`GRACE`].
const NUDGE: Duration = Duration::from_secs(2);
const GRACE: Duration = Duration::from_secs(5);

/// Where a step runs: the container, its supervisor and the call's cgroup.
pub(crate) struct Target<'a> {
    pub id: &'a str,
    pub sup: &'a Supervisor,
    pub cgroup: Option<&'a dyn CallCgroup>,
    /// False when `cgroup` is the container's own, measured from the step's start (under
    /// gVisor, whose kernel is what that cgroup holds, or with the call's cgroup not on this
    /// host): then the OOM record is the engine's events, and gVisor's count of the call's CPU
    /// may be the larger.
    pub own_cgroup: bool,
    pub ooms: &'a OomWatch,
}

pub(crate) fn sup_error(what: &str, e: SupError) -> ExecError {
    match e {
        SupError::Remote(ErrorKind::Setup, m) => ExecError::Setup(format!("{what}: {m}")),
        e => ExecError::Unavailable("docker".into(), format!("{what}: {e}")),
    }
}

impl Target<'_> {
    /// Run `input` under `limits`; with `collect`, the bytes of that file of /work afterwards.
    pub async fn run(
        &self,
        limits: &Limits,
        open_files: u64,
        input: StepInput<'_>,
        collect: Option<&str>,
    ) -> Result<(StepResult, Option<Vec<u8>>), ExecError> {
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
        let step = call::Step {
            argv: input.argv,
            env: input.env,
            files: input
                .files
                .iter()
                .map(|f| inline(&f.path, &f.content))
                .collect(),
            stdin: input.stdin,
            limits: *limits,
            open_files,
            stream: input.stream,
            warm: None,
        };
        let oom_events = || -> BoxFuture<'_, bool> {
            // Only a SIGKILL can be the OOM killer's work; wait briefly for the event.
            Box::pin(self.ooms.check(self.id, Duration::from_millis(300)))
        };
        let watch = Watch {
            cgroup: self.cgroup,
            nudge: NUDGE,
            give_up: GRACE,
            oom_events: (!self.own_cgroup).then_some(&oom_events as _),
            tree_cpu_floor: !self.own_cgroup,
        };
        let result = match call::run(self.sup, step, watch).await {
            Ok(r) => r,
            // Under gVisor the OOM killer takes the whole sandbox, supervisor included.
            Err(CallError::Supervisor(SupError::Protocol(_)))
                if !self.own_cgroup
                    && self.ooms.check(self.id, Duration::from_millis(500)).await =>
            {
                return Ok((oom_killed(), None));
            }
            Err(CallError::Supervisor(e)) => return Err(sup_error("running the program", e)),
            Err(CallError::Cgroup(e)) => {
                return Err(ExecError::Io("opening the call's cgroup".into(), e))
            }
            Err(CallError::NoAnswer) => {
                return Err(ExecError::Unavailable(
                    "docker".into(),
                    format!(
                        "the container's supervisor did not end the program within {} s of its deadline",
                        GRACE.as_secs()
                    ),
                ))
            }
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
