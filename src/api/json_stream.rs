//! Answers written as they are serialized, in small chunks with backpressure, so no answer is
//! ever held whole in memory. JSON escapes a control byte as six (`\u0001`): a run's 16 MiB of
//! output would otherwise become a 96 MiB buffer per stream, on top of the result itself.

use std::io::Write;

use axum::body::{Body, Bytes};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tokio::sync::mpsc;

/// Bytes per chunk handed to the connection.
const CHUNK: usize = 64 << 10;
/// Chunks waiting for a slow reader before the serializer waits too.
const QUEUED: usize = 4;

/// A `Write` on a blocking thread whose bytes go to a response body: it blocks while the
/// client is behind and fails once the client has gone.
pub struct ChunkWriter {
    tx: mpsc::Sender<Bytes>,
    buf: Vec<u8>,
}

impl ChunkWriter {
    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        self.tx.blocking_send(chunk).map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the client went away")
        })
    }

    /// Run `f` with this writer on the blocking pool (serializing is CPU work and the writer
    /// blocks), and get the writer back.
    pub async fn with<F>(mut self, f: F) -> std::io::Result<ChunkWriter>
    where
        F: FnOnce(&mut ChunkWriter) -> std::io::Result<()> + Send + 'static,
    {
        tokio::task::spawn_blocking(move || f(&mut self).map(|()| self))
            .await
            .map_err(std::io::Error::other)?
    }

    /// Write `value` as JSON (on the blocking pool).
    pub async fn json<T: Serialize + Send + 'static>(
        self,
        value: T,
    ) -> std::io::Result<ChunkWriter> {
        self.with(move |w| serde_json::to_writer(w, &value).map_err(std::io::Error::from))
            .await
    }
}

impl Write for ChunkWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let mut rest = data;
        while !rest.is_empty() {
            let n = (CHUNK - self.buf.len()).min(rest.len());
            self.buf.extend_from_slice(&rest[..n]);
            rest = &rest[n..];
            if self.buf.len() >= CHUNK {
                self.send()?;
            }
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

impl ChunkWriter {
    /// Send `bytes` as they are, from async code (what was written before goes first).
    pub async fn send_async(&mut self, bytes: Bytes) -> std::io::Result<()> {
        let gone = |_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the client went away");
        if !self.buf.is_empty() {
            let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
            self.tx.send(chunk).await.map_err(gone)?;
        }
        self.tx.send(bytes).await.map_err(gone)
    }
}

/// A writer and the receiving end its chunks go to.
pub fn pair() -> (ChunkWriter, mpsc::Receiver<Bytes>) {
    let (tx, rx) = mpsc::channel::<Bytes>(QUEUED);
    (
        ChunkWriter {
            tx,
            buf: Vec::with_capacity(CHUNK),
        },
        rx,
    )
}

/// A body of what `rx` receives; it ends when the writer is dropped, and drops `guard` when
/// the client goes away (or the body ends).
pub fn body<G: Send + 'static>(rx: mpsc::Receiver<Bytes>, guard: G) -> Body {
    let stream = futures_util::stream::unfold((rx, guard), |(mut rx, guard)| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, std::convert::Infallible>(b), (rx, guard)))
    });
    Body::from_stream(stream)
}

/// A body fed by a `ChunkWriter`.
pub fn channel() -> (ChunkWriter, Body) {
    let (w, rx) = pair();
    (w, body(rx, ()))
}

/// `value` as an `application/json` answer, serialized as the client reads it.
pub fn json<T: Serialize + Send + 'static>(value: T) -> Response {
    let (w, body) = channel();
    tokio::spawn(async move {
        if let Ok(w) = w.json(value).await {
            let _ = w.with(|w| w.flush()).await;
        }
    });
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_large_value_arrives_whole_in_small_chunks() {
        let value = serde_json::json!({"stdout": "\u{1}".repeat(1 << 20)});
        let (w, body) = channel();
        let v = value.clone();
        let writer = tokio::spawn(async move {
            drop(w.json(v).await.unwrap().with(|w| w.flush()).await.unwrap())
        });
        let mut stream = body.into_data_stream();
        let mut all = Vec::new();
        let mut largest = 0;
        while let Some(chunk) = futures_util::StreamExt::next(&mut stream).await {
            let chunk = chunk.unwrap();
            largest = largest.max(chunk.len());
            all.extend_from_slice(&chunk);
        }
        writer.await.unwrap();
        assert_eq!(all.len(), 6 * (1 << 20) + r#"{"stdout":""}"#.len());
        assert_eq!(largest, CHUNK, "chunks are at most CHUNK bytes");
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&all).unwrap(),
            value
        );
    }
}
