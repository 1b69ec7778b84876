//! The service's side of the supervisor protocol: one connection per operation (see
//! `proto.rs`). Dropping an operation's future closes its connection, which cancels it in the
//! sandbox.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use tokio::io::AsyncWriteExt;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;
use tokio::sync::mpsc;

mod stateful;
pub use stateful::{ContextOutput, LogItem};

use super::proto::{
    self, io_async, CallExit, CallSpec, Control, ErrorKind, Hello, Kind, Reply, Request, Response,
};
use crate::exec::{OutputSink, StreamKind};

#[derive(Debug, thiserror::Error)]
pub enum SupError {
    /// Nothing answers on the socket (the supervisor is not running).
    #[error("the sandbox's supervisor does not answer: {0}")]
    Unreachable(String),
    /// The connection broke or carried something unexpected.
    #[error("the sandbox's supervisor broke the protocol: {0}")]
    Protocol(String),
    /// The supervisor refused or failed the operation.
    #[error("{1}")]
    Remote(ErrorKind, String),
}

/// What a call produced.
#[derive(Debug, Default)]
pub struct CallOutput {
    pub exit: CallExit,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// A handle on one sandbox's supervisor: its socket's path.
#[derive(Debug, Clone)]
pub struct Supervisor {
    socket: PathBuf,
}

/// An open operation.
struct Op {
    rd: OwnedReadHalf,
    wr: OwnedWriteHalf,
}

fn broken(e: impl std::fmt::Display) -> SupError {
    SupError::Protocol(e.to_string())
}

impl Supervisor {
    pub fn new(socket: PathBuf) -> Supervisor {
        Supervisor { socket }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Connect and send `request`, with `fds` passed along its first byte.
    async fn open(&self, request: &Request, fds: &[OwnedFd]) -> Result<Op, SupError> {
        let stream = UnixStream::connect(&self.socket)
            .await
            .map_err(|e| SupError::Unreachable(format!("{}: {e}", self.socket.display())))?;
        let payload = serde_json::to_vec(request).map_err(broken)?;
        let mut frame = proto::header(Kind::Request, payload.len()).to_vec();
        frame.extend_from_slice(&payload);
        send_first(&stream, frame[0], fds).await.map_err(broken)?;
        let (rd, mut wr) = stream.into_split();
        wr.write_all(&frame[1..]).await.map_err(broken)?;
        Ok(Op { rd, wr })
    }

    /// Wait until the supervisor answers `Hello`, for at most `timeout`.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<Hello, SupError> {
        let until = tokio::time::Instant::now() + timeout;
        loop {
            match self.hello().await {
                Ok(h) => return Ok(h),
                Err(e) if tokio::time::Instant::now() >= until => return Err(e),
                Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
    }

    pub async fn hello(&self) -> Result<Hello, SupError> {
        let reply = self.simple(Request::Hello).await?;
        reply
            .hello
            .ok_or_else(|| broken("a hello answer without hello"))
    }

    /// An operation without input or output frames.
    pub async fn simple(&self, request: Request) -> Result<Reply, SupError> {
        let mut op = self.open(&request, &[]).await?;
        op.finish(|_, _| Ok(())).await
    }

    /// Run one call. Output goes to `sink` as it arrives (and is returned whole); a message on
    /// `control` stops the call. Dropping the future kills the call in the sandbox.
    pub async fn exec(
        &self,
        spec: CallSpec,
        stdin: &[u8],
        cgroup_fds: Vec<OwnedFd>,
        sink: Option<OutputSink>,
        mut control: Option<mpsc::Receiver<Control>>,
    ) -> Result<CallOutput, SupError> {
        let mut spec = spec;
        spec.cgroup_fds = cgroup_fds.len();
        let mut op = self.open(&Request::Exec(spec), &cgroup_fds).await?;
        drop(cgroup_fds);
        op.input(stdin).await?;
        let mut out = CallOutput::default();
        loop {
            let frame = tokio::select! {
                f = io_async::read_frame(&mut op.rd) => f.map_err(broken)?,
                c = recv(&mut control) => {
                    match c {
                        Some(c) => {
                            let payload = serde_json::to_vec(&c).map_err(broken)?;
                            io_async::write_frame(&mut op.wr, Kind::Control, &payload).await.map_err(broken)?;
                        }
                        None => control = None,
                    }
                    continue;
                }
            };
            match frame {
                Some((Kind::Stdout, b)) => {
                    if let Some(s) = &sink {
                        let _ = s.send((StreamKind::Stdout, b.clone()));
                    }
                    out.stdout.extend_from_slice(&b);
                }
                Some((Kind::Stderr, b)) => {
                    if let Some(s) = &sink {
                        let _ = s.send((StreamKind::Stderr, b.clone()));
                    }
                    out.stderr.extend_from_slice(&b);
                }
                Some((Kind::Response, b)) => {
                    let reply = response(&b)?;
                    out.exit = reply
                        .exit
                        .ok_or_else(|| broken("a call answered without its exit"))?;
                    return Ok(out);
                }
                Some((k, _)) => return Err(broken(format!("unexpected {k:?} frame in a call"))),
                None => return Err(broken("the connection closed during a call")),
            }
        }
    }

    /// Make the next call's tree ahead, in the cgroups of `cgroup_fds` (`Request::Prepare`).
    pub async fn prepare(&self, token: String, cgroup_fds: Vec<OwnedFd>) -> Result<(), SupError> {
        let request = Request::Prepare {
            token,
            cgroup_fds: cgroup_fds.len(),
        };
        let mut op = self.open(&request, &cgroup_fds).await?;
        drop(cgroup_fds);
        op.finish(|_, _| Ok(())).await.map(|_| ())
    }

    /// An operation whose output is `Data` frames, read whole (at most `max` bytes).
    pub async fn read_all(&self, request: Request, max: u64) -> Result<Vec<u8>, SupError> {
        let mut op = self.open(&request, &[]).await?;
        let mut buf = Vec::new();
        op.finish(|kind, b| {
            if kind == Kind::Data {
                if buf.len() as u64 + b.len() as u64 > max {
                    return Err(broken("more data than asked for"));
                }
                buf.extend_from_slice(&b);
            }
            Ok(())
        })
        .await?;
        Ok(buf)
    }

    /// An operation whose output is `Data` frames, as a stream of chunks (an archive). The
    /// stream ends with an error item if the operation fails part-way.
    pub async fn read_stream(
        &self,
        request: Request,
    ) -> Result<impl Stream<Item = Result<Vec<u8>, SupError>> + Send + 'static, SupError> {
        let op = self.open(&request, &[]).await?;
        Ok(futures_util::stream::unfold(Some(op), |op| async move {
            let mut op = op?;
            match io_async::read_frame(&mut op.rd).await {
                Ok(Some((Kind::Data, b))) => Some((Ok(b), Some(op))),
                Ok(Some((Kind::Response, b))) => match response(&b) {
                    Ok(_) => None,
                    Err(e) => Some((Err(e), None)),
                },
                Ok(Some((k, _))) => Some((Err(broken(format!("unexpected {k:?} frame"))), None)),
                Ok(None) => Some((Err(broken("the connection closed mid-stream")), None)),
                Err(e) => Some((Err(broken(e)), None)),
            }
        }))
    }

    /// An operation whose input is a stream of chunks (a file, an archive).
    pub async fn write_stream<E: std::fmt::Display>(
        &self,
        request: Request,
        body: impl Stream<Item = Result<Vec<u8>, E>> + Send,
    ) -> Result<Reply, SupError> {
        let mut op = self.open(&request, &[]).await?;
        let mut body = std::pin::pin!(body);
        // The supervisor may refuse before it has read everything (a full disk): its answer
        // is read as soon as it comes, and then wins over a broken pipe.
        let sent: Result<(), SupError> = async {
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|e| {
                    SupError::Remote(ErrorKind::Io, format!("reading the body: {e}"))
                })?;
                for piece in chunk.chunks(proto::CHUNK) {
                    io_async::write_frame(&mut op.wr, Kind::Input, piece)
                        .await
                        .map_err(broken)?;
                }
            }
            io_async::write_frame(&mut op.wr, Kind::InputEnd, &[])
                .await
                .map_err(broken)
        }
        .await;
        match sent {
            Err(SupError::Remote(k, m)) => Err(SupError::Remote(k, m)),
            _ => op.finish(|_, _| Ok(())).await,
        }
    }

