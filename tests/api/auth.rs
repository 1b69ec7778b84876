//! API keys and `--auth api-key`: keys made with the CLI, checked on every `/v1` route, revoked
//! at once, kept in `<data-dir>/execbox.db` across restarts; no unauthenticated non-loopback
//! listener.

use crate::helpers::needs_root;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helpers::{client, require_root, TestApp};

const API_KEY_AUTH: &[(&str, &str)] = &[
    ("EXECBOX_AUTH", "api-key"),
    ("EXECBOX_DOCKER__ENABLED", "false"),
];

/// `execbox keys ARGS --data-dir DIR`: (exit code, stdout, stderr).
fn keys(dir: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_execbox"))
        .arg("keys")
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// A new key for `team`: the last line `keys create` prints.
pub(crate) fn create_key(dir: &Path, team: &str) -> String {
    let (code, out, err) = keys(dir, &["create", "--team", team]);
    assert_eq!(code, Some(0), "{err}");
    let key = out.lines().last().unwrap().to_string();
    assert!(key.starts_with("exb_") && key.len() == 68, "{out}");
    key
}

/// GET `path` with an optional `Authorization` header: (status, WWW-Authenticate, body).
async fn get(
    app: &TestApp,
    path: &str,
    authorization: Option<&str>,
) -> (u16, Option<String>, Value) {
    let mut req = client().get(app.url(path));
    if let Some(a) = authorization {
        req = req.header("Authorization", a);
    }
    let r = req.send().await.unwrap();
    let challenge = r
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_string());
    (
        r.status().as_u16(),
        challenge,
        r.json().await.unwrap_or(Value::Null),
    )
}

fn assert_unauthorized((status, challenge, body): (u16, Option<String>, Value), message: &str) {
    assert_eq!(status, 401, "{body}");
    assert_eq!(challenge.as_deref(), Some("Bearer"));
    assert_eq!(body["error"]["code"], "unauthorized", "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains(message),
        "{body}"
    );
}

#[tokio::test]
async fn v1_routes_need_a_valid_key_and_the_probes_stay_open() {
    needs_root!();
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let key = create_key(dir.path(), "alpha");
    let app = TestApp::start_in("auth-guard", dir.path(), API_KEY_AUTH);

    assert_unauthorized(get(&app, "/v1/runtimes", None).await, "needs an API key");
    let unknown = format!("exb_{}", "0".repeat(64));
    assert_unauthorized(
        get(&app, "/v1/runtimes", Some(&format!("Bearer {unknown}"))).await,
        "not valid or has been revoked",
    );
    assert_unauthorized(
        get(&app, "/v1/runtimes", Some("Bearer nope")).await,
        "not valid",
    );
    assert_unauthorized(
        get(&app, "/v1/runtimes", Some(&format!("Basic {key}"))).await,
        "needs an API key",
    );
    assert_unauthorized(
        get(&app, "/v1/no-such-route", None).await,
        "needs an API key",
    );
    let r = client()
        .post(app.url("/v1/execute"))
        .json(&serde_json::json!({"language": "python", "code": "print(1)"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401, "execute without a key");

    let (status, _, body) = get(&app, "/v1/runtimes", Some(&format!("Bearer {key}"))).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.to_string().contains("python"), "{body}");

    for open in ["/healthz", "/readyz", "/metrics"] {
        let r = client().get(app.url(open)).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 200, "{open} without a key");
    }

    // Keys made or revoked by the CLI while the service runs count at once.
    let second = create_key(dir.path(), "beta");
    assert_eq!(
        get(&app, "/v1/policies", Some(&format!("bearer {second}")))
            .await
            .0,
        200
    );
    let (code, out, err) = keys(dir.path(), &["revoke", &key[..12]]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out, format!("revoked key {} of team alpha\n", &key[..12]));
    assert_unauthorized(
        get(&app, "/v1/runtimes", Some(&format!("Bearer {key}"))).await,
        "has been revoked",
    );
    assert_eq!(
        get(&app, "/v1/runtimes", Some(&format!("Bearer {second}")))
            .await
            .0,
        200
    );
}

