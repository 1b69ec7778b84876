//! The supervisor on its own: `execbox __supervisor` started on the host (as root, on a temp work
//! dir) and driven through the service's client, as the sandboxes drive it.

use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use execbox::supervisor::client::{SupError, Supervisor};
use execbox::supervisor::proto::{
    self, CallSpec, Control, Ended, ErrorKind, InlineFile, ProcLimits,
};

/// A uid outside the service's default range, so no test service hands it out meanwhile.
const UID: u32 = 61_990;

struct Running {
    child: Child,
    client: Supervisor,
    work: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn root() -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "the supervisor tests need root in CI"
    );
    eprintln!("!!! SKIPPING: the supervisor tests need root !!!");
    false
}

async fn start() -> Running {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("work");
    let run = dir.path().join("run");
    std::fs::create_dir(&work).unwrap();
    std::fs::create_dir(&run).unwrap();
    std::os::unix::fs::chown(&work, Some(UID), Some(UID)).unwrap();
    let socket = run.join("sup.sock");
    let child = Command::new(env!("CARGO_BIN_EXE_execbox"))
        .args(["__supervisor", "--socket"])
        .arg(&socket)
        .arg("--work")
        .arg(&work)
        .args(["--uid", &UID.to_string(), "--gid", &UID.to_string()])
        .spawn()
        .unwrap();
    let client = Supervisor::new(socket);
    client.wait_ready(Duration::from_secs(10)).await.unwrap();
    Running {
        child,
        client,
        work,
        _dir: dir,
    }
}

fn call(argv: &[&str], wall_ms: u64) -> CallSpec {
    CallSpec {
        argv: argv.iter().map(|s| s.to_string()).collect(),
        env: vec![("PATH".into(), "/usr/bin:/bin".into())],
        cwd: String::new(),
        files: vec![],
        limits: ProcLimits {
            wall_time_ms: wall_ms,
            cpu_time_ms: 10_000,
            output_bytes: 1 << 20,
            open_files: 256,
            file_bytes: 64 << 20,
        },
        cgroup_fds: 0,
        warm: None,
    }
}

/// Host pids whose command line is `token`.
fn processes_with(token: &str) -> Vec<i32> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) {
            // The whole command line, arguments joined by spaces: a shell whose script names
            // the token is not the process.
            if String::from_utf8_lossy(&cmd).replace('\0', " ").trim() == token {
                found.push(pid);
            }
        }
    }
    found
}

#[tokio::test]
async fn a_call_gets_its_stdin_files_and_identity_and_answers_its_exit() {
    if !root() {
        return;
    }
    let s = start().await;
    let mut spec = call(
        &["python3", "-c", "import os,sys; print(sys.stdin.read().upper(), open('in/f.txt').read(), os.getuid()); sys.exit(3)"],
        10_000,
    );
    spec.files.push(InlineFile {
        path: proto::raw_path(b"in/f.txt"),
        content: base64_of(b"from a file"),
    });
    let out = s
        .client
        .exec(spec, b"hello", vec![], None, None)
        .await
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("HELLO from a file {UID}\n")
    );
    assert_eq!(out.exit.exit_code, Some(3));
    assert_eq!(out.exit.ended, Some(Ended::Exited));
    let meta = std::fs::metadata(s.work.join("in/f.txt")).unwrap();
    assert_eq!(
        std::os::unix::fs::MetadataExt::uid(&meta),
        UID,
        "files are the sandbox user's"
    );
}

#[tokio::test]
async fn nothing_a_call_starts_outlives_it() {
    if !root() {
        return;
    }
    let s = start().await;
    let script = "setsid sleep 1031 & (sleep 1032 &) ; nohup sleep 1033 >/dev/null 2>&1 & sleep 1; echo started";
    let exec = s
        .client
        .exec(call(&["sh", "-c", script], 10_000), b"", vec![], None, None);
    // The escapees are seen running while the call runs, so their absence after it means
    // something.
    let watch = async {
        let until = Instant::now() + Duration::from_secs(5);
        while Instant::now() < until {
            if ["sleep 1031", "sleep 1032", "sleep 1033"]
                .iter()
                .all(|t| processes_with(t).len() == 1)
            {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    };
    let (out, seen) = tokio::join!(exec, watch);
    let out = out.unwrap();
    assert!(seen, "the escapees never ran");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "started\n");
    assert_eq!(out.exit.exit_code, Some(0));
    for token in ["sleep 1031", "sleep 1032", "sleep 1033"] {
        assert!(
            processes_with(token).is_empty(),
            "{token} outlived its call"
        );
    }
}

#[tokio::test]
async fn the_deadline_kills_the_whole_tree_and_says_so() {
    if !root() {
        return;
    }
    let s = start().await;
    let started = Instant::now();
    let out = s
        .client
        .exec(
            call(&["sh", "-c", "sleep 1041 & echo up; sleep 1042"], 500),
            b"",
            vec![],
            None,
            None,
        )
        .await
        .unwrap();
    assert_eq!(out.exit.ended, Some(Ended::Deadline));
    assert_eq!(out.exit.signal, Some(libc::SIGKILL));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "up\n");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(processes_with("sleep 1041").is_empty() && processes_with("sleep 1042").is_empty());
}

