//! Stateful contexts: persistent Python interpreters inside the sandbox (Jupyter-like). Each is
//! a process tree of its own (not killed when a call ends) running `context.py`, which takes
//! commands as JSON lines on its fd 3 and answers on its fd 4; the user code's stdout and stderr
//! are the tree's own, forwarded as a call's output. A call that reaches its deadline is
//! interrupted (SIGINT → KeyboardInterrupt) and the interpreter keeps its state; one that does
//! not come back within [`GRACE`] is killed and the context is marked lost.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::unix::pipe;
use tokio::sync::{Notify, OwnedMutexGuard};

use super::tree::{spawn_tree, Tree, TreeSpec};
use super::{error, Shared};
use crate::supervisor::proto::{
    io_async, CallExit, ContextError, ContextExecSpec, ContextInfo, ContextResult, ContextSpec,
    Ended, ErrorKind, Kind, ProcLimits, Reply, Response,
};

/// The driver, run as `python3 -u -c BOOT DRIVER` so nothing of it lives in the sandbox's files.
pub const DRIVER: &str = include_str!("context.py");
/// Compiles the driver under a file name of its own, so tracebacks can leave its frames out.
pub const BOOT: &str = "exec(compile(__import__('sys').argv.pop(1),'<execbox-context>','exec'))";
/// How long an interrupted call has to come back before its interpreter is killed.
pub const GRACE: Duration = Duration::from_secs(2);
/// How long a new interpreter has to say it is ready.
const START: Duration = Duration::from_secs(30);
/// The longest answer line the driver may send (it caps its own results well below).
const MAX_ANSWER: usize = 12 << 20;

/// The contexts of one sandbox.
#[derive(Default)]
pub struct Contexts {
    map: Mutex<HashMap<String, Arc<Context>>>,
}

struct Context {
    id: String,
    language: String,
    lost: AtomicBool,
    /// Set by delete: a running call kills the interpreter and answers that it was deleted.
    deleted: AtomicBool,
    wake: Notify,
    /// Held for the length of a call (a context runs one at a time).
    io: Arc<tokio::sync::Mutex<Driver>>,
}

/// The interpreter's process tree and its pipes.
struct Driver {
    tree: Tree,
    stdout: pipe::Receiver,
    stderr: pipe::Receiver,
    commands: pipe::Sender,
    answers: Answers,
    /// The interpreter's CPU and peak memory after its last answer.
    usage: Usage,
    alive: bool,
}

#[derive(Debug, Clone, Copy, Default, Deserialize)]
struct Usage {
    cpu_ms: u64,
    max_rss_bytes: u64,
}

#[derive(Debug, Deserialize)]
struct Answer {
    #[serde(default)]
    ready: bool,
    #[serde(default)]
    done: bool,
    #[serde(default)]
    results: Vec<serde_json::Map<String, serde_json::Value>>,
    #[serde(default)]
    error: Option<ContextError>,
    #[serde(default)]
    usage: Usage,
    /// The call's CPU limit interrupted it.
    #[serde(default)]
    cpu_limit: bool,
}

fn no_such(id: &str) -> Response {
    error(
        ErrorKind::NoSuchContext,
        format!("no context {id} in this sandbox (it may have been deleted)"),
    )
}

fn lost(id: &str) -> Response {
    error(
        ErrorKind::ContextLost,
        format!("context {id} was lost: its interpreter did not survive an earlier call (killed after it ignored an interrupt, or it exited); delete it and create a new one"),
    )
}

impl Contexts {
    fn get(&self, id: &str) -> Option<Arc<Context>> {
        self.map.lock().unwrap().get(id).cloned()
    }