#[test]
fn keys_list_names_team_and_prefix_but_never_the_key() {
    needs_root!();
    let dir = tempfile::tempdir().unwrap();
    let (code, out, _) = keys(dir.path(), &["create", "--team", "alpha"]);
    assert_eq!(code, Some(0));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert_eq!(lines[1], "store this key now; it is shown once:");
    let key = lines[2];
    let second = create_key(dir.path(), "beta");
    assert_eq!(keys(dir.path(), &["revoke", &second[..12]]).0, Some(0));

    let (code, list, err) = keys(dir.path(), &["list"]);
    assert_eq!(code, Some(0), "{err}");
    let rows: Vec<Vec<&str>> = list
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows[0], ["TEAM", "PREFIX", "CREATED", "REVOKED"]);
    assert_eq!(
        (rows[1][0], rows[1][1], rows[1][3]),
        ("alpha", &key[..12], "-")
    );
    assert_eq!((rows[2][0], rows[2][1]), ("beta", &second[..12]));
    assert!(rows[2][3].ends_with('Z'), "revoked time: {list}");
    assert_eq!(rows.len(), 3);
    assert!(
        !list.contains(&key[12..20]) && !list.contains(&second[12..20]),
        "a key leaked into the list:\n{list}"
    );

    let (code, _, err) = keys(dir.path(), &["revoke", "exb_00000000"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("no API key matches \"exb_00000000\""), "{err}");
    let (code, _, err) = keys(dir.path(), &["create", "--team", "no spaces"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("team name \"no spaces\""), "{err}");
}

#[tokio::test]
async fn keys_and_the_store_survive_a_restart() {
    needs_root!();
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let key = create_key(dir.path(), "alpha");
    let auth = format!("Bearer {key}");
    let mut app = TestApp::start_in("auth-restart", dir.path(), API_KEY_AUTH);
    assert_eq!(get(&app, "/v1/runtimes", Some(&auth)).await.0, 200);
    assert!(app.terminate().success());
    assert!(dir.path().join("execbox.db").is_file());

    let app = TestApp::start_in("auth-restart", dir.path(), API_KEY_AUTH);
    assert_eq!(get(&app, "/v1/runtimes", Some(&auth)).await.0, 200);
    assert_unauthorized(get(&app, "/v1/runtimes", None).await, "needs an API key");
}

#[test]
fn without_auth_a_non_loopback_listener_refuses_to_start() {
    needs_root!();
    let dir = tempfile::tempdir().unwrap();
    // Nothing is bound when it refuses, and no traffic is ever sent to this address.
    let mut child = Command::new(env!("CARGO_BIN_EXE_execbox"))
        .args(["serve", "--listen", "0.0.0.0:0", "--data-dir"])
        .arg(dir.path())
        .env("EXECBOX_INSTANCE", "auth-refuse")
        .env_remove("EXECBOX_AUTH")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("execbox serve started on 0.0.0.0 without auth");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        out.stdout.is_empty(),
        "it printed {:?}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        err.contains("refusing to listen on 0.0.0.0:0 without authentication"),
        "{err}"
    );
    assert!(
        err.contains("--auth api-key") && err.contains("127.0.0.1"),
        "{err}"
    );
}

/// Another team's agent run is as missing as one that never existed: read, follow, approve,
/// cancel. And no key at all gets nothing.
#[tokio::test]
async fn agent_runs_belong_to_their_team() {
    needs_root!();
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let (alpha, beta) = (
        create_key(dir.path(), "alpha"),
        create_key(dir.path(), "beta"),
    );
    // The scripted model listens on loopback, which a shared service refuses unless told.
    let env = [
        API_KEY_AUTH,
        &[("EXECBOX_AGENT__ALLOW_PRIVATE_BASE_URLS", "true")],
    ]
    .concat();
    let app = TestApp::start_in(
        &format!("auth-agent-{}", std::process::id()),
        dir.path(),
        &env,
    );
    let model = crate::scripted_model::ScriptedModel::start_with(|_| {
        crate::scripted_model::Reply::Hang(Duration::from_secs(30))
    });
    let body = serde_json::json!({"task": "t", "model": {"provider": "openai", "model": "m", "base_url": model.base_url_openai}});
    let r = client()
        .post(app.url("/v1/agent/runs"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = client()
        .post(app.url("/v1/agent/runs"))
        .bearer_auth(&alpha)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let as_beta = |method: reqwest::Method, path: String| {
        client().request(method, app.url(&path)).bearer_auth(&beta)
    };
    for (method, path) in [
        (reqwest::Method::GET, format!("/v1/agent/runs/{id}")),
        (reqwest::Method::GET, format!("/v1/agent/runs/{id}/events")),
        (reqwest::Method::DELETE, format!("/v1/agent/runs/{id}")),
    ] {
        let r = as_beta(method.clone(), path.clone()).send().await.unwrap();
        let status = r.status().as_u16();
        let v: Value = r.json().await.unwrap();
        assert_eq!(
            (status, v["error"]["code"].as_str()),
            (404, Some("agent_run_not_found")),
            "{method} {path}: {v}"
        );
    }
    let r = as_beta(
        reqwest::Method::POST,
        format!("/v1/agent/runs/{id}/approval"),
    )
    .json(&serde_json::json!({"approved": true}))
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 404);
    // Still alpha's, still running: beta's cancel did nothing.
    let (status, _, v) = get(
        &app,
        &format!("/v1/agent/runs/{id}"),
        Some(&format!("Bearer {alpha}")),
    )
    .await;
    assert_eq!((status, v["state"].as_str()), (200, Some("running")), "{v}");
    let r = client()
        .delete(app.url(&format!("/v1/agent/runs/{id}")))
        .bearer_auth(&alpha)
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["state"], "cancelled");
}

