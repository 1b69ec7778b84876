//! The `gvisor` policy live: runs and sandboxes under runsc meet gVisor's kernel, a runsc start
//! that fails answers a clear error and leaves nothing behind, and a policy whose OCI runtime
//! the engine lacks is unready on its own. (The containment suite runs on it too.)

use std::collections::HashSet;
use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::*;

/// runsc processes on the host whose container the engine no longer knows. A process seen
/// orphaned twice, a second apart, is a leftover (not one of a concurrent test's containers
/// that was being removed at that moment).
fn orphaned_runsc_processes() -> Vec<String> {
    let orphans = || -> HashSet<String> {
        let known: HashSet<String> = String::from_utf8_lossy(
            &std::process::Command::new("docker")
                .args(["ps", "-aq", "--no-trunc"])
                .output()
                .unwrap()
                .stdout,
        )
        .lines()
        .map(str::to_string)
        .collect();
        let mut found = HashSet::new();
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else {
                continue;
            };
            if !cmd.starts_with(b"runsc") {
                continue;
            }
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            // Every runsc process names its container's 64-digit id.
            let id = cmd
                .split(|c: char| !c.is_ascii_hexdigit())
                .find(|w| w.len() == 64)
                .map(str::to_string);
            if id.is_none_or(|id| !known.contains(&id)) {
                found.insert(format!("{} {cmd}", e.file_name().to_string_lossy()));
            }
        }
        found
    };
    let first = orphans();
    if first.is_empty() {
        return Vec::new();
    }
    std::thread::sleep(Duration::from_secs(1));
    orphans().intersection(&first).cloned().collect()
}