#[tokio::test]
async fn a_control_frame_stops_the_call_and_a_closed_connection_kills_it() {
    if !root() {
        return;
    }
    let s = start().await;
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let exec = s.client.exec(
        call(&["sleep", "1051"], 60_000),
        b"",
        vec![],
        None,
        Some(rx),
    );
    let stop = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        tx.send(Control::CpuLimit).await.unwrap();
    };
    let (out, ()) = tokio::join!(exec, stop);
    assert_eq!(out.unwrap().exit.ended, Some(Ended::CpuLimit));

    // The service going away mid-call (its future dropped, its connection closed).
    let exec = s
        .client
        .exec(call(&["sleep", "1052"], 60_000), b"", vec![], None, None);
    assert!(tokio::time::timeout(Duration::from_millis(500), exec)
        .await
        .is_err());
    let until = Instant::now() + Duration::from_secs(5);
    while !processes_with("sleep 1052").is_empty() {
        assert!(Instant::now() < until, "the call outlived its connection");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn output_is_capped_and_never_read_as_protocol() {
    if !root() {
        return;
    }
    let s = start().await;
    let mut spec = call(
        &["python3", "-c", "import sys; sys.stdout.buffer.write(b'\\x00\\x00\\x00\\x10\\x02{\"result\":\"ok\"}' * 100000); sys.stderr.write('e')"],
        10_000,
    );
    spec.limits.output_bytes = 1000;
    let out = s.client.exec(spec, b"", vec![], None, None).await.unwrap();
    assert_eq!(out.stdout.len(), 1000);
    assert!(out.stdout.starts_with(b"\x00\x00\x00\x10\x02{\"result\""));
    assert!(out.exit.stdout_truncated && !out.exit.stderr_truncated);
    assert_eq!(out.stderr, b"e");
    assert_eq!(out.exit.exit_code, Some(0));
}

#[tokio::test]
async fn a_missing_program_and_a_bad_cwd_are_clear_errors() {
    if !root() {
        return;
    }
    let s = start().await;
    let out = s
        .client
        .exec(call(&["no-such-program"], 10_000), b"", vec![], None, None)
        .await
        .unwrap();
    assert_eq!(out.exit.exit_code, Some(127));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot run the program"));
    let mut spec = call(&["true"], 10_000);
    spec.cwd = proto::raw_path(b"../..");
    match s.client.exec(spec, b"", vec![], None, None).await {
        Err(SupError::Remote(ErrorKind::Refused, _)) => {}
        other => panic!("{other:?}"),
    }
}

fn base64_of(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(b)
}

// --- contexts and background processes ------------------------------------------------------

fn context_spec() -> proto::ContextSpec {
    proto::ContextSpec {
        language: "python".into(),
        env: vec![("PATH".into(), "/usr/bin:/bin".into())],
        cwd: String::new(),
    }
}

fn code(id: &str, code: &str, wall_ms: u64) -> proto::ContextExecSpec {
    proto::ContextExecSpec {
        id: id.into(),
        code: code.into(),
        limits: ProcLimits {
            wall_time_ms: wall_ms,
            cpu_time_ms: 10_000,
            output_bytes: 1 << 20,
            open_files: 256,
            file_bytes: 64 << 20,
        },
    }
}

#[tokio::test]
async fn a_context_keeps_its_state_and_survives_an_interrupt() {
    if !root() {
        return;
    }
    let s = start().await;
    let id = s.client.context_create(context_spec()).await.unwrap();
    let out = s
        .client
        .context_exec(
            code(&id, "import os\nx = 41\nprint(os.getuid())", 10_000),
            None,
        )
        .await
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), format!("{UID}\n"));
    assert_eq!(out.exit.ended, Some(Ended::Exited));
    let out = s
        .client
        .context_exec(code(&id, "x + 1", 10_000), None)
        .await
        .unwrap();
    assert_eq!(out.result.results[0]["text/plain"], "42");
    assert!(out.result.error.is_none());
    // The deadline interrupts; the namespace stays.
    let started = Instant::now();
    let out = s
        .client
        .context_exec(code(&id, "import time\nx = 7\ntime.sleep(60)", 500), None)
        .await
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(out.exit.ended, Some(Ended::Deadline));
    assert_eq!(out.result.error.unwrap().name, "KeyboardInterrupt");
    let out = s
        .client
        .context_exec(code(&id, "x", 10_000), None)
        .await
        .unwrap();
    assert_eq!(out.result.results[0]["text/plain"], "7");
    // A call whose connection closes is interrupted too; the next call finds the context idle.
    let dropped = s
        .client
        .context_exec(code(&id, "x = 9\ntime.sleep(60)", 60_000), None);
    assert!(tokio::time::timeout(Duration::from_millis(500), dropped)
        .await
        .is_err());
    let out = s
        .client
        .context_exec(code(&id, "x", 10_000), None)
        .await
        .unwrap();
    assert_eq!(out.result.results[0]["text/plain"], "9");
    let list = s.client.context_list().await.unwrap();
    assert_eq!(
        (list.len(), list[0].id.as_str(), list[0].state.as_str()),
        (1, id.as_str(), "idle")
    );
}

