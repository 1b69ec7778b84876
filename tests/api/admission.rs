//! Admission control under load: a result or a 429 with Retry-After, never a 5xx or a dropped
//! connection, and nothing left behind.

use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn sixty_four_clients_get_a_result_or_a_429() {
    needs_root!();
    require_root();
    let mut app = TestApp::start(
        &format!("adm-{}", std::process::id()),
        &[
            ("EXECBOX_MAX_CONCURRENT_RUNS", "2"),
            ("EXECBOX_MAX_QUEUED_RUNS", "8"),
        ],
    );
    let t = token();
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(120))
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let mut clients = Vec::new();
    for _ in 0..64 {
        let (client, url, t) = (client.clone(), app.url("/v1/execute"), t.clone());
        clients.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            for _ in 0..5 {
                let body = json!({"language": "python", "code": "import time; time.sleep(0.05); print('ok')", "args": [t], "policy": "benchmark"});
                let r = client.post(&url).json(&body).send().await.expect("no connection may be dropped");
                let status = r.status().as_u16();
                let retry_after = r.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string());
                let v: serde_json::Value = r.json().await.expect("every answer is JSON");
                match status {
                    200 => assert_eq!((v["status"].as_str(), v["stdout"].as_str()), (Some("ok"), Some("ok\n")), "{v}"),
                    429 => {
                        assert_eq!(v["error"]["code"], "over_capacity");
                        assert_eq!(retry_after.as_deref(), Some("1"));
                    }
                    other => panic!("unexpected {other}: {v}"),
                }
                seen.push(status);
            }
            seen
        }));
    }
    let mut ok = 0;
    let mut rejected = 0;
    for c in clients {
        for s in c.await.unwrap() {
            if s == 200 {
                ok += 1
            } else {
                rejected += 1
            }
        }
    }
    assert_eq!(ok + rejected, 320);
    assert!(ok >= 10, "only {ok} runs admitted");
    assert!(
        rejected > 0,
        "64 clients against 2 slots + 8 queued must see some 429s"
    );
    let metrics = client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(&format!("execbox_runs_rejected_total {rejected}")),
        "{metrics}"
    );
    assert!(host_processes_with(&t).is_empty());
    // While it runs, the service keeps only its warm sandboxes (local.warm_sandboxes = 2).
    let staged: Vec<_> = std::fs::read_dir(app.data_dir.join("runs").join(&app.instance))
        .unwrap()
        .collect();
    assert!(staged.len() <= 2, "staging dirs left behind: {staged:?}");
    assert!(
        leftover_cgroups(&app.instance).len() <= 2 * 3,
        "{:?}",
        leftover_cgroups(&app.instance)
    );
    let instance = app.instance.clone();
    let data_dir = app.data_dir.clone();
    let exit = tokio::task::spawn_blocking(move || {
        let s = app.terminate();
        (s, app)
    })
    .await
    .unwrap()
    .0;
    assert!(exit.success());
    assert!(
        leftover_cgroups(&instance).is_empty(),
        "{:?}",
        leftover_cgroups(&instance)
    );
    assert!(!data_dir.join("runs").join(&instance).exists());
}
