//! Kernel resources tenants must not share: socket families whose address space lies outside
//! the network namespace, per-uid kernel limits (one uid per run and sandbox), socket buffer
//! memory past the run's limit, and personality changes.

use serde_json::{json, Value};

use crate::helpers::*;

/// The default `sandbox_uids` range.
const UIDS: std::ops::Range<u32> = 60_000..61_000;

/// AF_VSOCK's port space is shared with the VM host and every other tenant: only the families
/// a sandbox needs are allowed, on both executors, however the argument is spelled.
async fn only_the_socket_families_a_sandbox_needs_are_allowed(ex: &str) {
    let Some(app) = app_for(ex).await else { return };
    let code = r#"
import ctypes, errno, socket
libc = ctypes.CDLL(None, use_errno=True)
def sock(fam, typ, proto=0):
    try:
        socket.socket(fam, typ, proto).close()
        return "ok"
    except OSError as e:
        return errno.errorcode[e.errno]
def pair(fam):
    try:
        for s in socket.socketpair(fam, socket.SOCK_STREAM):
            s.close()
        return "ok"
    except OSError as e:
        return errno.errorcode[e.errno]
def raw(nr, *args):
    fds = (ctypes.c_int * 2)()
    r = libc.syscall(ctypes.c_long(nr), *[ctypes.c_long(a) for a in args], fds)
    return "ok" if r >= 0 else errno.errorcode[ctypes.get_errno()]
print("unix", sock(socket.AF_UNIX, socket.SOCK_STREAM), "inet", sock(socket.AF_INET, socket.SOCK_STREAM), "inet6", sock(socket.AF_INET6, socket.SOCK_DGRAM))
print("netlink route", sock(socket.AF_NETLINK, socket.SOCK_RAW, 0), "audit", sock(socket.AF_NETLINK, socket.SOCK_RAW, 9), "uevent", sock(socket.AF_NETLINK, socket.SOCK_RAW, 15))
print("vsock", sock(40, socket.SOCK_STREAM), "packet", sock(17, socket.SOCK_DGRAM), "alg", sock(38, socket.SOCK_SEQPACKET), "tipc", sock(30, socket.SOCK_RDM))
# The kernel reads the family as an int: upper bits must not slip a family past the filter.
print("vsock high bits", raw(41, 1 << 32 | 40, 1, 0), "netlink high bits", raw(41, 1 << 32 | 16, 3, 9))
print("pair unix", pair(socket.AF_UNIX), "pair vsock", pair(40), "pair tipc", raw(53, 30, 5, 0), "pair high bits", raw(53, 1 << 32 | 40, 1, 0))
print("interfaces", socket.if_nameindex())
"#;
    let r = app
        .run(json!({"executor": ex, "language": "python", "code": code}))
        .await;
    assert_eq!(
        s(&r, "stdout"),
        "unix ok inet ok inet6 ok\n\
         netlink route ok audit EPERM uevent EPERM\n\
         vsock EPERM packet EPERM alg EPERM tipc EPERM\n\
         vsock high bits EPERM netlink high bits EPERM\n\
         pair unix ok pair vsock EPERM pair tipc EPERM pair high bits EPERM\n\
         interfaces [(1, 'lo')]\n",
        "{r}"
    );
}

/// personality(2) answers a query and accepts the persona every program has (PER_LINUX);
/// any change (ASLR off, READ_IMPLIES_EXEC, another ABI's persona) is refused.
async fn personality_queries_pass_and_changes_are_refused(ex: &str) {
    let Some(app) = app_for(ex).await else { return };
    let code = r#"
import ctypes, errno
libc = ctypes.CDLL(None, use_errno=True)
libc.personality.argtypes = [ctypes.c_ulong]
def p(x):
    r = libc.personality(x)
    return hex(r) if r != -1 else errno.errorcode[ctypes.get_errno()]
print("query", p(0xffffffff), "linux", p(0), "no-aslr", p(0x0040000), "read-implies-exec", p(0x0400000), "linux32", p(8), "query", p(0xffffffff))
"#;
    let r = app
        .run(json!({"executor": ex, "language": "python", "code": code}))
        .await;
    assert_eq!(
        s(&r, "stdout"),
        "query 0x0 linux 0x0 no-aslr EPERM read-implies-exec EPERM linux32 EPERM query 0x0\n",
        "{r}"
    );
}

/// A run limited to 64 MiB fills the kernel buffers of loopback TCP connections it never
/// reads. Before the cap it queued hundreds of MiB of host memory (cgroup v1 charges socket
/// buffers to no limit); now what it can queue stays below its memory limit.
async fn socket_buffers_are_bounded_by_the_memory_limit(ex: &str) {
    let Some(app) = app_for(ex).await else { return };
    let code = r#"
import socket
srv = socket.socket()
srv.bind(("127.0.0.1", 0))
srv.listen(64)
held, queued, chunk = [], 0, b"x" * (1 << 16)
for _ in range(40):
    c = socket.create_connection(srv.getsockname())
    a, _ = srv.accept()
    for s in (c, a):
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 30)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 30)
    c.setblocking(False)
    while True:
        try:
            queued += c.send(chunk)
        except OSError:
            break
    held.append((c, a))
