//! Background processes: trees that outlive the call that started them (a dev server the next
//! call tests). The supervisor keeps the newest `log_bytes` of each stream in a ring, follows
//! them for `ProcessLogs`, records how each ended, and kills a whole tree on `ProcessKill`.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::sync::{watch, Notify};

use super::tree::{spawn_tree, TreeExit, TreeSpec};
use super::{error, Shared};
use crate::supervisor::proto::{
    io_async, ErrorKind, Kind, ProcLimits, ProcessInfo, ProcessSpec, Reply, Response,
};

/// The background processes of one sandbox.
#[derive(Default)]
pub struct Processes {
    map: Mutex<HashMap<String, Arc<Process>>>,
}

struct Process {
    id: String,
    argv: Vec<String>,
    pid: u32,
    started_at_ms: u64,
    logs: Mutex<Logs>,
    /// Bumped whenever `logs` changes (output, or the end), for followers.
    changed: watch::Sender<u64>,
    kill: Notify,
}

/// The newest bytes of each stream, and how the process ended.
struct Logs {
    stdout: Ring,
    stderr: Ring,
    exit: Option<TreeExit>,
    /// Both output pipes are closed and the process was reaped: nothing more will come.
    finished: bool,
}

/// The newest `cap` bytes of a stream; `start` is the offset (in the whole stream) of the
/// first byte kept, so a follower can tell what it has already seen.
pub(super) struct Ring {
    cap: usize,
    start: u64,
    bytes: VecDeque<u8>,
}

impl Ring {
    pub(super) fn new(cap: usize) -> Ring {
        Ring {
            cap,
            start: 0,
            bytes: VecDeque::new(),
        }
    }

    pub(super) fn push(&mut self, data: &[u8]) {
        let data = if data.len() > self.cap {
            self.start += (data.len() - self.cap) as u64;
            &data[data.len() - self.cap..]
        } else {
            data
        };
        let over = (self.bytes.len() + data.len()).saturating_sub(self.cap);
        self.bytes.drain(..over);
        self.start += over as u64;
        self.bytes.extend(data);
    }

    /// The offset just past the newest byte.
    pub(super) fn end(&self) -> u64 {
        self.start + self.bytes.len() as u64
    }

    /// What is kept from offset `from` on (from the oldest kept byte if `from` was dropped).
    pub(super) fn since(&self, from: u64) -> Vec<u8> {
        let skip = from.saturating_sub(self.start) as usize;
        self.bytes.iter().skip(skip).copied().collect()
    }
}

fn no_such(id: &str) -> Response {
    error(
        ErrorKind::NoSuchProcess,
        format!("no background process {id} in this sandbox"),
    )
}

impl Process {
    fn info(&self) -> ProcessInfo {
        let logs = self.logs.lock().unwrap();
        let (state, exit_code, signal) = match &logs.exit {
            Some(e) => ("exited", e.exit_code, e.signal),
            None => ("running", None, None),
        };
        ProcessInfo {
            id: self.id.clone(),
            argv: self.argv.clone(),
            state: state.into(),
            exit_code,
            signal,
            pid: self.pid,
            started_at_ms: self.started_at_ms,
        }
    }
}

impl Processes {
    fn get(&self, id: &str) -> Option<Arc<Process>> {
        self.map.lock().unwrap().get(id).cloned()
    }

