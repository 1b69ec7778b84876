//! The Python SDK (`clients/python`, package `execbox`) and its AutoGen code executor against the
//! real service: this starts `execbox serve` with API-key auth, a key of team `sdk`, the audit
//! log keeping code and private model base URLs allowed (the agent tests' scripted model is on
//! loopback), installs `clients/python` into the pinned venv `target/venv-sdk` (offline, no
//! build isolation: the venv pins setuptools) and runs `clients/python/tests` with its pytest.
//! The service's URL, the key and its data dir (for the audit log) go in `EXECBOX_TEST_URL`,
//! `EXECBOX_TEST_KEY` and `EXECBOX_TEST_DATA_DIR`; every test must pass and none may skip.
//!
//! The venv comes from `.ci/venv.sh` (`.ci/venvs/sdk.txt`). Without it the test skips loudly,
//! and fails under `CI`. Its own test binary, so it runs after the api suite, not beside it.

#[path = "api/helpers.rs"]
#[allow(dead_code, unused_imports, unused_macros)]
mod helpers;

use std::path::{Path, PathBuf};
use std::process::Command;

use helpers::*;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The venv's bin dir.
fn venv() -> Option<PathBuf> {
    Some(pinned_venv("sdk", "the Python SDK tests (pytest)")?.join("bin"))
}

/// `pip install clients/python` into the venv, as a user would, from this checkout.
fn install_sdk(bin: &Path) {
    let out = Command::new(bin.join("pip"))
        .args([
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
        ])
        .arg(Path::new(ROOT).join("clients/python"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pip install clients/python failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn create_key(app: &TestApp, team: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_execbox"))
        .args(["keys", "create", "--team", team, "--data-dir"])
        .arg(&app.data_dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap()
        .to_string()
}

#[test]
fn the_python_sdk_and_its_autogen_executor_pass_their_tests_against_the_service() {
    needs_root!();
    let Some(bin) = venv() else { return };
    install_sdk(&bin);
    let app = TestApp::start(
        &format!("sdk-{}", std::process::id()),
        &[
            ("EXECBOX_AUTH", "api-key"),
            ("EXECBOX_AUDIT__KEEP_CODE", "true"),
            ("EXECBOX_AGENT__ALLOW_PRIVATE_BASE_URLS", "true"),
            ("EXECBOX_AGENT__MODEL_BACKOFF_MS", "20"),
        ],
    );
    let key = create_key(&app, "sdk");
    let out = Command::new(bin.join("python"))
        .args(["-m", "pytest", "-p", "no:cacheprovider", "-rs", "-v"])
        .arg(Path::new(ROOT).join("clients/python/tests"))
        .env("EXECBOX_TEST_URL", &app.base)
        .env("EXECBOX_TEST_KEY", &key)
        .env("EXECBOX_TEST_DATA_DIR", &app.data_dir)
        .env_remove("EXECBOX_API_KEY")
        .current_dir(Path::new(ROOT).join("clients/python"))
        .output()
        .expect("running pytest");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{said}");
    assert!(
        out.status.success(),
        "the Python SDK's tests failed (exit {:?})",
        out.status.code()
    );
    let summary = said
        .lines()
        .rev()
        .find(|l| l.contains(" passed"))
        .expect("pytest's summary line");
    assert!(
        !summary.contains("skipped") && !summary.contains("deselected"),
        "every SDK test must run against the service: {summary}"
    );
}
