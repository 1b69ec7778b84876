//! Requests that used to get a 5xx or a wrong kind of answer: limits below what a run needs, paths
//! the executors could not take, runs missing from the audit log, a server started on a taken
//! address, an empty keepalive, a body that is no tar. Each is refused at the door with its own
//! code, the same on both executors.

use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::*;

/// The minimums `GET /v1/policies` must serve: the measured table of `policy::MINIMUMS`.
const MINIMUMS: [(&str, u64); 6] = [
    ("wall_time_ms", 1),
    ("cpu_time_ms", 1),
    ("memory_bytes", 8 << 20),
    ("pids", 8),
    ("output_bytes", 0),
    ("disk_bytes", 64 << 10),
];

fn code_of(v: &Value) -> &str {
    v["error"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("not an error body: {v}"))
}

async fn limits_below_their_minimum_are_refused(ex: &str) {
    let Some(app) = app_for(ex).await else { return };
    let (_, policies) = app.get("/v1/policies").await;
    for (field, min) in MINIMUMS {
        assert_eq!(
            policies["minimums"][field],
            json!(min),
            "{field}: {}",
            policies["minimums"]
        );
    }
    for (field, value, min) in [
        ("pids", 0, 8),
        ("pids", 2, 8),
        ("pids", 7, 8),
        ("memory_bytes", 0, 8 << 20),
        ("memory_bytes", 1, 8 << 20),
        ("memory_bytes", 6 << 20, 8 << 20),
        ("disk_bytes", 0, 64 << 10),
        ("wall_time_ms", 0, 1),
        ("cpu_time_ms", 0, 1),
    ] {
        let (status, v) = app.execute(json!({"language": "python", "code": "print(1)", "executor": ex, "limits": {field: value}})).await;
        assert_eq!(
            (status, code_of(&v)),
            (422, "limit_below_minimum"),
            "{field} = {value}: {v}"
        );
        let message = v["error"]["message"].as_str().unwrap();
        assert!(
            message.starts_with(&format!(
                "limits.{field} = {value} is below the minimum {min} "
            )),
            "{message}"
        );
    }
    // Exactly at the minimum, a program runs (and says so) on every executor.
    for lang in ["python", "bash"] {
        let code = if lang == "python" {
            "print('at the floor')"
        } else {
            "echo at the floor"
        };
        let limits = json!({"pids": 8, "memory_bytes": 8 << 20, "disk_bytes": 64 << 10});
        let r = app
            .run(json!({"language": lang, "code": code, "executor": ex, "limits": limits}))
            .await;
        assert_eq!(
            (r["status"].as_str(), r["stdout"].as_str()),
            (Some("ok"), Some("at the floor\n")),
            "{lang}: {r}"
        );
    }
}

async fn a_run_at_every_maximum_works(ex: &str) {
    let Some(app) = app_for(ex).await else { return };
    let (_, policies) = app.get("/v1/policies").await;
    for policy in policies["policies"].as_array().unwrap() {
        let name = policy["name"].as_str().unwrap();
        // Only the policies that allow this executor (gvisor is docker only).
        if !policy["executors"].as_array().unwrap().contains(&json!(ex)) {
            continue;
        }
        let r = app.run(json!({"language": "python", "code": "print(2 + 2)", "executor": ex, "policy": name, "limits": policy["maxima"]})).await;
        assert_eq!(
            (r["status"].as_str(), r["stdout"].as_str()),
            (Some("ok"), Some("4\n")),
            "{name}: {r}"
        );
    }
}

