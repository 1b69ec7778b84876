//! The service's own life: graceful stop, kill -9 and the sweep on the next start, policy
//! validation at start.

use std::time::Duration;

use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn graceful_stop_finishes_in_flight_runs_and_cleans_up() {
    needs_root!();
    require_root();
    let mut app = TestApp::start(&format!("grace-{}", std::process::id()), &[]);
    let url = app.url("/v1/execute");
    let run = tokio::spawn(async move {
        let body = json!({"language": "python", "code": "import time; time.sleep(1.5); print('finished')"});
        client()
            .post(url)
            .json(&body)
            .send()
            .await
            .unwrap()
            .json::<serde_json::Value>()
            .await
            .unwrap()
    });
    tokio::time::sleep(Duration::from_millis(700)).await;
    let status = tokio::task::spawn_blocking(move || {
        let s = app.terminate();
        (s, app)
    });
    let r = run.await.unwrap();
    assert_eq!(
        (r["status"].as_str(), r["stdout"].as_str()),
        (Some("ok"), Some("finished\n")),
        "{r}"
    );
    let (exit, app) = status.await.unwrap();
    assert!(exit.success(), "{exit:?}");
    for ctl in ["memory", "pids", "cpuacct"] {
        let dir = std::path::Path::new("/sys/fs/cgroup")
            .join(ctl)
            .join("execbox")
            .join(&app.instance);
        assert!(!dir.exists(), "{} left behind", dir.display());
    }
    assert!(!app.data_dir.join("runs").join(&app.instance).exists());
}

#[tokio::test]
async fn kill_9_of_the_service_kills_its_runs_and_the_next_start_sweeps() {
    needs_root!();
    require_root();
    let data = tempfile::tempdir().unwrap();
    let instance = format!("k9-{}", std::process::id());
    let mut app = TestApp::start_in(&instance, data.path(), &[]);
    let t = token();
    let url = app.url("/v1/execute");
    let body = json!({"language": "python", "code": "import time; time.sleep(60)", "args": [t]});
    let pending = tokio::spawn(async move { client().post(url).json(&body).send().await });
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while host_processes_with(&t).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the run never started"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    app.kill9();
    assert!(
        pending.await.unwrap().is_err(),
        "the connection died with the service"
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !host_processes_with(&t).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the run outlived the service: {:?}",
            host_processes_with(&t)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let left = leftover_cgroups(&instance);
    assert!(
        !left.is_empty(),
        "a kill -9 leaves its run cgroup for the next start to sweep"
    );
    let app = TestApp::start_in(&instance, data.path(), &[]);
    let now = leftover_cgroups(&instance);
    assert!(
        left.iter().all(|c| !now.contains(c)),
        "the next start removed what the killed one left: {left:?} vs {now:?}"
    );
    assert_eq!(
        app.run(json!({"language": "bash", "code": "echo again"}))
            .await["stdout"],
        "again\n"
    );
}

#[test]
fn a_bad_policy_file_stops_the_service_naming_file_and_key() {
    needs_root!();
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let text = include_str!("../../policies/default.toml")
        .replace("pids = 64", "pids = 64\nbogus_key = 1");
    std::fs::write(dir.path().join("default.toml"), text).unwrap();
    let data = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_execbox"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data.path())
        .arg("--policies")
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("default.toml") && err.contains("bogus_key"),
        "{err}"
    );
}