    /// Start an interpreter and wait until it is ready; answers its id.
    pub async fn create(&self, sup: &Shared, spec: ContextSpec) -> Response {
        if spec.language != "python" {
            return error(
                ErrorKind::Setup,
                format!("contexts speak python only, not {:?}", spec.language),
            );
        }
        let driver = match start(sup, &spec).await {
            Ok(d) => d,
            Err(message) => return error(ErrorKind::Setup, message),
        };
        let id = format!("ctx_{}", uuid::Uuid::new_v4().simple());
        let ctx = Arc::new(Context {
            id: id.clone(),
            language: spec.language,
            lost: AtomicBool::new(false),
            deleted: AtomicBool::new(false),
            wake: Notify::new(),
            io: Arc::new(tokio::sync::Mutex::new(driver)),
        });
        self.map.lock().unwrap().insert(id.clone(), ctx);
        Response::Ok(Reply {
            id: Some(id),
            ..Reply::default()
        })
    }

    pub fn list(&self) -> Response {
        let mut contexts: Vec<ContextInfo> = self
            .map
            .lock()
            .unwrap()
            .values()
            .map(|c| ContextInfo {
                id: c.id.clone(),
                language: c.language.clone(),
                state: if c.lost.load(Ordering::SeqCst) {
                    "lost"
                } else if c.io.try_lock().is_err() {
                    "busy"
                } else {
                    "idle"
                }
                .into(),
            })
            .collect();
        contexts.sort_by(|a, b| a.id.cmp(&b.id));
        Response::Ok(Reply {
            contexts: Some(contexts),
            ..Reply::default()
        })
    }

    /// End a context: a call running in it is stopped and answers that it was deleted.
    pub async fn delete(&self, id: &str) -> Response {
        let Some(ctx) = self.map.lock().unwrap().remove(id) else {
            return no_such(id);
        };
        ctx.deleted.store(true, Ordering::SeqCst);
        ctx.wake.notify_one();
        let mut d = ctx.io.clone().lock_owned().await;
        d.kill().await;
        Response::Ok(Reply::default())
    }

    /// Kill every interpreter (the sandbox is being emptied).
    pub async fn kill_all(&self) {
        let all: Vec<Arc<Context>> = self.map.lock().unwrap().drain().map(|(_, c)| c).collect();
        for ctx in all {
            ctx.deleted.store(true, Ordering::SeqCst);
            ctx.wake.notify_one();
            ctx.io.clone().lock_owned().await.kill().await;
        }
    }

    /// Run code in a context. Its stdout and stderr go to `out` as `Stdout`/`Stderr` frames
    /// (at most `limits.output_bytes` of each); the answer carries the display results and
    /// the error. If the connection closes (`conn` ends) or this future is dropped, the code
    /// is interrupted in the background as at a deadline.
    pub async fn exec<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
        &self,
        spec: ContextExecSpec,
        conn: &mut R,
        out: &mut W,
    ) -> Response {
        let Some(ctx) = self.get(&spec.id) else {
            return no_such(&spec.id);
        };
        let guard = ctx.io.clone().lock_owned().await;
        if ctx.deleted.load(Ordering::SeqCst) {
            return no_such(&spec.id);
        }
        if ctx.lost.load(Ordering::SeqCst) || !guard.alive {
            return lost(&spec.id);
        }
        let mut call = Call {
            ctx: ctx.clone(),
            driver: Some(guard),
        };
        call.run(&spec.code, &spec.limits, conn, out).await
    }
}