#[tokio::test]
async fn a_context_that_ignores_the_interrupt_is_killed_and_lost() {
    if !root() {
        return;
    }
    let s = start().await;
    let id = s.client.context_create(context_spec()).await.unwrap();
    let stubborn = "import subprocess, time\n\
        subprocess.Popen(['sleep', '1061'])\n\
        while True:\n    try:\n        time.sleep(0.1)\n    except KeyboardInterrupt:\n        pass";
    let started = Instant::now();
    let err = s
        .client
        .context_exec(code(&id, stubborn, 500), None)
        .await
        .unwrap_err();
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(2400) && took < Duration::from_secs(6),
        "{took:?}"
    );
    match err {
        SupError::Remote(ErrorKind::ContextLost, m) => assert!(m.contains("was lost"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert!(processes_with("sleep 1061").is_empty(), "its tree is gone");
    assert!(matches!(
        s.client.context_exec(code(&id, "1", 1000), None).await,
        Err(SupError::Remote(ErrorKind::ContextLost, _))
    ));
    assert_eq!(s.client.context_list().await.unwrap()[0].state, "lost");
    s.client.context_delete(&id).await.unwrap();
    assert!(matches!(
        s.client.context_exec(code(&id, "1", 1000), None).await,
        Err(SupError::Remote(ErrorKind::NoSuchContext, _))
    ));
    assert!(matches!(
        s.client.context_delete(&id).await,
        Err(SupError::Remote(ErrorKind::NoSuchContext, _))
    ));
}

#[tokio::test]
async fn deleting_a_context_kills_what_it_started() {
    if !root() {
        return;
    }
    let s = start().await;
    let id = s.client.context_create(context_spec()).await.unwrap();
    s.client
        .context_exec(
            code(
                &id,
                "import subprocess\np = subprocess.Popen(['sleep', '1062'])",
                10_000,
            ),
            None,
        )
        .await
        .unwrap();
    let t = Instant::now();
    while processes_with("sleep 1062").is_empty() && t.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(processes_with("sleep 1062").len(), 1);
    s.client.context_delete(&id).await.unwrap();
    assert!(processes_with("sleep 1062").is_empty());
    assert!(s.client.context_list().await.unwrap().is_empty());
}

fn process(argv: &[&str]) -> proto::ProcessSpec {
    proto::ProcessSpec {
        argv: argv.iter().map(|s| s.to_string()).collect(),
        env: vec![("PATH".into(), "/usr/bin:/bin".into())],
        cwd: String::new(),
        open_files: 256,
        log_bytes: 64,
    }
}

async fn logs(s: &Running, id: &str, follow: bool) -> (String, String, proto::ProcessInfo) {
    use execbox::supervisor::client::LogItem;
    use futures_util::StreamExt;
    let mut stream = std::pin::pin!(s.client.process_logs(id, follow).await.unwrap());
    let (mut out, mut err) = (Vec::new(), Vec::new());
    while let Some(item) = stream.next().await {
        match item.unwrap() {
            LogItem::Output(execbox::exec::StreamKind::Stdout, b) => out.extend(b),
            LogItem::Output(_, b) => err.extend(b),
            LogItem::End(info) => {
                return (
                    String::from_utf8(out).unwrap(),
                    String::from_utf8(err).unwrap(),
                    info.unwrap(),
                )
            }
        }
    }
    panic!("logs without an end");
}

#[tokio::test]
async fn a_background_process_outlives_calls_keeps_its_newest_logs_and_dies_whole() {
    if !root() {
        return;
    }
    let s = start().await;
    let script =
        "for i in $(seq 1 40); do echo line$i; done; echo oops >&2; sleep 1063 & sleep 1064";
    let id = s
        .client
        .process_start(process(&["sh", "-c", script]))
        .await
        .unwrap();
    // A call in between does not touch it.
    let out = s
        .client
        .exec(call(&["true"], 5_000), b"", vec![], None, None)
        .await
        .unwrap();
    assert_eq!(out.exit.exit_code, Some(0));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        processes_with("sleep 1063").len() + processes_with("sleep 1064").len(),
        2
    );
    let (out, err, info) = logs(&s, &id, false).await;
    // The newest 64 bytes of stdout.
    assert!(
        out.ends_with("line39\nline40\n") && out.len() == 64,
        "{out:?}"
    );
    assert_eq!(err, "oops\n");
    assert_eq!((info.state.as_str(), info.exit_code), ("running", None));
    s.client.process_kill(&id).await.unwrap();
    assert!(
        processes_with("sleep 1063").is_empty() && processes_with("sleep 1064").is_empty(),
        "the whole tree is gone"
    );
    assert!(s.client.process_list().await.unwrap().is_empty());
    assert!(matches!(
        s.client.process_kill(&id).await,
        Err(SupError::Remote(ErrorKind::NoSuchProcess, _))
    ));
}

#[tokio::test]
async fn followed_logs_end_with_the_exit_and_a_missing_program_exits_127() {
    if !root() {
        return;
    }
    let s = start().await;
    let id = s
        .client
        .process_start(process(&[
            "sh",
            "-c",
            "for i in 1 2 3; do echo $i; sleep 0.2; done; exit 4",
        ]))
        .await
        .unwrap();
    let (out, _, info) = logs(&s, &id, true).await;
    assert_eq!(out, "1\n2\n3\n");
    assert_eq!((info.state.as_str(), info.exit_code), ("exited", Some(4)));
    let list = s.client.process_list().await.unwrap();
    assert_eq!((list.len(), list[0].exit_code), (1, Some(4)));
    let id = s
        .client
        .process_start(process(&["no-such-program-1065"]))
        .await
        .unwrap();
    let (_, err, info) = logs(&s, &id, true).await;
    assert_eq!(info.exit_code, Some(127));
    assert!(err.starts_with("execbox: "), "{err}");
}

fn chunks(data: &[u8]) -> impl futures_util::Stream<Item = Result<Vec<u8>, String>> + Send + '_ {
    futures_util::stream::iter(data.chunks(100_000).map(|c| Ok(c.to_vec())))
}

