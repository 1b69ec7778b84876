//! The Judge0 CE 1.13.1-compatible door, `/judge0`: its routes, fields and verdicts over HTTP
//! with real programs; submissions by token, batches, base64 both ways, the fields filter, auth
//! with `X-Auth-Token`, the team quota, retention, and a submission a dead service left behind.

use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};

use crate::helpers::*;

async fn post(app: &TestApp, path: &str, body: Value) -> (u16, Value) {
    let r = client()
        .post(app.url(&format!("/judge0{path}")))
        .json(&body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

async fn get(app: &TestApp, path: &str) -> (u16, Value) {
    app.get(&format!("/judge0{path}")).await
}

/// `wait=true` and every field: the submission as it ended.
async fn judged(app: &TestApp, body: Value) -> Value {
    let (status, v) = post(app, "/submissions?wait=true&fields=*", body).await;
    assert_eq!(status, 201, "{v}");
    v
}

fn b64(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// Ruby's `Base64.encode64`, as Judge0 answers: lines of 60 characters, each ending in `\n`.
fn ruby64(text: &str) -> String {
    let mut out = String::new();
    for line in b64(text).as_bytes().chunks(60) {
        out.push_str(std::str::from_utf8(line).unwrap());
        out.push('\n');
    }
    out
}

/// Read a submission until it is neither In Queue nor Processing.
async fn finished(app: &TestApp, token: &str, query: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, v) = get(app, &format!("/submissions/{token}?{query}")).await;
        assert_eq!(status, 200, "{v}");
        if v["status"]["id"].as_u64().unwrap() > 2 {
            return v;
        }
        assert!(Instant::now() < deadline, "still pending: {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The Judge0 ids the door should list: one per language `GET /v1/runtimes` has on the local
/// executor, by Judge0 CE 1.13.1's table.
async fn expected_ids(app: &TestApp) -> Vec<u64> {
    let ids = [
        ("python", 71),
        ("bash", 46),
        ("javascript", 63),
        ("c", 50),
        ("cpp", 52),
        ("java", 62),
        ("go", 60),
        ("rust", 73),
        ("typescript", 74),
        ("ruby", 72),
        ("php", 68),
        ("perl", 85),
        ("lua", 64),
    ];
    let (_, rt) = app.get("/v1/runtimes").await;
    let mut want: Vec<u64> = rt["runtimes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| {
            r["executors"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e == "local")
        })
        .map(|r| {
            let lang = r["language"].as_str().unwrap();
            ids.iter()
                .find(|(l, _)| *l == lang)
                .unwrap_or_else(|| panic!("{lang} has no row in compat/languages.toml"))
                .1
        })
        .collect();
    want.sort();
    want
}

/// Each key's first place in `text` comes after the one before: an answer's key order.
fn assert_key_order(text: &str, keys: &[&str]) {
    let places: Vec<usize> = keys
        .iter()
        .map(|k| {
            text.find(&format!("\"{k}\":"))
                .unwrap_or_else(|| panic!("{k} missing from {text}"))
        })
        .collect();
    assert!(
        places.windows(2).all(|w| w[0] < w[1]),
        "order {keys:?} in {text}"
    );
}

#[tokio::test]
async fn languages_statuses_about_and_config_info_are_judge0s() {
    needs_root!();
    let app = spawn_app();
    let (status, langs) = get(app, "/languages").await;
    assert_eq!(status, 200);
    let mut ids: Vec<u64> = langs
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["id"].as_u64().unwrap())
        .collect();
    let names: Vec<&str> = langs
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["name"].as_str().unwrap())
        .collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "listed by name");
    ids.sort();
    assert_eq!(ids, expected_ids(app).await);
    let (_, rt) = app.get("/v1/runtimes").await;
    let python = rt["runtimes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["language"] == "python")
        .unwrap()["versions"]["local"]
        .as_str()
        .unwrap()
        .trim_start_matches("Python ")
        .to_string();
    assert!(
        names.contains(&format!("Python ({python})").as_str()),
        "{names:?}"
    );
    assert!(langs
        .as_array()
        .unwrap()
        .iter()
        .all(|l| l.as_object().unwrap().len() == 2));

    let (status, c) = get(app, "/languages/50").await;
    assert_eq!(status, 200);
    assert_eq!(c["id"], 50);
    assert_eq!(c["is_archived"], false);
    assert_eq!(c["source_file"], "main.c");
    assert_eq!(c["run_cmd"], "./main");
    assert!(
        c["compile_cmd"].as_str().unwrap().starts_with("gcc "),
        "{c}"
    );
    assert!(c["name"].as_str().unwrap().starts_with("C (GCC "), "{c}");
    let (status, old_gcc) = get(app, "/languages/48").await;
    assert_eq!(
        (status, old_gcc["id"].clone(), old_gcc["name"].clone()),
        (200, json!(48), c["name"].clone())
    );
    let (_, py) = get(app, "/languages/71/").await;
    assert_eq!(
        (py["compile_cmd"].clone(), py["source_file"].clone()),
        (Value::Null, json!("main.py"))
    );
    for missing in ["/languages/9999", "/languages/abc"] {
        let (status, v) = get(app, missing).await;
        assert_eq!(status, 404, "{v}");
        assert!(
            v["error"]
                .as_str()
                .unwrap()
                .contains("GET /judge0/languages"),
            "{v}"
        );
    }

    let (_, statuses) = get(app, "/statuses").await;
    let want = [
        "In Queue",
        "Processing",
        "Accepted",
        "Wrong Answer",
        "Time Limit Exceeded",
        "Compilation Error",
        "Runtime Error (SIGSEGV)",
        "Runtime Error (SIGXFSZ)",
        "Runtime Error (SIGFPE)",
        "Runtime Error (SIGABRT)",
        "Runtime Error (NZEC)",
        "Runtime Error (Other)",
        "Internal Error",
        "Exec Format Error",
    ];
    let want: Vec<Value> = want
        .iter()
        .enumerate()
        .map(|(i, d)| json!({"id": i + 1, "description": d}))
        .collect();
    assert_eq!(statuses, Value::Array(want));

    let (_, about) = get(app, "/about").await;
    assert_eq!(about["version"], "1.13.1");

    let r = client()
        .get(app.url("/judge0/config_info"))
        .send()
        .await
        .unwrap();
    let text = r.text().await.unwrap();
    let config: Value = serde_json::from_str(&text).unwrap();
    let keys = [
        "maintenance_mode",
        "enable_wait_result",
        "enable_compiler_options",
        "allowed_languages_for_compile_options",
        "enable_command_line_arguments",
        "enable_submission_delete",
        "enable_callbacks",
        "callbacks_max_tries",
        "callbacks_timeout",
        "enable_additional_files",
        "max_queue_size",
        "cpu_time_limit",
        "max_cpu_time_limit",
        "cpu_extra_time",
        "max_cpu_extra_time",
        "wall_time_limit",
        "max_wall_time_limit",
        "memory_limit",
        "max_memory_limit",
        "stack_limit",
        "max_stack_limit",
        "max_processes_and_or_threads",
        "max_max_processes_and_or_threads",
        "enable_per_process_and_thread_time_limit",
        "allow_enable_per_process_and_thread_time_limit",
        "enable_per_process_and_thread_memory_limit",
        "allow_enable_per_process_and_thread_memory_limit",
        "max_file_size",
        "max_max_file_size",
        "number_of_runs",
        "max_number_of_runs",
        "redirect_stderr_to_stdout",
        "max_extract_size",
        "enable_batched_submissions",
        "max_submission_batch_size",
        "submission_cache_duration",
        "use_docs_as_homepage",
        "allow_enable_network",
        "enable_network",
    ];
    assert_eq!(config.as_object().unwrap().len(), keys.len());
    assert_key_order(&text, &keys);
    assert_eq!(config["cpu_time_limit"], 5.0);
    assert_eq!(config["memory_limit"], 128_000);
    assert_eq!(config["max_submission_batch_size"], 20);
    assert_eq!(config["enable_network"], false);
    assert_eq!(config["max_queue_size"], 64);
}

#[tokio::test]
async fn expected_output_is_compared_as_judge0_compares_it() {
    needs_root!();
    let app = spawn_app();
    let code = "print('1 2  ')\nprint('3')\nprint()";
    for (expected, status) in [
        (Some("1 2\n3"), 3),
        (Some("1 2  \r\n3\n\n\n"), 3),
        (Some(" 1 2\n3"), 4),
        (Some("1 2\n\n3"), 4),
        (Some("1  2\n3"), 4),
        (None, 3),
    ] {
        let mut body = json!({"source_code": code, "language_id": 71});
        if let Some(e) = expected {
            body["expected_output"] = e.into();
        }
        let v = judged(app, body).await;
        assert_eq!(v["status"]["id"], status, "{expected:?}: {v}");
        assert_eq!(v["stdout"], "1 2  \n3\n\n");
        assert_eq!(
            (
                v["exit_code"].clone(),
                v["exit_signal"].clone(),
                v["message"].clone()
            ),
            (json!(0), Value::Null, Value::Null)
        );
    }
    // Judge0 reads empty output as nil, which no expected_output matches, not even "".
    let silent = judged(
        app,
        json!({"source_code": "pass", "language_id": 71, "expected_output": ""}),
    )
    .await;
    assert_eq!(
        (
            silent["status"]["description"].clone(),
            silent["stdout"].clone()
        ),
        (json!("Wrong Answer"), Value::Null)
    );
    let accepted = judged(app, json!({"source_code": "pass", "language_id": 71})).await;
    assert_eq!(
        accepted["status"],
        json!({"id": 3, "description": "Accepted"})
    );
}

#[tokio::test]
async fn an_answer_has_judge0s_fields_in_judge0s_order() {
    needs_root!();
    let app = spawn_app();
    let r = client()
        .post(app.url("/judge0/submissions?wait=true"))
        .json(&json!({"source_code": "import sys\nprint('out')\nprint('err', file=sys.stderr)", "language_id": "71", "stdin": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let text = r.text().await.unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    let defaults = [
        "stdout",
        "time",
        "memory",
        "stderr",
        "token",
        "compile_output",
        "message",
        "status",
    ];
    assert_eq!(v.as_object().unwrap().len(), defaults.len(), "{v}");
    assert_key_order(&text, &defaults);
    assert!(
        text.contains(r#""status":{"id":3,"description":"Accepted"}"#),
        "{text}"
    );
    assert_eq!(
        (v["stdout"].clone(), v["stderr"].clone()),
        (json!("out\n"), json!("err\n"))
    );
    let time = v["time"].as_str().unwrap();
    assert!(
        time.parse::<f64>().unwrap() > 0.0 && time.contains('.'),
        "{time}"
    );
    assert!(v["memory"].as_u64().unwrap() > 100, "{v}");
    let token = v["token"].as_str().unwrap();
    assert_eq!(uuid::Uuid::parse_str(token).unwrap().get_version_num(), 4);

    let r = client()
        .get(app.url(&format!("/judge0/submissions/{token}?fields=*")))
        .send()
        .await
        .unwrap();
    let text = r.text().await.unwrap();
    let all: Value = serde_json::from_str(&text).unwrap();
    let fields = [
        "source_code",
        "language_id",
        "stdin",
        "expected_output",
        "stdout",
        "status_id",
        "created_at",
        "finished_at",
        "time",
        "memory",
        "stderr",
        "token",
        "number_of_runs",
        "cpu_time_limit",
        "cpu_extra_time",
        "wall_time_limit",
        "memory_limit",
        "stack_limit",
        "max_processes_and_or_threads",
        "enable_per_process_and_thread_time_limit",
        "enable_per_process_and_thread_memory_limit",
        "max_file_size",
        "compile_output",
        "exit_code",
        "exit_signal",
        "message",
        "wall_time",
        "compiler_options",
        "command_line_arguments",
        "redirect_stderr_to_stdout",
        "callback_url",
        "additional_files",
        "enable_network",
        "status",
        "language",
    ];
    assert_eq!(all.as_object().unwrap().len(), fields.len(), "{all}");
    assert_key_order(&text, &fields);
    assert_eq!(all["language_id"], 71);
    assert_eq!(all["language"]["id"], 71);
    assert_eq!(all["status_id"], 3);
    assert_eq!(all["stdin"], "x");
    assert_eq!(
        (
            all["cpu_time_limit"].clone(),
            all["wall_time_limit"].clone(),
            all["memory_limit"].clone()
        ),
        (json!("5.0"), json!("10.0"), json!(128_000))
    );
    let created = all["created_at"].as_str().unwrap();
    assert!(
        created.len() == 24 && created.ends_with('Z') && created.as_bytes()[19] == b'.',
        "{created}"
    );
    assert!(all["finished_at"].as_str().unwrap() >= created);

    let (status, some) = get(
        app,
        &format!("/submissions/{token}?fields=status,stdout,language_id"),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        some,
        json!({"language_id": 71, "stdout": "out\n", "status": {"id": 3, "description": "Accepted"}})
    );
    let (status, bad) = get(
        app,
        &format!("/submissions/{token}?fields=stdout,nope,time_ms"),
    )
    .await;
    assert_eq!(
        (status, bad),
        (400, json!({"error": "invalid fields: [nope, time_ms]"}))
    );
    let (status, missing) = get(app, "/submissions/4d7c8f2e-0000-4000-8000-000000000000").await;
    assert_eq!(status, 404);
    assert!(
        missing["error"]
            .as_str()
            .unwrap()
            .contains("no submission with token"),
        "{missing}"
    );
}

#[tokio::test]
async fn time_limits_are_judge0s_cpu_extra_and_wall_limits() {
    needs_root!();
    let app = spawn_app();
    let spin = judged(app, json!({"source_code": "while True: pass", "language_id": 71, "cpu_time_limit": 0.5, "cpu_extra_time": 0.5, "wall_time_limit": 20})).await;
    assert_eq!(spin["status"]["id"], 5, "{spin}");
    assert_eq!(spin["message"], "Time limit exceeded");
    // Killed at the CPU limit: by the service (SIGKILL) or the kernel's RLIMIT_CPU (SIGXCPU).
    assert!(
        [9, 24].contains(&spin["exit_signal"].as_i64().unwrap()),
        "{spin}"
    );
    assert!(
        spin["time"].as_str().unwrap().parse::<f64>().unwrap() >= 0.5,
        "{spin}"
    );

    // Over cpu_time_limit within cpu_extra_time: it finishes, and is still over its limit.
    let over = judged(app, json!({"source_code": "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.4: pass\nprint('done')", "language_id": 71, "cpu_time_limit": 0.1, "cpu_extra_time": 2, "wall_time_limit": 20})).await;
    assert_eq!(
        (over["status"]["id"].clone(), over["stdout"].clone()),
        (json!(5), json!("done\n")),
        "{over}"
    );
    assert_eq!(over["message"], "Time limit exceeded");

    let sleeper = judged(
        app,
        json!({"source_code": "sleep 5", "language_id": 46, "wall_time_limit": 1}),
    )
    .await;
    assert_eq!(
        sleeper["status"]["description"], "Time Limit Exceeded",
        "{sleeper}"
    );
    assert_eq!(sleeper["message"], "Time limit exceeded (wall clock)");
    let wall = sleeper["wall_time"]
        .as_str()
        .unwrap()
        .parse::<f64>()
        .unwrap();
    assert!((1.0..4.0).contains(&wall), "{sleeper}");
}

#[tokio::test]
async fn compilation_errors_and_runtime_errors_by_signal() {
    needs_root!();
    let app = spawn_app();
    let ce = judged(
        app,
        json!({"source_code": "int main( { return 0; }", "language_id": 50}),
    )
    .await;
    assert_eq!(
        ce["status"],
        json!({"id": 6, "description": "Compilation Error"})
    );
    assert!(
        ce["compile_output"].as_str().unwrap().contains("error"),
        "{ce}"
    );
    for null in [
        "stdout",
        "stderr",
        "time",
        "memory",
        "exit_code",
        "exit_signal",
        "message",
        "wall_time",
    ] {
        assert_eq!(ce[null], Value::Null, "{null}: {ce}");
    }
    for (code, language_id, status, signal) in [
        ("int main(void) { volatile int *p = 0; *p = 1; return 0; }", 50, 7, 11),
        ("#include <stdio.h>\nint main(void) { volatile int a = 7, z = 0; printf(\"%d\\n\", a / z); return 0; }", 50, 9, 8),
        ("#include <cstdlib>\nint main() { std::abort(); }", 54, 10, 6),
        ("import os, signal\nos.kill(os.getpid(), signal.SIGTERM)", 71, 12, 15),
    ] {
        let v = judged(app, json!({"source_code": code, "language_id": language_id})).await;
        assert_eq!(v["status"]["id"], status, "{code}: {v}");
        assert_eq!(v["exit_signal"], signal, "{v}");
        assert_eq!(v["exit_code"], 0, "{v}");
        assert_eq!(v["message"], format!("Caught fatal signal {signal}"), "{v}");
    }
    let nzec = judged(
        app,
        json!({"source_code": "import sys\nprint('partial')\nsys.exit(3)", "language_id": 71}),
    )
    .await;
    assert_eq!(
        nzec["status"],
        json!({"id": 11, "description": "Runtime Error (NZEC)"})
    );
    assert_eq!(
        (nzec["exit_code"].clone(), nzec["exit_signal"].clone()),
        (json!(3), Value::Null)
    );
    assert_eq!(
        (nzec["message"].clone(), nzec["stdout"].clone()),
        (json!("Exited with error status 3"), json!("partial\n"))
    );
    // Output past max_file_size (KB) is what isolate would have killed with SIGXFSZ.
    let flood = judged(
        app,
        json!({"source_code": "print('x' * 5000)", "language_id": 71, "max_file_size": 1}),
    )
    .await;
    assert_eq!(flood["status"]["id"], 8, "{flood}");
    assert_eq!(flood["stdout"].as_str().unwrap().len(), 1024);
}

#[tokio::test]
async fn base64_goes_both_ways_in_rubys_form() {
    needs_root!();
    let app = spawn_app();
    let code = "import sys\ndata = sys.stdin.read()\nprint(data.upper() * 10)\nsys.exit(2)";
    let body = json!({"source_code": b64(code), "language_id": 71, "stdin": b64("héllo\n"), "expected_output": b64("x")});
    let (status, v) = post(app, "/submissions?base64_encoded=true&wait=true&fields=stdout,stdin,source_code,message,expected_output", body).await;
    assert_eq!(status, 201, "{v}");
    let out = "HÉLLO\n".repeat(10) + "\n";
    assert!(ruby64(&out).lines().count() > 1, "the encoding wraps");
    assert_eq!(v["stdout"], ruby64(&out));
    assert_eq!(v["source_code"], ruby64(code));
    assert_eq!(v["stdin"], "aMOpbGxvCg==\n");
    assert_eq!(v["expected_output"], "eA==\n");
    assert_eq!(v["message"], ruby64("Exited with error status 2"));
    // Lenient as Ruby's decode64: line breaks and missing padding are taken.
    let wrapped = "cHJp\nbnQo MSk";
    let (_, v) = post(
        app,
        "/submissions?base64_encoded=true&wait=true",
        json!({"source_code": wrapped, "language_id": 71}),
    )
    .await;
    assert_eq!(v["stdout"], "MQo=\n");
    // And plain text both ways by default, as Judge0 CE 1.13.1 does.
    let (_, v) = post(
        app,
        "/submissions?wait=true",
        json!({"source_code": "print('plain')", "language_id": 71}),
    )
    .await;
    assert_eq!(v["stdout"], "plain\n");
}

#[tokio::test]
async fn wait_false_answers_a_token_at_once_and_the_result_is_read_by_it() {
    needs_root!();
    let app = spawn_app();
    let started = Instant::now();
    let (status, v) = post(app, "/submissions?base64_encoded=true&wait=false", json!({"source_code": b64("import time\ntime.sleep(1.5)\nprint(input())"), "language_id": 71, "stdin": b64("later")})).await;
    assert_eq!(status, 201);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "answered before the run ends"
    );
    assert_eq!(v.as_object().unwrap().len(), 1, "{v}");
    let token = v["token"].as_str().unwrap().to_string();
    let (_, early) = get(app, &format!("/submissions/{token}")).await;
    assert!(
        matches!(early["status"]["id"].as_u64(), Some(1 | 2)),
        "{early}"
    );
    assert_eq!(early["stdout"], Value::Null);
    let done = finished(app, &token, "base64_encoded=true&fields=*").await;
    assert_eq!(done["status"]["id"], 3, "{done}");
    assert_eq!(done["stdout"], ruby64("later\n"));
    assert!(done["finished_at"].is_string());
}

#[tokio::test]
async fn batches_are_made_and_read_in_order() {
    needs_root!();
    let app = spawn_app();
    let body = json!({"submissions": [
        {"source_code": b64("print(6 * 7)"), "language_id": 71, "expected_output": b64("42")},
        {"source_code": b64("x"), "language_id": 999},
        {"source_code": b64("echo $1-$2"), "language_id": 46, "command_line_arguments": "a 'b c'"},
    ]});
    let (status, made) = post(app, "/submissions/batch?base64_encoded=true", body).await;
    assert_eq!(status, 201, "{made}");
    let made = made.as_array().unwrap();
    assert_eq!(made.len(), 3);
    assert_eq!(
        made[1],
        json!({"language_id": ["language with id 999 doesn't exist"]})
    );
    let tokens = [
        made[0]["token"].as_str().unwrap(),
        made[2]["token"].as_str().unwrap(),
    ];
    for t in tokens {
        finished(app, t, "").await;
    }
    let unknown = "0d6fd3a5-0000-4000-8000-000000000000";
    let (status, read) = get(
        app,
        &format!(
            "/submissions/batch?tokens={},{unknown},{}&fields=stdout,status_id",
            tokens[0], tokens[1]
        ),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        read,
        json!({"submissions": [
            {"stdout": "42\n", "status_id": 3},
            null,
            {"stdout": "a-b c\n", "status_id": 3},
        ]})
    );

    let (status, none) = post(
        app,
        "/submissions/batch",
        json!({"submissions": [{"language_id": 71}]}),
    )
    .await;
    assert_eq!(
        (status, none),
        (422, json!([{"source_code": ["can't be blank"]}]))
    );
    let (status, empty) = post(app, "/submissions/batch", json!({"submissions": []})).await;
    assert_eq!(
        (status, empty),
        (
            400,
            json!({"error": "there should be at least one submission in a batch"})
        )
    );
    let many: Vec<Value> = (0..21)
        .map(|_| json!({"source_code": "pass", "language_id": 71}))
        .collect();
    let (status, too_many) = post(app, "/submissions/batch", json!({"submissions": many})).await;
    assert_eq!(
        (status, too_many),
        (
            400,
            json!({"error": "number of submissions in a batch should be less than or equal to 20"})
        )
    );
    let (status, _) = get(app, "/submissions/batch?tokens=").await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn an_invalid_submission_is_422_with_judge0s_field_errors() {
    needs_root!();
    let app = spawn_app();
    let (status, v) = post(app, "/submissions", json!({"source_code": "", "cpu_time_limit": 99, "memory_limit": 1000, "enable_network": true, "callback_url": "http://127.0.0.1:9/", "additional_files": "UEsFBgAAAAAAAAAAAAAAAAAAAAAAAA=="})).await;
    assert_eq!(status, 422);
    assert_eq!(
        v,
        json!({
            "source_code": ["can't be blank"],
            "language_id": ["can't be blank"],
            "cpu_time_limit": ["must be less than or equal to 15.0"],
            "memory_limit": ["must be greater than or equal to 8192"],
            "callback_url": ["setting callback is not allowed"],
            "additional_files": ["setting additional files is not allowed"],
            "enable_network": ["enabling network is not allowed"],
        })
    );
    let (status, v) = post(
        app,
        "/submissions",
        json!({"source_code": "x", "language_id": 71, "compiler_options": "-O3"}),
    )
    .await;
    assert_eq!(
        (status, v),
        (
            422,
            json!({"compiler_options": ["setting compiler options is only allowed for compiled languages"]})
        )
    );
    let r = client()
        .post(app.url("/judge0/submissions"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let v: Value = r.json().await.unwrap();
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .starts_with("the body is not valid JSON"),
        "{v}"
    );
}

#[tokio::test]
async fn runs_options_arguments_and_joined_streams_are_applied() {
    needs_root!();
    let app = spawn_app();
    let c = "#include <stdio.h>\nint main(int argc, char **argv) { printf(\"%d %s %d\\n\", X, argv[1], argc); return 0; }";
    let v = judged(app, json!({"source_code": c, "language_id": 50, "compiler_options": "-DX=7 -O0", "command_line_arguments": "\"two words\" more"})).await;
    assert_eq!(
        (v["status"]["id"].clone(), v["stdout"].clone()),
        (json!(3), json!("7 two words 3\n")),
        "{v}"
    );
    let joined = judged(app, json!({"source_code": "import sys\nprint('a', flush=True)\nprint('b', file=sys.stderr, flush=True)\nprint('c')", "language_id": 71, "redirect_stderr_to_stdout": true})).await;
    assert_eq!(
        (joined["stdout"].clone(), joined["stderr"].clone()),
        (json!("a\nb\nc\n"), Value::Null),
        "{joined}"
    );
    let thrice = judged(
        app,
        json!({"source_code": "print('again')", "language_id": 71, "number_of_runs": 3}),
    )
    .await;
    assert_eq!(
        (
            thrice["status"]["id"].clone(),
            thrice["number_of_runs"].clone()
        ),
        (json!(3), json!(3))
    );
}

/// `execbox keys create --team TEAM` in `dir`: the key.
fn create_key(dir: &std::path::Path, team: &str) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_execbox"))
        .args(["keys", "create", "--team", team, "--data-dir"])
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .last()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn x_auth_token_carries_an_api_key_and_submissions_are_the_teams() {
    needs_root!();
    let app = TestApp::start(
        &format!("j0auth-{}", std::process::id()),
        &[
            ("EXECBOX_AUTH", "api-key"),
            ("EXECBOX_DOCKER__ENABLED", "false"),
        ],
    );
    let alpha = create_key(&app.data_dir, "alpha");
    let beta = create_key(&app.data_dir, "beta");
    let send = |path: &str, header: Option<(&str, &str)>| {
        let mut req = client().get(app.url(path));
        if let Some((k, v)) = header {
            req = req.header(k, v);
        }
        async move {
            let r = req.send().await.unwrap();
            r.status().as_u16()
        }
    };
    assert_eq!(send("/judge0/about", None).await, 401);
    assert_eq!(
        send("/judge0/about", Some(("X-Auth-Token", "exb_wrong"))).await,
        401
    );
    assert_eq!(
        send("/judge0/about", Some(("X-Auth-Token", &alpha))).await,
        200
    );
    assert_eq!(
        send(
            "/judge0/languages",
            Some(("Authorization", &format!("Bearer {alpha}")))
        )
        .await,
        200
    );
    assert_eq!(
        send("/v1/runtimes", Some(("X-Auth-Token", &alpha))).await,
        401,
        "only the Judge0 door reads X-Auth-Token"
    );
    assert_eq!(
        send("/piston/api/v2/runtimes", Some(("Authorization", &alpha))).await,
        200
    );
    assert_eq!(
        send("/judge0/languages", Some(("Authorization", &alpha))).await,
        401,
        "only the Piston door takes a bare key"
    );

    let r = client()
        .post(app.url("/judge0/submissions?wait=true"))
        .header("X-Auth-Token", &alpha)
        .json(&json!({"source_code": "print('mine')", "language_id": 71}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let token = r.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string();
    let read = |key: String| {
        let url = app.url(&format!("/judge0/submissions/{token}"));
        async move {
            let r = client()
                .get(url)
                .header("X-Auth-Token", key)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let (status, v) = read(alpha.clone()).await;
    assert_eq!((status, v["stdout"].clone()), (200, json!("mine\n")));
    let (status, v) = read(beta).await;
    assert_eq!(status, 404, "another team's submission is not found: {v}");
}

#[tokio::test]
async fn runs_take_the_teams_quota_and_are_in_the_audit_log() {
    needs_root!();
    let app = TestApp::start(
        &format!("j0quota-{}", std::process::id()),
        &[
            ("EXECBOX_QUOTAS__MAX_CONCURRENT_RUNS_PER_TEAM", "1"),
            ("EXECBOX_AUDIT__KEEP_CODE", "true"),
            ("EXECBOX_DOCKER__ENABLED", "false"),
        ],
    );
    let marker = format!("quota-{}", std::process::id());
    let (status, first) = post(
        &app,
        "/submissions",
        json!({"source_code": format!("import time\ntime.sleep(2) # {marker}"), "language_id": 71}),
    )
    .await;
    assert_eq!(status, 201, "{first}");
    let r = client()
        .post(app.url("/judge0/submissions"))
        .json(&json!({"source_code": "print(1)", "language_id": 71}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 429);
    assert_eq!(r.headers()["retry-after"], "1");
    let v: Value = r.json().await.unwrap();
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("quotas.max_concurrent_runs_per_team"),
        "{v}"
    );
    let (status, v) = post(
        &app,
        "/submissions/batch",
        json!({"submissions": [{"source_code": "print(2)", "language_id": 71}]}),
    )
    .await;
    assert_eq!(status, 422, "{v}");
    assert!(v[0]["error"].as_str().unwrap().contains("quota"), "{v}");
    let done = finished(&app, first["token"].as_str().unwrap(), "").await;
    assert_eq!(done["status"]["id"], 3);
    let db = rusqlite::Connection::open_with_flags(
        app.data_dir.join("execbox.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let rows: Vec<(String, String)> = db
        .prepare("SELECT language, status FROM runs WHERE code LIKE ?1")
        .unwrap()
        .query_map([format!("%{marker}%")], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(rows, [("python".to_string(), "ok".to_string())]);
}

#[tokio::test]
async fn a_submission_is_gone_once_its_retention_has_passed() {
    needs_root!();
    let app = TestApp::start(
        &format!("j0ret-{}", std::process::id()),
        &[
            ("EXECBOX_COMPAT__JUDGE0_RETENTION_SECONDS", "2"),
            ("EXECBOX_DOCKER__ENABLED", "false"),
        ],
    );
    let (status, v) = post(
        &app,
        "/submissions?wait=true",
        json!({"source_code": "print(1)", "language_id": 71}),
    )
    .await;
    assert_eq!(status, 201);
    let token = v["token"].as_str().unwrap();
    let (status, _) = get(&app, &format!("/submissions/{token}")).await;
    assert_eq!(status, 200);
    tokio::time::sleep(Duration::from_millis(3200)).await;
    let (status, v) = get(&app, &format!("/submissions/{token}")).await;
    assert_eq!(status, 404, "{v}");
    let db = rusqlite::Connection::open_with_flags(
        app.data_dir.join("execbox.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left: i64 = db
            .query_row("SELECT count(*) FROM judge0_submissions", [], |r| r.get(0))
            .unwrap();
        if left == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the sweep never removed it");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_submission_a_stopped_service_left_pending_ends_as_an_internal_error() {
    needs_root!();
    let dir = tempfile::tempdir().unwrap();
    let instance = format!("j0int-{}", std::process::id());
    let env = [("EXECBOX_DOCKER__ENABLED", "false")];
    let mut app = TestApp::start_in(&instance, dir.path(), &env);
    let (status, v) = post(
        &app,
        "/submissions",
        json!({"source_code": "sleep 30", "language_id": 46}),
    )
    .await;
    assert_eq!(status, 201);
    let token = v["token"].as_str().unwrap().to_string();
    app.kill9();
    drop(app);
    let app = TestApp::start_in(&instance, dir.path(), &env);
    let (status, v) = get(
        &app,
        &format!("/submissions/{token}?fields=status,message,finished_at"),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        v["status"],
        json!({"id": 13, "description": "Internal Error"})
    );
    assert_eq!(
        v["message"],
        "the service stopped before this submission finished; submit it again"
    );
    assert!(v["finished_at"].is_string());
}

#[tokio::test]
async fn compat_executor_docker_runs_both_doors_in_containers() {
    needs_root!();
    let app = TestApp::start(
        &format!("j0docker-{}", std::process::id()),
        &[("EXECBOX_COMPAT__EXECUTOR", "docker")],
    );
    let v = judged(
        &app,
        json!({"source_code": "#include <stdio.h>\nint main(void) { int n; scanf(\"%d\", &n); printf(\"%d\\n\", n * 2); return 0; }", "language_id": 50, "stdin": "21", "expected_output": "42"}),
    )
    .await;
    assert_eq!(
        (v["status"]["id"].clone(), v["stdout"].clone()),
        (json!(3), json!("42\n")),
        "{v}"
    );
    let r = client()
        .post(app.url("/piston/api/v2/execute"))
        .json(&json!({"language": "python", "version": "*", "files": [{"content": "print('in a container')"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let p: Value = r.json().await.unwrap();
    assert_eq!(p["run"]["stdout"], "in a container\n", "{p}");
    let db = rusqlite::Connection::open_with_flags(
        app.data_dir.join("execbox.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let executors: Vec<String> = db
        .prepare("SELECT DISTINCT executor FROM runs")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(executors, ["docker"]);
}
