//! The HTTP contract: result shape, every language, files/stdin/args/env, info endpoints.

use serde_json::json;

use crate::helpers::*;

async fn python_result_has_the_exact_contract_shape(ex: &str) {
    let Some(app) = app_for(ex).await else { return };
    let r = app.run(json!({"executor": ex, "language": "python", "code": "import sys\nprint('out')\nprint('err', file=sys.stderr)"})).await;
    let mut keys: Vec<&str> = r.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "compile",
            "executor",
            "exit_code",
            "id",
            "language",
            "policy",
            "runtime_version",
            "signal",
            "status",
            "stderr",
            "stderr_truncated",
            "stdout",
            "stdout_truncated",
            "usage"
        ]
    );
    assert_eq!(r["status"], "ok");
    assert_eq!(r["exit_code"], 0);
    assert_eq!(r["signal"], json!(null));
    assert_eq!(r["stdout"], "out\n");
    assert_eq!(r["stderr"], "err\n");
    assert_eq!(r["stdout_truncated"], false);
    assert_eq!(r["compile"], json!(null));
    assert_eq!(r["executor"], ex);
    assert_eq!(r["policy"], "default");
    assert_eq!(r["language"], "python");
    assert!(s(&r, "runtime_version").starts_with("Python 3."), "{r}");
    let mut usage: Vec<&str> = r["usage"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    usage.sort();
    assert_eq!(usage, ["cpu_time_ms", "peak_memory_bytes", "wall_time_ms"]);
}

async fn every_language_and_alias_runs_with_stdin_and_args(ex: &str) {
    let Some(app) = app_for(ex).await else { return };
    let programs = [
        ("py", "import sys\nprint(input() + sys.argv[1])"),
        ("python3", "import sys\nprint(input() + sys.argv[1])"),
        ("bash", "read x; echo \"$x$1\""),
        ("sh", "read x; echo \"$x$1\""),
        ("js", "const l=require('fs').readFileSync(0,'utf8').trim(); console.log(l + process.argv[2])"),
        ("node", "const l=require('fs').readFileSync(0,'utf8').trim(); console.log(l + process.argv[2])"),
        ("javascript", "const l=require('fs').readFileSync(0,'utf8').trim(); console.log(l + process.argv[2])"),
        ("c", "#include <stdio.h>\nint main(int c,char**v){char b[64];scanf(\"%63s\",b);printf(\"%s%s\\n\",b,v[1]);return 0;}"),
        ("cpp", "#include <iostream>\nint main(int c,char**v){std::string s;std::cin>>s;std::cout<<s<<v[1]<<std::endl;}"),
        ("c++", "#include <iostream>\nint main(int c,char**v){std::string s;std::cin>>s;std::cout<<s<<v[1]<<std::endl;}"),
    ];
    for (lang, code) in programs {
        let r = app.run(json!({"executor": ex, "language": lang, "code": code, "stdin": "hello\n", "args": ["-world"]})).await;
        assert_eq!(
            (r["status"].as_str(), r["stdout"].as_str()),
            (Some("ok"), Some("hello-world\n")),
            "{lang}: {r}"
        );
        let compiled = matches!(lang, "c" | "cpp" | "c++");
        assert_eq!(r["compile"].is_object(), compiled, "{lang}: {r}");
        if compiled {
            assert_eq!(r["compile"]["status"], "ok");
            assert_eq!(r["compile"]["exit_code"], 0);
        }
    }
}

async fn non_zero_exit_is_error_with_the_code(ex: &str) {
    let Some(app) = app_for(ex).await else { return };
    let r = app
        .run(json!({"executor": ex, "language": "bash", "code": "echo bye; exit 3"}))
        .await;
    assert_eq!(
        (
            r["status"].as_str(),
            r["exit_code"].as_i64(),
            r["stdout"].as_str()
        ),
        (Some("error"), Some(3), Some("bye\n"))
    );
}