/// Spawn the interpreter and read its ready line.
async fn start(sup: &Shared, spec: &ContextSpec) -> Result<Driver, String> {
    let (cmd_read, cmd_write) = pipe_pair()?;
    let (ans_read, ans_write) = pipe_pair()?;
    let cwd = super::staging::cwd(sup, &spec.cwd).map_err(|r| match r {
        Response::Error(e) => e.message,
        Response::Ok(_) => "a bad cwd".into(),
    })?;
    let mut env = spec.env.clone();
    env.retain(|(k, _)| k != "PYTHONUNBUFFERED");
    env.push(("PYTHONUNBUFFERED".into(), "1".into()));
    let tree_spec = TreeSpec {
        argv: vec![
            "python3".into(),
            "-u".into(),
            "-c".into(),
            BOOT.into(),
            DRIVER.into(),
        ],
        env,
        cwd,
        // A context lives across calls: each call's deadline is kept here, not by the tree.
        limits: ProcLimits::default(),
        cgroup_fds: Vec::new(),
        extra_fds: vec![(cmd_read, 3), (ans_write, 4)],
        stdin: false,
    };
    let mut tree =
        spawn_tree(sup, tree_spec).map_err(|e| format!("could not start python3: {e}"))?;
    let (Some(stdout), Some(stderr)) = (tree.stdout.take(), tree.stderr.take()) else {
        return Err("a tree without its output pipes".into());
    };
    let commands =
        pipe::Sender::from_owned_fd(cmd_write).map_err(|e| format!("context command pipe: {e}"))?;
    let answers =
        pipe::Receiver::from_owned_fd(ans_read).map_err(|e| format!("context answer pipe: {e}"))?;
    let mut d = Driver {
        tree,
        stdout,
        stderr,
        commands,
        answers: Answers {
            pipe: answers,
            pending: Vec::new(),
        },
        usage: Usage::default(),
        alive: true,
    };
    // What the interpreter says on stderr while it starts is the reason it did not.
    let mut stderr = Vec::new();
    let ready = tokio::time::timeout(START, async {
        let mut buf = vec![0u8; 8192];
        let mut open = true;
        loop {
            tokio::select! {
                line = d.answers.next() => return line,
                n = d.stderr.read(&mut buf), if open => match n {
                    Ok(n) if n > 0 => {
                        let room = 8192usize.saturating_sub(stderr.len());
                        stderr.extend_from_slice(&buf[..n.min(room)]);
                    }
                    _ => open = false,
                },
            }
        }
    })
    .await;
    match ready {
        Ok(Ok(Some(a))) if a.ready => {
            d.usage = a.usage;
            Ok(d)
        }
        other => {
            d.kill().await;
            let why = match other {
                Err(_) => "it did not start within 30 s".to_string(),
                Ok(Err(e)) => e,
                _ => "it exited".to_string(),
            };
            Err(format!(
                "the python interpreter of the context could not start: {why}; {}",
                String::from_utf8_lossy(&stderr).trim()
            ))
        }
    }
}

fn pipe_pair() -> Result<(OwnedFd, OwnedFd), String> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| format!("pipe: {e}"))
}

/// The interpreter's answer pipe.
struct Answers {
    pipe: pipe::Receiver,
    /// Bytes read past the last complete line.
    pending: Vec<u8>,
}

impl Answers {
    /// The next answer line; `Ok(None)` when the interpreter closed its end (it died).
    /// Cancel-safe: what was read stays in `pending`.
    async fn next(&mut self) -> Result<Option<Answer>, String> {
        let mut buf = vec![0u8; 64 << 10];
        loop {
            if let Some(nl) = self.pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=nl).collect();
                return serde_json::from_slice(&line)
                    .map(Some)
                    .map_err(|e| format!("the context's interpreter answered nonsense: {e}"));
            }
            if self.pending.len() > MAX_ANSWER {
                return Err("the context's interpreter sent an answer over 12 MiB".into());
            }
            match self.pipe.read(&mut buf).await {
                Ok(0) => return Ok(None),
                Ok(n) => self.pending.extend_from_slice(&buf[..n]),
                Err(e) => return Err(format!("reading the context's answer: {e}")),
            }
        }
    }
}

impl Driver {
    /// Kill the interpreter's whole tree and reap it.
    async fn kill(&mut self) {
        if self.alive {
            self.alive = false;
            self.tree.kill();
            self.tree.wait().await;
        }
    }

    /// Output left in the pipes between calls (a thread that printed) is not the next call's.
    fn discard_output(&mut self) {
        let mut buf = vec![0u8; 64 << 10];
        for r in [&mut self.stdout, &mut self.stderr] {
            while matches!(r.try_read(&mut buf), Ok(n) if n > 0) {}
        }
    }
}

