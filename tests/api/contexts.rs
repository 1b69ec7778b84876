//! Stateful contexts and background processes through the HTTP API, on both executors: state
//! persists between calls, display results (a trailing expression, a matplotlib PNG),
//! exceptions, a deadline's interrupt, a context that ignores it and is lost, a background
//! server reached over the sandbox's loopback, its logs, and a kill of its whole tree.

use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};

use crate::helpers::*;

async fn sandbox(app: &TestApp, ex: &str) -> String {
    let r = client()
        .post(app.url("/v1/sandboxes"))
        .json(&json!({"executor": ex, "ttl_seconds": 600}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    s(&r.json().await.unwrap(), "id")
}

async fn post(app: &TestApp, path: &str, body: Value) -> (u16, Value) {
    let r = client()
        .post(app.url(path))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn delete(app: &TestApp, path: &str) -> u16 {
    client()
        .delete(app.url(path))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn context(app: &TestApp, sb: &str) -> String {
    let (status, v) = post(
        app,
        &format!("/v1/sandboxes/{sb}/contexts"),
        json!({"language": "python"}),
    )
    .await;
    assert_eq!(status, 201, "{v}");
    assert_eq!(
        (&v["language"], &v["state"]),
        (&json!("python"), &json!("idle"))
    );
    let id = s(&v, "id");
    assert!(id.starts_with("ctx_"), "{id}");
    id
}

/// A context call's answer.
async fn run_in(app: &TestApp, sb: &str, ctx: &str, code: &str, limits: Value) -> (u16, Value) {
    post(
        app,
        &format!("/v1/sandboxes/{sb}/execute"),
        json!({"language": "python", "code": code, "context": ctx, "limits": limits}),
    )
    .await
}

async fn ok_in(app: &TestApp, sb: &str, ctx: &str, code: &str) -> Value {
    let (status, v) = run_in(app, sb, ctx, code, json!({})).await;
    assert_eq!(status, 200, "{v}");
    v
}

async fn state_persists_and_values_display(ex: &str) {
    let Some(app) = app_for(ex).await else { return };
    let sb = sandbox(app, ex).await;
    let ctx = context(app, &sb).await;
    let v = ok_in(
        app,
        &sb,
        &ctx,
        "import math\nx = 41\ndef bump(v):\n    return v + 1",
    )
    .await;
    assert_eq!(
        (&v["status"], &v["exit_code"]),
        (&json!("ok"), &json!(0)),
        "{v}"
    );
    assert_eq!(
        (&v["results"], &v["error"]),
        (&json!([]), &Value::Null),
        "{v}"
    );
    // Variables, imports and definitions are still there; the trailing expression displays.
    let v = ok_in(app, &sb, &ctx, "print(math.floor(math.pi))\nbump(x)").await;
    assert_eq!(v["stdout"], "3\n", "{v}");
    assert_eq!(v["results"], json!([{"text/plain": "42"}]), "{v}");
    assert_eq!(v["language"], "python");
    // None and statements display nothing.
    let v = ok_in(app, &sb, &ctx, "y = x * 2\nNone").await;
    assert_eq!(v["results"], json!([]), "{v}");
    let v = ok_in(app, &sb, &ctx, "y").await;
    assert_eq!(v["results"], json!([{"text/plain": "82"}]), "{v}");
    // A run without a context shares nothing with it, and answers no `results`.
    let (status, v) = post(
        app,
        &format!("/v1/sandboxes/{sb}/execute"),
        json!({"language": "python", "code": "print('x' in globals())"}),
    )
    .await;
    assert_eq!((status, &v["stdout"]), (200, &json!("False\n")), "{v}");
    assert!(
        v.get("results").is_none() && v.get("error").is_none(),
        "{v}"
    );
    let (status, list) = app.get(&format!("/v1/sandboxes/{sb}/contexts")).await;
    assert_eq!(status, 200);
    assert_eq!(
        list["contexts"],
        json!([{"id": ctx, "language": "python", "state": "idle"}])
    );
    assert_eq!(
        delete(app, &format!("/v1/sandboxes/{sb}/contexts/{ctx}")).await,
        204
    );
    let (status, v) = run_in(app, &sb, &ctx, "x", json!({})).await;
    assert_eq!(
        (status, &v["error"]["code"]),
        (404, &json!("context_not_found")),
        "{v}"
    );
    assert_eq!(
        delete(app, &format!("/v1/sandboxes/{sb}/contexts/{ctx}")).await,
        404
    );
    assert_eq!(delete(app, &format!("/v1/sandboxes/{sb}")).await, 204);
}

async fn figures_come_back_as_png(ex: &str) {
    let Some(app) = app_for(ex).await else { return };
    let sb = sandbox(app, ex).await;
    let ctx = context(app, &sb).await;
    let v = ok_in(
        app,
        &sb,
        &ctx,
        "import numpy as np, pandas as pd\nimport matplotlib.pyplot as plt\n\
         df = pd.DataFrame({'x': np.arange(5), 'y': np.arange(5) ** 2})\n\
         plt.plot(df.x, df.y)\nplt.title('squares')\nNone",
    )
    .await;
    assert_eq!(v["error"], Value::Null, "{v}");
    let results = v["results"].as_array().unwrap();
    assert_eq!(results.len(), 1, "{v}");
    assert_eq!(
        results[0]["text/plain"],
        "<Figure size 640x480 with 1 Axes>"
    );
    let png = base64::engine::general_purpose::STANDARD
        .decode(results[0]["image/png"].as_str().unwrap())
        .unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    assert!(png.len() > 1000, "a real image: {} bytes", png.len());
    // The figure was closed: the next call displays none. A DataFrame brings its HTML too.
    let v = ok_in(app, &sb, &ctx, "df.y.sum()").await;
    assert_eq!(v["results"], json!([{"text/plain": "30"}]), "{v}");
    let v = ok_in(app, &sb, &ctx, "df.head(2)").await;
    let bundle = &v["results"][0];
    assert_eq!(bundle["text/plain"], "   x  y\n0  0  0\n1  1  1", "{v}");
    assert!(
        bundle["text/html"].as_str().unwrap().contains("<table"),
        "{v}"
    );
    assert_eq!(delete(app, &format!("/v1/sandboxes/{sb}")).await, 204);
}

async fn an_exception_is_reported_and_the_context_goes_on(ex: &str) {
    let Some(app) = app_for(ex).await else { return };
    let sb = sandbox(app, ex).await;
    let ctx = context(app, &sb).await;
    let v = ok_in(
        app,
        &sb,
        &ctx,
        "kept = 'yes'\ndef divide(a, b):\n    return a / b\nprint('before')\ndivide(1, 0)",
    )
    .await;
    assert_eq!(
        (&v["status"], &v["exit_code"]),
        (&json!("error"), &json!(1)),
        "{v}"
    );
    assert_eq!(v["stdout"], "before\n");
    assert_eq!(v["results"], json!([]));
    let e = &v["error"];
    assert_eq!(
        (&e["name"], &e["value"]),
        (&json!("ZeroDivisionError"), &json!("division by zero"))
    );
    let tb = e["traceback"].as_str().unwrap();
    assert!(
        tb.starts_with("Traceback (most recent call last):\n"),
        "{tb}"
    );
    assert!(tb.contains("return a / b"), "{tb}");
    assert!(
        tb.ends_with("ZeroDivisionError: division by zero\n"),
        "{tb}"
    );
    assert!(
        !tb.contains("execbox"),
        "the driver's own frames are left out: {tb}"
    );
    let v = ok_in(app, &sb, &ctx, "kept").await;
    assert_eq!(v["results"], json!([{"text/plain": "'yes'"}]), "{v}");
    assert_eq!(delete(app, &format!("/v1/sandboxes/{sb}")).await, 204);
}

async fn a_deadline_interrupts_and_the_state_survives(ex: &str) {
    let Some(app) = app_for(ex).await else { return };
    let sb = sandbox(app, ex).await;
    let ctx = context(app, &sb).await;
    let started = Instant::now();
    let (status, v) = run_in(
        app,
        &sb,
        &ctx,
        "import time\ncounter = 7\nprint('started', flush=True)\ntime.sleep(60)",
        json!({"wall_time_ms": 1000}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(v["status"], "timeout", "{v}");
    assert_eq!(v["stdout"], "started\n");
    assert_eq!(v["error"]["name"], "KeyboardInterrupt", "{v}");
    let v = ok_in(app, &sb, &ctx, "counter + 1").await;
    assert_eq!(v["results"], json!([{"text/plain": "8"}]), "{v}");
    assert_eq!(delete(app, &format!("/v1/sandboxes/{sb}")).await, 204);
}

/// A context call's `cpu_time_ms` interrupts CPU-bound code (status `cpu_limit`) well before
/// its wall deadline, and the context keeps its state.
async fn the_cpu_limit_interrupts_and_the_state_survives(ex: &str) {
    let Some(app) = app_for(ex).await else { return };
    let sb = sandbox(app, ex).await;
    let ctx = context(app, &sb).await;
    let (status, v) = run_in(
        app,
        &sb,
        &ctx,
        "spins = 3\nwhile True:\n    spins += 1",
        json!({"cpu_time_ms": 500, "wall_time_ms": 30000}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        (v["status"].as_str(), v["error"]["name"].as_str()),
        (Some("cpu_limit"), Some("KeyboardInterrupt")),
        "{v}"
    );
    let cpu = v["usage"]["cpu_time_ms"].as_u64().unwrap();
    // The interval timer and getrusage count CPU by different clocks: a few ms apart.
    assert!((450..5000).contains(&cpu), "{v}");
    assert!(v["usage"]["wall_time_ms"].as_u64().unwrap() < 20_000, "{v}");
    let v = ok_in(app, &sb, &ctx, "spins > 3").await;
    assert_eq!(v["results"], json!([{"text/plain": "True"}]), "{v}");
    assert_eq!(delete(app, &format!("/v1/sandboxes/{sb}")).await, 204);
}

async fn a_context_that_ignores_the_interrupt_is_lost(ex: &str) {
    let Some(app) = app_for(ex).await else { return };
    let sb = sandbox(app, ex).await;
    let ctx = context(app, &sb).await;
    let started = Instant::now();
    let (status, v) = run_in(
        app,
        &sb,
        &ctx,
        "import time\nwhile True:\n    try:\n        time.sleep(0.1)\n    except KeyboardInterrupt:\n        pass",
        json!({"wall_time_ms": 1000}),
    )
    .await;
    assert_eq!(
        (status, &v["error"]["code"]),
        (410, &json!("context_lost")),
        "{v}"
    );
    assert!(
        v["error"]["message"].as_str().unwrap().contains(&ctx),
        "{v}"
    );
    // The deadline, then the 2 s grace after the interrupt.
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(3) && took < Duration::from_secs(10),
        "{took:?}"
    );
    let (status, v) = run_in(app, &sb, &ctx, "1", json!({})).await;
    assert_eq!(
        (status, &v["error"]["code"]),
        (410, &json!("context_lost")),
        "{v}"
    );
    let (_, list) = app.get(&format!("/v1/sandboxes/{sb}/contexts")).await;
    assert_eq!(list["contexts"][0]["state"], "lost", "{list}");
    // The sandbox itself is fine, and a new context works.
    let fresh = context(app, &sb).await;
    let v = ok_in(app, &sb, &fresh, "2 + 2").await;
    assert_eq!(v["results"], json!([{"text/plain": "4"}]));
    assert_eq!(
        delete(app, &format!("/v1/sandboxes/{sb}/contexts/{ctx}")).await,
        204
    );
    assert_eq!(delete(app, &format!("/v1/sandboxes/{sb}")).await, 204);
}

async fn context_errors_are_clear(ex: &str) {
    let Some(app) = app_for(ex).await else { return };
    let sb = sandbox(app, ex).await;
    let (status, v) = post(
        app,
        &format!("/v1/sandboxes/{sb}/contexts"),
        json!({"language": "bash"}),
    )
    .await;
    assert_eq!(
        (status, &v["error"]["code"]),
        (422, &json!("unsupported_language")),
        "{v}"
    );
    let (status, v) = run_in(app, &sb, "ctx_nope", "1", json!({})).await;
    assert_eq!(
        (status, &v["error"]["code"]),
        (404, &json!("context_not_found")),
        "{v}"
    );
    let ctx = context(app, &sb).await;
    let (status, v) = post(
        app,
        &format!("/v1/sandboxes/{sb}/execute"),
        json!({"language": "python", "code": "1", "context": ctx, "stdin": "x"}),
    )
    .await;
    assert_eq!(
        (status, &v["error"]["code"]),
        (400, &json!("invalid_request")),
        "{v}"
    );
    let (status, v) = post(
        app,
        &format!("/v1/sandboxes/{sb}/execute"),
        json!({"language": "bash", "code": "echo", "context": ctx}),
    )
    .await;
    assert_eq!(
        (status, &v["error"]["code"]),
        (422, &json!("unsupported_language")),
        "{v}"
    );
    let (status, v) = post(
        app,
        "/v1/sandboxes/sb_missing/contexts",
        json!({"language": "python"}),
    )
    .await;
    assert_eq!(
        (status, &v["error"]["code"]),
        (404, &json!("sandbox_not_found")),
        "{v}"
    );
    assert_eq!(delete(app, &format!("/v1/sandboxes/{sb}")).await, 204);
}

async fn a_context_call_streams_its_output(ex: &str) {
    let Some(app) = app_for(ex).await else { return };
    let sb = sandbox(app, ex).await;
    let ctx = context(app, &sb).await;
    let resp = client()
        .post(app.url(&format!("/v1/sandboxes/{sb}/execute")))
        .header("accept", "text/event-stream")
        .json(&json!({"language": "python", "context": ctx,
            "code": "import time\nprint('one', flush=True)\ntime.sleep(1)\nprint('two')\n6 * 7"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let events = read_events(resp, |e| e.event == "result").await;
    let stdout: Vec<&Ev> = events.iter().filter(|e| e.event == "stdout").collect();
    assert!(
        stdout[0].data["data"].as_str().unwrap().starts_with("one"),
        "{}",
        stdout[0].data
    );
    let streamed: String = stdout
        .iter()
        .map(|e| e.data["data"].as_str().unwrap())
        .collect();
    assert_eq!(streamed, "one\ntwo\n");
    let result = events.last().unwrap();
    assert_eq!(result.event, "result");
    assert_eq!(result.data["stdout"], "one\ntwo\n");
    assert_eq!(result.data["results"], json!([{"text/plain": "42"}]));
    // The first line came while the call still ran.
    assert!(result.at.duration_since(stdout[0].at) >= Duration::from_millis(700));
    assert_eq!(delete(app, &format!("/v1/sandboxes/{sb}")).await, 204);
}

/// Wait until `f` holds, for at most `secs`.
async fn eventually(secs: u64, mut f: impl AsyncFnMut() -> bool) -> bool {
    let until = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < until {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

async fn a_background_server_is_reached_over_loopback(ex: &str) {
    let Some(app) = app_for(ex).await else { return };
    let sb = sandbox(app, ex).await;
    let (status, p) = post(
        app,
        &format!("/v1/sandboxes/{sb}/processes"),
        json!({"command": ["python3", "-m", "http.server", "8765", "--bind", "127.0.0.1"]}),
    )
    .await;
    assert_eq!(status, 201, "{p}");
    let pid = s(&p, "id");
    assert!(pid.starts_with("proc_"));
    assert_eq!(
        p["command"],
        json!([
            "python3",
            "-m",
            "http.server",
            "8765",
            "--bind",
            "127.0.0.1"
        ])
    );
    // The call that started it is over; a later call reaches it on the sandbox's loopback.
    let (status, v) = post(
        app,
        &format!("/v1/sandboxes/{sb}/execute"),
        json!({"language": "python", "code": "import time, urllib.request\n\
for _ in range(100):\n    try:\n        r = urllib.request.urlopen('http://127.0.0.1:8765/')\n        break\n    except OSError:\n        time.sleep(0.1)\n\
print(r.status)"}),
    )
    .await;
    assert_eq!((status, &v["stdout"]), (200, &json!("200\n")), "{v}");
    let (status, list) = app.get(&format!("/v1/sandboxes/{sb}/processes")).await;
    assert_eq!(status, 200);
    let me = &list["processes"][0];
    assert_eq!(
        (&me["id"], &me["state"], &me["exit_code"]),
        (&json!(pid), &json!("running"), &Value::Null),
        "{list}"
    );
    // http.server logs each request on stderr.
    let (status, logs) = app
        .get(&format!("/v1/sandboxes/{sb}/processes/{pid}/logs"))
        .await;
    assert_eq!(status, 200, "{logs}");
    assert!(
        logs["stderr"]
            .as_str()
            .unwrap()
            .contains("\"GET / HTTP/1.1\" 200"),
        "{logs}"
    );
    assert_eq!(logs["process"]["state"], "running");
    assert_eq!(
        delete(app, &format!("/v1/sandboxes/{sb}/processes/{pid}")).await,
        204
    );
    let (_, list) = app.get(&format!("/v1/sandboxes/{sb}/processes")).await;
    assert_eq!(list["processes"], json!([]), "{list}");
    let (status, v) = app
        .get(&format!("/v1/sandboxes/{sb}/processes/{pid}/logs"))
        .await;
    assert_eq!(
        (status, &v["error"]["code"]),
        (404, &json!("process_not_found")),
        "{v}"
    );
    assert_eq!(
        delete(app, &format!("/v1/sandboxes/{sb}/processes/{pid}")).await,
        404
    );
    // Nothing answers there any more.
    let (_, v) = post(
        app,
        &format!("/v1/sandboxes/{sb}/execute"),
        json!({"language": "python", "code": "import urllib.request\n\
try:\n    urllib.request.urlopen('http://127.0.0.1:8765/', timeout=2)\n    print('up')\nexcept OSError:\n    print('down')"}),
    )
    .await;
    assert_eq!(v["stdout"], "down\n", "{v}");
    assert_eq!(delete(app, &format!("/v1/sandboxes/{sb}")).await, 204);
}

async fn a_kill_takes_the_whole_tree_and_the_sandbox_takes_the_rest(ex: &str) {
    let Some(app) = app_for(ex).await else { return };
    let sb = sandbox(app, ex).await;
    let tag = token();
    let start = |name: &str| {
        let script =
            format!("sh -c 'sleep 1000; : {tag}-{name}-child' & sleep 1000; : {tag}-{name}");
        json!({"command": ["sh", "-c", script]})
    };
    let (status, p) = post(app, &format!("/v1/sandboxes/{sb}/processes"), start("a")).await;
    assert_eq!(status, 201, "{p}");
    let (status, _) = post(app, &format!("/v1/sandboxes/{sb}/processes"), start("b")).await;
    assert_eq!(status, 201);
    let up = |name: &str| host_processes_with(&format!("{tag}-{name}")).len();
    assert!(
        eventually(10, async || up("a") == 2 && up("b") == 2).await,
        "a: {}, b: {}",
        up("a"),
        up("b")
    );
    // Killing one takes the child it forked too, and leaves the other.
    assert_eq!(
        delete(
            app,
            &format!("/v1/sandboxes/{sb}/processes/{}", s(&p, "id"))
        )
        .await,
        204
    );
    assert!(
        eventually(10, async || up("a") == 0).await,
        "{:?}",
        host_processes_with(&format!("{tag}-a"))
    );
    assert_eq!(up("b"), 2);
    // The sandbox's end takes every background process.
    assert_eq!(delete(app, &format!("/v1/sandboxes/{sb}")).await, 204);
    assert!(
        eventually(10, async || up("b") == 0).await,
        "{:?}",
        host_processes_with(&format!("{tag}-b"))
    );
}

async fn exits_logs_and_followed_logs(ex: &str) {
    let Some(app) = app_for(ex).await else { return };
    let sb = sandbox(app, ex).await;
    let (_, p) = post(
        app,
        &format!("/v1/sandboxes/{sb}/processes"),
        json!({"command": ["sh", "-c", "echo out; echo err >&2; echo \"$GREETING from $(pwd)\"; exit 3"],
               "env": {"GREETING": "hi"}, "cwd": "sub"}),
    )
    .await;
    // No such cwd yet.
    assert_eq!(p["error"]["code"], "file_not_found", "{p}");
    let (status, _) = post(
        app,
        &format!("/v1/sandboxes/{sb}/execute"),
        json!({"language": "bash", "code": "mkdir sub"}),
    )
    .await;
    assert_eq!(status, 200);
    let (status, p) = post(
        app,
        &format!("/v1/sandboxes/{sb}/processes"),
        json!({"command": ["sh", "-c", "echo out; echo err >&2; echo \"$GREETING from $(pwd)\"; exit 3"],
               "env": {"GREETING": "hi"}, "cwd": "sub"}),
    )
    .await;
    assert_eq!(status, 201, "{p}");
    let pid = s(&p, "id");
    let exited = eventually(10, async || {
        let (_, l) = app.get(&format!("/v1/sandboxes/{sb}/processes")).await;
        l["processes"][0]["state"] == "exited"
    })
    .await;
    assert!(exited);
    let (_, logs) = app
        .get(&format!("/v1/sandboxes/{sb}/processes/{pid}/logs"))
        .await;
    assert_eq!(logs["stdout"], "out\nhi from /work/sub\n", "{logs}");
    assert_eq!(logs["stderr"], "err\n");
    assert_eq!(
        (&logs["process"]["exit_code"], &logs["process"]["signal"]),
        (&json!(3), &Value::Null)
    );

    // Followed: the kept output, then output as it comes, then the end.
    let (_, p) = post(
        app,
        &format!("/v1/sandboxes/{sb}/processes"),
        json!({"command": ["sh", "-c", "for i in 1 2 3; do echo $i; sleep 0.5; done"]}),
    )
    .await;
    let resp = client()
        .get(app.url(&format!(
            "/v1/sandboxes/{sb}/processes/{}/logs",
            s(&p, "id")
        )))
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let events = read_events(resp, |e| e.event == "end").await;
    let out: String = events
        .iter()
        .filter(|e| e.event == "stdout")
        .map(|e| e.data["data"].as_str().unwrap())
        .collect();
    assert_eq!(out, "1\n2\n3\n");
    let end = events.last().unwrap();
    assert_eq!(
        (end.event.as_str(), &end.data["exit_code"]),
        ("end", &json!(0)),
        "{}",
        end.data
    );

    // A program that cannot start is listed as exited 127, saying why.
    let (status, p) = post(
        app,
        &format!("/v1/sandboxes/{sb}/processes"),
        json!({"command": ["no-such-program-here"]}),
    )
    .await;
    assert_eq!(status, 201, "{p}");
    let pid = s(&p, "id");
    assert!(
        eventually(10, async || {
            let (_, logs) = app
                .get(&format!("/v1/sandboxes/{sb}/processes/{pid}/logs"))
                .await;
            logs["process"]["exit_code"] == 127
                && logs["stderr"].as_str().unwrap().starts_with("execbox: ")
        })
        .await
    );
    let (status, v) = post(
        app,
        &format!("/v1/sandboxes/{sb}/processes"),
        json!({"command": []}),
    )
    .await;
    assert_eq!(
        (status, &v["error"]["code"]),
        (400, &json!("invalid_request")),
        "{v}"
    );
    assert_eq!(delete(app, &format!("/v1/sandboxes/{sb}")).await, 204);
}

on_both_executors!(
    state_persists_and_values_display,
    figures_come_back_as_png,
    an_exception_is_reported_and_the_context_goes_on,
    the_cpu_limit_interrupts_and_the_state_survives,
    a_deadline_interrupts_and_the_state_survives,
    a_context_that_ignores_the_interrupt_is_lost,
    context_errors_are_clear,
    a_context_call_streams_its_output,
    a_background_server_is_reached_over_loopback,
    a_kill_takes_the_whole_tree_and_the_sandbox_takes_the_rest,
    exits_logs_and_followed_logs,
);
