//! The Piston v2-compatible door, `/piston`: runtimes and execute, with and without a trailing
//! slash, Piston's request fields and its stages' fields over HTTP with real programs.

use base64::Engine;
use serde_json::{json, Value};

use crate::helpers::*;

async fn execute(app: &TestApp, path: &str, body: Value) -> (u16, Value) {
    let r = client()
        .post(app.url(&format!("/piston/api/v2/{path}")))
        .json(&body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

async fn ran(app: &TestApp, body: Value) -> Value {
    let (status, v) = execute(app, "execute", body).await;
    assert_eq!(status, 200, "{v}");
    v
}

#[tokio::test]
async fn runtimes_are_the_probed_languages_under_pistons_names() {
    needs_root!();
    let app = spawn_app();
    let (status, list) = app.get("/piston/api/v2/runtimes").await;
    assert_eq!(status, 200);
    let (status, again) = app.get("/piston/api/v2/runtimes/").await;
    assert_eq!((status, &again), (200, &list));
    let (_, rt) = app.get("/v1/runtimes").await;
    let local: Vec<(String, String)> = rt["runtimes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| {
            Some((
                r["language"].as_str()?.to_string(),
                r["versions"]["local"].as_str()?.to_string(),
            ))
        })
        .collect();
    assert_eq!(list.as_array().unwrap().len(), local.len(), "{list}");
    let python = list
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["language"] == "python")
        .unwrap();
    let probed = &local.iter().find(|(l, _)| l == "python").unwrap().1;
    assert_eq!(
        format!("Python {}", python["version"].as_str().unwrap()),
        *probed
    );
    assert_eq!(python["aliases"], json!(["py", "py3", "python3"]));
    assert!(python.get("runtime").is_none(), "{python}");
    let js = list
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["language"] == "javascript")
        .unwrap();
    assert_eq!(js["runtime"], "node");
    let cpp = list
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["language"] == "c++")
        .unwrap();
    assert_eq!(
        (cpp["aliases"].clone(), cpp["runtime"].clone()),
        (json!(["cpp", "g++"]), json!("gcc"))
    );
}

#[tokio::test]
async fn a_run_answers_pistons_stage_with_output_in_the_order_written() {
    needs_root!();
    let app = spawn_app();
    let body = json!({
        "language": "py",
        "version": "*",
        "files": [
            {"name": "main.py", "content": "import sys, time, helper\nprint(helper.GREETING, sys.argv[1:], flush=True)\ntime.sleep(0.2)\nprint('to stderr', file=sys.stderr, flush=True)\ntime.sleep(0.2)\nprint(input())\nprint(open('data.bin', 'rb').read(), open('file3.code').read())"},
            {"name": "helper.py", "content": "GREETING = 'hi'"},
            {"name": "data.bin", "content": base64::engine::general_purpose::STANDARD.encode([0u8, 1, 2]), "encoding": "base64"},
            {"content": "686578", "encoding": "hex"},
        ],
        "stdin": "from stdin",
        "args": ["a", "b c"],
        "run_timeout": 5000,
        "run_memory_limit": -1,
        "compile_memory_limit": -1,
    });
    // Two pipes have no order between them: the writes to different streams are 200 ms apart.
    let (status, v) = execute(app, "execute/", body.clone()).await;
    assert_eq!(status, 200, "{v}");
    let (status, plain) = execute(app, "execute", body).await;
    assert_eq!(status, 200);
    assert_eq!(plain["run"]["stdout"], v["run"]["stdout"]);
    assert_eq!(v["language"], "python");
    assert!(v.get("compile").is_none(), "{v}");
    let run = &v["run"];
    let stdout = "hi ['a', 'b c']\nfrom stdin\nb'\\x00\\x01\\x02' hex\n";
    assert_eq!(run["stdout"], stdout);
    assert_eq!(run["stderr"], "to stderr\n");
    assert_eq!(
        run["output"],
        "hi ['a', 'b c']\nto stderr\nfrom stdin\nb'\\x00\\x01\\x02' hex\n"
    );
    assert_eq!(
        (
            run["code"].clone(),
            run["signal"].clone(),
            run["status"].clone(),
            run["message"].clone()
        ),
        (json!(0), Value::Null, Value::Null, Value::Null)
    );
    assert!(
        run["cpu_time"].as_u64().unwrap() > 0 && run["wall_time"].as_u64().unwrap() > 0,
        "{run}"
    );
    assert!(run["memory"].as_u64().unwrap() > 1 << 20, "{run}");
    let keys: Vec<&str> = run
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let mut want = [
        "stdout",
        "stderr",
        "output",
        "code",
        "signal",
        "message",
        "status",
        "cpu_time",
        "wall_time",
        "memory",
    ];
    want.sort();
    assert_eq!(keys, want);
}

#[tokio::test]
async fn a_compiled_language_has_a_compile_stage_and_a_failed_one_runs_nothing() {
    needs_root!();
    let app = spawn_app();
    let v = ran(app, json!({"language": "c", "version": "*", "files": [{"name": "prog.c", "content": "#include <stdio.h>\nint main(void) { puts(\"built\"); return 4; }"}]})).await;
    assert_eq!(
        (v["compile"]["code"].clone(), v["compile"]["status"].clone()),
        (json!(0), Value::Null),
        "{v}"
    );
    assert_eq!(v["run"]["stdout"], "built\n");
    assert_eq!(
        (v["run"]["code"].clone(), v["run"]["status"].clone()),
        (json!(4), json!("RE"))
    );
    assert_eq!(v["run"]["message"], "Exited with error status 4");
    let v = ran(
        app,
        json!({"language": "g++", "version": "*", "files": [{"content": "int main( {"}]}),
    )
    .await;
    assert_eq!(v["language"], "c++");
    assert_eq!(
        (v["compile"]["code"].clone(), v["compile"]["status"].clone()),
        (json!(1), json!("RE")),
        "{v}"
    );
    assert!(
        v["compile"]["stderr"].as_str().unwrap().contains("error"),
        "{v}"
    );
    assert_eq!(v["compile"]["output"], v["compile"]["stderr"]);
    assert!(v.get("run").is_none(), "{v}");
}

