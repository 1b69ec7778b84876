//! The supervisor's side: `execbox __supervisor` in a docker sandbox (the container's
//! entrypoint), or the local sandbox's PID 1 after it built the root. It listens on a unix
//! socket in a directory only root can enter, takes one operation per connection (see
//! `proto.rs`) and runs it: calls (`call.rs`) as process trees of their own (`tree.rs`), file
//! operations on /work, contexts and background processes.
//!
//! It runs on a single-threaded tokio runtime: it is small, its threads would count against the
//! sandbox's pids limit, and a tree's pid must be registered with the reaper before the reaper
//! can run (`tree::spawn_tree`).

// A `Response` is built once per operation and sent: returning it by value as the error of a
// step is simpler than boxing it, and costs nothing that matters.
#![allow(clippy::result_large_err)]

pub mod bridge;
pub mod call;
pub mod context;
pub mod files;
pub mod process;
pub mod staging;
pub mod tree;

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::Arc;

use tokio::io::AsyncReadExt;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{UnixListener, UnixStream};

use super::proto::{self, io_async, ErrorKind, ErrorReply, Hello, Kind, Reply, Request, Response};

/// How a supervisor is started (flags of `execbox __supervisor`, or the local helper's boot).
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub socket: PathBuf,
    /// The work dir, `/work`.
    pub work: PathBuf,
    /// The sandbox's user: every program runs as it, every file written for it is its.
    pub uid: u32,
    pub gid: u32,
    /// Where a bare command name is looked up.
    pub path: String,
    /// Programs keep the supervisor's identity (the local executor under a user namespace).
    pub user_namespace: bool,
}

/// What every operation shares.
pub struct Shared {
    pub cfg: ServeConfig,
    /// execbox's seccomp filters, stacked on every program.
    pub filters: Vec<seccompiler::BpfProgram>,
    pub reaper: tree::Reaper,
    /// Whether trees get pid namespaces of their own (probed at start).
    pub pid_namespaces: bool,
    pub contexts: context::Contexts,
    pub processes: process::Processes,
    /// Calls' trees made ahead (`Request::Prepare`), oldest first.
    pub warm: std::sync::Mutex<Vec<tree::Warm>>,
}

impl Shared {
    /// Files written for the sandbox belong to its user.
    pub fn owner(&self) -> (u32, u32) {
        if self.cfg.user_namespace {
            (0, 0)
        } else {
            (self.cfg.uid, self.cfg.gid)
        }
    }
}

/// Run the supervisor until it is killed. Never returns.
pub fn serve(cfg: ServeConfig) -> ! {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(2)
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("execbox supervisor: runtime: {e}");
            std::process::exit(125)
        }
    };
    let code = match rt.block_on(run(cfg)) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("execbox supervisor: {e}");
            125
        }
    };
    std::process::exit(code)
}

async fn run(cfg: ServeConfig) -> io::Result<()> {
    let filters = crate::exec::local::seccomp::compile().map_err(io::Error::other)?;
    // The supervisor is the sandbox's last process the OOM killer should pick.
    let _ = std::fs::write("/proc/self/oom_score_adj", "-1000");
    let _ = std::fs::remove_file(&cfg.socket);
    // The socket is made 0600 by the umask at bind: under gVisor a socket on the host's
    // filesystem (runsc --host-uds=create) can be neither stat'ed nor chmod'ed afterwards.
    // SAFETY: umask only changes this process's file creation mask.
    let old_mask = unsafe { libc::umask(0o177) };
    let listener = UnixListener::bind(&cfg.socket);
    // SAFETY: as above, restoring it.
    unsafe { libc::umask(old_mask) };
    let listener = listener?;
    let shared = Arc::new(Shared {
        pid_namespaces: probe_pid_namespaces(),
        cfg,
        filters,
        reaper: tree::Reaper::default(),
        contexts: Default::default(),
        processes: Default::default(),
        warm: Default::default(),
    });
    let mut sigchld = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::child())?;
    {
        let shared = shared.clone();
        tokio::spawn(async move {
            loop {
                shared.reaper.reap();
                if sigchld.recv().await.is_none() {
                    return;
                }
            }
        });
    }
    loop {
        let (stream, _) = listener.accept().await?;
        let shared = shared.clone();
        tokio::spawn(async move {
            if let Err(e) = handle(shared, stream).await {
                tracing::debug!("supervisor connection: {e}");
            }
        });
    }
}

