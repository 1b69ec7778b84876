//! Bad input gets the error JSON with a stable code, and the right status.

use serde_json::{json, Value};

use crate::helpers::*;

async fn post_raw(body: &str, content_type: &str) -> (u16, Value) {
    let app = spawn_app();
    let r = client()
        .post(app.url("/v1/execute"))
        .header("content-type", content_type)
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

fn code(v: &Value) -> &str {
    assert!(
        v["error"]["message"].as_str().is_some_and(|m| m.len() > 10),
        "no message in {v}"
    );
    v["error"]["code"].as_str().unwrap()
}

#[tokio::test]
async fn malformed_json_is_400() {
    needs_root!();
    let (status, v) = post_raw("{\"language\": ", "application/json").await;
    assert_eq!((status, code(&v)), (400, "malformed_json"));
}

#[tokio::test]
async fn missing_or_unknown_fields_are_400() {
    needs_root!();
    let (status, v) = post_raw("{\"code\": \"print(1)\"}", "application/json").await;
    assert_eq!((status, code(&v)), (400, "invalid_request"));
    assert!(
        v["error"]["message"].as_str().unwrap().contains("language"),
        "{v}"
    );
    let (status, v) = post_raw(
        "{\"language\":\"python\",\"code\":\"\",\"timeout\":5}",
        "application/json",
    )
    .await;
    assert_eq!((status, code(&v)), (400, "invalid_request"));
}

#[tokio::test]
async fn wrong_content_type_is_415() {
    needs_root!();
    let (status, v) = post_raw("{}", "text/plain").await;
    assert_eq!((status, code(&v)), (415, "unsupported_media_type"));
}

#[tokio::test]
async fn unknown_language_executor_and_policy_say_which() {
    needs_root!();
    let app = spawn_app();
    let (status, v) = app.execute(json!({"language": "cobol", "code": ""})).await;
    assert_eq!((status, code(&v)), (400, "unknown_language"));
    assert!(
        v["error"]["message"].as_str().unwrap().contains("python"),
        "lists what exists: {v}"
    );
    let (status, v) = app
        .execute(json!({"language": "python", "code": "", "executor": "vm"}))
        .await;
    assert_eq!((status, code(&v)), (400, "unknown_executor"));
    let (status, v) = app
        .execute(json!({"language": "python", "code": "", "policy": "nope"}))
        .await;
    assert_eq!((status, code(&v)), (404, "unknown_policy"));
}

#[tokio::test]
async fn a_limit_over_the_policy_maximum_is_422_naming_field_and_maximum() {
    needs_root!();
    let app = spawn_app();
    let (status, v) = app
        .execute(
            json!({"language": "python", "code": "", "policy": "strict", "limits": {"pids": 33}}),
        )
        .await;
    assert_eq!((status, code(&v)), (422, "limit_exceeded"));
    assert_eq!(
        v["error"]["message"],
        "limits.pids = 33 exceeds the maximum 32 of policy \"strict\""
    );
    let (status, v) = app
        .execute(json!({"language": "python", "code": "", "limits": {"memory": 1}}))
        .await;
    assert_eq!(
        (status, code(&v)),
        (400, "invalid_request"),
        "unknown limit names are refused: {v}"
    );
}

#[tokio::test]
async fn traversal_and_bad_encodings_in_files_are_400() {
    needs_root!();
    let app = spawn_app();
    for path in ["../escape.py", "/etc/passwd", "a/../../b", "main.py"] {
        let (status, v) = app.execute(json!({"language": "python", "code": "", "files": [{"path": path, "content": "x"}]})).await;
        assert_eq!((status, code(&v)), (400, "invalid_file"), "{path}: {v}");
    }
    let (status, v) = app.execute(json!({"language": "python", "code": "", "files": [{"path": "a", "content": "!!", "encoding": "base64"}]})).await;
    assert_eq!((status, code(&v)), (400, "invalid_file"));
}

#[tokio::test]
async fn input_larger_than_the_disk_limit_is_422() {
    needs_root!();
    let app = spawn_app();
    let big = "x".repeat(200_000);
    let (status, v) = app
        .execute(json!({"language": "python", "code": big, "limits": {"disk_bytes": 65536}}))
        .await;
    assert_eq!((status, code(&v)), (422, "input_too_large"));
}

#[tokio::test]
async fn a_body_over_the_cap_is_413() {
    needs_root!();
    let app = spawn_app();
    let body = json!({"language": "python", "code": "x".repeat(11 << 20)});
    let (status, v) = app.execute(body).await;
    assert_eq!((status, code(&v)), (413, "body_too_large"));
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_the_error_json() {
    needs_root!();
    let app = spawn_app();
    let (status, v) = app.get("/v1/nothing").await;
    assert_eq!((status, code(&v)), (404, "not_found"));
    let (status, v) = app.get("/v1/execute").await;
    assert_eq!((status, code(&v)), (405, "method_not_allowed"));
}
