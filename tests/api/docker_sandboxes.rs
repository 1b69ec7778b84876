//! Docker sandboxes on the supervisor, through the API: a kill -9 of the service mid-call, an
//! engine that stops the sandbox's container, a sandbox under gVisor, the container's shape.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::*;

/// The sandbox's container, as the engine lists it (running or not).
fn container_of(id: &str) -> String {
    let out = std::process::Command::new("docker")
        .args([
            "ps",
            "-aq",
            "--no-trunc",
            "--filter",
            &format!("label=execbox.sandbox={id}"),
        ])
        .output()
        .unwrap();
    let ids = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        !ids.is_empty() && !ids.contains('\n'),
        "one container for {id}: {ids:?}"
    );
    ids
}

fn docker(args: &[&str]) -> String {
    let out = std::process::Command::new("docker")
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "docker {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The call cgroups in container `id`'s `execbox/calls`, on the host's cgroupfs (v1: the
/// memory hierarchy; v2: the unified one; cgroupfs or systemd driver).
fn call_cgroups(id: &str) -> Vec<String> {
    let calls = ["/sys/fs/cgroup/memory", "/sys/fs/cgroup"]
        .iter()
        .flat_map(|m| {
            [
                format!("{m}/docker/{id}/execbox/calls"),
                format!("{m}/system.slice/docker-{id}.scope/execbox/calls"),
            ]
        })
        .find(|d| std::path::Path::new(d).is_dir())
        .unwrap_or_else(|| panic!("no execbox/calls cgroup for container {id}"));
    let mut names: Vec<String> = std::fs::read_dir(&calls)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Wait until no host process carries `token` (a call's processes end when its connection to
/// the supervisor does), at most `within`.
async fn gone(token: &str, within: Duration) -> Vec<i32> {
    let until = Instant::now() + within;
    loop {
        let left = host_processes_with(token);
        if left.is_empty() || Instant::now() > until {
            return left;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A kill -9 of the service in the middle of a call: the call's connection to the supervisor
/// dies with the service, and with it every process of the call, daemons included. The next
/// service on the same data dir removes the call cgroups the dead one left (the call's, and the
/// one made ahead for the next call, whose tree waits in it), and finds the sandbox working,
/// with its files.
#[tokio::test]
async fn a_call_in_flight_when_the_service_is_killed_leaves_no_process() {
    needs_root!();
    let Some(_) = app_for("docker").await else {
        return;
    };
    let data = tempfile::tempdir().unwrap();
    let instance = format!("k9-{}", std::process::id());
    let mut app = TestApp::start_in(&instance, data.path(), &[]);
    let id = create_sandbox_with(&app, json!({"executor": "docker", "ttl_seconds": 600})).await;
    let r = sandbox_call_ok(
        &app,
        &id,
        json!({"language": "bash", "code": "echo kept > keep.txt"}),
    )
    .await;
    assert_eq!(r["status"], "ok", "{r}");
    let t = token();
    let code = "import os, sys, time\nif os.fork() == 0:\n    os.setsid()\n    time.sleep(300)\nprint('started', flush=True)\ntime.sleep(300)";
    let resp = client()
        .post(app.url(&format!("/v1/sandboxes/{id}/execute")))
        .header("accept", "text/event-stream")
        .json(&json!({"language": "python", "code": code, "args": [t], "limits": {"wall_time_ms": 60000}}))
        .send()
        .await
        .unwrap();
    let events = read_events(resp, |e| e.event == "stdout").await;
    assert!(
        events.iter().any(|e| e.event == "stdout"),
        "the call started"
    );
    assert!(
        !host_processes_with(&t).is_empty(),
        "the call and its daemon run"
    );
    let container = container_of(&id);
    let left_by_the_first = call_cgroups(&container);
    // At least the call's own (the next call's, made ahead beside it, may not be made yet).
    assert!(
        !left_by_the_first.is_empty(),
        "the call runs in a cgroup of its own"
    );
    app.kill9();
    let left = gone(&t, Duration::from_secs(10)).await;
    assert!(left.is_empty(), "the call outlived the service: {left:?}");

    let app = TestApp::start_in(&instance, data.path(), &[]);
    assert_eq!(
        call_cgroups(&container),
        Vec::<String>::new(),
        "the new service removed the call cgroups the killed one left"
    );
    let r = sandbox_call_ok(
        &app,
        &id,
        json!({"language": "bash", "code": "cat keep.txt"}),
    )
    .await;
    assert_eq!(r["status"], "ok", "{r}");
    assert_eq!(r["stdout"], "kept\n", "the sandbox kept its files: {r}");
    assert!(host_processes_with(&t).is_empty());
    drop(app);
    remove_containers_of(&instance);
}

/// The engine stops the sandbox's container (as its restart does): the work dir is on the host,
/// so the next use starts the container again and finds every file.
#[tokio::test]
async fn a_stopped_container_is_started_again_with_its_work_dir() {
    needs_root!();
    let Some(app) = app_for("docker").await else {
        return;
    };
    let id = create_sandbox_with(app, json!({"executor": "docker", "ttl_seconds": 600})).await;
    let r = sandbox_call_ok(
        app,
        &id,
        json!({"language": "python", "code": "import os\nos.makedirs('d', exist_ok=True)\nopen('d/f.txt', 'w').write('x' * 100000)\nprint('written')"}),
    )
    .await;
    assert_eq!(r["stdout"], "written\n", "{r}");
    let c = container_of(&id);
    docker(&["stop", "-t", "0", &c]);
    assert_eq!(
        docker(&["inspect", "-f", "{{.State.Running}}", &c]),
        "false"
    );
    let r = sandbox_call_ok(
        app,
        &id,
        json!({"language": "bash", "code": "wc -c < d/f.txt"}),
    )
    .await;
    assert_eq!(
        (r["status"].as_str(), r["stdout"].as_str()),
        (Some("ok"), Some("100000\n")),
        "{r}"
    );
    assert_eq!(container_of(&id), c, "the same container, started again");
    assert_eq!(docker(&["inspect", "-f", "{{.State.Running}}", &c]), "true");
    let r = client()
        .get(app.url(&format!("/v1/sandboxes/{id}/files/d/f.txt")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().len(), 100000);
}

/// The container runs the supervisor as its entrypoint, with the capabilities it needs and no
/// more, and mounts nothing of the host but the binary, the run dir and the work dir.
#[tokio::test]
async fn a_sandbox_container_is_the_supervisor_with_few_capabilities() {
    needs_root!();
    let Some(app) = app_for("docker").await else {
        return;
    };
    let id = create_sandbox_with(app, json!({"executor": "docker", "ttl_seconds": 600})).await;
    let c = container_of(&id);
    assert_eq!(
        docker(&["inspect", "-f", "{{json .Config.Entrypoint}}", &c])
            .split(',')
            .take(2)
            .collect::<Vec<_>>(),
        ["[\"/.execbox/execbox\"", "\"__supervisor\""]
    );
    let caps = docker(&["inspect", "-f", "{{json .HostConfig.CapAdd}}", &c]);
    let mut caps: Vec<String> = serde_json::from_str::<Vec<String>>(&caps)
        .unwrap()
        .into_iter()
        .map(|c| c.trim_start_matches("CAP_").to_string())
        .collect();
    caps.sort();
    assert_eq!(
        caps,
        [
            "CHOWN",
            "DAC_OVERRIDE",
            "FOWNER",
            "KILL",
            "SETGID",
            "SETUID",
            "SYS_ADMIN"
        ]
    );
    let mounts: Vec<Value> =
        serde_json::from_str(&docker(&["inspect", "-f", "{{json .Mounts}}", &c])).unwrap();
    let mut dests: Vec<(String, bool)> = mounts
        .iter()
        .map(|m| (s(m, "Destination"), m["RW"] == true))
        .collect();
    dests.sort();
    assert_eq!(
        dests,
        [
            ("/.execbox/execbox".to_string(), false),
            ("/.execbox/run".to_string(), true),
            ("/work".to_string(), true)
        ]
    );
    // A program has no capability, its own seccomp filter, and cannot enter the run dir.
    let r = sandbox_call_ok(
        app,
        &id,
        json!({"language": "bash", "code": "grep -E '^(CapEff|CapPrm|NoNewPrivs|Seccomp):' /proc/self/status; ls /.execbox/run 2>&1 | head -1; id -u"}),
    )
    .await;
    let out = s(&r, "stdout");
    assert!(out.contains("CapEff:\t0000000000000000"), "{out}");
    assert!(out.contains("CapPrm:\t0000000000000000"), "{out}");
    assert!(out.contains("NoNewPrivs:\t1"), "{out}");
    assert!(out.contains("Seccomp:\t2"), "{out}");
    assert!(out.contains("Permission denied"), "{out}");
    assert!(!out.trim_end().ends_with("\n0"), "not root: {out}");
}

/// A sandbox under the gvisor policy: its supervisor answers on its socket through runsc's
/// host unix sockets, and calls run under gVisor's kernel with their files kept.
#[tokio::test]
async fn a_gvisor_sandbox_runs_calls_and_keeps_files() {
    needs_root!();
    let Some(app) = app_for(GVISOR).await else {
        return;
    };
    let id = create_sandbox_with(
        app,
        json!({"executor": "docker", "policy": "gvisor", "ttl_seconds": 600}),
    )
    .await;
    let r = sandbox_call_ok(
        app,
        &id,
        json!({"language": "python", "code": "open('n.txt', 'w').write('41')\nprint(open('/proc/version').read().split()[0])"}),
    )
    .await;
    assert_eq!(
        (r["status"].as_str(), r["executor"].as_str()),
        (Some("ok"), Some("docker")),
        "{r}"
    );
    let host = std::fs::read_to_string("/proc/version").unwrap();
    let r = sandbox_call_ok(
        app,
        &id,
        json!({"language": "python", "code": "print(int(open('n.txt').read()) + 1)\nprint(open('/proc/version').read())"}),
    )
    .await;
    let out = s(&r, "stdout");
    assert!(out.starts_with("42\n"), "{r}");
    assert!(
        !out.contains(host.trim()),
        "gVisor's kernel answers, not the host's: {out}"
    );
    let r = sandbox_call_ok(
        app,
        &id,
        json!({"language": "bash", "code": "sleep 30", "limits": {"wall_time_ms": 1000}}),
    )
    .await;
    assert_eq!(r["status"], "timeout", "{r}");
}