/// A program that prints the engine's and the old exec wrapper's own error texts and exits 125
/// (the code the engine and the wrapper used for their failures) is an ordinary program that
/// failed: its output is its own, nothing of it is read as the service's message.
async fn the_services_own_error_texts_in_a_programs_output_are_just_output(ex: &str) {
    let Some(app) = app_for(ex).await else { return };
    let said = "execbox: could not unpack the files\nexecbox: cannot run x: not found\nError response from daemon: OCI runtime exec failed: exec failed: unable to start container process\n";
    let code = format!("printf '{said}'; printf '{said}' >&2; exit 125");
    let (status, r) = app
        .execute(json!({"executor": executor_of(ex), "policy": policy_of(ex), "language": "bash", "code": code}))
        .await;
    assert_eq!(status, 200, "{r}");
    let said = said.replace("\\n", "\n");
    assert_eq!(
        (
            r["status"].as_str(),
            r["exit_code"].as_i64(),
            r["stdout"].as_str(),
            r["stderr"].as_str()
        ),
        (
            Some("error"),
            Some(125),
            Some(said.as_str()),
            Some(said.as_str())
        ),
        "{r}"
    );
}

async fn a_signal_is_killed_with_its_name(ex: &str) {
    let Some(app) = app_for(ex).await else { return };
    let r = app.run(json!({"executor": ex, "language": "c", "code": "int main(){ volatile int *p = 0; return *p; }"})).await;
    assert_eq!(
        (
            r["status"].as_str(),
            r["signal"].as_str(),
            r["exit_code"].as_i64()
        ),
        (Some("killed"), Some("SIGSEGV"), None),
        "{r}"
    );
}

async fn compile_error_runs_nothing_and_reports_the_compiler(ex: &str) {
    let Some(app) = app_for(ex).await else { return };
    let r = app.run(json!({"executor": ex, "language": "c", "code": "int main(){ return undefined_thing; }"})).await;
    assert_eq!(r["status"], "compile_error");
    assert_eq!(r["exit_code"], json!(null));
    assert_eq!(r["compile"]["status"], "error");
    assert_eq!(r["compile"]["exit_code"], 1);
    assert!(
        s(&r["compile"], "stderr").contains("undefined_thing"),
        "{r}"
    );
    assert_eq!(r["stdout"], "");
}

async fn files_sit_beside_the_main_program(ex: &str) {
    let Some(app) = app_for(ex).await else { return };
    let r = app
        .run(json!({
            "executor": ex,
            "language": "python",
            "code": "from pkg.helper import greet\nprint(greet(), open('data.bin','rb').read())",
            "files": [
                {"path": "pkg/__init__.py", "content": ""},
                {"path": "pkg/helper.py", "content": "def greet():\n    return 'hi'\n", "encoding": "utf8"},
                {"path": "data.bin", "content": "AAEC/w==", "encoding": "base64"}
            ]
        }))
        .await;
    assert_eq!(r["stdout"], "hi b'\\x00\\x01\\x02\\xff'\n", "{r}");
}

async fn only_the_requests_env_reaches_the_program(ex: &str) {
    let Some(app) = app_for(ex).await else { return };
    let r = app
        .run(json!({"executor": ex, "language": "python", "code": "import os\nprint(sorted(os.environ.items()))", "env": {"FOO": "bar", "HOME": "/work/home"}}))
        .await;
    assert_eq!(
        r["stdout"],
        "[('FOO', 'bar'), ('HOME', '/work/home'), ('LANG', 'C.UTF-8'), ('PATH', '/usr/local/bin:/usr/bin:/bin'), ('TMPDIR', '/tmp')]\n"
    );
    assert!(!r.to_string().contains(SERVICE_SECRET));
}

async fn usage_is_reported_from_the_cgroup(ex: &str) {
    let Some(app) = app_for(ex).await else { return };
    let code = "import time\nx = bytearray(80 * 1024 * 1024)\nfor i in range(0, len(x), 4096): x[i] = 1\nt = time.process_time()\nwhile time.process_time() - t < 0.4: pass";
    let r = app
        .run(json!({"executor": ex, "language": "python", "code": code}))
        .await;
    assert_eq!(r["status"], "ok");
    let u = &r["usage"];
    assert!(u["cpu_time_ms"].as_u64().unwrap() >= 400, "{u}");
    assert!(u["peak_memory_bytes"].as_u64().unwrap() >= 80 << 20, "{u}");
    assert!(u["wall_time_ms"].as_u64().unwrap() >= 400, "{u}");
}

