//! `output_encoding: base64` (the exact bytes of a program's output, on execute, batch, sandbox
//! calls and streamed events) and `GET /v1/runs/{id}` (a run while it runs and once it ended,
//! per team, for the retention the service keeps results).

use base64::Engine;
use serde_json::{json, Value};

use crate::helpers::*;

/// What the programs below write: not UTF-8, a NUL, no final newline.
const OUT: &[u8] = b"A\xff\xfe\x00B\xc3";
const ERR: &[u8] = b"\x80err";
const PROGRAM: &str =
    "import sys\nsys.stdout.buffer.write(b'A\\xff\\xfe\\x00B\\xc3')\nsys.stderr.buffer.write(b'\\x80err')\n";

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn unb64(v: &Value) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(v.as_str().unwrap_or_else(|| panic!("not a string: {v}")))
        .unwrap()
}

async fn base64_output_is_the_exact_bytes_and_text_stays_the_default(target: &str) {
    let Some(app) = app_for(target).await else {
        return;
    };
    let body = json!({"executor": target, "language": "python", "code": PROGRAM});
    let r = app.run(body.clone()).await;
    assert_eq!(r["stdout"], "A\u{fffd}\u{fffd}\u{0}B\u{fffd}", "{r}");
    assert_eq!(r["stderr"], "\u{fffd}err", "{r}");
    let mut asked = body.clone();
    asked["output_encoding"] = json!("base64");
    let r = app.run(asked).await;
    assert_eq!(
        (&r["status"], &r["stdout"], &r["stderr"]),
        (&json!("ok"), &json!(b64(OUT)), &json!(b64(ERR))),
        "{r}"
    );
    // A compiled language's compile step answers in the same encoding.
    let r = app
        .run(json!({"executor": target, "language": "c", "code": "int main() { return x; }", "output_encoding": "base64"}))
        .await;
    assert_eq!(r["status"], "compile_error", "{r}");
    let diagnostics = String::from_utf8(unb64(&r["compile"]["stderr"])).unwrap();
    assert!(
        diagnostics.contains("main.c:1:21: error: "),
        "{diagnostics}"
    );
    assert!(diagnostics.contains("undeclared"), "{diagnostics}");
}

