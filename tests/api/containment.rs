//! The containment suite: programs that try to escape, exhaust or outlive their sandbox.
//! Each asserts the exact status and that nothing of the run is left on the host. Every test
//! runs on the local executor, the docker executor, and the docker executor under gVisor (the
//! `gvisor` policy); where gVisor answers differently the test says why.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::helpers::*;

/// After a run returned, none of its processes may remain on the host.
fn assert_no_leftovers(token: &str) {
    let left = host_processes_with(token);
    assert!(
        left.is_empty(),
        "processes of the run survived it: {left:?}"
    );
}

async fn cpu_spin_hits_the_cpu_limit(ex: &str) {
    let Some(app) = app_for(ex).await else { return };
    let t = token();
    let r = app
        .run(json!({"executor": executor_of(ex), "policy": policy_of(ex), "language": "python", "code": "while True: pass", "args": [t], "limits": {"cpu_time_ms": 1000, "wall_time_ms": 20000}}))
        .await;
    assert_eq!(r["status"], "cpu_limit", "{r}");
    let cpu = r["usage"]["cpu_time_ms"].as_u64().unwrap();
    // The limit fires from the kernel's per-process accounting or the service's 20 ms watch of
    // the cgroup; the cgroup's figure read after it can trail by a few ticks on a loaded host.
    assert!(
        (900..3000).contains(&cpu),
        "cpu accounting within a few ticks of the limit: {cpu}"
    );
    assert_no_leftovers(&t);
}

async fn sigterm_immune_sleep_is_killed_at_the_deadline(ex: &str) {
    let Some(app) = app_for(ex).await else { return };
    let t = token();
    let code = "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nprint('started', flush=True)\ntime.sleep(60)";
    let started = Instant::now();
    let r = app.run(json!({"executor": executor_of(ex), "policy": policy_of(ex), "language": "python", "code": code, "args": [t], "limits": {"wall_time_ms": 1500}})).await;
    let took = started.elapsed();
    assert_eq!(r["status"], "timeout", "{r}");
    assert_eq!(
        r["stdout"], "started\n",
        "output before the deadline is kept"
    );
    assert_eq!(r["exit_code"], json!(null));
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert!(r["usage"]["wall_time_ms"].as_u64().unwrap() >= 1500);
    assert_no_leftovers(&t);
}

async fn daemonized_and_setsid_children_die_with_the_run(ex: &str) {
    let Some(app) = app_for(ex).await else { return };
    let t = token();
    // Double fork + setsid: the classic daemon, orphaned from the program.
    let code = r#"
import os, sys, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        time.sleep(120)
    os._exit(0)
if os.fork() == 0:
    os.setsid()
    time.sleep(120)
time.sleep(0.3)
print("parent done")
"#;
    let r = app.run(json!({"executor": executor_of(ex), "policy": policy_of(ex), "language": "python", "code": code, "args": [t]})).await;
    assert_eq!(
        (r["status"].as_str(), r["stdout"].as_str()),
        (Some("ok"), Some("parent done\n")),
        "{r}"
    );
    assert_no_leftovers(&t);
}

async fn fork_bomb_is_held_by_the_pids_limit(ex: &str) {
    let Some(app) = app_for(ex).await else { return };
    let t = token();
    let code = r#"
import os, time, sys
n = 0
for _ in range(500):
    try:
        if os.fork() == 0:
            time.sleep(30)
            os._exit(0)
        n += 1
    except OSError:
        break
print(n)
"#;
    let r = app.run(json!({"executor": executor_of(ex), "policy": policy_of(ex), "language": "python", "code": code, "args": [t], "limits": {"pids": 16, "wall_time_ms": 20000}})).await;
    assert_eq!(r["status"], "ok", "{r}");
    let n: u32 = s(&r, "stdout").trim().parse().unwrap();
    assert!(n < 16, "forked {n} children under pids = 16");
    assert_no_leftovers(&t);
}