#[tokio::test]
async fn files_stream_both_ways_with_byte_names_and_never_through_a_planted_link() {
    if !root() {
        return;
    }
    use execbox::supervisor::proto::Request;
    let s = start().await;
    let name: &[u8] = b"dir/caf\xe9.bin"; // Latin-1, not UTF-8
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    s.client
        .write_stream(
            Request::Write {
                path: proto::raw_path(name),
                executable: false,
            },
            chunks(&big),
        )
        .await
        .unwrap();
    let back = s
        .client
        .read_all(
            Request::Read {
                path: proto::raw_path(name),
                max: 10_000_000,
            },
            10_000_000,
        )
        .await
        .unwrap();
    assert!(back == big, "the file came back different");
    match s
        .client
        .read_all(
            Request::Read {
                path: proto::raw_path(name),
                max: 1000,
            },
            1000,
        )
        .await
    {
        Err(SupError::Remote(ErrorKind::TooLarge, _)) => {}
        other => panic!("{other:?}"),
    }
    let listed = s
        .client
        .simple(Request::List {
            path: String::new(),
        })
        .await
        .unwrap();
    let paths: Vec<Vec<u8>> = listed
        .entries
        .unwrap()
        .iter()
        .map(|e| proto::path_bytes(&e.path).unwrap())
        .collect();
    assert!(paths.contains(&name.to_vec()), "{paths:?}");

    // A program plants a link to / and a file is written "through" it: refused, nothing written.
    let out = s
        .client
        .exec(
            call(&["ln", "-s", "/", "escape"], 10_000),
            b"",
            vec![],
            None,
            None,
        )
        .await
        .unwrap();
    assert_eq!(out.exit.exit_code, Some(0));
    let r = s
        .client
        .write_stream(
            Request::Write {
                path: proto::raw_path(b"escape/tmp/owned"),
                executable: false,
            },
            chunks(b"x"),
        )
        .await;
    assert!(
        matches!(r, Err(SupError::Remote(ErrorKind::Conflict, _))),
        "{r:?}"
    );
    assert!(!std::path::Path::new("/tmp/owned").exists());

    // The archive streams out and back in whole.
    let tar: Vec<u8> = {
        use futures_util::StreamExt;
        let mut out = Vec::new();
        let mut st = std::pin::pin!(s.client.read_stream(Request::TarOut).await.unwrap());
        while let Some(c) = st.next().await {
            out.extend(c.unwrap());
        }
        out
    };
    std::fs::remove_dir_all(s.work.join("dir")).unwrap();
    s.client
        .write_stream(Request::TarIn, chunks(&tar))
        .await
        .unwrap();
    let again = std::fs::read(
        s.work
            .join(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(name)),
    )
    .unwrap();
    assert!(again == big);
    let meta = std::fs::symlink_metadata(s.work.join("escape")).unwrap();
    assert!(
        meta.file_type().is_symlink(),
        "the planted link is still just a link"
    );
}