    /// Start a tree that is not killed when the call ends; answers its id.
    pub fn start(&self, sup: &Shared, spec: ProcessSpec) -> Response {
        if spec.argv.is_empty() {
            return error(ErrorKind::Setup, "a background process needs a command");
        }
        let cwd = match super::staging::cwd(sup, &spec.cwd) {
            Ok(c) => c,
            Err(r) => return r,
        };
        // Said now, rather than as a process that could not start.
        match std::fs::metadata(&cwd) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return error(
                    ErrorKind::Conflict,
                    format!("{} is not a directory", cwd.display()),
                )
            }
            Err(e) => {
                return error(
                    ErrorKind::NotFound,
                    format!("no directory {} in the sandbox: {e}", cwd.display()),
                )
            }
        }
        let tree_spec = TreeSpec {
            argv: spec.argv.clone(),
            env: spec.env,
            cwd,
            limits: ProcLimits {
                open_files: spec.open_files,
                ..ProcLimits::default()
            },
            cgroup_fds: Vec::new(),
            extra_fds: Vec::new(),
            stdin: false,
        };
        let spawned = spawn_tree(sup, tree_spec);
        let id = format!("proc_{}", uuid::Uuid::new_v4().simple());
        let cap = spec.log_bytes.max(1) as usize;
        let started_at_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let process = Arc::new(Process {
            id: id.clone(),
            argv: spec.argv,
            pid: spawned.as_ref().map(|t| t.pid as u32).unwrap_or(0),
            started_at_ms,
            logs: Mutex::new(Logs {
                stdout: Ring::new(cap),
                stderr: Ring::new(cap),
                exit: None,
                finished: false,
            }),
            changed: watch::channel(0).0,
            kill: Notify::new(),
        });
        let mut tree = match spawned {
            Ok(t) => t,
            Err(e) => {
                // As a shell would: the process exists, exited 127, and says why.
                let mut logs = process.logs.lock().unwrap();
                let why = format!("execbox: cannot start {:?}: {e}\n", process.argv[0]);
                logs.stderr.push(why.as_bytes());
                logs.exit = Some(TreeExit {
                    exit_code: Some(127),
                    ..TreeExit::default()
                });
                logs.finished = true;
                drop(logs);
                self.map.lock().unwrap().insert(id.clone(), process);
                return Response::Ok(Reply {
                    id: Some(id),
                    ..Reply::default()
                });
            }
        };
        let (Some(mut stdout), Some(mut stderr)) = (tree.stdout.take(), tree.stderr.take()) else {
            return error(ErrorKind::Setup, "a tree without its output pipes");
        };
        self.map.lock().unwrap().insert(id.clone(), process.clone());
        tokio::spawn(async move {
            let p = process;
            let (mut ob, mut eb) = (vec![0u8; 16 << 10], vec![0u8; 16 << 10]);
            let (mut out_open, mut err_open) = (true, true);
            let mut exit = None;
            // Until the tree has ended and both pipes are drained (or the tree ended and
            // left them to a program that closed them).
            while out_open || err_open || exit.is_none() {
                tokio::select! {
                    n = stdout.read(&mut ob), if out_open => match n {
                        Ok(n) if n > 0 => p.append(Kind::Stdout, &ob[..n]),
                        _ => out_open = false,
                    },
                    n = stderr.read(&mut eb), if err_open => match n {
                        Ok(n) if n > 0 => p.append(Kind::Stderr, &eb[..n]),
                        _ => err_open = false,
                    },
                    e = tree.wait(), if exit.is_none() => {
                        exit = Some(e);
                        p.logs.lock().unwrap().exit = Some(e);
                        p.changed.send_modify(|v| *v += 1);
                    }
                    _ = p.kill.notified() => tree.kill(),
                }
            }
            p.logs.lock().unwrap().finished = true;
            p.changed.send_modify(|v| *v += 1);
        });
        Response::Ok(Reply {
            id: Some(id),
            ..Reply::default()
        })
    }

    pub fn list(&self) -> Response {
        let mut processes: Vec<ProcessInfo> = self
            .map
            .lock()
            .unwrap()
            .values()
            .map(|p| p.info())
            .collect();
        processes.sort_by_key(|p| (p.started_at_ms, p.id.clone()));
        Response::Ok(Reply {
            processes: Some(processes),
            ..Reply::default()
        })
    }

    /// Kill a process's whole tree and forget it.
    pub async fn kill(&self, id: &str) -> Response {
        let Some(p) = self.map.lock().unwrap().remove(id) else {
            return no_such(id);
        };
        p.stop().await;
        Response::Ok(Reply::default())
    }

    /// Kill every background process (the sandbox is being emptied).
    pub async fn kill_all(&self) {
        let all: Vec<Arc<Process>> = self.map.lock().unwrap().drain().map(|(_, p)| p).collect();
        for p in all {
            p.stop().await;
        }
    }

    /// Its output so far as `Stdout`/`Stderr` frames (the newest `log_bytes` of each); with
    /// `follow`, then output as it comes until the process has ended (or the connection,
    /// `conn`, closes). Answers its info.
    pub async fn logs<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
        &self,
        id: &str,
        follow: bool,
        conn: &mut R,
        out: &mut W,
    ) -> Response {
        let Some(p) = self.get(id) else {
            return no_such(id);
        };
        let mut changed = p.changed.subscribe();
        let (mut o, mut e) = (0u64, 0u64);
        loop {
            changed.borrow_and_update();
            let (new_out, new_err, finished) = {
                let logs = p.logs.lock().unwrap();
                let got = (logs.stdout.since(o), logs.stderr.since(e), logs.finished);
                (o, e) = (logs.stdout.end(), logs.stderr.end());
                got
            };
            for (kind, bytes) in [(Kind::Stdout, new_out), (Kind::Stderr, new_err)] {
                for chunk in bytes.chunks(crate::supervisor::proto::CHUNK) {
                    if io_async::write_frame(out, kind, chunk).await.is_err() {
                        return error(ErrorKind::Io, "the connection closed");
                    }
                }
            }
            if !follow || finished {
                break;
            }
            // The sender lives in the table's entry; a killed process still finishes.
            let mut probe = [0u8; 512];
            tokio::select! {
                c = changed.changed() => if c.is_err() {
                    break;
                },
                n = conn.read(&mut probe) => if matches!(n, Ok(0) | Err(_)) {
                    return error(ErrorKind::Io, "the connection closed");
                },
            }
        }
        Response::Ok(Reply {
            processes: Some(vec![p.info()]),
            ..Reply::default()
        })
    }
}

impl Process {
    fn append(&self, kind: Kind, data: &[u8]) {
        {
            let mut logs = self.logs.lock().unwrap();
            match kind {
                Kind::Stdout => logs.stdout.push(data),
                _ => logs.stderr.push(data),
            }
        }
        self.changed.send_modify(|v| *v += 1);
    }

    /// Kill the tree and wait until it has been reaped.
    async fn stop(&self) {
        let mut changed = self.changed.subscribe();
        loop {
            if self.logs.lock().unwrap().exit.is_some() {
                return;
            }
            self.kill.notify_one();
            if changed.changed().await.is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Ring;

    #[test]
    fn a_ring_keeps_the_newest_bytes_and_their_offsets() {
        let mut r = Ring::new(4);
        r.push(b"ab");
        assert_eq!((r.since(0), r.end()), (b"ab".to_vec(), 2));
        r.push(b"cde");
        assert_eq!((r.since(0), r.end()), (b"bcde".to_vec(), 5));
        assert_eq!(r.since(3), b"de".to_vec());
        r.push(b"0123456789");
        assert_eq!((r.since(0), r.end()), (b"6789".to_vec(), 15));
        assert_eq!(r.since(15), Vec::<u8>::new());
    }
}
