//! The web console's files as HTTP serves them (types, validators, the security policy), open
//! without a key under `auth = "api-key"`, and `GET /v1/team`, the route it learns its team and
//! quota use from. The console in a browser is tests/console.rs.

use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::*;

#[tokio::test]
async fn the_console_is_served_with_its_type_a_validator_and_a_strict_policy() {
    needs_root!();
    let app = spawn_app();
    let r = client().get(app.url("/")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let h = r.headers().clone();
    assert_eq!(h["content-type"], "text/html; charset=utf-8");
    assert_eq!(h["cache-control"], "no-cache");
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["referrer-policy"], "no-referrer");
    let csp = h["content-security-policy"].to_str().unwrap();
    for directive in [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(directive), "{csp}");
    }
    let page = r.text().await.unwrap();
    assert!(
        page.contains(r#"<script type="module" src="/console/app.js">"#),
        "{page}"
    );

    // A module, by its own type, and a second GET with its validator is a 304 without a body.
    let r = client()
        .get(app.url("/console/app.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-type"],
        "text/javascript; charset=utf-8"
    );
    let etag = r.headers()["etag"].to_str().unwrap().to_string();
    assert!(r.text().await.unwrap().contains("from './api.js'"));
    let r = client()
        .get(app.url("/console/app.js"))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);
    assert_eq!(r.headers()["etag"].to_str().unwrap(), etag);
    assert_eq!(r.bytes().await.unwrap().len(), 0);
    let css = client()
        .get(app.url("/console/console.css"))
        .send()
        .await
        .unwrap();
    assert_eq!(css.headers()["content-type"], "text/css; charset=utf-8");

    // An unknown file is the API's error answer.
    let (status, v) = app.get("/console/nope.js").await;
    assert_eq!(status, 404);
    assert_eq!(v["error"]["code"], "not_found");
    assert_eq!(
        v["error"]["message"],
        "the console has no file \"nope.js\"; open / for the console"
    );
}

#[tokio::test]
async fn without_auth_the_team_is_default_with_its_quota_use() {
    needs_root!();
    let app = spawn_app();
    let (status, v) = app.get("/v1/team").await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["name"], "default");
    assert_eq!(v["auth"], "none");
    // The shared service allows 1000 sandboxes and leaves the run quota off.
    assert_eq!(v["quotas"]["sandboxes"]["limit"], 1000);
    assert_eq!(v["quotas"]["concurrent_runs"]["limit"], Value::Null);
    // Without auth the one team may hold every agent slot (agent.max_concurrent_runs: 4).
    assert_eq!(v["quotas"]["agent_runs"]["limit"], 4);
}

/// Under `auth = "api-key"` the page loads without a key (it asks for one), every `/v1` route
/// still wants one, and `/v1/team` names the key's team and counts its own use only.
#[tokio::test]
async fn with_api_keys_the_console_is_open_and_the_team_route_counts_the_keys_team() {
    needs_root!();
    let app = TestApp::start(
        &format!("console-team-{}", std::process::id()),
        &[
            ("EXECBOX_AUTH", "api-key"),
            ("EXECBOX_DOCKER__ENABLED", "false"),
            ("EXECBOX_QUOTAS__MAX_SANDBOXES_PER_TEAM", "2"),
            ("EXECBOX_QUOTAS__MAX_CONCURRENT_RUNS_PER_TEAM", "3"),
        ],
    );
    for path in ["/", "/console/api.js"] {
        let r = client().get(app.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
    }
    let r = client().get(app.url("/v1/team")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "unauthorized");

    let alpha = create_key(&app.data_dir, "alpha");
    let beta = create_key(&app.data_dir, "beta");
    let team = |key: String| {
        let url = app.url("/v1/team");
        async move {
            let r = client().get(url).bearer_auth(key).send().await.unwrap();
            assert_eq!(r.status(), 200);
            r.json::<Value>().await.unwrap()
        }
    };
    let v = team(alpha.clone()).await;
    assert_eq!(
        v,
        json!({"name": "alpha", "auth": "api-key", "quotas": {
            "concurrent_runs": {"used": 0, "limit": 3},
            "sandboxes": {"used": 0, "limit": 2},
            "agent_runs": {"used": 0, "limit": 2},
        }})
    );

    // alpha makes a sandbox and runs something long; beta's use stays at nothing.
    let r = client()
        .post(app.url("/v1/sandboxes"))
        .bearer_auth(&alpha)
        .json(&json!({"ttl_seconds": 600}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let url = app.url("/v1/execute");
    let key = alpha.clone();
    let long = tokio::spawn(async move {
        client()
            .post(url)
            .bearer_auth(key)
            .json(&json!({"language": "bash", "code": "sleep 2; echo done"}))
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()
    });
    tokio::time::sleep(Duration::from_millis(700)).await;
    let v = team(alpha.clone()).await;
    assert_eq!(v["quotas"]["sandboxes"], json!({"used": 1, "limit": 2}));
    assert_eq!(
        v["quotas"]["concurrent_runs"],
        json!({"used": 1, "limit": 3})
    );
    let v = team(beta).await;
    assert_eq!(v["name"], "beta");
    assert_eq!(v["quotas"]["sandboxes"]["used"], 0);
    assert_eq!(v["quotas"]["concurrent_runs"]["used"], 0);
    assert_eq!(long.await.unwrap()["stdout"], "done\n");
    let v = team(alpha).await;
    assert_eq!(v["quotas"]["concurrent_runs"]["used"], 0);
}