#[tokio::test]
async fn a_call_sees_only_its_own_processes() {
    if !root() {
        return;
    }
    let s = start().await;
    let code = "import os; print(sorted(int(p) for p in os.listdir('/proc') if p.isdigit()))";
    let out = s
        .client
        .exec(
            call(&["python3", "-c", code], 10_000),
            b"",
            vec![],
            None,
            None,
        )
        .await
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "[1, 2]\n", "{out:?}");
}

/// A cgroup of the test's own (in the cgroup v1 pids hierarchy, else at the root of cgroup v2),
/// removed on drop.
struct TestCgroup {
    dir: PathBuf,
}

impl TestCgroup {
    fn new() -> TestCgroup {
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let find = |want: &dyn Fn(&str, &str) -> bool| {
            mounts.lines().find_map(|l| {
                let (left, right) = l.split_once(" - ")?;
                let mount = left.split_whitespace().nth(4)?;
                let mut r = right.split_whitespace();
                let (fstype, _, opts) = (r.next()?, r.next()?, r.next().unwrap_or(""));
                want(fstype, opts).then(|| PathBuf::from(mount))
            })
        };
        let base = find(&|t, o| t == "cgroup" && o.split(',').any(|c| c == "pids"))
            .or_else(|| find(&|t, _| t == "cgroup2"))
            .expect("a cgroup v1 pids hierarchy or a cgroup v2 mount");
        let dir = base.join(format!("execbox-suptest-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir(&dir).unwrap();
        TestCgroup { dir }
    }

    fn name(&self) -> String {
        self.dir.file_name().unwrap().to_string_lossy().into_owned()
    }

    fn procs(&self) -> Vec<i32> {
        std::fs::read_to_string(self.dir.join("cgroup.procs"))
            .unwrap()
            .lines()
            .map(|l| l.parse().unwrap())
            .collect()
    }

    /// Its `cgroup.procs`, open for writing, as the service passes it.
    fn fd(&self) -> std::os::fd::OwnedFd {
        std::fs::OpenOptions::new()
            .write(true)
            .open(self.dir.join("cgroup.procs"))
            .unwrap()
            .into()
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        for _ in 0..100 {
            if std::fs::remove_dir(&self.dir).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Poll `f` until it holds, for at most 5 s.
async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(5);
    while !f() {
        assert!(Instant::now() < until, "never: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_call_made_ahead_runs_its_program_in_the_cgroup_its_init_joined_before() {
    if !root() {
        return;
    }
    let s = start().await;
    let cg = TestCgroup::new();
    s.client.prepare("t1".into(), vec![cg.fd()]).await.unwrap();
    // The tree's init is in the cgroup before any call names it.
    eventually("the init joined", || cg.procs().len() == 1).await;
    let init = cg.procs()[0];
    let mut spec = call(
        &[
            "sh",
            "-c",
            "cat; echo \"$GREETING\"; pwd; ulimit -n; cat /proc/self/cgroup",
        ],
        10_000,
    );
    spec.env.push(("GREETING".into(), "hi there".into()));
    spec.cwd = proto::raw_path(b"sub");
    spec.files.push(InlineFile {
        path: proto::raw_path(b"sub/x"),
        content: base64_of(b""),
    });
    spec.warm = Some("t1".into());
    let out = s
        .client
        .exec(spec, b"from stdin\n", vec![], None, None)
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.exit.exit_code, Some(0), "{out:?}");
    let work = s.work.display();
    assert!(
        stdout.starts_with(&format!("from stdin\nhi there\n{work}/sub\n256\n")),
        "{stdout}"
    );
    // No cgroup was passed with the call: only the tree made ahead is in this one.
    assert!(stdout.contains(&format!("/{}\n", cg.name())), "{stdout}");
    // The call's tree, init and all, is gone with it.
    assert!(cg.procs().is_empty(), "{:?}", cg.procs());
    assert!(!std::path::Path::new(&format!("/proc/{init}")).exists());
}

#[tokio::test]
async fn two_calls_made_ahead_wait_at_most_and_any_other_call_starts_cold() {
    if !root() {
        return;
    }
    let mut s = start().await;
    let (a, b, c, d) = (
        TestCgroup::new(),
        TestCgroup::new(),
        TestCgroup::new(),
        TestCgroup::new(),
    );
    s.client.prepare("t1".into(), vec![a.fd()]).await.unwrap();
    s.client.prepare("t2".into(), vec![b.fd()]).await.unwrap();
    eventually("t1's and t2's inits joined", || {
        a.procs().len() == 1 && b.procs().len() == 1
    })
    .await;
    // A third replaces the oldest.
    s.client.prepare("t3".into(), vec![d.fd()]).await.unwrap();
    eventually("t3's init joined", || d.procs().len() == 1).await;
    eventually("t1's init killed", || a.procs().is_empty()).await;
    assert_eq!(b.procs().len(), 1, "t2 still waits");

    // t1 is no more: the call starts cold, in the cgroup it passes.
    let cgroup_of = |out: &execbox::supervisor::client::CallOutput, cg: &TestCgroup| {
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains(&format!("/{}\n", cg.name())), "{stdout}");
    };
    let mut spec = call(&["cat", "/proc/self/cgroup"], 10_000);
    spec.warm = Some("t1".into());
    let out = s
        .client
        .exec(spec, b"", vec![c.fd()], None, None)
        .await
        .unwrap();
    cgroup_of(&out, &c);
    assert_eq!((b.procs().len(), d.procs().len()), (1, 1), "t2 and t3 wait");

    // A program too large for the memory it shares with t2's init (1 MiB) starts cold, and t2,
    // taken, is killed.
    let mut spec = call(
        &["sh", "-c", "echo ${#BIG0}; cat /proc/self/cgroup"],
        10_000,
    );
    for i in 0..10 {
        spec.env.push((format!("BIG{i}"), "x".repeat(120 << 10)));
    }
    spec.warm = Some("t2".into());
    let out = s
        .client
        .exec(spec, b"", vec![c.fd()], None, None)
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.starts_with(&format!("{}\n", 120 << 10)),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    cgroup_of(&out, &c);
    eventually("t2's init killed", || b.procs().is_empty()).await;

    // t3 still serves its call.
    let mut spec = call(&["cat", "/proc/self/cgroup"], 10_000);
    spec.warm = Some("t3".into());
    let out = s
        .client
        .exec(spec, b"", vec![c.fd()], None, None)
        .await
        .unwrap();
    cgroup_of(&out, &d);
    assert!(d.procs().is_empty());

    // A tree made ahead dies with its supervisor.
    s.client.prepare("t4".into(), vec![a.fd()]).await.unwrap();
    eventually("t4's init joined", || a.procs().len() == 1).await;
    s.child.kill().unwrap();
    s.child.wait().unwrap();
    eventually("t4's init died with the supervisor", || {
        a.procs().is_empty()
    })
    .await;
}
