//! `/openapi.json`: an OpenAPI 3.1 document generated from the code, describing exactly the
//! routes the router serves, the run contract's schemas and the error answers routes really give.

use std::collections::BTreeSet;

use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::*;

const METHODS: &[&str] = &[
    "get", "put", "post", "delete", "patch", "head", "options", "trace",
];

async fn document() -> Value {
    let r = client()
        .get(spawn_app().url("/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    r.json().await.expect("the document is JSON")
}

/// Every (METHOD, path) the document describes, with its operation.
fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for m in METHODS {
            if let Some(op) = item.get(*m) {
                ops.push((m.to_uppercase(), path.clone(), op.clone()));
            }
        }
    }
    ops
}

fn response(op: &Value, status: u16) -> Option<&Value> {
    op["responses"].get(status.to_string())
}

#[tokio::test]
async fn the_document_is_openapi_3_1_titled_execbox_at_this_version() {
    needs_root!();
    let doc = document().await;
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1."),
        "{}",
        doc["openapi"]
    );
    assert_eq!(doc["info"]["title"], "execbox");
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
}

#[tokio::test]
async fn the_document_describes_exactly_the_routes_the_router_is_built_from() {
    needs_root!();
    let doc = document().await;
    let documented: BTreeSet<(String, String)> = operations(&doc)
        .into_iter()
        .map(|(m, p, _)| (m, p))
        .collect();
    // OpenAPI has no catch-all parameter: axum's `{*path}` is `{path}` in the document.
    let routed: BTreeSet<(String, String)> = execbox::api::routes()
        .iter()
        .map(|r| (r.method.to_string(), r.path.replace("{*", "{")))
        .collect();
    assert_eq!(documented, routed);
}

/// Each documented operation, called with no body and an id that does not exist, reaches a
/// handler (not the router's 404 `not_found` or 405 `method_not_allowed`), and answers a status
/// its description lists.
#[tokio::test]
async fn every_documented_operation_is_served_and_answers_a_documented_status() {
    needs_root!();
    let app = spawn_app();
    let doc = document().await;
    let fallback = |status: u16, body: &Value| {
        matches!(
            (status, body["error"]["code"].as_str()),
            (404, Some("not_found")) | (405, Some("method_not_allowed"))
        )
    };

    // The check can fail: what the router does not serve is told apart.
    for (method, path) in [
        (Method::GET, "/v1/nope"),
        (Method::PATCH, "/v1/execute"),
        (Method::POST, "/healthz"),
    ] {
        let r = client()
            .request(method, app.url(path))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        assert!(
            fallback(status, &r.json().await.unwrap()),
            "{path} answered {status}"
        );
    }

    let ops = operations(&doc);
    assert_eq!(ops.len(), execbox::api::routes().len());
    for (method, path, op) in ops {
        let url = path
            .replace("{id}", "sb_nosuch")
            .replace("{path}", "dir/a.txt");
        let r = client()
            .request(
                Method::from_bytes(method.as_bytes()).unwrap(),
                app.url(&url),
            )
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        assert!(
            !fallback(status, &body),
            "{method} {path}: the router does not serve it: {body}"
        );
        assert!(
            response(&op, status).is_some(),
            "{method} {path} answered {status}, which it does not document: {body}"
        );
    }
}