#[tokio::test]
async fn limits_signals_and_floods_are_pistons_statuses() {
    needs_root!();
    let app = spawn_app();
    let v = ran(app, json!({"language": "bash", "version": "*", "files": [{"content": "sleep 5"}], "run_timeout": 700})).await;
    let run = &v["run"];
    assert_eq!(
        (
            run["status"].clone(),
            run["signal"].clone(),
            run["code"].clone()
        ),
        (json!("TO"), json!("SIGKILL"), Value::Null),
        "{v}"
    );
    assert_eq!(run["message"], "Time limit exceeded (wall clock)");
    let v = ran(app, json!({"language": "python", "version": "*", "files": [{"content": "while True: pass"}], "run_cpu_time": 500, "run_timeout": 20000})).await;
    assert_eq!(
        (v["run"]["status"].clone(), v["run"]["message"].clone()),
        (json!("TO"), json!("Time limit exceeded")),
        "{v}"
    );
    let v = ran(app, json!({"language": "python", "version": "*", "files": [{"content": "import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)"}]})).await;
    assert_eq!(
        (
            v["run"]["status"].clone(),
            v["run"]["signal"].clone(),
            v["run"]["message"].clone()
        ),
        (
            json!("SG"),
            json!("SIGSEGV"),
            json!("Caught fatal signal 11")
        ),
        "{v}"
    );
    let v = ran(app, json!({"language": "python", "version": "*", "files": [{"content": "x = bytearray(200 << 20)\nprint(len(x))"}], "run_memory_limit": 64 << 20})).await;
    assert_eq!(
        (v["run"]["status"].clone(), v["run"]["signal"].clone()),
        (json!("SG"), json!("SIGKILL")),
        "{v}"
    );
    let v = ran(app, json!({"language": "python", "version": "*", "files": [{"content": "import sys\nsys.stdout.write('y' * (2 << 20))"}]})).await;
    assert_eq!(v["run"]["status"], "OL", "{}", v["run"]["message"]);
    assert_eq!(v["run"]["message"], "stdout length exceeded");
}

#[tokio::test]
async fn versions_select_the_runtime_and_bad_requests_get_pistons_messages() {
    needs_root!();
    let app = spawn_app();
    let (_, list) = app.get("/piston/api/v2/runtimes").await;
    let version = list
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["language"] == "python")
        .unwrap()["version"]
        .as_str()
        .unwrap()
        .to_string();
    let major = version.split('.').next().unwrap();
    for selector in [version.as_str(), major, &format!("{major}.x")] {
        let v = ran(
            app,
            json!({"language": "python3", "version": selector, "files": [{"content": "print(1)"}]}),
        )
        .await;
        assert_eq!(
            (v["run"]["stdout"].clone(), v["version"].clone()),
            (json!("1\n"), json!(version.clone())),
            "{selector}"
        );
    }
    let ten = (1000u64 + 1).to_string();
    let policy_max_wall = 300_000;
    for (body, message) in [
        (
            json!({"version": "*", "files": []}),
            "language is required as a string".to_string(),
        ),
        (
            json!({"language": "python", "files": []}),
            "version is required as a string".into(),
        ),
        (
            json!({"language": "python", "version": "*"}),
            "files is required as an array".into(),
        ),
        (
            json!({"language": "python", "version": "*", "files": [{"name": "x"}]}),
            "files[0].content is required as a string".into(),
        ),
        (
            json!({"language": "python", "version": ten, "files": [{"content": "1"}]}),
            format!("python-{ten} runtime is unknown"),
        ),
        (
            json!({"language": "cobol", "version": "*", "files": [{"content": "1"}]}),
            "cobol-* runtime is unknown".into(),
        ),
        (
            json!({"language": "python", "version": "*", "files": [{"content": "1"}], "run_timeout": policy_max_wall + 1}),
            format!("run_timeout cannot exceed the configured limit of {policy_max_wall}"),
        ),
        (
            json!({"language": "python", "version": "*", "files": [{"content": "1"}], "compile_timeout": "soon"}),
            "If specified, compile_timeout must be a number".into(),
        ),
        (
            json!({"language": "python", "version": "*", "files": [{"content": "1"}], "args": [1]}),
            "args must be an array of strings".into(),
        ),
    ] {
        let (status, v) = execute(app, "execute", body.clone()).await;
        assert_eq!((status, v), (400, json!({"message": message})), "{body}");
    }
    let (status, v) = execute(app, "execute", json!({"language": "python", "version": "*", "files": [{"content": "1"}], "run_memory_limit": 1024})).await;
    assert_eq!(status, 400, "{v}");
    assert!(
        v["message"].as_str().unwrap().contains("below the minimum"),
        "{v}"
    );
    let (status, v) = execute(app, "execute", json!({"language": "python", "version": "*", "files": [{"content": "1"}, {"name": "../x", "content": "2"}]})).await;
    assert_eq!(status, 400, "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .starts_with("files[1].name: "),
        "execbox's path rule, under Piston's index: {v}"
    );
}
