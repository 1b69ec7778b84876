//! Local sandboxes on the supervisor, through the HTTP API: the work dir is a disk image that
//! holds `disk_bytes` whatever a program does, calls see each other's files and nothing of an
//! ended call keeps running, usage and OOM are per call, and a restart (graceful or kill -9)
//! keeps the files and leaves nothing of an in-flight call alive.

use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::*;

/// Shared-app tests delete what they made: the team's sandbox quota is shared by the binary.
async fn delete(app: &TestApp, id: &str) {
    let r = client()
        .delete(app.url(&format!("/v1/sandboxes/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert!(!app.data_dir.join("sandboxes").join(id).exists());
}

async fn bash(app: &TestApp, id: &str, code: &str) -> Value {
    sandbox_call_ok(app, id, json!({"language": "bash", "code": code})).await
}

/// A grep pattern for `token` that grep's own command line does not match.
fn pattern(token: &str) -> String {
    format!("[{}]{}", &token[..1], &token[1..])
}

/// The host blocks of a sandbox's disk image.
fn image_blocks_bytes(app: &TestApp, id: &str) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let img = app.data_dir.join("sandboxes").join(id).join("disk.img");
    std::fs::metadata(&img)
        .unwrap_or_else(|e| panic!("{}: {e}", img.display()))
        .blocks()
        * 512
}

#[tokio::test]
async fn a_call_sees_earlier_files_and_its_writes_persist() {
    needs_root!();
    let Some(app) = app_for("local").await else {
        return;
    };
    let id = create_sandbox_with(app, json!({"ttl_seconds": 600})).await;
    let r = bash(app, &id, "mkdir -p d && echo one > d/f && echo made").await;
    assert_eq!(r["stdout"], "made\n", "{r}");
    let r = sandbox_call_ok(
        app,
        &id,
        json!({"language": "python", "code": "open('d/f','a').write('two\\n'); print(open('d/f').read(), end='')"}),
    )
    .await;
    assert_eq!(r["stdout"], "one\ntwo\n", "{r}");
    // A compiled program stays where its call left it.
    let r = sandbox_call_ok(
        app,
        &id,
        json!({"language": "c", "code": "#include <stdio.h>\nint main(){FILE*f=fopen(\"d/f\",\"a\");fputs(\"three\\n\",f);fclose(f);puts(\"c\");}"}),
    )
    .await;
    assert_eq!(
        (r["status"].as_str(), r["stdout"].as_str()),
        (Some("ok"), Some("c\n")),
        "{r}"
    );
    let r = bash(app, &id, "cat d/f; test -x main && echo binary kept").await;
    assert_eq!(r["stdout"], "one\ntwo\nthree\nbinary kept\n", "{r}");
    let got = client()
        .get(app.url(&format!("/v1/sandboxes/{id}/files/d/f")))
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), 200);
    assert_eq!(got.bytes().await.unwrap().as_ref(), b"one\ntwo\nthree\n");
    delete(app, &id).await;
}

#[tokio::test]
async fn sparse_files_and_hard_links_never_grow_the_image_past_disk_bytes() {
    needs_root!();
    let Some(app) = app_for("local").await else {
        return;
    };
    // strict: disk_bytes = 16 MiB.
    let disk: u64 = 16 << 20;
    let id = create_sandbox_with(app, json!({"ttl_seconds": 600, "policy": "strict"})).await;
    let code = format!(
        r#"
import os, errno
disk = {disk}
made = []
# A sparse file far bigger than the disk, else as big as the file size limit lets it be.
for size in (disk * 64, disk * 4, disk - 1):
    try:
        with open('sparse', 'wb') as f:
            f.truncate(size)
            f.seek(size - 1); f.write(b'x')
        made.append(size); break
    except OSError:
        pass
# Fill the disk for real, then hard-link the big file many times.
full = False
with open('big', 'wb') as f:
    try:
        while True:
            f.write(b'y' * (1 << 20)); f.flush()
    except OSError as e:
        full = e.errno in (errno.ENOSPC, errno.EFBIG)
links = 0
for i in range(3000):
    try:
        os.link('big', 'l%d' % i); links += 1
    except OSError:
        break
print(bool(made), full, links)
"#
    );
    let r = sandbox_call_ok(
        app,
        &id,
        json!({"language": "python", "code": code, "limits": {"wall_time_ms": 10000}}),
    )
    .await;
    assert_eq!(r["stdout"], "True True 3000\n", "{r}");
    let used = image_blocks_bytes(app, &id);
    assert!(
        used <= disk,
        "the image holds {used} bytes of host disk, more than disk_bytes {disk}"
    );
    // Still a working sandbox: space comes back when files go.
    let r = bash(
        app,
        &id,
        "rm -f sparse big l*; echo fine > after.txt && cat after.txt",
    )
    .await;
    assert_eq!(r["stdout"], "fine\n", "{r}");
    assert!(image_blocks_bytes(app, &id) <= disk);
    delete(app, &id).await;
}