async fn shell_fork_bomb_ends_and_leaves_nothing(ex: &str) {
    let Some(app) = app_for(ex).await else { return };
    let t = token();
    let code = format!(": {t}\nbomb() {{ bomb | bomb & }}; bomb; sleep 2; echo survived");
    let r = app.run(json!({"executor": executor_of(ex), "policy": policy_of(ex), "language": "bash", "code": code, "limits": {"pids": 32, "wall_time_ms": 4000}})).await;
    assert!(
        matches!(
            r["status"].as_str(),
            Some("ok" | "error" | "timeout" | "cpu_limit")
        ),
        "{r}"
    );
    assert_no_leftovers(&t);
}

async fn thread_storm_is_held_by_the_pids_limit(ex: &str) {
    let Some(app) = app_for(ex).await else { return };
    let code = r#"
import threading, time
n = 0
try:
    for _ in range(2000):
        threading.Thread(target=time.sleep, args=(5,), daemon=True).start()
        n += 1
except RuntimeError:
    pass
print(n)
"#;
    let r = app.run(json!({"executor": executor_of(ex), "policy": policy_of(ex), "language": "python", "code": code, "limits": {"pids": 20}})).await;
    assert_eq!(r["status"], "ok", "{r}");
    let n: u32 = s(&r, "stdout").trim().parse().unwrap();
    assert!(n < 20, "started {n} threads under pids = 20");
}

async fn memory_bomb_is_memory_limit_from_the_oom_record(ex: &str) {
    let Some(app) = app_for(ex).await else { return };
    let code = "x = []\nwhile True:\n    x.append(bytearray(8 * 1024 * 1024))";
    let r = app.run(json!({"executor": executor_of(ex), "policy": policy_of(ex), "language": "python", "code": code, "limits": {"memory_bytes": 64 << 20}})).await;
    assert_eq!(r["status"], "memory_limit", "{r}");
    assert_eq!(r["signal"], "SIGKILL");
    if ex == GVISOR {
        // The host's OOM killer takes gVisor's kernel with the program, and the container's
        // cgroup goes with it before its peak can be read: no usage figure remains.
        assert_eq!(r["usage"]["peak_memory_bytes"], 0, "{r}");
        return;
    }
    let peak = r["usage"]["peak_memory_bytes"].as_u64().unwrap();
    assert!(peak > 48 << 20 && peak <= 64 << 20, "peak {peak}");
}

async fn exit_137_without_an_oom_is_not_memory_limit(ex: &str) {
    let Some(app) = app_for(ex).await else { return };
    if ex == "local" {
        // The Docker engine reports death by signal N as exit code 128+N, so only the local
        // executor can tell `exit 137` from a SIGKILL (README: the docker executor's limits).
        let r = app.run(json!({"executor": executor_of(ex), "policy": policy_of(ex), "language": "bash", "code": "exit 137"})).await;
        assert_eq!(
            (r["status"].as_str(), r["exit_code"].as_i64()),
            (Some("error"), Some(137))
        );
    }
    let r = app.run(json!({"executor": executor_of(ex), "policy": policy_of(ex), "language": "bash", "code": "kill -9 $$"})).await;
    assert_eq!(
        (r["status"].as_str(), r["signal"].as_str()),
        (Some("killed"), Some("SIGKILL")),
        "{r}"
    );
}

async fn output_flood_is_capped_flagged_and_the_program_keeps_running(ex: &str) {
    let Some(app) = app_for(ex).await else { return };
    let code = r#"
import sys
chunk = "x" * 65536
for _ in range(800):
    sys.stdout.write(chunk)
    sys.stderr.write(chunk)
sys.stdout.flush()
sys.stderr.write("\nfinished\n")
"#;
    let cap = 1 << 20;
    let r = app.run(json!({"executor": executor_of(ex), "policy": policy_of(ex), "language": "python", "code": code, "limits": {"output_bytes": cap}})).await;
    assert_eq!(r["status"], "ok", "the program ran to its end");
    assert_eq!(r["stdout_truncated"], true);
    assert_eq!(r["stderr_truncated"], true);
    assert_eq!(s(&r, "stdout").len(), cap as usize);
    assert_eq!(s(&r, "stderr").len(), cap as usize);
}