async fn request_file_paths_follow_the_one_rule(ex: &str) {
    let Some(app) = app_for(ex).await else { return };
    let long = format!("{}/x.txt", "n".repeat(300));
    let deep = format!("{}x.txt", "d/".repeat(40));
    for (files, says) in [
        (
            json!([{"path": "main.py/x", "content": "x"}]),
            "collides with main.py",
        ),
        (
            json!([{"path": "a", "content": "x"}, {"path": "a/b", "content": "y"}]),
            "collides with \"a\"",
        ),
        (
            json!([{"path": long, "content": "x"}]),
            "component of 300 bytes; at most 255",
        ),
        (
            json!([{"path": deep, "content": "x"}]),
            "41 components deep; at most 32",
        ),
    ] {
        let (status, v) = app
            .execute(
                json!({"language": "python", "code": "print(1)", "executor": ex, "files": files}),
            )
            .await;
        assert_eq!((status, code_of(&v)), (400, "invalid_file"), "{files}: {v}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains(says),
            "{v}"
        );
    }
}

/// /work is a tmpfs that hands out whole pages: 30 one-byte files need 30 pages, more than a
/// 64 KiB disk has, and used to fail in the executor (500) rather than at the door.
async fn small_files_are_counted_in_whole_pages(ex: &str) {
    let Some(app) = app_for(ex).await else { return };
    let files = |n: usize| {
        (0..n)
            .map(|i| json!({"path": format!("f{i}"), "content": "x"}))
            .collect::<Vec<_>>()
    };
    let (status, v) = app.execute(json!({"language": "bash", "code": "ls | wc -l", "executor": ex, "files": files(30), "limits": {"disk_bytes": 65536}})).await;
    assert_eq!((status, code_of(&v)), (422, "input_too_large"), "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("code and files take 126976 bytes of /work"),
        "{v}"
    );
    let r = app.run(json!({"language": "bash", "code": "ls | wc -l", "executor": ex, "files": files(15), "limits": {"disk_bytes": 65536}})).await;
    assert_eq!(
        (r["status"].as_str(), r["stdout"].as_str()),
        (Some("ok"), Some("16\n")),
        "{r}"
    );
}