/// Whether this process may give a child a pid namespace of its own.
fn probe_pid_namespaces() -> bool {
    // SAFETY: clone as fork; the child only calls _exit.
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone,
            (libc::CLONE_NEWPID | libc::SIGCHLD) as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    if pid == 0 {
        // SAFETY: the child ends at once.
        unsafe { libc::_exit(0) }
    }
    if pid < 0 {
        return false;
    }
    let mut status = 0;
    // SAFETY: waiting for our own child.
    unsafe { libc::waitpid(pid as i32, &mut status, 0) };
    true
}

/// One connection: the request (with any descriptors passed along its first byte), the
/// operation, the response.
async fn handle(shared: Arc<Shared>, stream: UnixStream) -> io::Result<()> {
    let (first, fds) = recv_first(&stream).await?;
    let (mut rd, mut wr) = stream.into_split();
    let mut len = [0u8; 4];
    len[0] = first;
    rd.read_exact(&mut len[1..]).await?;
    let (kind, payload) = io_async::read_rest(&mut rd, len).await?;
    let request: Request = match (kind, serde_json::from_slice(&payload)) {
        (Kind::Request, Ok(r)) => r,
        (_, r) => {
            let msg = match r {
                Err(e) => format!("not a request: {e}"),
                Ok(_) => format!("expected a request frame, got {kind:?}"),
            };
            return respond(&mut wr, error(ErrorKind::Protocol, msg)).await;
        }
    };
    let response = match dispatch(&shared, request, fds, &mut rd, &mut wr).await {
        Some(r) => r,
        // The service went away mid-operation: whatever it started is already undone.
        None => return Ok(()),
    };
    respond(&mut wr, response).await
}

/// Run one operation. `None` when the connection closed before it ended.
async fn dispatch(
    shared: &Arc<Shared>,
    request: Request,
    fds: Vec<OwnedFd>,
    rd: &mut OwnedReadHalf,
    wr: &mut OwnedWriteHalf,
) -> Option<Response> {
    match request {
        Request::Hello => Some(ok(Reply {
            hello: Some(Hello {
                version: proto::VERSION,
                pid: std::process::id(),
            }),
            ..Default::default()
        })),
        Request::Exec(spec) => call::exec(shared, spec, fds, rd, wr).await,
        Request::Prepare { token, cgroup_fds } => {
            Some(call::prepare(shared, token, cgroup_fds, fds))
        }
        Request::ContextCreate(spec) => Some(shared.contexts.create(shared, spec).await),
        Request::ContextExec(spec) => Some(shared.contexts.exec(spec, rd, wr).await),
        Request::ContextDelete { id } => Some(shared.contexts.delete(&id).await),
        Request::ContextList => Some(shared.contexts.list()),
        Request::ProcessStart(spec) => Some(shared.processes.start(shared, spec)),
        Request::ProcessList => Some(shared.processes.list()),
        Request::ProcessLogs { id, follow } => {
            Some(shared.processes.logs(&id, follow, rd, wr).await)
        }
        Request::ProcessKill { id } => Some(shared.processes.kill(&id).await),
        Request::CheckPaths { paths } => Some(
            answer(
                paths_of(&paths)
                    .map(|paths| bridge::plain(shared, move |w| files::check_paths(w, &paths))),
                |()| Reply::default(),
            )
            .await,
        ),
        Request::List { path } => Some(
            answer(
                files::raw_path(&path)
                    .map_err(Response::Error)
                    .map(|p| bridge::plain(shared, move |w| files::list(w, &p))),
                |entries| Reply {
                    entries: Some(entries),
                    ..Default::default()
                },
            )
            .await,
        ),
        Request::Read { path, max } => {
            let path = match files::raw_path(&path) {
                Ok(p) => p,
                Err(e) => return Some(Response::Error(e)),
            };
            bridge::output(shared, wr, move |w, out| files::read(w, &path, max, out))
                .await
                .map(|r| r.map_or_else(|e| e, |_| ok(Reply::default())))
        }
        Request::TarOut => bridge::output(shared, wr, files::tar_out)
            .await
            .map(|r| r.map_or_else(|e| e, |()| ok(Reply::default()))),
        Request::Write { path, executable } => {
            let path = match files::raw_path(&path) {
                Ok(p) => p,
                Err(e) => return Some(Response::Error(e)),
            };
            let owner = shared.owner();
            bridge::input(shared, rd, move |w, input| {
                files::write(w, &path, executable, owner, input)
            })
            .await
            .map(|r| r.map_or_else(|e| e, |()| ok(Reply::default())))
        }
        Request::TarIn => {
            let owner = shared.owner();
            bridge::input(shared, rd, move |w, input| files::tar_in(w, input, owner))
                .await
                .map(|r| r.map_or_else(|e| e, |()| ok(Reply::default())))
        }
        Request::KillAll if std::process::id() == 1 => {
            shared.contexts.kill_all().await;
            shared.processes.kill_all().await;
            kill_all();
            Some(ok(Reply::default()))
        }
        Request::KillAll => Some(error(
            ErrorKind::Protocol,
            "kill_all needs the supervisor to be its sandbox's init",
        )),
    }
}