async fn disk_fill_stops_at_disk_bytes(ex: &str) {
    let Some(app) = app_for(ex).await else { return };
    let code = r#"
import os
total = 0
for name in ["/work/fill", "/tmp/fill"]:
    try:
        with open(name, "wb") as f:
            while True:
                f.write(b"x" * 65536)
                f.flush()
                total += 65536
    except OSError as e:
        print(name, e.errno in (27, 28))
print(total)
"#;
    let r = app.run(json!({"executor": executor_of(ex), "policy": policy_of(ex), "language": "python", "code": code, "limits": {"disk_bytes": 8 << 20}})).await;
    assert_eq!(r["status"], "ok", "{r}");
    let out = s(&r, "stdout");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(&lines[..2], ["/work/fill True", "/tmp/fill True"], "{out}");
    let total: u64 = lines[2].parse().unwrap();
    // Local: /work and /tmp share one tmpfs of disk_bytes. Docker: each is its own tmpfs of
    // disk_bytes (the engine mounts them separately).
    let bound = if ex == "local" { 8 << 20 } else { 16 << 20 };
    assert!(
        total <= bound && total > bound - (1 << 20),
        "wrote {total} bytes under disk_bytes = 8 MiB"
    );
}

async fn host_processes_are_not_visible(ex: &str) {
    let Some(app) = app_for(ex).await else { return };
    let code = r#"
import os
pids = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
print(pids)
for p in pids:
    print(open(f"/proc/{p}/cmdline","rb").read().replace(b"\0", b" ").decode().strip())
"#;
    let r = app.run(json!({"executor": executor_of(ex), "policy": policy_of(ex), "language": "python", "code": code})).await;
    let out = s(&r, "stdout");
    // On both executors the program's tree has a pid namespace and a /proc of its own: its
    // init (the supervisor's or the helper's) and the program.
    assert_eq!(
        out.lines().next(),
        Some("[1, 2]"),
        "only PID 1 and the program: {out}"
    );
    assert!(
        !out.contains("serve") && !out.contains("dockerd") && !out.contains("containerd"),
        "{out}"
    );
}

async fn no_network_but_a_private_loopback(ex: &str) {
    let Some(app) = app_for(ex).await else { return };
    let code = format!(
        r#"
import socket
print(sorted(l.split(":")[0].strip() for l in open("/proc/net/dev").readlines()[2:]))
print(len(open("/proc/net/route").readlines()))
s = socket.socket()
try:
    s.connect(("127.0.0.1", {port}))
    print("connected to the service")
except OSError as e:
    print("refused", e.errno)
srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(1)
c = socket.create_connection(srv.getsockname()); print("own loopback works")
"#,
        port = app.port
    );
    let r = app.run(json!({"executor": executor_of(ex), "policy": policy_of(ex), "language": "python", "code": code})).await;
    assert_eq!(
        r["stdout"], "['lo']\n1\nrefused 111\nown loopback works\n",
        "{r}"
    );
}

async fn host_files_cannot_be_read_or_written(ex: &str) {
    let Some(app) = app_for(ex).await else { return };
    let data_dir = app.data_dir.display().to_string();
    let code = format!(
        r#"
import os
print(sorted(os.listdir("/")))
for p in ["/etc/shadow", "/root", "{data_dir}", "/var/lib/execbox", "/proc/1/root/etc/shadow"]:
    try:
        os.listdir(p) if os.path.isdir(p) else open(p, "rb").read()
        print(p, "readable")
    except OSError as e:
        print(p, "hidden" if e.errno in (2, 13) else e.errno)
for p in ["/usr/bin/evil", "/evil", "/etc/passwd", "/proc/sys/kernel/hostname"]:
    try:
        open(p, "w").write("x"); print("wrote", p)
    except OSError as e:
        print("denied", p, e.errno in (13, 30))
"#
    );
    let r = app.run(json!({"executor": executor_of(ex), "policy": policy_of(ex), "language": "python", "code": code})).await;
    let out = s(&r, "stdout");
    let (listing, rest) = out.split_once('\n').unwrap();
    if ex == "local" {
        // The sandbox's root is built from nothing: only what the runtimes need.
        assert_eq!(
            listing,
            "['bin', 'dev', 'etc', 'lib', 'lib64', 'proc', 'sbin', 'tmp', 'usr', 'work']"
        );
    } else {
        // The image's own tree (its /etc/shadow and /root are the image's, unreadable to the
        // sandbox user), never the host's.
        assert!(
            listing.contains("'work'")
                && !listing.contains(&format!("'{}'", data_dir.trim_start_matches('/'))),
            "{listing}"
        );
    }
    assert_eq!(
        rest,
        format!(
            "/etc/shadow hidden\n/root hidden\n{data_dir} hidden\n/var/lib/execbox hidden\n/proc/1/root/etc/shadow hidden\ndenied /usr/bin/evil True\ndenied /evil True\ndenied /etc/passwd True\ndenied /proc/sys/kernel/hostname True\n"
        ),
        "{r}"
    );
}

