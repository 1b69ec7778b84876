//! One caller must not hurt the service or other teams: half-sent requests are closed and
//! cannot hold every connection, a batch's output is bounded, a run waiting for approval holds
//! no agent slot and no team takes every slot, and model URLs never reach the host itself.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::*;
use crate::scripted_model::{Reply, ScriptedModel};

/// A new key for `team`, made with the CLI in `dir` before the service starts.
fn create_key(dir: &Path, team: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_execbox"))
        .args(["keys", "create", "--team", team, "--data-dir"])
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap()
        .to_string()
}

async fn post(app: &TestApp, key: &str, path: &str, body: Value) -> (u16, Value) {
    let r = client()
        .post(app.url(path))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

async fn get(app: &TestApp, key: &str, path: &str) -> (u16, Value) {
    let r = client()
        .get(app.url(path))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

/// Open `n` connections that send half a request head and then hold.
async fn half_sent(app: &TestApp, n: usize) -> Vec<TcpStream> {
    let mut conns = Vec::with_capacity(n);
    for _ in 0..n {
        let mut c = TcpStream::connect(("127.0.0.1", app.port)).await.unwrap();
        c.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            .await
            .unwrap();
        conns.push(c);
    }
    conns
}

/// Whether the server has closed `c` (end of file or a reset), waiting at most `wait`.
async fn closed_by_server(c: &mut TcpStream, wait: Duration) -> bool {
    let mut buf = [0u8; 256];
    loop {
        match tokio::time::timeout(wait, c.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            // An error answer before closing (hyper may answer 408) counts as closing too.
            Ok(Ok(_)) => continue,
        }
    }
}

/// A service of its own with API keys on, the docker executor off and `server`'s settings,
/// and a key for team alpha. The data dir is returned to outlive the service.
fn keyed_app(name: &str, server: &[(&str, &str)]) -> (tempfile::TempDir, TestApp, String) {
    let dir = tempfile::tempdir().unwrap();
    let key = create_key(dir.path(), "alpha");
    let mut env = vec![
        ("EXECBOX_AUTH", "api-key"),
        ("EXECBOX_DOCKER__ENABLED", "false"),
    ];
    env.extend_from_slice(server);
    let app = TestApp::start_in(&format!("{name}-{}", std::process::id()), dir.path(), &env);
    (dir, app, key)
}

async fn healthz_and_a_run(app: &TestApp, key: &str) {
    let r = client().get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let (status, v) = post(
        app,
        key,
        "/v1/execute",
        json!({"language": "bash", "code": "echo still here"}),
    )
    .await;
    assert_eq!(
        (status, v["stdout"].as_str()),
        (200, Some("still here\n")),
        "{v}"
    );
}

#[tokio::test]
async fn half_sent_request_heads_are_closed_after_the_header_timeout() {
    needs_root!();
    require_root();
    let (_dir, app, key) = keyed_app(
        "limits-hdr",
        &[("EXECBOX_SERVER__HEADER_READ_TIMEOUT_SECONDS", "2")],
    );
    let mut conns = half_sent(&app, 300).await;
    healthz_and_a_run(&app, &key).await;
    // Without a header timeout they stay open for good; the wait is only a bound for failing.
    let closed = futures::future::join_all(
        conns
            .iter_mut()
            .map(|c| closed_by_server(c, Duration::from_secs(60))),
    )
    .await;
    assert_eq!(
        closed.iter().filter(|c| **c).count(),
        300,
        "every half-sent request is closed by the server"
    );
    healthz_and_a_run(&app, &key).await;
}

#[tokio::test]
async fn at_the_connection_bound_healthz_and_runs_still_answer() {
    needs_root!();
    require_root();
    // A header timeout longer than the test: only the bound's eviction can make room.
    let (_dir, app, key) = keyed_app(
        "limits-max",
        &[
            ("EXECBOX_SERVER__HEADER_READ_TIMEOUT_SECONDS", "600"),
            ("EXECBOX_SERVER__MAX_CONNECTIONS", "32"),
        ],
    );
    let mut conns = half_sent(&app, 200).await;
    healthz_and_a_run(&app, &key).await;
    // The service holds at most 32 connections, and when /healthz came all 32 were held ones:
    // at least 200 - 32 + 1 of them have been closed to make room (the run's connection may
    // have found the place /healthz's left).
    let closed = futures::future::join_all(
        conns
            .iter_mut()
            .map(|c| closed_by_server(c, Duration::from_secs(5))),
    )
    .await;
    let n = closed.iter().filter(|c| **c).count();
    assert!(
        n > 200 - 32,
        "only {n} of 200 half-sent connections were closed at a bound of 32"
    );
    // The oldest go first: the newest held connection is still open.
    assert!(
        !closed[199],
        "the newest connection was closed before older ones"
    );
}

/// At the bound with every connection busy, a new connection waits; when a busy connection's
/// response ends and the client keeps it alive, that now idle connection makes room. (Before,
/// the wait lasted until the kept-alive connection's own header timeout: here 600 s.)
#[tokio::test]
async fn at_the_connection_bound_a_connection_kept_alive_after_its_response_makes_room() {
    needs_root!();
    require_root();
    let (_dir, app, key) = keyed_app(
        "limits-kept",
        &[
            ("EXECBOX_SERVER__HEADER_READ_TIMEOUT_SECONDS", "600"),
            ("EXECBOX_SERVER__MAX_CONNECTIONS", "2"),
        ],
    );
    // Two streamed runs fill the bound: once their response heads have arrived, both
    // connections are busy until their streams end. The client keeps both alive after.
    let kept = client();
    let streamed = || {
        kept.post(app.url("/v1/execute"))
            .bearer_auth(&key)
            .header("accept", "text/event-stream")
            .json(&json!({"language": "bash", "code": "sleep 2; echo done"}))
            .send()
    };
    let (a, b) = tokio::join!(streamed(), streamed());
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!((a.status().as_u16(), b.status().as_u16()), (200, 200));
    // A third connection, from another client, while both are busy.
    let third = tokio::spawn({
        let url = app.url("/healthz");
        async move { client().get(url).send().await.map(|r| r.status().as_u16()) }
    });
    let (a, b) = tokio::join!(a.text(), b.text());
    for body in [a.unwrap(), b.unwrap()] {
        assert!(body.contains("done"), "{body}");
    }
    // The runs are over and their connections idle in `kept`'s pool: the first of them to fall
    // idle is closed for the third. The wait is only a bound for failing.
    let answered = tokio::time::timeout(Duration::from_secs(60), third)
        .await
        .expect("/healthz waited at the bound although a connection had fallen idle")
        .unwrap();
    assert_eq!(answered.unwrap(), 200);
}

/// A burst of connections waits in the kernel's queue, not dropped: the listener's backlog is
/// 1024 (the kernel's cap, `somaxconn`, permitting), where std's and tokio's 128 dropped the
/// SYNs of a larger burst and each was retried only a second later. `ss` shows a listening
/// socket's backlog as its Send-Q.
#[tokio::test]
async fn the_listener_queues_a_burst_of_connections() {
    let app = spawn_app();
    let out = Command::new("ss")
        .args(["-ltnH", &format!("sport = :{}", app.port)])
        .output()
        .expect("running ss (iproute2)");
    let listing = String::from_utf8_lossy(&out.stdout);
    let fields: Vec<&str> = listing.split_whitespace().collect();
    let somaxconn: u32 = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // State, Recv-Q, Send-Q (the backlog), local address, peer.
    assert_eq!(
        (fields.first().copied(), fields.get(2).copied()),
        (
            Some("LISTEN"),
            Some(1024.min(somaxconn).to_string().as_str())
        ),
        "{listing}"
    );
}

/// The issue's attack: three runs printing 16 MiB of control bytes each (6 bytes apiece in
/// JSON). The batch's unwritten results may hold `max_batch_output_bytes` of output: here
/// 16 MiB, so each item runs with its caps lowered to 8 MiB per stream and says it was cut.
#[tokio::test]
async fn a_batch_holds_at_most_its_output_budget() {
    needs_root!();
    require_root();
    let env = [
        ("EXECBOX_DOCKER__ENABLED", "false"),
        ("EXECBOX_MAX_BATCH_OUTPUT_BYTES", "16777216"),
    ];
    let app = TestApp::start(&format!("limits-batch-{}", std::process::id()), &env);
    let item = json!({"language": "python", "code": "import sys\nsys.stdout.write('\\x01' * (16 << 20))", "limits": {"output_bytes": 16 << 20}});
    let r = client()
        .post(app.url("/v1/execute/batch"))
        .json(&json!({"requests": [item, item, item]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    let body = r.bytes().await.unwrap();
    let v: Value = serde_json::from_slice(&body).unwrap();
    let results = v["results"].as_array().unwrap();
    assert_eq!(results.len(), 3);
    for r in results {
        assert_eq!(r["status"], "ok", "{}", r["stderr"]);
        assert_eq!(r["stdout"].as_str().unwrap(), "\u{1}".repeat(8 << 20));
        assert_eq!(
            (
                r["stdout_truncated"].as_bool(),
                r["stderr_truncated"].as_bool()
            ),
            (Some(true), Some(false))
        );
    }
    // Alone, a run keeps its own cap, and its answer (96 MiB of JSON) arrives whole.
    let (status, v) = app.execute(item.clone()).await;
    assert_eq!(status, 200);
    assert_eq!(
        (
            v["stdout"].as_str().map(str::len),
            v["stdout_truncated"].as_bool()
        ),
        (Some(16 << 20), Some(false))
    );
}

/// A streamed run's result event carries the whole result, written in chunks.
#[tokio::test]
async fn a_streamed_run_with_a_large_result_arrives_whole() {
    needs_root!();
    let Some(app) = app_for("local").await else {
        return;
    };
    let code = "import sys\nsys.stdout.write('\\x01' * (4 << 20))";
    let r = client()
        .post(app.url("/v1/execute"))
        .header("accept", "text/event-stream")
        .json(&json!({"language": "python", "code": code, "limits": {"output_bytes": 4 << 20}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let events = read_events(r, |e| e.event == "result").await;
    let streamed: usize = events
        .iter()
        .filter(|e| e.event == "stdout")
        .map(|e| e.data["data"].as_str().unwrap().len())
        .sum();
    let result = events.last().unwrap();
    assert_eq!(result.event, "result");
    assert_eq!(
        (streamed, result.data["stdout"].as_str().map(str::len)),
        (4 << 20, Some(4 << 20))
    );
}

fn agent_env<'a>() -> Vec<(&'a str, &'a str)> {
    vec![
        ("EXECBOX_AUTH", "api-key"),
        ("EXECBOX_DOCKER__ENABLED", "false"),
        ("EXECBOX_AGENT__ALLOW_PRIVATE_BASE_URLS", "true"),
        ("EXECBOX_AGENT__MAX_CONCURRENT_RUNS", "2"),
        ("EXECBOX_AGENT__MODEL_TIMEOUT_SECONDS", "600"),
        ("EXECBOX_AGENT__MODEL_MAX_RETRIES", "0"),
    ]
}

fn model(m: &ScriptedModel) -> Value {
    json!({"provider": "openai", "model": "scripted-model", "base_url": m.base_url_openai})
}

async fn start_run(app: &TestApp, key: &str, body: Value) -> String {
    let (status, v) = post(app, key, "/v1/agent/runs", body).await;
    assert_eq!(status, 202, "{v}");
    s(&v, "id")
}

async fn wait_for(
    app: &TestApp,
    key: &str,
    id: &str,
    what: &str,
    ok: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let (status, v) = get(app, key, &format!("/v1/agent/runs/{id}")).await;
        assert_eq!(status, 200, "{v}");
        if ok(&v) {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "run {id} never became {what}: {v}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Two slots. Team A's runs waiting for approval hold none, and A's runs stuck on a hanging
/// model hold at most A's share (one): team B's run starts and finishes either way.
#[tokio::test]
async fn one_team_cannot_keep_another_from_agent_slots() {
    needs_root!();
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (
        create_key(dir.path(), "team-a"),
        create_key(dir.path(), "team-b"),
    );
    let app = TestApp::start_in(
        &format!("limits-agent-{}", std::process::id()),
        dir.path(),
        &agent_env(),
    );
    let asks = ScriptedModel::start_with(|_| Reply::text("```bash\necho needs a person\n```"));
    let quick = ScriptedModel::start_with(|_| Reply::text("Nothing to run. TERMINATE"));
    let hangs = ScriptedModel::start_with(|_| Reply::Hang(Duration::from_secs(600)));

    let waiting: Vec<String> = futures::future::join_all((0..2).map(|_| {
        start_run(
            &app,
            &a,
            json!({"task": "t", "model": model(&asks), "require_approval": true}),
        )
    }))
    .await;
    for id in &waiting {
        wait_for(&app, &a, id, "awaiting approval", |v| {
            v["awaiting_approval"] == true
        })
        .await;
    }
    let id = start_run(&app, &b, json!({"task": "t", "model": model(&quick)})).await;
    let v = wait_for(&app, &b, &id, "ended", |v| {
        v["state"] != "queued" && v["state"] != "running"
    })
    .await;
    assert_eq!(
        (v["state"].as_str(), v["stop_reason"].as_str()),
        (Some("finished"), Some("text_mention: TERMINATE")),
        "{v}"
    );

    let stuck: Vec<String> = futures::future::join_all(
        (0..2).map(|_| start_run(&app, &a, json!({"task": "t", "model": model(&hangs)}))),
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while hangs.requests().is_empty() {
        assert!(
            Instant::now() < deadline,
            "no run of team A reached the hanging model"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let id = start_run(&app, &b, json!({"task": "t", "model": model(&quick)})).await;
    let v = wait_for(&app, &b, &id, "ended", |v| {
        v["state"] != "queued" && v["state"] != "running"
    })
    .await;
    assert_eq!(v["state"], "finished", "{v}");
    // Team B's run came and went; team A's second run is still waiting for A's one slot.
    assert_eq!(
        hangs.requests().len(),
        1,
        "team A holds more than its share of one slot"
    );
    let mut states = Vec::new();
    for id in &stuck {
        states.push(s(
            &get(&app, &a, &format!("/v1/agent/runs/{id}")).await.1,
            "state",
        ));
    }
    states.sort();
    assert_eq!(states, ["queued", "running"]);

    for id in waiting.iter().chain(&stuck) {
        let r = client()
            .delete(app.url(&format!("/v1/agent/runs/{id}")))
            .bearer_auth(&a)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.status());
    }
}

/// A run that waits for approval gives its slot back, and takes one again once approved.
#[tokio::test]
async fn an_approved_run_takes_a_slot_again_and_finishes() {
    needs_root!();
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let a = create_key(dir.path(), "team-a");
    let mut env = agent_env();
    env.push(("EXECBOX_AGENT__MAX_CONCURRENT_RUNS", "1"));
    let app = TestApp::start_in(
        &format!("limits-approve-{}", std::process::id()),
        dir.path(),
        &env,
    );
    let tok = token();
    let m = ScriptedModel::start(vec![
        Reply::text(format!("```bash\necho {tok}\n```")),
        Reply::text("TERMINATE"),
    ]);
    let id = start_run(
        &app,
        &a,
        json!({"task": "t", "model": model(&m), "require_approval": true}),
    )
    .await;
    wait_for(&app, &a, &id, "awaiting approval", |v| {
        v["awaiting_approval"] == true
    })
    .await;
    let (status, v) = post(
        &app,
        &a,
        &format!("/v1/agent/runs/{id}/approval"),
        json!({"approved": true}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let v = wait_for(&app, &a, &id, "ended", |v| {
        v["state"] != "queued" && v["state"] != "running"
    })
    .await;
    assert_eq!(v["state"], "finished", "{v}");
    let ran: Vec<&Value> = v["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["type"] == "code_execution")
        .collect();
    assert_eq!(s(&ran[0]["result"], "stdout"), format!("{tok}\n"));
}

/// The host's own non-loopback addresses, as URL hosts (link-local ones need a scope: left out).
fn own_addresses() -> Vec<std::net::IpAddr> {
    nix::ifaddrs::getifaddrs()
        .unwrap()
        .filter_map(|i| i.address)
        .filter_map(|a| match (a.as_sockaddr_in(), a.as_sockaddr_in6()) {
            (Some(v4), _) => Some(std::net::IpAddr::V4(v4.ip())),
            (_, Some(v6)) => Some(std::net::IpAddr::V6(v6.ip())),
            _ => None,
        })
        .filter(|ip| {
            !ip.is_loopback()
                && !matches!(ip, std::net::IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80)
        })
        .collect()
}

/// A base URL at one of the host's own addresses is refused with 422 before any connection:
/// a listener the test binds there is never reached.
#[tokio::test]
async fn a_model_url_at_the_hosts_own_address_is_refused_before_any_connection() {
    needs_root!();
    require_root();
    let own = own_addresses();
    if own.is_empty() {
        eprintln!("\n!!! SKIPPING the host-address SSRF case: this machine has no non-loopback address !!!\n");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let key = create_key(dir.path(), "alpha");
    let app = TestApp::start_in(
        &format!("limits-ssrf-{}", std::process::id()),
        dir.path(),
        &[
            ("EXECBOX_AUTH", "api-key"),
            ("EXECBOX_DOCKER__ENABLED", "false"),
        ],
    );
    for ip in own {
        let listener = std::net::TcpListener::bind((ip, 0)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let base = format!("http://{}/v1", listener.local_addr().unwrap());
        let (status, v) = post(
            &app,
            &key,
            "/v1/agent/runs",
            json!({"task": "t", "model": {"provider": "openai", "model": "m", "base_url": base}}),
        )
        .await;
        assert_eq!(
            (status, v["error"]["code"].as_str()),
            (422, Some("invalid_model")),
            "{base}: {v}"
        );
        assert!(
            s(&v["error"], "message").contains("which this shared service does not call"),
            "{v}"
        );
        match listener.accept() {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            other => panic!("the service connected to {base}: {other:?}"),
        }
    }
}