/// One call in a context. If it is dropped before its answer (the connection closed), the
/// interpreter is interrupted and its answer awaited in the background, holding the context.
struct Call {
    ctx: Arc<Context>,
    driver: Option<OwnedMutexGuard<Driver>>,
}

impl Drop for Call {
    fn drop(&mut self) {
        let Some(mut d) = self.driver.take() else {
            return;
        };
        let ctx = self.ctx.clone();
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        rt.spawn(async move {
            d.tree.interrupt();
            if !recover(&mut d).await {
                d.kill().await;
                ctx.lost.store(true, Ordering::SeqCst);
            }
        });
    }
}

/// After an interrupt: wait up to [`GRACE`] for the interpreter's answer, draining its output.
async fn recover(d: &mut Driver) -> bool {
    let mut sink = tokio::io::sink();
    let mut counts = Counts::new(0);
    tokio::time::timeout(GRACE, async {
        loop {
            match pump(d, &mut sink, &mut counts).await {
                Event::Answer(a) if a.done => return true,
                Event::Answer(_) | Event::Output => {}
                Event::Exited(_) | Event::Closed => return false,
            }
        }
    })
    .await
    .unwrap_or(false)
}

/// How much of each stream a call has forwarded, against its cap.
struct Counts {
    cap: u64,
    stdout: u64,
    stderr: u64,
    stdout_truncated: bool,
    stderr_truncated: bool,
}

impl Counts {
    fn new(cap: u64) -> Counts {
        Counts {
            cap,
            stdout: 0,
            stderr: 0,
            stdout_truncated: false,
            stderr_truncated: false,
        }
    }
}

enum Event {
    Answer(Answer),
    Output,
    /// The interpreter is gone: its answer pipe closed, or it spoke nonsense.
    Exited(String),
    /// The connection closed.
    Closed,
}

fn answered(a: Result<Option<Answer>, String>) -> Event {
    match a {
        Ok(Some(a)) => Event::Answer(a),
        Ok(None) => Event::Exited("its interpreter exited".into()),
        Err(e) => Event::Exited(e),
    }
}

/// Wait for the next thing the interpreter does: output (forwarded to `out` under the cap)
/// or an answer line. Cancel-safe.
async fn pump<W: AsyncWrite + Unpin>(d: &mut Driver, out: &mut W, counts: &mut Counts) -> Event {
    let mut ob = [0u8; 16 << 10];
    let mut eb = [0u8; 16 << 10];
    // Output first, so what the code printed before it answered is forwarded before the answer.
    let (kind, n, buf) = tokio::select! {
        biased;
        n = d.stdout.read(&mut ob) => (Kind::Stdout, n, &ob[..]),
        n = d.stderr.read(&mut eb) => (Kind::Stderr, n, &eb[..]),
        a = d.answers.next() => return answered(a),
    };
    let n = match n {
        Ok(n) if n > 0 => n,
        // The output pipes close only with the interpreter; its answer pipe says how it ended.
        _ => return answered(d.answers.next().await),
    };
    forward(out, counts, kind, &buf[..n]).await
}

async fn forward<W: AsyncWrite + Unpin>(
    out: &mut W,
    counts: &mut Counts,
    kind: Kind,
    bytes: &[u8],
) -> Event {
    let (sent, truncated) = match kind {
        Kind::Stdout => (&mut counts.stdout, &mut counts.stdout_truncated),
        _ => (&mut counts.stderr, &mut counts.stderr_truncated),
    };
    let room = counts.cap.saturating_sub(*sent) as usize;
    if bytes.len() > room {
        *truncated = true;
    }
    let kept = &bytes[..bytes.len().min(room)];
    *sent += kept.len() as u64;
    if !kept.is_empty() && io_async::write_frame(out, kind, kept).await.is_err() {
        return Event::Closed;
    }
    Event::Output
}