async fn create_sandbox(app: &TestApp, ex: &str) -> String {
    let r = client()
        .post(app.url("/v1/sandboxes"))
        .json(&json!({"executor": ex, "ttl_seconds": 600}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    s(&r.json().await.unwrap(), "id")
}

async fn sandbox_call(app: &TestApp, id: &str, body: Value) -> (u16, Value) {
    let r = client()
        .post(app.url(&format!("/v1/sandboxes/{id}/execute")))
        .json(&body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

fn tar_with(name: &str) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(1);
    h.set_mode(0o644);
    b.append_data(&mut h, name, &b"x"[..]).unwrap();
    b.into_inner().unwrap()
}

async fn sandbox_paths_follow_the_one_rule(ex: &str) {
    let Some(app) = app_for(ex).await else { return };
    let id = create_sandbox(app, ex).await;
    let deep = format!("{}x", "d/".repeat(70));
    let long = format!("{}/x", "n".repeat(300));
    for path in [deep.as_str(), long.as_str()] {
        let r = client()
            .put(app.url(&format!("/v1/sandboxes/{id}/files/{path}")))
            .body("x")
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let v: Value = r.json().await.unwrap();
        assert_eq!(
            (status, code_of(&v)),
            (400, "path_refused"),
            "PUT {}...: {v}",
            &path[..20]
        );
        let r = client()
            .post(app.url(&format!("/v1/sandboxes/{id}/archive")))
            .body(tar_with(path))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let v: Value = r.json().await.unwrap();
        assert_eq!(
            (status, code_of(&v)),
            (400, "path_refused"),
            "archive {}...: {v}",
            &path[..20]
        );
    }
    // A body that is no tar has a code of its own.
    let r = client()
        .post(app.url(&format!("/v1/sandboxes/{id}/archive")))
        .body(vec![7u8; 1000])
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let v: Value = r.json().await.unwrap();
    assert_eq!((status, code_of(&v)), (400, "invalid_archive"), "{v}");
    // Nothing was written, and the sandbox still answers its calls.
    let (status, r) = sandbox_call(app, &id, json!({"language": "bash", "code": "ls"})).await;
    assert_eq!(
        (status, r["stdout"].as_str()),
        (200, Some("main.sh\n")),
        "{r}"
    );
}

async fn call_files_never_go_through_what_a_program_planted(ex: &str) {
    let Some(app) = app_for(ex).await else { return };
    let id = create_sandbox(app, ex).await;
    let plant = "ln -s /etc d; ln -s /etc/hostname f; echo kept > plain; mkdir adir; echo planted";
    let (status, r) = sandbox_call(app, &id, json!({"language": "bash", "code": plant})).await;
    assert_eq!(
        (status, r["stdout"].as_str()),
        (200, Some("planted\n")),
        "{r}"
    );
    for (path, says) in [
        ("d/x", "d is a symlink in the sandbox's work dir"),
        ("d/sub/x", "d is a symlink in the sandbox's work dir"),
        ("plain/x", "plain is a file in the sandbox's work dir"),
        ("adir", "adir is a directory in the sandbox's work dir"),
    ] {
        let (status, v) = sandbox_call(app, &id, json!({"language": "bash", "code": "echo ran", "files": [{"path": path, "content": "pwned"}]})).await;
        assert_eq!((status, code_of(&v)), (409, "path_conflict"), "{path}: {v}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains(says),
            "{path}: {v}"
        );
    }
    // A file over a link of its own name replaces the link; nothing behind it is touched.
    let (status, r) = sandbox_call(app, &id, json!({"language": "bash", "code": "cat f; [ -L f ] || echo ' not a link'; [ -L d ] && cat plain", "files": [{"path": "f", "content": "mine"}]})).await;
    assert_eq!(
        (status, r["stdout"].as_str()),
        (200, Some("mine not a link\nkept\n")),
        "{r}"
    );
}

async fn keepalive_with_a_json_type_and_no_body_renews() {
    let Some(app) = app_for("local").await else {
        return;
    };
    let id = create_sandbox(app, "local").await;
    let url = app.url(&format!("/v1/sandboxes/{id}/keepalive"));
    let r = client()
        .post(&url)
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let r = client()
        .post(&url)
        .header("content-type", "application/json")
        .json(&json!({"ttl_seconds": 60}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Whitespace is a body, and not JSON (found by the fuzzer).
    let r = client()
        .post(&url)
        .header("content-type", "application/json")
        .body("\r")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "malformed_json"
    );
    let r = client()
        .post(&url)
        .header("content-type", "application/json")
        .body("{nope")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(code_of(&r.json().await.unwrap()), "malformed_json");
    let r = client()
        .post(&url)
        .header("content-type", "text/plain")
        .body("{\"ttl_seconds\": 60}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
}

/// The audit log's rows whose code is `code` (the service keeps code in these tests).
fn audit_rows(app: &TestApp, code: &str) -> Vec<(String, String, Option<String>)> {
    let db = rusqlite::Connection::open_with_flags(
        app.data_dir.join("execbox.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let mut stmt = db
        .prepare("SELECT status, executor, sandbox_id FROM runs WHERE code = ?1")
        .unwrap();
    stmt.query_map([code], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

async fn audit_rows_eventually(app: &TestApp, code: &str) -> Vec<(String, String, Option<String>)> {
    for _ in 0..100 {
        let rows = audit_rows(app, code);
        if !rows.is_empty() {
            return rows;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    vec![]
}

/// A run the client hung up on, and a run the executor failed, are in the audit log too.
async fn every_admitted_run_is_in_the_audit_log(ex: &str) {
    let Some(_) = app_for(ex).await else { return };
    let app = TestApp::start(
        &format!("val-audit-{ex}-{}", std::process::id()),
        &[("EXECBOX_AUDIT__KEEP_CODE", "true")],
    );
    let ok = format!("echo {}", token());
    let r = app
        .run(json!({"language": "bash", "code": ok, "executor": ex}))
        .await;
    assert_eq!(r["status"], "ok");
    assert_eq!(
        audit_rows(&app, &ok),
        [("ok".to_string(), ex.to_string(), None)]
    );

    // An event stream dropped mid-run cancels the run, which is recorded as such.
    let hung = format!("echo started; sleep 30 # {}", token());
    let resp = client()
        .post(app.url("/v1/execute"))
        .header("accept", "text/event-stream")
        .json(&json!({"language": "bash", "code": hung, "executor": ex}))
        .send()
        .await
        .unwrap();
    let events = read_events(resp, |e| e.event == "stdout").await;
    assert_eq!(events.last().map(|e| e.event.as_str()), Some("stdout"));
    drop(events);
    assert_eq!(
        audit_rows_eventually(&app, &hung).await,
        [("cancelled".to_string(), ex.to_string(), None)]
    );

    if ex == "local" {
        // The executor fails mid-call: the sandbox's supervisor is killed under it (an
        // operator's slip). A 500, and a row that says so.
        let id = create_sandbox(&app, ex).await;
        let failed = format!("sleep 10 # {}", token());
        let call = tokio::spawn({
            let url = app.url(&format!("/v1/sandboxes/{id}/execute"));
            let body = json!({"language": "bash", "code": failed});
            async move {
                client()
                    .post(url)
                    .json(&body)
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            }
        });
        tokio::time::sleep(Duration::from_millis(1500)).await;
        // The sandbox's supervisor dies under the call (its helper killed by someone else):
        // the call's connection breaks.
        let helpers = host_processes_with(&format!("sandboxes/{id}/stage"));
        assert!(!helpers.is_empty(), "the sandbox's helper is running");
        for pid in helpers {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        assert_eq!(call.await.unwrap(), 500);
        assert_eq!(
            audit_rows(&app, &failed),
            [("internal_error".to_string(), ex.to_string(), Some(id))]
        );
    }
}

on_both_executors!(
    limits_below_their_minimum_are_refused,
    a_run_at_every_maximum_works,
    request_file_paths_follow_the_one_rule,
    small_files_are_counted_in_whole_pages,
    sandbox_paths_follow_the_one_rule,
    call_files_never_go_through_what_a_program_planted,
    every_admitted_run_is_in_the_audit_log,
);

#[tokio::test]
async fn keepalive_with_json_type_and_empty_body() {
    needs_root!();
    keepalive_with_a_json_type_and_no_body_renews().await
}

/// A second service on a taken address exits non-zero at once, before it probes, pools,
/// locks or creates anything.
#[test]
fn a_taken_listen_address_fails_at_once_and_leaves_nothing() {
    needs_root!();
    require_root();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("never-made");
    let instance = format!("val-listen-{}", std::process::id());
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_execbox"))
        .args(["serve", "--listen", &addr, "--data-dir"])
        .arg(&data_dir)
        .env("EXECBOX_INSTANCE", &instance)
        .env("EXECBOX_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut status = None;
    for _ in 0..600 {
        if let Some(s) = child.try_wait().unwrap() {
            status = Some(s);
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let Some(status) = status else {
        let _ = child.kill();
        let _ = child.wait();
        remove_containers_of(&instance);
        panic!("execbox serve on a taken address {addr} was still running after 60 s");
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success(), "{status:?}");
    assert!(
        stderr.contains(&format!("cannot listen on {addr}")),
        "{stderr}"
    );
    assert!(!data_dir.exists(), "the data dir was made");
    assert_eq!(
        leftover_cgroups(&instance),
        Vec::<std::path::PathBuf>::new()
    );
    let out = std::process::Command::new("docker")
        .args([
            "ps",
            "-aq",
            "--filter",
            &format!("label=execbox.instance={instance}"),
        ])
        .output();
    let left = out
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    remove_containers_of(&instance);
    assert_eq!(left, "", "containers of the failed service were left");
    drop(taken);
}