#[tokio::test]
async fn runtimes_lists_what_was_probed() {
    needs_root!();
    let app = spawn_app();
    let (status, v) = app.get("/v1/runtimes").await;
    assert_eq!(status, 200);
    let list = v["runtimes"].as_array().unwrap();
    let mut langs: Vec<&str> = list
        .iter()
        .map(|r| r["language"].as_str().unwrap())
        .collect();
    langs.sort();
    assert_eq!(
        langs,
        [
            "bash",
            "c",
            "cpp",
            "go",
            "java",
            "javascript",
            "lua",
            "perl",
            "php",
            "python",
            "ruby",
            "rust",
            "typescript"
        ]
    );
    let docker_ready = app.get("/readyz").await.1["executors"]["docker"]["ready"] == true;
    for r in list {
        let expected = if docker_ready {
            json!(["docker", "local"])
        } else {
            json!(["local"])
        };
        assert_eq!(r["executors"], expected, "{r}");
        assert!(!s(r, "version").is_empty());
        assert_eq!(r["versions"]["local"], r["version"]);
        if docker_ready {
            assert!(s(r, "image").starts_with("execbox/"), "{r}");
        }
    }
    let py = list.iter().find(|r| r["language"] == "python").unwrap();
    assert_eq!(py["aliases"], json!(["py", "python3"]));
    if docker_ready {
        assert_eq!(py["image"], "execbox/python:bookworm");
    }
}

#[tokio::test]
async fn policies_show_defaults_and_maxima() {
    needs_root!();
    let app = spawn_app();
    let (status, v) = app.get("/v1/policies").await;
    assert_eq!(status, 200);
    let names: Vec<&str> = v["policies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["benchmark", "default", "gvisor", "strict"]);
    let strict = &v["policies"][3];
    assert_eq!(strict["defaults"]["memory_bytes"], 134_217_728);
    assert_eq!(strict["maxima"]["pids"], 32);
    assert_eq!(strict["network"], "none");
    let gvisor = &v["policies"][2];
    assert_eq!(
        (&gvisor["executors"], &gvisor["docker_runtime"]),
        (&json!(["docker"]), &json!("runsc"))
    );
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    needs_root!();
    let app = spawn_app();
    assert_eq!(app.get("/healthz").await, (200, json!({"status": "ok"})));
    let (status, ready) = app.get("/readyz").await;
    assert_eq!(status, 200, "{ready}");
    let local = &ready["executors"]["local"];
    assert_eq!(local["ready"], true);
    assert_eq!(local["degraded"], false);
    assert!(
        matches!(
            local["features"]["cgroup"]["version"].as_str(),
            Some("v1" | "v2")
        ),
        "{local}"
    );
    assert_eq!(local["features"]["seccomp"], true);
    app.run(json!({"language": "bash", "code": "true"})).await;
    let text = client()
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for needle in [
        "execbox_runs_total{status=\"ok\",executor=\"local\",language=\"bash\"}",
        "execbox_run_duration_seconds_bucket",
        "execbox_runs_in_flight",
        "execbox_runs_queued",
        "execbox_runs_rejected_total",
    ] {
        assert!(text.contains(needle), "{needle} missing from:\n{text}");
    }
}

on_both_executors!(
    python_result_has_the_exact_contract_shape,
    every_language_and_alias_runs_with_stdin_and_args,
    non_zero_exit_is_error_with_the_code,
    the_services_own_error_texts_in_a_programs_output_are_just_output,
    a_signal_is_killed_with_its_name,
    compile_error_runs_nothing_and_reports_the_compiler,
    files_sit_beside_the_main_program,
    only_the_requests_env_reaches_the_program,
    usage_is_reported_from_the_cgroup
);
on_gvisor!(the_services_own_error_texts_in_a_programs_output_are_just_output);
