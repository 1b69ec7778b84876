//! `POST /v1/execute/batch`: results in request order, each item judged alone.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::*;

async fn post(app: &TestApp, body: Value) -> (u16, Value) {
    let r = client()
        .post(app.url("/v1/execute/batch"))
        .json(&body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

#[tokio::test]
async fn results_come_back_in_request_order_with_per_item_errors() {
    needs_root!();
    let app = spawn_app();
    let mut requests = vec![
        json!({"language": "python", "code": "import time; time.sleep(0.3); print('first')"}),
        json!({"language": "bash", "code": "echo second; exit 3"}),
        json!({"language": "cobol", "code": ""}),
        json!({"language": "python", "code": "import time; time.sleep(30)", "limits": {"wall_time_ms": 500}}),
        json!({"language": "c", "code": "int main() { return nope; }"}),
        json!({"language": "python", "code": "print('sixth')", "limits": {"pids": 100000}}),
    ];
    if app.get("/readyz").await.1["executors"]["docker"]["ready"] == true {
        requests.push(
            json!({"language": "python", "code": "print('from docker')", "executor": "docker"}),
        );
    }
    let n = requests.len();
    let (status, v) = post(app, json!({"requests": requests, "concurrency": 3})).await;
    assert_eq!(status, 200, "{v}");
    let r = v["results"].as_array().unwrap();
    assert_eq!(r.len(), n);
    assert_eq!(
        (r[0]["status"].as_str(), r[0]["stdout"].as_str()),
        (Some("ok"), Some("first\n"))
    );
    assert_eq!(
        (r[1]["status"].as_str(), r[1]["exit_code"].as_i64()),
        (Some("error"), Some(3))
    );
    assert_eq!(r[2]["error"]["code"], "unknown_language");
    assert_eq!(r[3]["status"], "timeout");
    assert_eq!(r[4]["status"], "compile_error");
    assert_eq!(r[5]["error"]["code"], "limit_exceeded");
    if n == 7 {
        assert_eq!(
            (r[6]["executor"].as_str(), r[6]["stdout"].as_str()),
            (Some("docker"), Some("from docker\n"))
        );
    }
}

#[tokio::test]
async fn concurrency_bounds_the_batch_and_bad_batches_are_422() {
    needs_root!();
    let app = spawn_app();
    let sleepers: Vec<Value> = (0..4)
        .map(|_| json!({"language": "python", "code": "import time; time.sleep(0.4)"}))
        .collect();
    let started = Instant::now();
    let (status, v) = post(app, json!({"requests": sleepers, "concurrency": 1})).await;
    assert_eq!(status, 200, "{v}");
    assert!(v["results"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["status"] == "ok"));
    // One at a time: four 0.4 s sleeps cannot finish sooner than 1.6 s (a lower bound only).
    assert!(
        started.elapsed() >= Duration::from_millis(1600),
        "ran {:?}",
        started.elapsed()
    );
    for bad in [
        json!({"requests": []}),
        json!({"requests": [{"language": "bash", "code": "true"}], "concurrency": 0}),
    ] {
        let (status, v) = post(app, bad).await;
        assert_eq!(
            (status, v["error"]["code"].as_str()),
            (422, Some("invalid_batch")),
            "{v}"
        );
    }
    let (status, v) = post(app, json!({"request": []})).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (400, Some("invalid_request"))
    );
}