#[tokio::test]
async fn a_non_utf8_file_name_survives_calls_and_lists_percent_encoded() {
    needs_root!();
    let Some(app) = app_for("local").await else {
        return;
    };
    let id = create_sandbox_with(app, json!({"ttl_seconds": 600})).await;
    let r = sandbox_call_ok(
        app,
        &id,
        json!({"language": "python", "code": "open(b'caf\\xe9.txt', 'wb').write(b'latin-1')\nprint('ok')"}),
    )
    .await;
    assert_eq!(r["stdout"], "ok\n", "{r}");
    // Later calls still work and still see it.
    let r = sandbox_call_ok(
        app,
        &id,
        json!({"language": "python", "code": "import os\nprint(sorted(n for n in os.listdir(b'.') if n.startswith(b'caf')))"}),
    )
    .await;
    assert_eq!(r["stdout"], "[b'caf\\xe9.txt']\n", "{r}");
    let (status, listing) = app.get(&format!("/v1/sandboxes/{id}/files")).await;
    assert_eq!(status, 200, "{listing}");
    let entry = listing["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["path"].as_str().is_some_and(|p| p.starts_with("caf")))
        .cloned()
        .unwrap_or_else(|| panic!("not listed: {listing}"));
    assert_eq!(entry["path"], "caf%E9.txt", "{entry}");
    assert_eq!(entry["path_encoding"], "percent", "{entry}");
    assert_eq!(entry["size"], 7);
    delete(app, &id).await;
}

#[tokio::test]
async fn no_process_of_a_call_survives_it() {
    needs_root!();
    let Some(app) = app_for("local").await else {
        return;
    };
    let id = create_sandbox_with(app, json!({"ttl_seconds": 600})).await;
    let t = token();
    // setsid and a double fork: the grandchild is nobody's child and in a session of its own.
    // The call waits until both are seen running before it ends.
    let code = format!(
        "setsid sh -c 'sh -c \"sleep 1000; :\" $1 &' - {t} < /dev/null > /dev/null 2>&1\n\
         python3 -c 'import os,time\nif os.fork()==0:\n  os.setsid()\n  if os.fork()==0:\n    time.sleep(1000)\n' {t}\n\
         for i in $(seq 200); do n=$(grep -l '{p}' /proc/[0-9]*/cmdline 2>/dev/null | wc -l); [ $n -ge 2 ] && break; sleep 0.05; done\n\
         [ $n -ge 2 ] && echo started",
        p = pattern(&t)
    );
    let r = bash(app, &id, &code).await;
    assert_eq!(r["stdout"], "started\n", "{r}");
    assert!(
        host_processes_with(&t).is_empty(),
        "a call's processes outlived it: {:?}",
        host_processes_with(&t)
    );
    // From inside: the next call's /proc shows nothing of the last one (the pattern does not
    // match grep's own command line).
    let r = bash(
        app,
        &id,
        &format!(
            "grep -l '{}' /proc/[0-9]*/cmdline 2>/dev/null; echo checked",
            pattern(&t)
        ),
    )
    .await;
    assert_eq!(r["stdout"], "checked\n", "{r}");
    delete(app, &id).await;
}

#[tokio::test]
async fn usage_and_oom_are_reported_per_call() {
    needs_root!();
    let Some(app) = app_for("local").await else {
        return;
    };
    let id = create_sandbox_with(app, json!({"ttl_seconds": 600})).await;
    let r = sandbox_call_ok(
        app,
        &id,
        json!({"language": "python", "code": "x = bytearray(200 << 20)\nprint('no')", "limits": {"memory_bytes": 64 << 20}}),
    )
    .await;
    assert_eq!(r["status"], "memory_limit", "{r}");
    assert_eq!(r["signal"], "SIGKILL", "{r}");
    // The next call is measured on its own: no OOM, its own small peak.
    let r = sandbox_call_ok(app, &id, json!({"language": "python", "code": "print(1)"})).await;
    assert_eq!(r["status"], "ok", "{r}");
    let peak = r["usage"]["peak_memory_bytes"].as_u64().unwrap();
    assert!(peak > 0 && peak < 48 << 20, "{r}");
    assert!(r["usage"]["cpu_time_ms"].as_u64().unwrap() < 2000, "{r}");
    let r = sandbox_call_ok(
        app,
        &id,
        json!({"language": "python", "code": "while True: pass", "limits": {"cpu_time_ms": 400}}),
    )
    .await;
    assert_eq!(r["status"], "cpu_limit", "{r}");
    let cpu = r["usage"]["cpu_time_ms"].as_u64().unwrap();
    assert!((400..1500).contains(&cpu), "{r}");
    let r = sandbox_call_ok(
        app,
        &id,
        json!({"language": "bash", "code": "sleep 5", "limits": {"wall_time_ms": 500}}),
    )
    .await;
    assert_eq!(r["status"], "timeout", "{r}");
    assert!(r["usage"]["cpu_time_ms"].as_u64().unwrap() < 400, "{r}");
    delete(app, &id).await;
}

#[tokio::test]
async fn a_restart_keeps_the_files_and_a_kill_9_leaves_nothing_of_its_call() {
    use futures::StreamExt;
    needs_root!();
    let Some(_) = app_for("local").await else {
        return;
    };
    let data = tempfile::tempdir().unwrap();
    let instance = format!("lsurv-{}", std::process::id());
    let app = TestApp::start_in(&instance, data.path(), &[]);
    let id = create_sandbox_with(&app, json!({"ttl_seconds": 600})).await;
    bash(&app, &id, "echo survives > keep.txt").await;
    let status = tokio::task::spawn_blocking(move || app.stop_for_restart())
        .await
        .unwrap();
    assert!(status.success());
    let mut app = TestApp::start_in(&instance, data.path(), &[]);
    assert_eq!(
        bash(&app, &id, "cat keep.txt").await["stdout"],
        "survives\n"
    );

    // kill -9 of the service during a call.
    let t = token();
    let r = client()
        .post(app.url(&format!("/v1/sandboxes/{id}/execute")))
        .header("accept", "text/event-stream")
        .json(&json!({"language": "bash", "code": format!("echo written > during.txt; setsid sh -c 'sleep 1000; :' {t} & sh -c 'sleep 1000; :' {t} & echo started; wait")}))
        .send()
        .await
        .unwrap();
    let mut body = r.bytes_stream();
    let mut seen = String::new();
    while !seen.contains("started") {
        seen.push_str(&String::from_utf8_lossy(
            &body.next().await.unwrap().unwrap(),
        ));
    }
    // Both sleeps are running (the background one may start a moment after the echo).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while host_processes_with(&t).len() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the call's sleeps never started"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    app.kill9();
    drop(body);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !host_processes_with(&t).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the call outlived its service: {:?}",
            host_processes_with(&t)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let app = TestApp::start_in(&instance, data.path(), &[]);
    let r = bash(
        &app,
        &id,
        &format!(
            "cat keep.txt during.txt; grep -l '{}' /proc/[0-9]*/cmdline 2>/dev/null; echo end",
            pattern(&t)
        ),
    )
    .await;
    assert_eq!(r["stdout"], "survives\nwritten\nend\n", "{r}");
    assert!(host_processes_with(&t).is_empty());
    let r = client()
        .delete(app.url(&format!("/v1/sandboxes/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert!(!data.path().join("sandboxes").join(&id).exists());
}