fn containers_of(instance: &str) -> Vec<String> {
    let out = std::process::Command::new("docker")
        .args([
            "ps",
            "-aq",
            "--filter",
            &format!("label=execbox.instance={instance}"),
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

#[tokio::test]
async fn a_run_under_gvisor_meets_gvisors_kernel_not_the_hosts() {
    needs_root!();
    let Some(app) = app_for(GVISOR).await else {
        return;
    };
    let code = "import os, threading\nt = threading.Thread(target=print, args=('thread',)); t.start(); t.join()\nprint(os.uname().release)\nprint(open('/proc/version').read().strip())";
    let r = app
        .run(json!({"executor": "docker", "policy": "gvisor", "language": "python", "code": code}))
        .await;
    assert_eq!(r["status"], "ok", "{r}");
    let host = std::fs::read_to_string("/proc/version").unwrap();
    let out = s(&r, "stdout");
    assert!(
        out.starts_with("thread\n4.4.0\n"),
        "gVisor reports its own kernel: {out}"
    );
    assert!(
        !out.contains(host.trim()),
        "the host's kernel is not the one answering: {out}"
    );
    // The same request on the default policy meets the host's kernel.
    let r = app.run(json!({"executor": "docker", "language": "python", "code": "print(open('/proc/version').read().strip())"})).await;
    assert_eq!(s(&r, "stdout").trim(), host.trim());
}

#[tokio::test]
async fn a_sandbox_on_the_gvisor_policy_keeps_files_across_calls_and_goes_whole() {
    needs_root!();
    let Some(app) = app_for(GVISOR).await else {
        return;
    };
    let r = client()
        .post(app.url("/v1/sandboxes"))
        .json(&json!({"executor": "docker", "policy": "gvisor", "ttl_seconds": 300}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let sb: Value = r.json().await.unwrap();
    let id = s(&sb, "id");
    assert_eq!(sb["policy"], "gvisor");
    let container = std::process::Command::new("docker")
        .args([
            "ps",
            "-q",
            "--no-trunc",
            "--filter",
            &format!("label=execbox.sandbox={id}"),
        ])
        .output()
        .unwrap();
    let container = String::from_utf8_lossy(&container.stdout)
        .trim()
        .to_string();
    assert_eq!(container.len(), 64, "one container for the sandbox");
    let runtime = std::process::Command::new("docker")
        .args(["inspect", "-f", "{{.HostConfig.Runtime}}", &container])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&runtime.stdout).trim(), "runsc");

    let put = client()
        .put(app.url(&format!("/v1/sandboxes/{id}/files/in.txt")))
        .body("from the api")
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 200);
    let call = |code: &str| {
        let body = json!({"language": "python", "code": code});
        let url = app.url(&format!("/v1/sandboxes/{id}/execute"));
        async move {
            let r = client().post(url).json(&body).send().await.unwrap();
            assert_eq!(r.status(), 200);
            r.json::<Value>().await.unwrap()
        }
    };
    let r = call("import os\nprint(open('in.txt').read(), os.uname().release)\nopen('out.txt', 'w').write('from call 1')").await;
    assert_eq!(
        (r["status"].as_str(), r["stdout"].as_str()),
        (Some("ok"), Some("from the api 4.4.0\n")),
        "{r}"
    );
    let r = call("print(open('out.txt').read())").await;
    assert_eq!(r["stdout"], "from call 1\n", "{r}");
    let got = client()
        .get(app.url(&format!("/v1/sandboxes/{id}/files/out.txt")))
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), 200);
    assert_eq!(got.bytes().await.unwrap().as_ref(), b"from call 1");

    let del = client()
        .delete(app.url(&format!("/v1/sandboxes/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(del.status(), 204);
    let left = std::process::Command::new("docker")
        .args(["ps", "-aq", "--filter", &format!("id={container}")])
        .output()
        .unwrap();
    assert!(left.stdout.is_empty(), "the sandbox's container is gone");
    assert!(
        host_processes_with(&container).is_empty(),
        "no runsc process of the sandbox is left"
    );
}

/// runsc cannot start a sandbox whose memory limit leaves no room for gVisor's own kernel: the
/// run answers 503 with the reason and what to do, and neither the container nor any runsc
/// process of it remains.
#[tokio::test]
async fn a_runsc_start_that_fails_answers_a_clear_error_and_leaves_nothing() {
    needs_root!();
    if app_for(GVISOR).await.is_none() {
        return;
    }
    let instance = format!("gvfail-{}", std::process::id());
    let app = TestApp::start(&instance, &[("EXECBOX_DOCKER__POOL_PER_SHAPE", "0")]);
    let (status, v) = app.execute(json!({"executor": "docker", "policy": "gvisor", "language": "python", "code": "print(1)", "limits": {"memory_bytes": 8 << 20}})).await;
    assert_eq!(status, 503, "{v}");
    assert_eq!(v["error"]["code"], "executor_unavailable");
    let msg = s(&v["error"], "message");
    assert!(
        msg.contains("runsc could not start a sandbox for this run")
            && msg.contains("ask for more memory"),
        "{msg}"
    );
    // The failed container is removed as the run answers, in the background: soon, not at once.
    let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !containers_of(&instance).is_empty() && std::time::Instant::now() < until {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        containers_of(&instance).is_empty(),
        "the failed container was removed: {:?}",
        containers_of(&instance)
    );
    let orphans = orphaned_runsc_processes();
    assert!(
        orphans.is_empty(),
        "runsc processes outlived their container: {orphans:?}"
    );
    // The service is fine: the next run on the policy works.
    let r = app.run(json!({"executor": "docker", "policy": "gvisor", "language": "python", "code": "print(1)"})).await;
    assert_eq!(r["stdout"], "1\n", "{r}");
}

/// A policy naming an OCI runtime the engine does not have is unready on its own: its runs
/// answer 503 naming the runtime, while the docker executor and every other policy work.
#[tokio::test]
async fn a_policy_whose_runtime_the_engine_lacks_is_unready_alone() {
    needs_root!();
    if app_for("docker").await.is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let default = include_str!("../../policies/default.toml");
    std::fs::write(dir.path().join("default.toml"), default).unwrap();
    let missing = default.replace(
        "open_files = 256",
        "open_files = 256\ndocker_runtime = \"execbox-no-such-runtime\"",
    );
    std::fs::write(dir.path().join("elsewhere.toml"), missing).unwrap();
    let app = TestApp::start(
        &format!("gvmissing-{}", std::process::id()),
        &[("EXECBOX_POLICIES", dir.path().to_str().unwrap())],
    );
    let (status, ready) = app.get("/readyz").await;
    assert_eq!(status, 200, "{ready}");
    let docker = &ready["executors"]["docker"];
    assert_eq!(docker["ready"], true, "{docker}");
    let rt = &docker["features"]["oci_runtimes"]["execbox-no-such-runtime"];
    assert_eq!(
        (&rt["ready"], &rt["policies"]),
        (&json!(false), &json!(["elsewhere"])),
        "{rt}"
    );
    assert!(
        s(rt, "detail").contains("no OCI runtime named \"execbox-no-such-runtime\""),
        "{rt}"
    );

    let (status, v) = app.execute(json!({"executor": "docker", "policy": "elsewhere", "language": "python", "code": "print(1)"})).await;
    assert_eq!(status, 503, "{v}");
    assert_eq!(v["error"]["code"], "executor_unavailable");
    assert!(
        s(&v["error"], "message")
            .contains("policy elsewhere runs on the OCI runtime \"execbox-no-such-runtime\""),
        "{v}"
    );
    let r = app
        .run(json!({"executor": "docker", "language": "python", "code": "print(1)"}))
        .await;
    assert_eq!(r["stdout"], "1\n");
}