/// The answer of a plain operation: its reply, or the error it failed with.
async fn answer<T, F: std::future::Future<Output = Result<T, Response>>>(
    op: Result<F, Response>,
    reply: impl FnOnce(T) -> Reply,
) -> Response {
    match op {
        Ok(f) => match f.await {
            Ok(v) => ok(reply(v)),
            Err(e) => e,
        },
        Err(e) => e,
    }
}

fn paths_of(raw: &[proto::RawPath]) -> Result<Vec<Vec<u8>>, Response> {
    raw.iter()
        .map(|p| files::raw_path(p).map_err(Response::Error))
        .collect()
}

/// SIGKILL every process of the sandbox but the supervisor itself.
fn kill_all() {
    // SAFETY: kill(2) with -1 signals every process we may signal but ourselves; inside a
    // sandbox's pid namespace that is the sandbox.
    unsafe { libc::kill(-1, libc::SIGKILL) };
}

pub fn ok(reply: Reply) -> Response {
    Response::Ok(reply)
}

pub fn error(kind: ErrorKind, message: impl Into<String>) -> Response {
    Response::Error(ErrorReply {
        kind,
        message: message.into(),
    })
}

pub async fn respond(wr: &mut OwnedWriteHalf, response: Response) -> io::Result<()> {
    let payload = serde_json::to_vec(&response).map_err(io::Error::other)?;
    io_async::write_frame(wr, Kind::Response, &payload).await
}

/// The connection's first byte, with the descriptors sent along it (SCM_RIGHTS).
async fn recv_first(stream: &UnixStream) -> io::Result<(u8, Vec<OwnedFd>)> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    use std::os::fd::AsRawFd;
    loop {
        stream.readable().await?;
        let got = stream.try_io(tokio::io::Interest::READABLE, || {
            let mut byte = [0u8; 1];
            let mut iov = [std::io::IoSliceMut::new(&mut byte)];
            let mut space = nix::cmsg_space!([std::os::fd::RawFd; 16]);
            let msg = recvmsg::<()>(
                stream.as_raw_fd(),
                &mut iov,
                Some(&mut space),
                MsgFlags::MSG_CMSG_CLOEXEC,
            )
            .map_err(io::Error::from)?;
            let mut fds = Vec::new();
            for c in msg.cmsgs().map_err(io::Error::from)? {
                if let ControlMessageOwned::ScmRights(raw) = c {
                    // SAFETY: the kernel just installed these descriptors for us.
                    fds.extend(
                        raw.into_iter()
                            .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
                    );
                }
            }
            if msg.bytes == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "closed before a request",
                ));
            }
            Ok((byte[0], fds))
        });
        match got {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            other => return other,
        }
    }
}