impl Call {
    async fn run<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
        &mut self,
        code: &str,
        limits: &ProcLimits,
        conn: &mut R,
        out: &mut W,
    ) -> Response {
        let started = Instant::now();
        let ctx = self.ctx.clone();
        let d = self.driver.as_mut().expect("a call holds its driver");
        d.discard_output();
        let before = d.usage;
        let mut line =
            serde_json::to_vec(&serde_json::json!({ "code": code, "cpu_ms": limits.cpu_time_ms }))
                .expect("a command serializes");
        line.push(b'\n');
        if let Err(e) = d.commands.write_all(&line).await {
            d.kill().await;
            ctx.lost.store(true, Ordering::SeqCst);
            return error(
                ErrorKind::ContextLost,
                format!("context {} was lost: its interpreter is gone ({e}); delete it and create a new one", ctx.id),
            );
        }
        let wall = Duration::from_millis(limits.wall_time_ms.max(1));
        let deadline = tokio::time::Instant::from_std(started + wall);
        let mut interrupted_at: Option<tokio::time::Instant> = None;
        let mut counts = Counts::new(limits.output_bytes);
        let mut probe = [0u8; 512];
        let answer = loop {
            let timer = match interrupted_at {
                None => deadline,
                Some(t) => t + GRACE,
            };
            let event = tokio::select! {
                e = pump(d, out, &mut counts) => e,
                _ = tokio::time::sleep_until(timer) => {
                    if interrupted_at.is_none() {
                        d.tree.interrupt();
                        interrupted_at = Some(tokio::time::Instant::now());
                        continue;
                    }
                    d.kill().await;
                    ctx.lost.store(true, Ordering::SeqCst);
                    self.driver = None;
                    return error(
                        ErrorKind::ContextLost,
                        format!(
                            "context {} was lost: the call reached its deadline of {} ms and the interpreter did not stop within {} s of the interrupt (KeyboardInterrupt), so it was killed with everything it held; delete it and create a new one",
                            ctx.id, limits.wall_time_ms, GRACE.as_secs()
                        ),
                    );
                }
                n = conn.read(&mut probe) => match n {
                    // The service went away: dropping the call interrupts it in the background.
                    Ok(0) | Err(_) => return error(ErrorKind::Io, "the connection closed during the call"),
                    // Nothing else is expected from the service during a context call.
                    Ok(_) => continue,
                },
                _ = ctx.wake.notified() => {
                    if ctx.deleted.load(Ordering::SeqCst) {
                        d.kill().await;
                        self.driver = None;
                        return error(ErrorKind::NoSuchContext, format!("context {} was deleted while the call ran", ctx.id));
                    }
                    continue;
                }
            };
            match event {
                Event::Answer(a) if a.done => break a,
                Event::Answer(_) | Event::Output => {}
                Event::Closed => {
                    // Dropping the call interrupts it in the background.
                    return error(ErrorKind::Io, "the connection closed during the call");
                }
                Event::Exited(why) => {
                    d.kill().await;
                    ctx.lost.store(true, Ordering::SeqCst);
                    self.driver = None;
                    return error(
                        ErrorKind::ContextLost,
                        format!("context {} was lost: {why} during the call (it may have run out of memory or called os._exit); delete it and create a new one", ctx.id),
                    );
                }
            }
        };
        // What the code printed before it answered is in the pipes now.
        let mut buf = vec![0u8; 64 << 10];
        for kind in [Kind::Stdout, Kind::Stderr] {
            loop {
                let r = match kind {
                    Kind::Stdout => d.stdout.try_read(&mut buf),
                    _ => d.stderr.try_read(&mut buf),
                };
                match r {
                    Ok(n) if n > 0 => {
                        if let Event::Closed = forward(out, &mut counts, kind, &buf[..n]).await {
                            self.driver = None;
                            return error(ErrorKind::Io, "the connection closed during the call");
                        }
                    }
                    _ => break,
                }
            }
        }
        d.usage = answer.usage;
        // The call is over: nothing to interrupt when this is dropped.
        self.driver = None;
        let ended = match interrupted_at {
            Some(_) => Ended::Deadline,
            None if answer.cpu_limit => Ended::CpuLimit,
            None => Ended::Exited,
        };
        Response::Ok(Reply {
            exit: Some(CallExit {
                ended: Some(ended),
                exit_code: Some(if answer.error.is_some() { 1 } else { 0 }),
                signal: None,
                wall_time_ms: started.elapsed().as_millis() as u64,
                cpu_time_ms: answer.usage.cpu_ms.saturating_sub(before.cpu_ms),
                max_rss_bytes: answer.usage.max_rss_bytes,
                stdout_truncated: counts.stdout_truncated,
                stderr_truncated: counts.stderr_truncated,
            }),
            context_result: Some(ContextResult {
                results: answer.results,
                error: answer.error,
            }),
            ..Reply::default()
        })
    }
}

