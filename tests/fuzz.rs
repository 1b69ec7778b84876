//! The published contract is the real one: `/openapi.json` passes `openapi-spec-validator`, and
//! schemathesis, a property-based API fuzzer, finds nothing against it with all its checks —
//! with and without auth. Its own test binary, so it runs after the api suite, not beside it.
//!
//! The Python tools come from `.ci/venv.sh` (pinned, in `target/venv-fuzz`). Without them the test
//! skips loudly, and fails under `CI`.
//!
//! Left out of the fuzzing: `POST /v1/agent/runs` (`start_agent_run`). A generated request may
//! bring its own `model.api_key` and any `base_url`, and a started run calls that URL; the fuzzer
//! must never make the service call out, so that one operation is not generated (its schema is
//! still validated). Nor `POST /v1/sandboxes/{id}/archive` (`upload_archive`): its body is a tar,
//! which no schema can describe and schemathesis cannot generate; tests/api/sandboxes.rs covers
//! it with real archives. Every other operation is, with generated bodies, queries and paths, and
//! only ever against 127.0.0.1: the document has no `servers`, so schemathesis calls the origin
//! it fetched the document from, and follows no redirects.

#[path = "api/helpers.rs"]
#[allow(dead_code, unused_imports, unused_macros)]
mod helpers;

use std::path::{Path, PathBuf};
use std::process::Command;

use helpers::*;

/// The venv's bin dir.
fn venv() -> Option<PathBuf> {
    Some(pinned_venv("fuzz", "the API fuzz test (schemathesis)")?.join("bin"))
}

/// Settings that keep a fuzzed service small: few sandboxes, short lives.
const FUZZ_ENV: &[(&str, &str)] = &[
    ("EXECBOX_QUOTAS__MAX_SANDBOXES_PER_TEAM", "4"),
    ("EXECBOX_SANDBOXES__MAX_TTL_SECONDS", "600"),
];

/// Validate the served document, then fuzz every operation but the agent run start.
fn fuzz(venv: &Path, app: &TestApp, headers: &[String]) {
    let doc = tokio::runtime::Runtime::new().unwrap().block_on(async {
        let r = client()
            .get(app.url("/openapi.json"))
            .send()
            .await
            .expect("GET /openapi.json");
        assert_eq!(r.status().as_u16(), 200);
        r.bytes().await.unwrap()
    });
    let file = app.data_dir.join("openapi.json");
    std::fs::write(&file, &doc).unwrap();
    let out = Command::new(venv.join("openapi-spec-validator"))
        .args(["--validation-errors", "all"])
        .arg(&file)
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "openapi-spec-validator refused the document:\n{said}"
    );

    let mut cmd = Command::new(venv.join("schemathesis"));
    cmd.arg("run")
        .arg(app.url("/openapi.json"))
        .args(["--checks", "all"])
        .args(["--phases", "examples,coverage,fuzzing,stateful"])
        .args(["--exclude-operation-id", "start_agent_run"])
        .args(["--exclude-operation-id", "upload_archive"])
        .args(["--max-examples", "30"])
        .args(["--seed", "9"])
        .args(["--workers", "2"])
        .args(["--max-redirects", "0"])
        .args(["--request-timeout", "60"])
        .args(["--max-failures", "20"])
        .args(["--no-color"])
        .current_dir(&app.data_dir)
        // The two rules no schema can state (files that clash in one request, a percent-form
        // path); see the file.
        .env(
            "PYTHONPATH",
            concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fuzz"),
        )
        .env("SCHEMATHESIS_HOOKS", "execbox_fuzz_hooks");
    for h in headers {
        cmd.args(["-H", h]);
    }
    let out = cmd.output().expect("running schemathesis");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{said}");
    assert!(
        out.status.success(),
        "schemathesis found failures against {} (exit {:?}):\n{said}",
        app.base,
        out.status.code()
    );
}

/// Both auth modes, one after the other (one service at a time on a small machine).
#[test]
fn the_document_is_valid_and_holds_under_fuzzing_in_both_auth_modes() {
    needs_root!();
    let Some(venv) = venv() else { return };
    {
        let app = TestApp::start(&format!("fuzz-none-{}", std::process::id()), FUZZ_ENV);
        fuzz(&venv, &app, &[]);
    }
    let mut env = FUZZ_ENV.to_vec();
    env.push(("EXECBOX_AUTH", "api-key"));
    let app = TestApp::start(&format!("fuzz-key-{}", std::process::id()), &env);
    let out = Command::new(env!("CARGO_BIN_EXE_execbox"))
        .args(["keys", "create", "--team", "fuzz", "--data-dir"])
        .arg(&app.data_dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let key = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap()
        .to_string();
    fuzz(&venv, &app, &[format!("Authorization: Bearer {key}")]);
}