/// Real error answers: each status is documented for its route, with the error schema, and the
/// code is named in the response's description.
#[tokio::test]
async fn error_answers_are_documented_with_their_status_schema_and_code() {
    needs_root!();
    let app = spawn_app();
    let doc = document().await;
    let cases: &[(Method, &str, &str, &str, &str, u16, &str)] = &[
        (
            Method::POST,
            "/v1/execute",
            "/v1/execute",
            "application/json",
            r#"{"language":"nope","code":""}"#,
            400,
            "unknown_language",
        ),
        (
            Method::POST,
            "/v1/execute",
            "/v1/execute",
            "application/json",
            r#"{"language":"python","code":"","policy":"nope"}"#,
            404,
            "unknown_policy",
        ),
        (
            Method::POST,
            "/v1/execute",
            "/v1/execute",
            "text/plain",
            "{}",
            415,
            "unsupported_media_type",
        ),
        (
            Method::POST,
            "/v1/execute",
            "/v1/execute",
            "application/json",
            r#"{"language":"python","code":"","limits":{"wall_time_ms":999999999999}}"#,
            422,
            "limit_exceeded",
        ),
        (
            Method::GET,
            "/v1/sandboxes",
            "/v1/sandboxes?owner=ana",
            "",
            "",
            400,
            "invalid_request",
        ),
        (
            Method::POST,
            "/v1/sandboxes",
            "/v1/sandboxes",
            "application/json",
            r#"{"ttl_seconds":0}"#,
            422,
            "invalid_sandbox",
        ),
        (
            Method::GET,
            "/v1/sandboxes/{id}",
            "/v1/sandboxes/sb_nosuch",
            "",
            "",
            404,
            "sandbox_not_found",
        ),
        (
            Method::POST,
            "/v1/sandboxes/{id}/keepalive",
            "/v1/sandboxes/sb_nosuch/keepalive",
            "application/json",
            "{bad",
            400,
            "malformed_json",
        ),
        (
            Method::GET,
            "/v1/sandboxes/{id}/files",
            "/v1/sandboxes/sb_nosuch/files?depth=1",
            "",
            "",
            400,
            "invalid_request",
        ),
        (
            Method::GET,
            "/v1/sandboxes/{id}/files/{path}",
            "/v1/sandboxes/sb_nosuch/files/a.txt",
            "",
            "",
            404,
            "sandbox_not_found",
        ),
    ];
    for (method, path, url, content_type, body, status, code) in cases {
        let mut req = client()
            .request(method.clone(), app.url(url))
            .body(body.to_string());
        if !content_type.is_empty() {
            req = req.header("content-type", *content_type);
        }
        let r = req.send().await.unwrap();
        let got_status = r.status().as_u16();
        let got: Value = r.json().await.unwrap();
        assert_eq!(
            (got_status, got["error"]["code"].as_str()),
            (*status, Some(*code)),
            "{method} {url}: {got}"
        );
        assert!(
            got["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{got}"
        );
        let op = &doc["paths"][path][method.as_str().to_lowercase()];
        let documented = response(op, *status)
            .unwrap_or_else(|| panic!("{method} {path} does not document {status}"));
        assert_eq!(
            documented["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/ErrorBody",
            "{method} {path} {status}"
        );
        let description = documented["description"].as_str().unwrap();
        assert!(
            description.contains(&format!("`{code}`")),
            "{method} {path} {status} does not name {code}: {description}"
        );
    }
}

#[tokio::test]
async fn run_result_and_status_are_exactly_the_contract() {
    needs_root!();
    let doc = document().await;
    let schemas = &doc["components"]["schemas"];
    let contract: BTreeSet<&str> = [
        "id",
        "status",
        "exit_code",
        "signal",
        "stdout",
        "stderr",
        "stdout_truncated",
        "stderr_truncated",
        "usage",
        "compile",
        "executor",
        "policy",
        "language",
        "runtime_version",
    ]
    .into();
    let fields: BTreeSet<&str> = schemas["RunResult"]["properties"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    // A context call's result adds its display `results` and `error`, sent for those only.
    let context_only: BTreeSet<&str> = ["results", "error"].into();
    assert_eq!(fields, &contract | &context_only);
    // Every other field is always sent, null where there is nothing.
    let required: BTreeSet<&str> = schemas["RunResult"]["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(required, contract);
    assert_eq!(
        schemas["Status"]["enum"],
        json!([
            "ok",
            "error",
            "timeout",
            "cpu_limit",
            "memory_limit",
            "killed",
            "compile_error"
        ])
    );
    assert_eq!(
        schemas["ErrorBody"]["properties"]["error"]["$ref"],
        "#/components/schemas/ErrorDetail"
    );
    let detail: BTreeSet<&str> = schemas["ErrorDetail"]["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(detail, ["code", "message"].into());

    for path in ["/v1/execute", "/v1/sandboxes/{id}/execute"] {
        let ok = &doc["paths"][path]["post"]["responses"]["200"];
        assert_eq!(
            ok["content"]["application/json"]["schema"]["$ref"], "#/components/schemas/RunResult",
            "{path}"
        );
        assert!(
            ok["content"].get("text/event-stream").is_some(),
            "{path} does not document the event stream"
        );
        let description = ok["description"].as_str().unwrap();
        for event in [
            "event: stdout",
            "event: stderr",
            "event: result",
            "event: error",
        ] {
            assert!(
                description.contains(event),
                "{path} does not describe {event}"
            );
        }
    }
}

/// Under `auth = "none"` no route needs anything: the document names no scheme and no 401.
#[tokio::test]
async fn without_auth_the_document_asks_for_no_key() {
    needs_root!();
    let doc = document().await;
    assert!(doc.get("security").is_none(), "{}", doc["security"]);
    assert!(
        doc["components"].get("securitySchemes").is_none(),
        "{}",
        doc["components"]["securitySchemes"]
    );
    for (method, path, op) in operations(&doc) {
        assert!(op.get("security").is_none(), "{method} {path}");
        assert!(
            response(&op, 401).is_none(),
            "{method} {path} documents a 401 it cannot answer"
        );
    }
    // And the service indeed answers without one.
    let r = client()
        .get(spawn_app().url("/v1/sandboxes"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
}

#[tokio::test]
async fn with_api_keys_bearer_auth_covers_every_route_but_the_probes_metrics_and_the_document() {
    needs_root!();
    let app = TestApp::start(
        &format!("openapi-key-{}", std::process::id()),
        &[
            ("EXECBOX_AUTH", "api-key"),
            ("EXECBOX_DOCKER__ENABLED", "false"),
        ],
    );
    let r = client().get(app.url("/openapi.json")).send().await.unwrap();
    let doc: Value = r.json().await.unwrap();
    assert_eq!(
        doc["components"]["securitySchemes"]["api_key"],
        json!({"type": "http", "scheme": "bearer", "description": doc["components"]["securitySchemes"]["api_key"]["description"]})
    );
    assert_eq!(doc["security"], json!([{"api_key": []}]));
    let open = ["/healthz", "/readyz", "/metrics", "/openapi.json"];
    for (method, path, op) in operations(&doc) {
        if open.contains(&path.as_str()) {
            assert_eq!(op["security"], json!([]), "{method} {path} should be open");
            assert!(response(&op, 401).is_none(), "{method} {path}");
        } else {
            assert!(
                op.get("security").is_none(),
                "{method} {path} should take the document's bearer requirement"
            );
            let unauthorized =
                response(&op, 401).unwrap_or_else(|| panic!("{method} {path} has no 401"));
            assert!(unauthorized["description"]
                .as_str()
                .unwrap()
                .contains("`unauthorized`"));
        }
    }
    let r = client().get(app.url("/v1/sandboxes")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
}

/// Code generators name a function per operationId; OpenAPI requires each response to say what it is.
#[tokio::test]
async fn operation_ids_are_unique_and_every_response_is_described() {
    needs_root!();
    let doc = document().await;
    let mut ids = BTreeSet::new();
    for (method, path, op) in operations(&doc) {
        let id = op["operationId"]
            .as_str()
            .unwrap_or_else(|| panic!("{method} {path} has no operationId"));
        assert!(
            ids.insert(id.to_string()),
            "{method} {path}: operationId {id} is used twice"
        );
        for (status, r) in op["responses"].as_object().unwrap() {
            assert!(
                r["description"].as_str().is_some_and(|d| !d.is_empty()),
                "{method} {path} {status} has no description"
            );
        }
    }
}

/// The names the service takes are enums of what it loaded; a sandbox call's body has no
/// `executor` or `policy`, and the service refuses them there.
#[tokio::test]
async fn names_come_from_the_loaded_runtimes_and_policies() {
    needs_root!();
    let app = spawn_app();
    let doc = document().await;
    let schemas = &doc["components"]["schemas"];
    let languages = &schemas["ExecuteRequest"]["properties"]["language"]["enum"];
    for name in [
        "python",
        "py",
        "python3",
        "bash",
        "sh",
        "javascript",
        "js",
        "node",
        "c",
        "cpp",
        "c++",
        "typescript",
        "ts",
        "rust",
        "go",
        "java",
        "ruby",
        "php",
        "perl",
        "lua",
    ] {
        assert!(
            languages.as_array().unwrap().contains(&json!(name)),
            "{name} not in {languages}"
        );
    }
    assert_eq!(
        schemas["ExecuteRequest"]["properties"]["policy"]["enum"],
        json!(["benchmark", "default", "gvisor", "strict", null])
    );
    assert_eq!(
        schemas["ExecuteRequest"]["properties"]["executor"]["enum"],
        json!(["local", "docker", null])
    );
    let call: BTreeSet<&str> = schemas["SandboxCallRequest"]["properties"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        call,
        [
            "args",
            "code",
            "context",
            "env",
            "files",
            "language",
            "limits",
            "output_encoding",
            "stdin"
        ]
        .into()
    );
    assert_eq!(
        schemas["SandboxCallRequest"]["additionalProperties"],
        json!(false)
    );
    // A name outside the enum, even in another case, is refused.
    let (status, v) = app
        .execute(json!({"language": "Python", "code": "print(1)"}))
        .await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (400, Some("unknown_language")),
        "{v}"
    );
    let r = client()
        .post(app.url("/v1/sandboxes"))
        .json(&json!({"ttl_seconds": 60}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = client()
        .post(app.url(&format!("/v1/sandboxes/{id}/execute")))
        .json(&json!({"language": "bash", "code": "true", "policy": "strict"}))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (400, Some("invalid_request")),
        "{v}"
    );
    assert!(
        v["error"]["message"].as_str().unwrap().contains("policy"),
        "{v}"
    );
    client()
        .delete(app.url(&format!("/v1/sandboxes/{id}")))
        .send()
        .await
        .unwrap();
}

/// JSON Schema's `integer` includes `170.0`: the service takes it as 170, and refuses `170.5`.
#[tokio::test]
async fn whole_numbers_written_with_a_zero_fraction_are_integers() {
    needs_root!();
    let app = spawn_app();
    let v = app.run(json!({"language": "bash", "code": "echo ok", "limits": {"wall_time_ms": 5000.0, "pids": 16.0}})).await;
    assert_eq!(
        (v["status"].as_str(), v["stdout"].as_str()),
        (Some("ok"), Some("ok\n")),
        "{v}"
    );
    for bad in [json!(170.5), json!(-1), json!(1e30), json!("170")] {
        let (status, v) = app
            .execute(json!({"language": "bash", "code": "true", "limits": {"wall_time_ms": bad}}))
            .await;
        assert_eq!(
            (status, v["error"]["code"].as_str()),
            (400, Some("invalid_request")),
            "{bad}: {v}"
        );
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("wall_time_ms"),
            "{bad}: {v}"
        );
    }
    let r = client()
        .post(app.url("/v1/sandboxes"))
        .json(&json!({"ttl_seconds": 60.0, "idle_timeout_seconds": 30.0}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let sb: Value = r.json().await.unwrap();
    assert_eq!(sb["idle_timeout_seconds"], 30);
    client()
        .delete(app.url(&format!("/v1/sandboxes/{}", sb["id"].as_str().unwrap())))
        .send()
        .await
        .unwrap();
    let r = client()
        .post(app.url("/v1/sandboxes"))
        .json(&json!({"ttl_seconds": 60.5}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
}
