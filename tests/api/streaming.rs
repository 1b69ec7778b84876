//! `Accept: text/event-stream`: output as it happens, then the result; a client that hangs up
//! cancels the run.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::*;

async fn post_stream(app: &TestApp, body: Value) -> reqwest::Response {
    let r = client()
        .post(app.url("/v1/execute"))
        .header("accept", "text/event-stream")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    r
}

async fn output_arrives_before_the_program_ends(ex: &str) {
    let Some(app) = app_for(ex).await else { return };
    let code = "import sys, time\nprint('first', flush=True)\nprint('oops', file=sys.stderr, flush=True)\ntime.sleep(2)\nprint('second')";
    let resp = post_stream(
        app,
        json!({"executor": ex, "language": "python", "code": code}),
    )
    .await;
    let events = read_events(resp, |e| e.event == "result").await;
    let first = events
        .iter()
        .find(|e| e.event == "stdout")
        .expect("a stdout event");
    let result = events.last().unwrap();
    assert_eq!(result.event, "result");
    assert!(
        result.at.duration_since(first.at) >= Duration::from_millis(1500),
        "stdout was not streamed before the end"
    );
    let text = |kind: &str| {
        events
            .iter()
            .filter(|e| e.event == kind)
            .map(|e| e.data["data"].as_str().unwrap())
            .collect::<String>()
    };
    assert_eq!(text("stdout"), "first\nsecond\n");
    assert_eq!(text("stderr"), "oops\n");
    assert_eq!(result.data["status"], "ok");
    assert_eq!(result.data["stdout"], "first\nsecond\n");
    assert_eq!(result.data["executor"], ex);
}

async fn a_client_that_hangs_up_cancels_the_run(ex: &str) {
    let Some(app) = app_for(ex).await else { return };
    let t = token();
    let code = "import time\nprint('started', flush=True)\ntime.sleep(60)";
    let resp = post_stream(
        app,
        json!({"executor": ex, "language": "python", "code": code, "args": [t]}),
    )
    .await;
    // Python writes "started" and its newline separately: wait for the first chunk.
    let events = read_events(resp, |e| e.event == "stdout").await;
    assert!(
        events[0].data["data"]
            .as_str()
            .unwrap()
            .starts_with("started"),
        "{}",
        events[0].data
    );
    // The response (and its connection) is gone now.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !host_processes_with(&t).is_empty() {
        assert!(
            Instant::now() < deadline,
            "the run outlived its client: {:?}",
            host_processes_with(&t)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn a_bad_request_is_still_the_error_json(ex: &str) {
    let Some(app) = app_for(ex).await else { return };
    let r = client()
        .post(app.url("/v1/execute"))
        .header("accept", "text/event-stream")
        .json(&json!({"executor": ex, "language": "cobol", "code": ""}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "unknown_language");
}

on_both_executors!(
    output_arrives_before_the_program_ends,
    a_client_that_hangs_up_cancels_the_run,
    a_bad_request_is_still_the_error_json
);