async fn a_batch_answers_each_item_in_its_own_encoding(target: &str) {
    let Some(app) = app_for(target).await else {
        return;
    };
    let item = json!({"executor": target, "language": "python", "code": PROGRAM});
    let mut base64_item = item.clone();
    base64_item["output_encoding"] = json!("base64");
    let r = client()
        .post(app.url("/v1/execute/batch"))
        .json(&json!({"requests": [base64_item, item]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    let results = v["results"].as_array().unwrap();
    assert_eq!(unb64(&results[0]["stdout"]), OUT, "{v}");
    assert_eq!(unb64(&results[0]["stderr"]), ERR, "{v}");
    assert_eq!(
        results[1]["stdout"], "A\u{fffd}\u{fffd}\u{0}B\u{fffd}",
        "{v}"
    );
}

async fn a_sandbox_call_and_its_stream_carry_the_exact_bytes(target: &str) {
    let Some(app) = app_for(target).await else {
        return;
    };
    let id = create_sandbox_with(app, json!({"executor": target, "ttl_seconds": 300})).await;
    let call = json!({"language": "python", "code": PROGRAM, "output_encoding": "base64"});
    let r = sandbox_call_ok(app, &id, call.clone()).await;
    assert_eq!(
        (unb64(&r["stdout"]), unb64(&r["stderr"])),
        (OUT.to_vec(), ERR.to_vec()),
        "{r}"
    );
    // Streamed: each event's data is base64 of its chunk, and the chunks add up to the bytes.
    let resp = client()
        .post(app.url(&format!("/v1/sandboxes/{id}/execute")))
        .header("Accept", "text/event-stream")
        .json(&call)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let events = read_events(resp, |e| e.event == "result").await;
    let joined = |name: &str| -> Vec<u8> {
        events
            .iter()
            .filter(|e| e.event == name)
            .flat_map(|e| unb64(&e.data["data"]))
            .collect()
    };
    assert_eq!(
        (joined("stdout"), joined("stderr")),
        (OUT.to_vec(), ERR.to_vec())
    );
    let result = &events.last().unwrap().data;
    assert_eq!(unb64(&result["stdout"]), OUT, "{result}");
    client()
        .delete(app.url(&format!("/v1/sandboxes/{id}")))
        .send()
        .await
        .unwrap();
}

/// A streamed one-shot run: base64 events, and the run seen `running` by its id (the answer's
/// `Execbox-Run-Id` header) while it runs, then `finished` with the very result it answered.
async fn a_run_is_running_then_finished_with_the_result_it_answered(target: &str) {
    let Some(app) = app_for(target).await else {
        return;
    };
    let code = "import sys, time\nsys.stdout.buffer.write(b'\\xff1\\n'); sys.stdout.flush()\ntime.sleep(1.5)\nsys.stdout.buffer.write(b'2\\n')\n";
    let resp = client()
        .post(app.url("/v1/execute"))
        .header("Accept", "text/event-stream")
        .json(&json!({"executor": target, "language": "python", "code": code, "output_encoding": "base64"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let id = resp.headers()["execbox-run-id"]
        .to_str()
        .unwrap()
        .to_string();
    let mut events = Vec::new();
    let mut resp = resp;
    // Read up to the first output event, then ask for the run while it still sleeps.
    let mut buf = String::new();
    while !buf.contains("event: stdout") {
        let chunk = resp.chunk().await.unwrap().expect("the stream went on");
        buf.push_str(&String::from_utf8_lossy(&chunk));
    }
    let (status, live) = app.get(&format!("/v1/runs/{id}")).await;
    assert_eq!(status, 200, "{live}");
    assert_eq!(
        (
            &live["id"],
            &live["state"],
            &live["language"],
            &live["executor"],
            &live["policy"]
        ),
        (
            &json!(id),
            &json!("running"),
            &json!("python"),
            &json!(target),
            &json!("default")
        ),
        "{live}"
    );
    assert_eq!(
        (&live["result"], &live["ended_at"], &live["sandbox_id"]),
        (&Value::Null, &Value::Null, &Value::Null),
        "{live}"
    );
    events.extend(read_events(resp, |e| e.event == "result").await);
    let first = buf
        .split("data: ")
        .nth(1)
        .and_then(|d| d.split("\n\n").next())
        .unwrap();
    let first: Value = serde_json::from_str(first).unwrap();
    let mut out = unb64(&first["data"]);
    out.extend(
        events
            .iter()
            .filter(|e| e.event == "stdout")
            .flat_map(|e| unb64(&e.data["data"])),
    );
    assert_eq!(out, b"\xff1\n2\n");
    let answered = events.last().unwrap().data.clone();
    assert_eq!(answered["id"], id);
    let (status, ended) = app.get(&format!("/v1/runs/{id}")).await;
    assert_eq!(status, 200, "{ended}");
    assert_eq!(
        (&ended["state"], &ended["output_encoding"], &ended["error"]),
        (&json!("finished"), &json!("base64"), &Value::Null),
        "{ended}"
    );
    assert_eq!(ended["result"], answered, "the kept result is the answer");
    assert!(
        ended["ended_at"].as_str().unwrap().ends_with('Z'),
        "{ended}"
    );

    // A JSON answer names its run too; a sandbox call's run names its sandbox.
    let r = client()
        .post(app.url("/v1/execute"))
        .json(&json!({"executor": target, "language": "bash", "code": "echo hi"}))
        .send()
        .await
        .unwrap();
    let header = r.headers()["execbox-run-id"].to_str().unwrap().to_string();
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["id"], header);
    let (_, v) = app.get(&format!("/v1/runs/{header}")).await;
    assert_eq!(
        (&v["result"], &v["output_encoding"]),
        (&body, &json!("utf8")),
        "{v}"
    );
}

async fn an_unknown_run_is_not_found(target: &str) {
    let Some(app) = app_for(target).await else {
        return;
    };
    let (status, v) = app
        .get("/v1/runs/00000000-0000-4000-8000-000000000000")
        .await;
    assert_eq!(
        (status, &v["error"]["code"]),
        (404, &json!("run_not_found")),
        "{v}"
    );
}

on_both_executors!(
    base64_output_is_the_exact_bytes_and_text_stays_the_default,
    a_batch_answers_each_item_in_its_own_encoding,
    a_sandbox_call_and_its_stream_carry_the_exact_bytes,
    a_run_is_running_then_finished_with_the_result_it_answered,
    an_unknown_run_is_not_found,
);

/// Another team's run is as missing as one that never was; a run past the retention is
/// `run_expired`; a cancelled run is shown as such.
#[tokio::test]
async fn runs_belong_to_their_team_and_expire_after_the_retention() {
    needs_root!();
    let dir = tempfile::tempdir().unwrap();
    let (alpha, beta) = (
        crate::auth::create_key(dir.path(), "alpha"),
        crate::auth::create_key(dir.path(), "beta"),
    );
    let app = TestApp::start_in(
        &format!("runs-{}", std::process::id()),
        dir.path(),
        &[
            ("EXECBOX_AUTH", "api-key"),
            ("EXECBOX_DOCKER__ENABLED", "false"),
            ("EXECBOX_RUNS__RESULT_RETENTION_SECONDS", "2"),
        ],
    );
    let get = |key: &str, id: &str| {
        let req = client()
            .get(app.url(&format!("/v1/runs/{id}")))
            .bearer_auth(key);
        async move {
            let r = req.send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let r: Value = client()
        .post(app.url("/v1/execute"))
        .bearer_auth(&alpha)
        .json(&json!({"language": "python", "code": "print(7)"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = s(&r, "id");
    let (status, v) = get(&alpha, &id).await;
    assert_eq!(
        (status, &v["state"], &v["result"]["stdout"]),
        (200, &json!("finished"), &json!("7\n")),
        "{v}"
    );
    let (status, v) = get(&beta, &id).await;
    assert_eq!(
        (status, &v["error"]["code"]),
        (404, &json!("run_not_found")),
        "{v}"
    );

    // Cancelled: the client hangs up on a streamed run.
    let resp = client()
        .post(app.url("/v1/execute"))
        .bearer_auth(&alpha)
        .header("Accept", "text/event-stream")
        .json(&json!({"language": "bash", "code": "echo up; sleep 30"}))
        .send()
        .await
        .unwrap();
    let cancelled = resp.headers()["execbox-run-id"]
        .to_str()
        .unwrap()
        .to_string();
    read_events(resp, |e| e.event == "stdout").await;
    let mut seen = Value::Null;
    for _ in 0..50 {
        let (status, v) = get(&alpha, &cancelled).await;
        if status == 200 && v["state"] == "cancelled" {
            seen = v;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(
        (&seen["state"], &seen["result"], &seen["error"]),
        (&json!("cancelled"), &Value::Null, &Value::Null),
        "{seen}"
    );

    tokio::time::sleep(std::time::Duration::from_millis(3200)).await;
    for run in [&id, &cancelled] {
        let (status, v) = get(&alpha, run).await;
        assert_eq!(
            (status, &v["error"]["code"]),
            (404, &json!("run_expired")),
            "{v}"
        );
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("kept for 2 s (runs.result_retention_seconds)"),
            "{v}"
        );
    }
}