async fn runs_as_an_unprivileged_user_without_new_privileges(ex: &str) {
    let Some(app) = app_for(ex).await else { return };
    let code = r#"
import os
print(os.getuid(), os.geteuid(), os.getgid(), os.getgroups())
print([l for l in open("/proc/self/status") if l.startswith(("CapEff", "NoNewPrivs", "Seccomp:"))])
"#;
    let r = app.run(json!({"executor": executor_of(ex), "policy": policy_of(ex), "language": "python", "code": code})).await;
    // The run's own uid from the default sandbox_uids range (60000..61000), gid the same.
    let out = s(&r, "stdout");
    let uid: u32 = out.split_whitespace().next().unwrap().parse().unwrap();
    assert!((60_000..61_000).contains(&uid), "{r}");
    // No supplementary group on either executor: the supervisor clears them.
    let groups = "[]";
    // gVisor's /proc shows no NoNewPrivs line; its Seccomp line is the supervisor's filter,
    // installed in gVisor's kernel (the host kernel sees only the Sentry, under runsc's own).
    let status = if ex == GVISOR {
        "'CapEff:\\t0000000000000000\\n', 'Seccomp:\\t2\\n'"
    } else {
        "'CapEff:\\t0000000000000000\\n', 'NoNewPrivs:\\t1\\n', 'Seccomp:\\t2\\n'"
    };
    assert_eq!(
        out,
        format!("{uid} {uid} {uid} {groups}\n[{status}]\n"),
        "{r}"
    );
}

async fn mount_and_namespace_creation_are_refused(ex: &str) {
    let Some(app) = app_for(ex).await else { return };
    let code = r#"
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
def call(name, *args):
    r = getattr(libc, name)(*args)
    return (r, ctypes.get_errno()) if r == -1 else (r, 0)
CLONE_NEWUSER, CLONE_NEWNS, CLONE_NEWNET, CLONE_NEWPID = 0x10000000, 0x20000, 0x40000000, 0x20000000
print("unshare user", call("unshare", CLONE_NEWUSER))
print("unshare mnt", call("unshare", CLONE_NEWNS))
print("unshare net", call("unshare", CLONE_NEWNET))
print("mount", call("mount", b"none", b"/tmp", b"tmpfs", 0, None))
print("setns", call("setns", 0, 0))
SYS_clone, SYS_clone3 = 56, 435
print("clone newuser", call("syscall", SYS_clone, CLONE_NEWUSER | 17, 0, 0, 0, 0))
print("clone3", call("syscall", SYS_clone3, 0, 0))
print("ptrace", call("ptrace", 16, 1, 0, 0))
print("keyctl", call("syscall", 250, 0, 0, 0, 0))
print("bpf", call("syscall", 321, 0, 0, 0))
print("io_uring_setup", call("syscall", 425, 1, 0))
print("userfaultfd", call("syscall", 323, 0))
print("perf_event_open", call("syscall", 298, 0, 0, -1, -1, 0))
print("TIOCSTI", call("ioctl", 0, 0x5412, b"x"))
"#;
    let r = app.run(json!({"executor": executor_of(ex), "policy": policy_of(ex), "language": "python", "code": code})).await;
    // Under gVisor too: the supervisor stacks execbox's own filter on every program, inside
    // gVisor's kernel, so it refuses exactly what the other executors refuse.
    assert_eq!(
        s(&r, "stdout"),
        "unshare user (-1, 1)\nunshare mnt (-1, 1)\nunshare net (-1, 1)\nmount (-1, 1)\nsetns (-1, 1)\nclone newuser (-1, 1)\nclone3 (-1, 38)\nptrace (-1, 1)\nkeyctl (-1, 1)\nbpf (-1, 1)\nio_uring_setup (-1, 1)\nuserfaultfd (-1, 1)\nperf_event_open (-1, 1)\nTIOCSTI (-1, 1)\n",
        "{r}"
    );
    let r = app.run(json!({"executor": executor_of(ex), "policy": policy_of(ex), "language": "bash", "code": "unshare -r true; echo rc=$?"})).await;
    assert!(s(&r, "stdout").ends_with("rc=1\n"), "{r}");
}