    pub async fn kill_all(&self) -> Result<(), SupError> {
        self.simple(Request::KillAll).await.map(|_| ())
    }
}

impl Op {
    async fn input(&mut self, bytes: &[u8]) -> Result<(), SupError> {
        for piece in bytes.chunks(proto::CHUNK) {
            io_async::write_frame(&mut self.wr, Kind::Input, piece)
                .await
                .map_err(broken)?;
        }
        io_async::write_frame(&mut self.wr, Kind::InputEnd, &[])
            .await
            .map_err(broken)
    }

    /// Read frames to the response, handing the others to `each`.
    async fn finish(
        &mut self,
        mut each: impl FnMut(Kind, Vec<u8>) -> Result<(), SupError>,
    ) -> Result<Reply, SupError> {
        loop {
            match io_async::read_frame(&mut self.rd).await.map_err(broken)? {
                Some((Kind::Response, b)) => return response(&b),
                Some((k, b)) => each(k, b)?,
                None => return Err(broken("the connection closed before the answer")),
            }
        }
    }
}

fn response(payload: &[u8]) -> Result<Reply, SupError> {
    match serde_json::from_slice::<Response>(payload).map_err(broken)? {
        Response::Ok(r) => Ok(r),
        Response::Error(e) => Err(SupError::Remote(e.kind, e.message)),
    }
}

async fn recv(control: &mut Option<mpsc::Receiver<Control>>) -> Option<Control> {
    match control {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// The first byte of a connection, with `fds` (SCM_RIGHTS) along it.
async fn send_first(stream: &UnixStream, byte: u8, fds: &[OwnedFd]) -> std::io::Result<()> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    let raw: Vec<i32> = fds.iter().map(|f| f.as_raw_fd()).collect();
    loop {
        stream.writable().await?;
        let sent = stream.try_io(tokio::io::Interest::WRITABLE, || {
            let iov = [std::io::IoSlice::new(std::slice::from_ref(&byte))];
            let cmsgs = [ControlMessage::ScmRights(&raw)];
            let cmsgs: &[ControlMessage] = if raw.is_empty() { &[] } else { &cmsgs };
            sendmsg::<()>(stream.as_raw_fd(), &iov, cmsgs, MsgFlags::empty(), None)
                .map_err(std::io::Error::from)
        });
        match sent {
            Ok(1) => return Ok(()),
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
}