#[test]
fn a_second_service_on_the_same_data_dir_and_instance_is_refused() {
    needs_root!();
    require_root();
    let app = TestApp::start(&format!("lock-{}", std::process::id()), &[]);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_execbox"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&app.data_dir)
        .env("EXECBOX_INSTANCE", &app.instance)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is locked"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A service that is not root gets a user namespace; without cgroups it refuses to start unless
/// degraded mode is accepted, which /readyz-level features then report.
#[test]
fn a_non_root_service_refuses_without_cgroups_unless_degraded_is_allowed() {
    needs_root!();
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    require_root();
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let bin = dir.path().join("execbox");
    std::fs::copy(env!("CARGO_BIN_EXE_execbox"), &bin).unwrap();
    let prog = dir.path().join("p.py");
    std::fs::write(
        &prog,
        "import os\nprint(os.getuid(), os.path.exists('/etc/shadow'))",
    )
    .unwrap();
    let run = |degraded: &str| {
        std::process::Command::new(&bin)
            .args(["run", "--data-dir"])
            .arg(dir.path().join("data"))
            .arg(&prog)
            .env_clear()
            .env("EXECBOX_LOCAL__ALLOW_DEGRADED", degraded)
            .uid(65534)
            .gid(65534)
            .output()
            .unwrap()
    };
    let refused = run("false");
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("allow_degraded"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let ok = run("true");
    assert_eq!(
        String::from_utf8_lossy(&ok.stdout),
        "0 False\n",
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert_eq!(ok.status.code(), Some(0));
}

/// Container ids labelled with `instance`, running or not.
fn containers_of(instance: &str) -> Vec<String> {
    let out = std::process::Command::new("docker")
        .args([
            "ps",
            "-aq",
            "--no-trunc",
            "--filter",
            &format!("label=execbox.instance={instance}"),
        ])
        .output()
        .expect("docker CLI");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(String::from)
        .collect()
}

async fn docker_ready(app: &TestApp) -> bool {
    let ready = app.get("/readyz").await.1["executors"]["docker"]["ready"] == true;
    if !ready && std::env::var_os("CI").is_some() {
        panic!("the docker executor is not ready in CI");
    }
    if !ready {
        eprintln!(
            "\n!!! SKIPPING a docker hygiene test: the docker executor is not ready here !!!\n"
        );
    }
    ready
}

#[tokio::test]
async fn docker_containers_are_labelled_swept_after_kill_9_and_removed_on_graceful_stop() {
    needs_root!();
    require_root();
    let data = tempfile::tempdir().unwrap();
    let instance = format!("dk-{}", std::process::id());
    let mut app = TestApp::start_in(&instance, data.path(), &[]);
    if !docker_ready(&app).await {
        return;
    }
    let r = app
        .run(json!({"executor": "docker", "language": "python", "code": "print('hi')"}))
        .await;
    assert_eq!(r["stdout"], "hi\n");
    // The warm pool keeps started containers of this instance around.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while containers_of(&instance).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "no pooled container appeared"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    app.kill9();
    let left = containers_of(&instance);
    assert!(
        !left.is_empty(),
        "a kill -9 leaves its pool behind for the next start"
    );
    let mut app = TestApp::start_in(&instance, data.path(), &[]);
    let now = containers_of(&instance);
    assert!(
        left.iter().all(|id| !now.contains(id)),
        "the next start removed what the killed one left: {left:?} vs {now:?}"
    );
    let r = app
        .run(json!({"executor": "docker", "language": "bash", "code": "echo again"}))
        .await;
    assert_eq!(r["stdout"], "again\n");
    let exit = tokio::task::spawn_blocking(move || {
        let s = app.terminate();
        (s, app)
    })
    .await
    .unwrap()
    .0;
    assert!(exit.success(), "{exit:?}");
    assert_eq!(
        containers_of(&instance),
        Vec::<String>::new(),
        "a graceful stop leaves no container behind"
    );
}

#[tokio::test]
async fn an_unreachable_engine_makes_docker_unready_and_503_while_local_works() {
    needs_root!();
    require_root();
    let app = TestApp::start(
        &format!("nodk-{}", std::process::id()),
        &[("DOCKER_HOST", "unix:///nonexistent/docker.sock")],
    );
    let (status, ready) = app.get("/readyz").await;
    assert_eq!(status, 200, "the local executor still serves: {ready}");
    assert_eq!(ready["executors"]["local"]["ready"], true);
    assert_eq!(ready["executors"]["docker"]["ready"], false);
    assert!(
        ready["executors"]["docker"]["detail"]
            .as_str()
            .unwrap()
            .contains("Docker engine"),
        "{ready}"
    );
    let (status, v) = app
        .execute(json!({"executor": "docker", "language": "python", "code": "print(1)"}))
        .await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (503, Some("executor_unavailable")),
        "{v}"
    );
    assert!(
        v["error"]["message"].as_str().unwrap().contains("docker"),
        "{v}"
    );
    let r = app
        .run(json!({"executor": "local", "language": "python", "code": "print(1)"}))
        .await;
    assert_eq!(r["stdout"], "1\n");
}

/// Regression: a warm sandbox spawned from a thread that later exited was killed by its
/// PDEATHSIG while it waited, and its first run failed. Warm sandboxes must outlive any thread.
#[tokio::test]
async fn a_warm_sandbox_that_waited_a_while_still_runs() {
    needs_root!();
    require_root();
    let app = TestApp::start(&format!("wait-{}", std::process::id()), &[]);
    // Longer than tokio's blocking-pool threads live when idle (10 s).
    tokio::time::sleep(Duration::from_secs(12)).await;
    for _ in 0..3 {
        let r = app
            .run(json!({"language": "python", "code": "print('ok')"}))
            .await;
        assert_eq!(
            (r["status"].as_str(), r["stdout"].as_str()),
            (Some("ok"), Some("ok\n")),
            "{r}"
        );
    }
}
