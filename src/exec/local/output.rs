//! Draining a sandbox's stdout or stderr: keep the first `cap` bytes, count and drop the rest,
//! and keep reading so the program never blocks on a full pipe.

use tokio::io::{AsyncRead, AsyncReadExt};

use crate::exec::{OutputSink, StreamKind};

#[derive(Debug, Default)]
pub struct Captured {
    pub bytes: Vec<u8>,
    pub truncated: bool,
}

/// Drain `reader` keeping the first `cap` bytes; the kept bytes also go to `sink` as they come.
pub async fn drain<R: AsyncRead + Unpin>(
    mut reader: R,
    cap: u64,
    sink: Option<(OutputSink, StreamKind)>,
) -> Captured {
    let cap = cap as usize;
    let mut out = Captured {
        bytes: Vec::with_capacity(cap.min(64 << 10)),
        truncated: false,
    };
    let mut buf = vec![0u8; 64 << 10];
    loop {
        match reader.read(&mut buf).await {
            Ok(0) | Err(_) => return out,
            Ok(n) => {
                let room = cap.saturating_sub(out.bytes.len());
                if n > room {
                    out.truncated = true;
                }
                let kept = &buf[..n.min(room)];
                if let (Some((tx, kind)), false) = (&sink, kept.is_empty()) {
                    let _ = tx.send((*kind, kept.to_vec()));
                }
                out.bytes.extend_from_slice(kept);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn keeps_the_first_cap_bytes_and_flags_the_rest() {
        let data = vec![b'x'; 200_000];
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let c = drain(&data[..], 1000, Some((tx, StreamKind::Stdout))).await;
        assert_eq!(c.bytes.len(), 1000);
        assert!(c.truncated);
        let mut streamed = 0;
        while let Ok((StreamKind::Stdout, chunk)) = rx.try_recv() {
            streamed += chunk.len();
        }
        assert_eq!(streamed, 1000, "only what is kept is streamed");
        let c = drain(&data[..10], 1000, None).await;
        assert_eq!((c.bytes.len(), c.truncated), (10, false));
    }
}