/// On a shared service, a base URL the operator listed in `agent.allowed_base_urls` is called
/// even on loopback (the operator's choice), and with a list nothing else is.
#[tokio::test]
async fn an_operator_listed_base_url_is_called_even_on_loopback() {
    needs_root!();
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let key = create_key(dir.path(), "alpha");
    let listed =
        crate::scripted_model::ScriptedModel::start(vec![crate::scripted_model::Reply::text(
            "TERMINATE",
        )]);
    let unlisted =
        crate::scripted_model::ScriptedModel::start(vec![crate::scripted_model::Reply::text(
            "TERMINATE",
        )]);
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        format!(
            "[agent]\nallowed_base_urls = [\"{}\"]\n",
            listed.base_url_openai
        ),
    )
    .unwrap();
    let env = [
        API_KEY_AUTH,
        &[("EXECBOX_CONFIG", config.to_str().unwrap())],
    ]
    .concat();
    let app = TestApp::start_in(
        &format!("auth-listed-{}", std::process::id()),
        dir.path(),
        &env,
    );
    let post = |base: String| {
        let body = serde_json::json!({"task": "t", "model": {"provider": "openai", "model": "m", "base_url": base}});
        client()
            .post(app.url("/v1/agent/runs"))
            .bearer_auth(&key)
            .json(&body)
            .send()
    };
    let r = post(format!("http://127.0.0.1:{}/v1", unlisted.port))
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let v: Value = r.json().await.unwrap();
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("agent.allowed_base_urls"),
        "{v}"
    );
    // Listed explicitly: the operator's choice wins, even on loopback.
    let r = post(listed.base_url_openai.clone()).await.unwrap();
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
    assert!(unlisted.requests().is_empty());
}

/// The attack: a team of a shared service points base_url at the service's own network (a
/// metadata endpoint, a loopback admin port) to read the answer back in the run's error.
/// Without a list, every private, loopback or link-local base URL is refused, as an IP literal
/// or as a name, before anything is sent.
#[tokio::test]
async fn a_shared_service_without_a_list_refuses_private_base_urls() {
    needs_root!();
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let key = create_key(dir.path(), "alpha");
    let target =
        crate::scripted_model::ScriptedModel::start(vec![crate::scripted_model::Reply::text(
            "TERMINATE",
        )]);
    let app = TestApp::start_in(
        &format!("auth-private-{}", std::process::id()),
        dir.path(),
        API_KEY_AUTH,
    );
    for base in [
        format!("http://127.0.0.1:{}/v1", target.port),
        format!("http://localhost:{}/v1", target.port),
        format!("http://[::1]:{}/v1", target.port),
        format!("http://[::ffff:127.0.0.1]:{}/v1", target.port),
        "http://169.254.169.254/latest".to_string(),
        "http://10.0.0.1/v1".to_string(),
        "http://0.0.0.0:1/v1".to_string(),
    ] {
        let body = serde_json::json!({"task": "t", "model": {"provider": "openai", "model": "m", "base_url": base}});
        let r = client()
            .post(app.url("/v1/agent/runs"))
            .bearer_auth(&key)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let v: Value = r.json().await.unwrap();
        assert_eq!(
            (status, v["error"]["code"].as_str()),
            (422, Some("invalid_model")),
            "{base}: {v}"
        );
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("private or reserved address"),
            "{base}: {v}"
        );
    }
    assert!(
        target.requests().is_empty(),
        "a private base URL was called"
    );
}
