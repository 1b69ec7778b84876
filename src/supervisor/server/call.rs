//! A call: one program run to its end in the sandbox (`Request::Exec`). Its files are written
//! first, its stdin arrives as input frames, its output leaves as `Stdout`/`Stderr` frames (at
//! most `output_bytes` of each), and it ends at the program's exit, at its wall-clock deadline
//! (kept here), at a `Control` frame from the service (its CPU watch), or when the connection
//! closes. Whichever it is, the call's whole tree is gone before the answer.

use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};

use super::tree::{spawn_tree, Program, TreeSpec, Warm};
use super::{error, ok, Shared};
use crate::supervisor::proto::{
    self, io_async, CallExit, CallSpec, Control, Ended, ErrorKind, Kind, Reply, Response,
};

/// The most stdin one call takes.
const MAX_STDIN: usize = 64 << 20;

pub async fn exec(
    shared: &Arc<Shared>,
    spec: CallSpec,
    cgroup_fds: Vec<OwnedFd>,
    rd: &mut OwnedReadHalf,
    wr: &mut OwnedWriteHalf,
) -> Option<Response> {
    let stdin = match read_input(rd, MAX_STDIN).await {
        Ok(Some(b)) => b,
        Ok(None) => return None,
        Err(e) => return Some(error(ErrorKind::Protocol, e)),
    };
    if cgroup_fds.len() != spec.cgroup_fds {
        return Some(error(
            ErrorKind::Protocol,
            format!(
                "{} cgroup descriptors announced, {} received",
                spec.cgroup_fds,
                cgroup_fds.len()
            ),
        ));
    }
    if let Err(e) = super::staging::write_inline(shared, &spec.files) {
        return Some(e);
    }
    let cwd = match super::staging::cwd(shared, &spec.cwd) {
        Ok(c) => c,
        Err(e) => return Some(e),
    };
    let started = Instant::now();
    let warm = spec.warm.as_deref().and_then(|t| take_warm(shared, t));
    let warm_tree = warm.and_then(|w| {
        let program = Program::new(shared, &spec.argv, &spec.env, &cwd, &spec.limits).ok()?;
        w.launch(&program)
    });
    let tree = match warm_tree {
        Some(t) => Ok(t),
        None => spawn_tree(
            shared,
            TreeSpec {
                argv: spec.argv.clone(),
                env: spec.env.clone(),
                cwd,
                limits: spec.limits.clone(),
                cgroup_fds,
                extra_fds: Vec::new(),
                stdin: true,
            },
        ),
    };
    let mut tree = match tree {
        Ok(t) => t,
        Err(e) => {
            return Some(error(
                ErrorKind::Setup,
                format!("starting the program: {e}"),
            ))
        }
    };
    // Stdin is written beside the call; a program that never reads it just leaves it be.
    let stdin_task = tree.stdin.take().map(|mut pipe| {
        tokio::spawn(async move {
            let _ = pipe.write_all(&stdin).await;
        })
    });

    let (Some(mut stdout), Some(mut stderr)) = (tree.stdout.take(), tree.stderr.take()) else {
        return Some(error(ErrorKind::Setup, "a tree without its output pipes"));
    };
    let cap = spec.limits.output_bytes;
    let deadline = tokio::time::sleep(Duration::from_millis(spec.limits.wall_time_ms.max(1)));
    tokio::pin!(deadline);
    let (mut out_buf, mut err_buf) = (vec![0u8; proto::CHUNK], vec![0u8; proto::CHUNK]);
    let (mut out_open, mut err_open) = (true, true);
    let (mut out_sent, mut err_sent) = (0u64, 0u64);
    let (mut out_cut, mut err_cut) = (false, false);
    let mut ended: Option<Ended> = None;
    let mut exit = None;
    let mut drain_until: Option<tokio::time::Instant> = None;
    let mut control_open = true;
    loop {
        if exit.is_some() && !out_open && !err_open {
            break;
        }
        let grace = async {
            match drain_until {
                Some(t) => tokio::time::sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            n = stdout.read(&mut out_buf), if out_open => match n {
                Ok(0) | Err(_) => out_open = false,
                Ok(n) => {
                    if forward(wr, Kind::Stdout, &out_buf[..n], cap, &mut out_sent, &mut out_cut).await.is_err() {
                        return None;
                    }
                }
            },
            n = stderr.read(&mut err_buf), if err_open => match n {
                Ok(0) | Err(_) => err_open = false,
                Ok(n) => {
                    if forward(wr, Kind::Stderr, &err_buf[..n], cap, &mut err_sent, &mut err_cut).await.is_err() {
                        return None;
                    }
                }
            },
            e = tree.wait(), if exit.is_none() => {
                exit = Some(e);
                // Every process of the tree is gone, so the pipes end; a grace bounds the wait
                // where the tree is a session, whose escapees may hold them.
                drain_until = Some(tokio::time::Instant::now() + Duration::from_secs(2));
            },
            _ = &mut deadline, if exit.is_none() && ended.is_none() => {
                ended = Some(Ended::Deadline);
                tree.kill();
            },
            _ = grace => break,
            frame = io_async::read_frame(rd), if control_open => match frame {
                Ok(Some((Kind::Control, payload))) => {
                    if exit.is_none() && ended.is_none() {
                        ended = Some(match serde_json::from_slice::<Control>(&payload) {
                            Ok(Control::CpuLimit) => Ended::CpuLimit,
                            _ => Ended::Deadline,
                        });
                        tree.kill();
                    }
                }
                Ok(Some(_)) => {}
                // The service is gone: the call ends with it (the tree dies on drop).
                Ok(None) | Err(_) => {
                    control_open = false;
                    exit?;
                }
            },
        }
    }
    if let Some(t) = stdin_task {
        t.abort();
    }
    let exit = exit.unwrap_or_default();
    let wall_time_ms = started.elapsed().as_millis() as u64;
    Some(ok(Reply {
        exit: Some(CallExit {
            ended: Some(ended.unwrap_or(Ended::Exited)),
            exit_code: exit.exit_code,
            signal: exit.signal,
            wall_time_ms,
            cpu_time_ms: exit.cpu_time_ms,
            max_rss_bytes: exit.max_rss_bytes,
            stdout_truncated: out_cut,
            stderr_truncated: err_cut,
        }),
        ..Default::default()
    }))
}

/// The most trees made ahead that wait at once: the service makes the next while a call is
/// starting in the last.
pub const MAX_WARM: usize = 2;

/// Make the next call's tree ahead (`Request::Prepare`).
pub fn prepare(
    shared: &Arc<Shared>,
    token: String,
    announced: usize,
    cgroup_fds: Vec<OwnedFd>,
) -> Response {
    if cgroup_fds.len() != announced {
        return error(
            ErrorKind::Protocol,
            format!(
                "{announced} cgroup descriptors announced, {} received",
                cgroup_fds.len()
            ),
        );
    }
    match Warm::prepare(shared, token, cgroup_fds) {
        Ok(w) => {
            let mut warm = shared.warm.lock().unwrap();
            // The oldest goes (killed on drop); the one before this stays for a call that was
            // given it and has not reached us yet.
            if warm.len() >= MAX_WARM {
                warm.remove(0);
            }
            warm.push(w);
            ok(Reply::default())
        }
        Err(e) => error(ErrorKind::Setup, format!("making a tree ahead: {e}")),
    }
}

/// The tree made ahead under `token`, if it is still waiting.
fn take_warm(shared: &Shared, token: &str) -> Option<Warm> {
    let mut warm = shared.warm.lock().unwrap();
    let i = warm.iter().position(|w| w.token() == token)?;
    Some(warm.remove(i))
}

/// Send what fits under the cap; count the rest as cut.
async fn forward(
    wr: &mut OwnedWriteHalf,
    kind: Kind,
    bytes: &[u8],
    cap: u64,
    sent: &mut u64,
    cut: &mut bool,
) -> std::io::Result<()> {
    let room = cap.saturating_sub(*sent) as usize;
    if bytes.len() > room {
        *cut = true;
    }
    let kept = &bytes[..bytes.len().min(room)];
    if kept.is_empty() {
        return Ok(());
    }
    *sent += kept.len() as u64;
    io_async::write_frame(wr, kind, kept).await
}

/// Input frames up to `InputEnd`, at most `max` bytes. `Ok(None)`: the connection closed.
pub async fn read_input(rd: &mut OwnedReadHalf, max: usize) -> Result<Option<Vec<u8>>, String> {
    let mut buf = Vec::new();
    loop {
        match io_async::read_frame(rd).await {
            Ok(Some((Kind::Input, b))) => {
                if buf.len() + b.len() > max {
                    return Err(format!("more than {max} bytes of input"));
                }
                buf.extend_from_slice(&b);
            }
            Ok(Some((Kind::InputEnd, _))) => return Ok(Some(buf)),
            Ok(Some((k, _))) => return Err(format!("unexpected {k:?} frame in the input")),
            Ok(None) | Err(_) => return Ok(None),
        }
    }
}
