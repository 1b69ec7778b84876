//! File operations are blocking code (`files.rs`, on `WorkDir`); the connection is async. These
//! bridges run one on the blocking pool and move its bytes to and from the connection's frames
//! through small bounded channels, so a large file or archive never sits whole in memory.

use std::io::{self, Read, Write};
use std::sync::Arc;

use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc;

use super::{files, Shared};
use crate::sandbox::fs::{FsError, WorkDir};
use crate::supervisor::proto::{self, io_async, ErrorKind, Kind, Response};

/// Chunks in flight between the blocking side and the connection.
const DEPTH: usize = 4;

fn open(shared: &Shared) -> Result<WorkDir, FsError> {
    WorkDir::open(&shared.cfg.work)
}

fn failed(e: &FsError) -> Response {
    Response::Error(files::error_reply(e))
}

fn joined<T>(r: Result<Result<T, FsError>, tokio::task::JoinError>) -> Result<T, Response> {
    match r {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(failed(&e)),
        Err(e) => Err(super::error(
            ErrorKind::Io,
            format!("a file operation failed: {e}"),
        )),
    }
}

/// A blocking operation with neither input nor output frames.
pub async fn plain<T: Send + 'static>(
    shared: &Arc<Shared>,
    f: impl FnOnce(&WorkDir) -> Result<T, FsError> + Send + 'static,
) -> Result<T, Response> {
    let shared = shared.clone();
    joined(tokio::task::spawn_blocking(move || f(&open(&shared)?)).await)
}

/// A blocking operation that writes `Data` frames. `None`: the connection closed.
pub async fn output<T: Send + 'static>(
    shared: &Arc<Shared>,
    wr: &mut OwnedWriteHalf,
    f: impl FnOnce(&WorkDir, &mut dyn Write) -> Result<T, FsError> + Send + 'static,
) -> Option<Result<T, Response>> {
    let shared = shared.clone();
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(DEPTH);
    let task = tokio::task::spawn_blocking(move || {
        let mut out = ChunkWriter {
            tx,
            buf: Vec::with_capacity(proto::CHUNK),
        };
        let r = f(&open(&shared)?, &mut out);
        // What is left is sent before the answer; a closed connection shows here as an error.
        out.flush()
            .map_err(|e| FsError::Io("sending data".into(), e))?;
        r
    });
    let mut gone = false;
    while let Some(chunk) = rx.recv().await {
        if io_async::write_frame(wr, Kind::Data, &chunk).await.is_err() {
            gone = true;
            break; // dropping rx fails the writer, which ends the operation
        }
    }
    drop(rx);
    let r = joined(task.await);
    (!gone).then_some(r)
}

/// A blocking operation that reads `Input` frames up to `InputEnd`. `None`: the connection
/// closed first (the operation saw an error and undid what it had started).
pub async fn input<T: Send + 'static>(
    shared: &Arc<Shared>,
    rd: &mut OwnedReadHalf,
    f: impl FnOnce(&WorkDir, &mut dyn Read) -> Result<T, FsError> + Send + 'static,
) -> Option<Result<T, Response>> {
    let shared = shared.clone();
    let (tx, rx) = mpsc::channel::<Result<Vec<u8>, ()>>(DEPTH);
    let task = tokio::task::spawn_blocking(move || {
        let mut input = ChunkReader {
            rx,
            chunk: Vec::new(),
            at: 0,
        };
        f(&open(&shared)?, &mut input)
    });
    let mut gone = false;
    loop {
        match io_async::read_frame(rd).await {
            Ok(Some((Kind::Input, b))) => {
                if tx.send(Ok(b)).await.is_err() {
                    break; // the operation ended early (a full disk): its answer says why
                }
            }
            Ok(Some((Kind::InputEnd, _))) => break,
            _ => {
                gone = true;
                let _ = tx.send(Err(())).await;
                break;
            }
        }
    }
    drop(tx);
    let r = joined(task.await);
    (!gone).then_some(r)
}

struct ChunkWriter {
    tx: mpsc::Sender<Vec<u8>>,
    buf: Vec<u8>,
}

impl Write for ChunkWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = proto::CHUNK - self.buf.len();
        let n = data.len().min(room);
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == proto::CHUNK {
            self.flush()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(proto::CHUNK));
        self.tx
            .blocking_send(chunk)
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the connection closed"))
    }
}

struct ChunkReader {
    rx: mpsc::Receiver<Result<Vec<u8>, ()>>,
    chunk: Vec<u8>,
    at: usize,
}

impl Read for ChunkReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.at == self.chunk.len() {
            match self.rx.blocking_recv() {
                Some(Ok(c)) => {
                    self.chunk = c;
                    self.at = 0;
                }
                Some(Err(())) => {
                    return Err(io::Error::new(
                        io::ErrorKind::ConnectionAborted,
                        "the service closed the connection mid-input",
                    ))
                }
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.chunk.len() - self.at);
        out[..n].copy_from_slice(&self.chunk[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}
