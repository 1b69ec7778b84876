//! One process in a container through the engine's exec API: stdin written while stdout and
//! stderr are drained with caps, the host-owned deadline, and the exit code.
//!
//! The output stream of an exec stays open while anything the program started still holds its
//! pipes (a daemonized child), so the end of the run is taken from the exec's own state, polled,
//! not from the end of the stream.

use std::time::{Duration, Instant};

use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use bollard::Docker;
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;

use crate::exec::{OutputSink, StreamKind};

#[derive(Debug, Default)]
pub struct Captured {
    pub bytes: Vec<u8>,
    pub truncated: bool,
}

impl Captured {
    /// Keep what fits under `cap`; the kept part also goes to `sink`.
    fn push(&mut self, chunk: &[u8], cap: usize, sink: Option<(&OutputSink, StreamKind)>) {
        let room = cap.saturating_sub(self.bytes.len());
        if chunk.len() > room {
            self.truncated = true;
        }
        let kept = &chunk[..chunk.len().min(room)];
        if let (Some((tx, kind)), false) = (sink, kept.is_empty()) {
            let _ = tx.send((kind, kept.to_vec()));
        }
        self.bytes.extend_from_slice(kept);
    }

    pub fn lossy(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }
}

pub struct ExecOutcome {
    /// None when the deadline passed first, or the CPU watch stopped the run.
    pub exit_code: Option<i64>,
    /// The container's CPU time reached the watch's limit (see [`CpuWatch`]).
    pub cpu_over: bool,
    pub stdout: Captured,
    pub stderr: Captured,
    pub wall: Duration,
}

pub struct ExecSpec<'a> {
    /// The uid (= gid) the process runs as: the container's own.
    pub uid: u32,
    pub argv: Vec<String>,
    pub env: Vec<String>,
    pub stdin: &'a [u8],
    pub output_cap: u64,
    pub deadline: Duration,
    pub stream: Option<OutputSink>,
    /// Stop when the container's CPU time passes a limit.
    pub cpu: Option<CpuWatch>,
}

/// The container's cgroup CPU time, read from the host every 20 ms as the local executor does:
/// RLIMIT_CPU counts one process at a time (and gVisor's runsc does not enforce it at all), so
/// this is what holds a run to its `cpu_time_ms`. Needs the engine on this host (its cgroupfs);
/// without it the watch does nothing and RLIMIT_CPU alone applies.
pub struct CpuWatch {
    /// The container's CPU time before this process (a sandbox's container is long-lived).
    pub baseline_ms: u64,
    pub limit_ms: u64,
}

/// Run `spec` in `container`; on the deadline the caller kills the container.
pub async fn run(
    docker: &Docker,
    container: &str,
    spec: ExecSpec<'_>,
) -> Result<ExecOutcome, bollard::errors::Error> {
    let created = docker
        .create_exec(
            container,
            CreateExecOptions {
                cmd: Some(spec.argv),
                env: Some(spec.env),
                user: Some(super::container::user(spec.uid)),
                working_dir: Some("/work".to_string()),
                attach_stdin: Some(true),
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                ..Default::default()
            },
        )
        .await?;
    let started = Instant::now();
    let StartExecResults::Attached {
        mut output,
        mut input,
    } = docker
        .start_exec(
            &created.id,
            Some(StartExecOptions {
                detach: false,
                tty: false,
                output_capacity: Some(64 << 10),
            }),
        )
        .await?
    else {
        unreachable!("an exec started without detach is attached")
    };
    let stdin = spec.stdin.to_vec();
    let stream = spec.stream.clone();
    let writer = tokio::spawn(async move {
        // A program that never reads its stdin is fine: the write just fails when it ends.
        let _ = input.write_all(&stdin).await;
        let _ = input.shutdown().await;
    });

    let cap = spec.output_cap as usize;
    let (mut stdout, mut stderr) = (Captured::default(), Captured::default());
    let deadline = tokio::time::sleep(spec.deadline);
    tokio::pin!(deadline);
    // Polled only to notice a program that ended while a daemonized child keeps the stream open.
    let mut poll = tokio::time::interval_at(
        tokio::time::Instant::now() + Duration::from_millis(200),
        Duration::from_millis(100),
    );
    let mut exited_at: Option<Instant> = None;
    let mut stream_done = false;
    let mut cpu_tick = tokio::time::interval(Duration::from_millis(20));
    let mut cpu_over = false;
    let exit_code = loop {
        let check = tokio::select! {
            chunk = output.next(), if !stream_done => match chunk {
                Some(Ok(bollard::container::LogOutput::StdOut { message })) => { stdout.push(&message, cap, stream.as_ref().map(|s| (s, StreamKind::Stdout))); false }
                Some(Ok(bollard::container::LogOutput::StdErr { message })) => { stderr.push(&message, cap, stream.as_ref().map(|s| (s, StreamKind::Stderr))); false }
                Some(Ok(_)) => false,
                Some(Err(_)) | None => { stream_done = true; true }
            },
            _ = &mut deadline => break None,
            _ = poll.tick() => true,
            _ = cpu_tick.tick(), if spec.cpu.is_some() => {
                let watch = spec.cpu.as_ref().expect("checked by the guard");
                if super::host_cgroup_usage(container).is_some_and(|u| u.cpu_time_ms.saturating_sub(watch.baseline_ms) >= watch.limit_ms) {
                    cpu_over = true;
                    break None;
                }
                false
            }
        };
        if !check {
            continue;
        }
        let inspect = match docker.inspect_exec(&created.id).await {
            Ok(i) => i,
            // The exec went with its container, which died under the program (under gVisor
            // the host's OOM killer takes the whole sandbox): the program was killed with it.
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => break Some(128 + libc::SIGKILL as i64),
            Err(e) => return Err(e),
        };
        if inspect.running == Some(false) {
            // Give the stream a moment to deliver what the program wrote last.
            let at = *exited_at.get_or_insert_with(Instant::now);
            if stream_done || at.elapsed() > Duration::from_millis(100) {
                break Some(inspect.exit_code.unwrap_or(-1));
            }
        } else if stream_done {
            // The stream closed before the engine noticed the exit: ask again shortly.
            tokio::time::sleep(Duration::from_millis(2)).await;
            poll.reset_immediately();
        }
    };
    writer.abort();
    Ok(ExecOutcome {
        exit_code,
        cpu_over,
        stdout,
        stderr,
        wall: started.elapsed(),
    })
}
