//! Draining a sandbox's stdout or stderr: keep the first `cap` bytes, count and drop the rest,
//! and keep reading so the program never blocks on a full pipe.

use tokio::io::{AsyncRead, AsyncReadExt};

#[derive(Debug, Default)]
pub struct Captured {
    pub bytes: Vec<u8>,
    pub truncated: bool,
}

impl Captured {
    pub fn lossy(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }
}

pub async fn drain<R: AsyncRead + Unpin>(mut reader: R, cap: u64) -> Captured {
    let cap = cap as usize;
    let mut out = Captured { bytes: Vec::with_capacity(cap.min(64 << 10)), truncated: false };
    let mut buf = vec![0u8; 64 << 10];
    loop {
        match reader.read(&mut buf).await {
            Ok(0) | Err(_) => return out,
            Ok(n) => {
                let room = cap.saturating_sub(out.bytes.len());
                if n > room {
                    out.truncated = true;
                }
                out.bytes.extend_from_slice(&buf[..n.min(room)]);
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
        let c = drain(&data[..], 1000).await;
        assert_eq!(c.bytes.len(), 1000);
        assert!(c.truncated);
        let c = drain(&data[..10], 1000).await;
        assert_eq!((c.bytes.len(), c.truncated), (10, false));
    }
}