#[cfg(test)]
mod tests {
    //! The driver on its own: python3 started as the supervisor starts it, spoken to over
    //! fds 3 and 4.
    use std::io::{BufRead, BufReader, Write};
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    use std::process::{Child, Command, Stdio};

    use serde_json::{json, Value};

    struct Interpreter {
        child: Child,
        commands: std::fs::File,
        answers: BufReader<std::fs::File>,
    }

    impl Interpreter {
        fn start() -> (Interpreter, Value) {
            let (cmd_r, cmd_w) = super::pipe_pair().unwrap();
            let (ans_r, ans_w) = super::pipe_pair().unwrap();
            let (cr, aw) = (cmd_r.as_raw_fd(), ans_w.as_raw_fd());
            let mut cmd = Command::new("/usr/bin/python3");
            cmd.args(["-u", "-c", super::BOOT, super::DRIVER])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit());
            // SAFETY: between fork and exec only async-signal-safe calls (dup, dup2) on
            // descriptors that are open in the parent for the whole spawn.
            unsafe {
                cmd.pre_exec(move || {
                    // dup first: a pipe end may already sit at 3 or 4.
                    let (c, a) = (libc::dup(cr), libc::dup(aw));
                    if c < 0 || a < 0 || libc::dup2(c, 3) < 0 || libc::dup2(a, 4) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
            let child = cmd.spawn().unwrap();
            drop((cmd_r, ans_w));
            let mut it = Interpreter {
                child,
                commands: std::fs::File::from(cmd_w),
                answers: BufReader::new(std::fs::File::from(ans_r)),
            };
            let ready = it.answer();
            (it, ready)
        }

        fn answer(&mut self) -> Value {
            let mut line = String::new();
            self.answers.read_line(&mut line).unwrap();
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"))
        }

        fn run(&mut self, code: &str) -> Value {
            self.send(code);
            self.answer()
        }

        fn send(&mut self, code: &str) {
            let mut line = serde_json::to_vec(&json!({ "code": code })).unwrap();
            line.push(b'\n');
            self.commands.write_all(&line).unwrap();
        }
    }

    impl Drop for Interpreter {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    #[test]
    fn state_values_figures_errors_and_interrupts() {
        let (mut py, ready) = Interpreter::start();
        assert_eq!(ready["ready"], true);
        assert!(ready["version"].as_str().unwrap().starts_with("3."));

        let a = py.run("import math\nx = 41\ndef twice(v):\n    return v * 2");
        assert_eq!((&a["results"], &a["error"]), (&json!([]), &Value::Null));
        let a = py.run("twice(x) + int(math.sqrt(4)) - 40");
        assert_eq!(a["results"], json!([{"text/plain": "44"}]));
        // None displays nothing; a statement at the end neither.
        assert_eq!(py.run("None")["results"], json!([]));
        assert_eq!(py.run("y = 1")["results"], json!([]));

        let a = py.run("def f():\n    raise ValueError('bad input')\nf()");
        let e = &a["error"];
        assert_eq!(
            (&e["name"], &e["value"]),
            (&json!("ValueError"), &json!("bad input"))
        );
        let tb = e["traceback"].as_str().unwrap();
        assert!(
            tb.starts_with("Traceback (most recent call last):\n"),
            "{tb}"
        );
        assert!(tb.contains("raise ValueError('bad input')"), "{tb}");
        assert!(tb.ends_with("ValueError: bad input\n"), "{tb}");
        assert!(
            !tb.contains("execbox-context"),
            "the driver's frames are left out: {tb}"
        );

        let a = py.run("def (");
        assert_eq!(a["error"]["name"], "SyntaxError");

        // An object's rich representations come along with its text.
        let a = py.run("class H:\n    def _repr_html_(self): return '<b>h</b>'\n    def __repr__(self): return 'H()'\nH()");
        assert_eq!(
            a["results"],
            json!([{"text/html": "<b>h</b>", "text/plain": "H()"}])
        );

        // SIGINT interrupts the running code; the namespace stays.
        py.send("import time\nx = 7\ntime.sleep(30)");
        std::thread::sleep(std::time::Duration::from_millis(500));
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(py.child.id() as i32),
            nix::sys::signal::Signal::SIGINT,
        )
        .unwrap();
        let a = py.answer();
        assert_eq!(a["error"]["name"], "KeyboardInterrupt");
        assert!(!a["error"]["traceback"]
            .as_str()
            .unwrap()
            .contains("execbox-context"));
        assert_eq!(py.run("x")["results"], json!([{"text/plain": "7"}]));
    }

    /// The call's CPU limit interrupts the code and says so; sleeping costs no CPU, so a call
    /// that sleeps past it is not interrupted; code that swallows the first interrupt gets
    /// another; the namespace stays.
    #[test]
    fn the_cpu_limit_interrupts_and_keeps_the_state() {
        let (mut py, _) = Interpreter::start();
        let mut run = |code: &str, cpu_ms: u64| {
            let mut line = serde_json::to_vec(&json!({ "code": code, "cpu_ms": cpu_ms })).unwrap();
            line.push(b'\n');
            py.commands.write_all(&line).unwrap();
            py.answer()
        };
        let a = run("x = 5\nwhile True:\n    pass", 300);
        assert_eq!(
            (&a["cpu_limit"], &a["error"]["name"]),
            (&json!(true), &json!("KeyboardInterrupt")),
            "{a}"
        );
        // The timer and getrusage count CPU by different clocks: a few ms apart.
        assert!(a["usage"]["cpu_ms"].as_u64().unwrap() >= 280, "{a}");
        let a = run("import time\ntime.sleep(0.6)\nx + 1", 300);
        assert_eq!(
            (&a["cpu_limit"], &a["results"]),
            (&json!(false), &json!([{"text/plain": "6"}])),
            "{a}"
        );
        let a = run(
            "n = 0\nwhile True:\n    try:\n        while True:\n            n = n + 0\n    except KeyboardInterrupt:\n        n += 1\n        if n == 3:\n            raise",
            200,
        );
        assert_eq!(a["cpu_limit"], true, "{a}");
        assert_eq!(py.run("n")["results"], json!([{"text/plain": "3"}]));
    }

    #[test]
    fn matplotlib_figures_are_png_bundles() {
        let (mut py, _) = Interpreter::start();
        let a = py.run("import matplotlib.pyplot as plt\nplt.plot([1, 2, 3])\nNone");
        assert_eq!(a["error"], Value::Null);
        let results = a["results"].as_array().unwrap();
        assert_eq!(results.len(), 1, "{results:?}");
        assert_eq!(
            results[0]["text/plain"],
            "<Figure size 640x480 with 1 Axes>"
        );
        use base64::Engine;
        let png = base64::engine::general_purpose::STANDARD
            .decode(results[0]["image/png"].as_str().unwrap())
            .unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        // Shown figures are closed: the next call starts with none; show() renders at once.
        let a = py.run("plt.figure(); plt.plot([1]); plt.show(); print(len(plt.get_fignums()))");
        assert_eq!(a["results"].as_array().unwrap().len(), 1);
        assert_eq!(
            py.run("len(plt.get_fignums())")["results"],
            json!([{"text/plain": "0"}])
        );
    }
}