async fn killing_pid_1_the_parent_or_everyone_is_harmless(ex: &str) {
    let Some(app) = app_for(ex).await else { return };
    let code = r#"
import os, signal
# Under docker exec the parent is outside the namespace: getppid() is 0, which would mean "my
# own process group", so PID 1 stands in for it.
for target in (1, os.getppid() or 1, -1):
    try:
        os.kill(target, signal.SIGKILL)
        print("sent", target)
    except OSError as e:
        print("refused", target, e.errno)
print("still here")
"#;
    let r = app.run(json!({"executor": executor_of(ex), "policy": policy_of(ex), "language": "python", "code": code})).await;
    assert_eq!(r["status"], "ok", "{r}");
    assert!(s(&r, "stdout").ends_with("still here\n"), "{r}");
    assert_eq!(app.get("/healthz").await.0, 200);
}

async fn every_run_gets_a_fresh_filesystem(ex: &str) {
    let Some(app) = app_for(ex).await else { return };
    let write = "open('/work/marker','w').write('1'); open('/tmp/marker','w').write('1'); open('/dev/shm/marker','w').write('1'); print('wrote')";
    assert_eq!(app.run(json!({"executor": executor_of(ex), "policy": policy_of(ex), "language": "python", "code": write})).await["stdout"], "wrote\n");
    let check = "import os\nprint([os.path.exists(p) for p in ('/work/marker', '/tmp/marker', '/dev/shm/marker')], sorted(os.listdir('/work')))";
    assert_eq!(app.run(json!({"executor": executor_of(ex), "policy": policy_of(ex), "language": "python", "code": check})).await["stdout"], "[False, False, False] ['main.py']\n");
}

async fn concurrent_runs_do_not_see_each_other(ex: &str) {
    let Some(app) = app_for(ex).await else { return };
    let (a, b) = (token(), token());
    let code = |mine: &str, theirs: &str| {
        format!(
            r#"
import os, time
open("/tmp/{mine}", "w").write("x")
open("/dev/shm/{mine}", "w").write("x")
time.sleep(1.0)
cmdlines = [open(f"/proc/{{p}}/cmdline","rb").read() for p in os.listdir("/proc") if p.isdigit()]
print(os.path.exists("/tmp/{theirs}"), os.path.exists("/dev/shm/{theirs}"), any(b"{theirs}" in c for c in cmdlines))
"#
        )
    };
    let (ra, rb) = tokio::join!(
        app.run(json!({"executor": executor_of(ex), "policy": policy_of(ex), "language": "python", "code": code(&a, &b), "args": [a]})),
        app.run(json!({"executor": executor_of(ex), "policy": policy_of(ex), "language": "python", "code": code(&b, &a), "args": [b]}))
    );
    assert_eq!(ra["stdout"], "False False False\n", "{ra}");
    assert_eq!(rb["stdout"], "False False False\n", "{rb}");
}

