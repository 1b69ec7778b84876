//! Per-team run quota and the audit log of runs.

use std::time::Duration;

use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn a_team_over_its_run_quota_gets_429_and_every_run_is_audited() {
    needs_root!();
    require_root();
    let app = TestApp::start(
        &format!("quota-{}", std::process::id()),
        &[("EXECBOX_QUOTAS__MAX_CONCURRENT_RUNS_PER_TEAM", "1")],
    );
    let url = app.url("/v1/execute");
    let long = tokio::spawn(async move {
        let body =
            json!({"language": "python", "code": "import time; time.sleep(1.5); print('done')"});
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
    tokio::time::sleep(Duration::from_millis(500)).await;
    let r = client()
        .post(app.url("/v1/execute"))
        .json(&json!({"language": "bash", "code": "echo hi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(
        r.headers().get("retry-after").map(|v| v.to_str().unwrap()),
        Some("1")
    );
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "quota_exceeded");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("max_concurrent_runs_per_team"),
        "{v}"
    );
    let first = long.await.unwrap();
    assert_eq!(first["stdout"], "done\n");
    // The slot is free again.
    let again = app.run(json!({"language": "bash", "code": "exit 3"})).await;
    assert_eq!(again["status"], "error");

    // Both finished runs are in the audit log, with their team, status and usage; no code kept.
    let db = rusqlite::Connection::open(app.data_dir.join("execbox.db")).unwrap();
    let mut stmt = db
        .prepare("SELECT r.id, t.name, r.language, r.status, r.wall_ms, r.code FROM runs r JOIN teams t ON t.id = r.team_id ORDER BY r.created_at, r.status DESC")
        .unwrap();
    let rows: Vec<(String, String, String, String, i64, Option<String>)> = stmt
        .query_map([], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
            ))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let ids: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    assert!(
        ids.contains(&first["id"].as_str().unwrap())
            && ids.contains(&again["id"].as_str().unwrap()),
        "{rows:?}"
    );
    assert_eq!(rows.len(), 2, "the refused run is not a run: {rows:?}");
    for (_, team, _, status, wall, code) in &rows {
        assert_eq!(team, "default");
        assert!(status == "ok" || status == "error");
        assert!(*wall > 0);
        assert_eq!(code, &None);
    }
}
