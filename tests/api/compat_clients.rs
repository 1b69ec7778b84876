//! Third-party clients against the compat doors, from PyPI: Judge0's official Python SDK
//! (`judge0` 0.0.8) against `/judge0` and a Piston client (`aiopyston` 1.2.1) against `/piston`,
//! each driven by a script in `tests/compat/` on a service with `auth = "api-key"`, so the SDK's
//! `X-Auth-Token` and aiopyston's bare `Authorization` carry the key.
//!
//! The clients come pinned from `.ci/venvs/compat.txt` into `target/venv-compat` (`.ci/venv.sh`,
//! made here when missing). Without it the tests skip loudly, and fail under `CI`.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::helpers::*;

/// The venv's python.
fn python() -> Option<PathBuf> {
    let venv = pinned_venv("compat", "the compat client tests (judge0, aiopyston)")?;
    Some(venv.join("bin/python"))
}

/// A service with API keys, and a key of its own team.
fn keyed_app(name: &str) -> (TestApp, String) {
    let app = TestApp::start(
        &format!("{name}-{}", std::process::id()),
        &[
            ("EXECBOX_AUTH", "api-key"),
            ("EXECBOX_DOCKER__ENABLED", "false"),
        ],
    );
    let out = Command::new(env!("CARGO_BIN_EXE_execbox"))
        .args(["keys", "create", "--team", "clients", "--data-dir"])
        .arg(&app.data_dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let key = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .last()
        .unwrap()
        .to_string();
    (app, key)
}

/// Run `tests/compat/<script>` with the base URL and key; it asserts, and says what ran.
fn drive(python: &Path, script: &str, base: &str, key: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/compat")
        .join(script);
    let out = Command::new(python)
        .arg(path)
        .args([base, key])
        .env("JUDGE0_SUPPRESS_PREVIEW_WARNING", "1")
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{said}");
    assert!(out.status.success(), "{script} failed:\n{said}");
}

#[test]
fn the_official_judge0_sdk_runs_single_and_batched_submissions() {
    needs_root!();
    let Some(python) = python() else { return };
    let (app, key) = keyed_app("j0sdk");
    drive(&python, "judge0_sdk.py", &app.url("/judge0"), &key);
}

#[test]
fn a_piston_client_lists_runtimes_and_runs_in_each() {
    needs_root!();
    let Some(python) = python() else { return };
    let (app, key) = keyed_app("pistoncli");
    drive(
        &python,
        "piston_client.py",
        &app.url("/piston/api/v2/"),
        &key,
    );
}