async fn a_setuid_binary_gives_nothing(ex: &str) {
    let Some(app) = app_for(ex).await else { return };
    let r = app.run(json!({"executor": executor_of(ex), "policy": policy_of(ex), "language": "bash", "code": "ls -l /usr/bin/su | cut -c1-10; su -c id root </dev/null; echo rc=$?; id -u"})).await;
    let out = s(&r, "stdout");
    let (rest, uid) = out.trim_end().rsplit_once('\n').unwrap();
    assert!(
        (60_000..61_000).contains(&uid.parse::<u32>().unwrap()),
        "{r}"
    );
    assert!(
        rest.ends_with("rc=1") || rest.ends_with("rc=125") || rest.ends_with("rc=126"),
        "{r}"
    );
}

on_both_executors!(
    cpu_spin_hits_the_cpu_limit,
    sigterm_immune_sleep_is_killed_at_the_deadline,
    daemonized_and_setsid_children_die_with_the_run,
    fork_bomb_is_held_by_the_pids_limit,
    shell_fork_bomb_ends_and_leaves_nothing,
    thread_storm_is_held_by_the_pids_limit,
    memory_bomb_is_memory_limit_from_the_oom_record,
    exit_137_without_an_oom_is_not_memory_limit,
    output_flood_is_capped_flagged_and_the_program_keeps_running,
    disk_fill_stops_at_disk_bytes,
    host_processes_are_not_visible,
    no_network_but_a_private_loopback,
    host_files_cannot_be_read_or_written,
    runs_as_an_unprivileged_user_without_new_privileges,
    mount_and_namespace_creation_are_refused,
    killing_pid_1_the_parent_or_everyone_is_harmless,
    every_run_gets_a_fresh_filesystem,
    concurrent_runs_do_not_see_each_other,
    a_setuid_binary_gives_nothing
);
// runsc (2022) does not enforce RLIMIT_CPU: under gVisor the cpu limit is the service's watch of
// the container's cgroup CPU time (which also counts gVisor's own kernel).
on_gvisor!(
    cpu_spin_hits_the_cpu_limit,
    sigterm_immune_sleep_is_killed_at_the_deadline,
    daemonized_and_setsid_children_die_with_the_run,
    fork_bomb_is_held_by_the_pids_limit,
    shell_fork_bomb_ends_and_leaves_nothing,
    thread_storm_is_held_by_the_pids_limit,
    memory_bomb_is_memory_limit_from_the_oom_record,
    exit_137_without_an_oom_is_not_memory_limit,
    output_flood_is_capped_flagged_and_the_program_keeps_running,
    disk_fill_stops_at_disk_bytes,
    host_processes_are_not_visible,
    no_network_but_a_private_loopback,
    host_files_cannot_be_read_or_written,
    runs_as_an_unprivileged_user_without_new_privileges,
    mount_and_namespace_creation_are_refused,
    killing_pid_1_the_parent_or_everyone_is_harmless,
    every_run_gets_a_fresh_filesystem,
    concurrent_runs_do_not_see_each_other,
    a_setuid_binary_gives_nothing
);

/// x32 system calls (a second syscall table on x86_64) would slip past number-based filters:
/// both executors kill the program instead, gVisor too (the supervisor's filter is installed in
/// gVisor's kernel).
#[cfg(target_arch = "x86_64")]
async fn x32_system_calls_kill_the_program(ex: &str) {
    let Some(app) = app_for(ex).await else { return };
    let code = "import ctypes\nprint('before', flush=True)\nr = ctypes.CDLL(None, use_errno=True).syscall(0x40000000 | 272, 0x10000000)\nprint('after', r, ctypes.get_errno())";
    let r = app.run(json!({"executor": executor_of(ex), "policy": policy_of(ex), "language": "python", "code": code})).await;
    let expected = (Some("killed"), Some("SIGSYS"), Some("before\n"));
    assert_eq!(
        (
            r["status"].as_str(),
            r["signal"].as_str(),
            r["stdout"].as_str()
        ),
        expected,
        "{r}"
    );
}

#[cfg(target_arch = "x86_64")]
mod x32 {
    use super::*;
    on_both_executors!(x32_system_calls_kill_the_program);
    on_gvisor!(x32_system_calls_kill_the_program);
}