print(len(held), queued)
"#;
    let limit: u64 = 64 << 20;
    let r = app.run(json!({"executor": ex, "language": "python", "code": code, "limits": {"memory_bytes": limit}})).await;
    assert_eq!(r["status"], "ok", "{r}");
    let out = s(&r, "stdout");
    let (conns, queued) = out
        .trim()
        .split_once(' ')
        .map(|(a, b)| (a.parse::<u32>().unwrap(), b.parse::<u64>().unwrap()))
        .unwrap();
    assert_eq!(conns, 40, "{r}");
    // Bytes accepted by send() sit in kernel buffers (the sender's and the receiver's queues)
    // until read; the memory they pin is more than the payload.
    assert!(
        queued < limit,
        "the run queued {} MiB of socket buffers under a {} MiB limit",
        queued >> 20,
        limit >> 20
    );
    assert!(
        queued > 1 << 20,
        "the program should have queued something: {r}"
    );
}

on_both_executors!(
    only_the_socket_families_a_sandbox_needs_are_allowed,
    personality_queries_pass_and_changes_are_refused,
    socket_buffers_are_bounded_by_the_memory_limit
);

/// Exhausts the per-uid inotify instances, POSIX message queue bytes and pending signals, says
/// so, and holds them until cancelled.
const HOLDER: &str = r#"
import ctypes, os, signal, time
libc = ctypes.CDLL(None, use_errno=True)
n = 0
while libc.inotify_init1(0) >= 0:
    n += 1
ino = ctypes.get_errno()
q = 0
while libc.mq_open(f"/execbox-q{q}".encode(), os.O_CREAT | os.O_RDWR, 0o600, None) >= 0:
    q += 1
mq = ctypes.get_errno()
signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGRTMIN])
s = 0
while s < 1_000_000 and libc.sigqueue(os.getpid(), signal.SIGRTMIN, ctypes.c_void_p(0)) == 0:
    s += 1
sig = ctypes.get_errno()
print(os.getuid(), n, ino, q, mq, s, sig, flush=True)
time.sleep(120)
"#;

/// Asks once for each of what the holder took.
const CHECKER: &str = r#"
import ctypes, os, signal
libc = ctypes.CDLL(None, use_errno=True)
def ok(r):
    return "ok" if r >= 0 else os.strerror(ctypes.get_errno())
ino = ok(libc.inotify_init1(0))
mq = ok(libc.mq_open(b"/execbox-mine", os.O_CREAT | os.O_RDWR, 0o600, None))
signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGRTMIN])
sig = ok(libc.sigqueue(os.getpid(), signal.SIGRTMIN, ctypes.c_void_p(0)))
print(os.getuid(), ino, mq, sig)
"#;

fn uid_of(line: &str) -> u32 {
    line.split_whitespace()
        .next()
        .and_then(|u| u.parse().ok())
        .unwrap_or_else(|| panic!("no uid in {line:?}"))
}

/// One run takes every inotify instance (`fs.inotify.max_user_instances`), its uid's whole
/// message queue allowance and its pending signals, and holds them; concurrent runs on both
/// executors still get each of them, because each run has its own uid. Before, every run was
/// uid 65534 and the others got EMFILE and EAGAIN.
#[tokio::test]
async fn one_run_cannot_starve_another_of_per_uid_kernel_limits() {
    needs_root!();
    require_root();
    let app = TestApp::start(
        &format!("kiso-uids-{}", std::process::id()),
        &[("EXECBOX_MAX_CONCURRENT_RUNS", "4")],
    );
    let (_, ready) = app.get("/readyz").await;
    let mut executors = vec!["local"];
    if ready["executors"]["docker"]["ready"] == true {
        executors.push("docker");
    } else if std::env::var_os("CI").is_some() {
        panic!(
            "the docker executor is not ready in CI: {}",
            ready["executors"]["docker"]
        );
    } else {
        eprintln!("\n!!! the docker half of one_run_cannot_starve_another... is skipped: docker is not ready here !!!\n");
    }
    for holder_ex in executors.clone() {
        let resp = client()
            .post(app.url("/v1/execute"))
            .header("accept", "text/event-stream")
            .json(&json!({"executor": holder_ex, "language": "python", "code": HOLDER, "limits": {"wall_time_ms": 120_000, "cpu_time_ms": 60_000}}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let events = read_events(resp, |e| {
            e.event != "stdout" || e.data["data"].as_str().is_some_and(|d| d.ends_with('\n'))
        })
        .await;
        let held = events
            .iter()
            .filter(|e| e.event == "stdout")
            .map(|e| e.data["data"].as_str().unwrap())
            .collect::<String>();
        let f: Vec<u64> = held
            .split_whitespace()
            .map(|x| x.parse().unwrap())
            .collect();
        assert_eq!(
            f.len(),
            7,
            "the holder on {holder_ex} did not report: {held:?} {:?}",
            events.last().map(|e| &e.data)
        );
        // inotify and mq_open refuse with EMFILE, sigqueue with EAGAIN: the uid's limits are used up.
        assert!(
            f[1] > 0 && f[2] == 24 && f[3] > 0 && f[4] == 24 && f[5] > 0 && f[6] == 11,
            "{holder_ex}: {held}"
        );
        let holder_uid = f[0] as u32;
        let mut uids = vec![holder_uid];
        let runs: Vec<Value> = futures::future::join_all(
            executors
                .iter()
                .map(|ex| app.run(json!({"executor": ex, "language": "python", "code": CHECKER}))),
        )
        .await;
        for (ex, r) in executors.iter().zip(&runs) {
            let out = s(r, "stdout");
            assert_eq!(
                out.split_once(' ').map(|x| x.1),
                Some("ok ok ok\n"),
                "a {ex} run beside a {holder_ex} holder was starved: {r}"
            );
            uids.push(uid_of(&out));
        }
        // The holder's stream is dropped: the run is cancelled and its uid released.
        for u in &uids {
            assert!(UIDS.contains(u), "uid {u} is outside the configured range");
        }
        let mut distinct = uids.clone();
        distinct.sort();
        distinct.dedup();
        assert_eq!(
            distinct.len(),
            uids.len(),
            "concurrent runs share a uid: {uids:?}"
        );
    }
}

/// A docker sandbox holds its own uid for its life: its programs run as it, files written
/// through the API belong to it, one-shot runs beside it get others, and after a restart of the
/// service it has the same one (found again from its container).
#[tokio::test]
async fn a_docker_sandbox_keeps_its_own_uid_across_a_restart() {
    needs_root!();
    require_root();
    let data = tempfile::tempdir().unwrap();
    let instance = format!("kiso-sbuid-{}", std::process::id());
    let app = TestApp::start_in(&instance, data.path(), &[]);
    let (_, ready) = app.get("/readyz").await;
    if ready["executors"]["docker"]["ready"] != true {
        if std::env::var_os("CI").is_some() {
            panic!(
                "the docker executor is not ready in CI: {}",
                ready["executors"]["docker"]
            );
        }
        eprintln!("\n!!! SKIPPING a docker sandbox uid test: docker is not ready here !!!\n");
        return;
    }
    let r = client()
        .post(app.url("/v1/sandboxes"))
        .json(&json!({"executor": "docker", "ttl_seconds": 600}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let id = s(&r.json::<Value>().await.unwrap(), "id");
    let put = client()
        .put(app.url(&format!("/v1/sandboxes/{id}/files/from-api.txt")))
        .body("x")
        .send()
        .await
        .unwrap();
    assert!(put.status().is_success(), "{}", put.status());
    let call = |app: &TestApp, code: &str| {
        let (url, body) = (
            app.url(&format!("/v1/sandboxes/{id}/execute")),
            json!({"language": "bash", "code": code}),
        );
        async move {
            let r = client().post(url).json(&body).send().await.unwrap();
            assert_eq!(r.status(), 200);
            r.json::<Value>().await.unwrap()
        }
    };
    let code =
        "echo $(id -u) $(stat -c %u from-api.txt) $(stat -c %u .); touch mine; stat -c %u mine";
    let r = call(&app, code).await;
    let out = s(&r, "stdout");
    let uid = uid_of(&out);
    assert!(UIDS.contains(&uid), "{r}");
    assert_eq!(
        out,
        format!("{uid} {uid} {uid}\n{uid}\n"),
        "the program, /work and its files are the sandbox's uid: {r}"
    );
    for ex in ["local", "docker"] {
        let one = app
            .run(json!({"executor": ex, "language": "bash", "code": "id -u"}))
            .await;
        assert_ne!(
            uid_of(&s(&one, "stdout")),
            uid,
            "a {ex} run got the sandbox's uid"
        );
    }
    let status = tokio::task::spawn_blocking(move || app.stop_for_restart())
        .await
        .unwrap();
    assert!(status.success());
    let app = TestApp::start_in(&instance, data.path(), &[]);
    // The pool of the new service fills at once; none of its containers may have the uid.
    for _ in 0..4 {
        let one = app
            .run(json!({"executor": "docker", "language": "bash", "code": "id -u"}))
            .await;
        assert_ne!(
            uid_of(&s(&one, "stdout")),
            uid,
            "after a restart a run got the sandbox's uid"
        );
    }
    let r = call(&app, "id -u; stat -c %u mine").await;
    assert_eq!(s(&r, "stdout"), format!("{uid}\n{uid}\n"), "{r}");
    let del = client()
        .delete(app.url(&format!("/v1/sandboxes/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(del.status(), 204);
}
