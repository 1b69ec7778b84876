//! `execbox run`: one sandboxed run without a server.

use crate::helpers::needs_root;
use std::io::Write;
use std::process::{Command, Stdio};

use crate::helpers::require_root;

fn execbox_run(args: &[&str], program: &str) -> (Option<i32>, String, String) {
    require_root();
    let data = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_execbox"))
        .arg("run")
        .arg("--data-dir")
        .arg(data.path())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(program.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn prints_output_and_exits_with_the_programs_code() {
    needs_root!();
    let (code, out, err) = execbox_run(
        &["--language", "python", "-", "--", "a1"],
        "import sys\nprint('hi', sys.argv[1])\nprint('e', file=sys.stderr)\nsys.exit(7)",
    );
    assert_eq!(
        (code, out.as_str(), err.as_str()),
        (Some(7), "hi a1\n", "e\n")
    );
}

#[test]
fn a_timeout_says_so_in_one_line() {
    needs_root!();
    let (code, _, err) = execbox_run(
        &["--language", "bash", "--policy", "strict", "-"],
        "trap '' TERM; sleep 30",
    );
    assert_eq!(code, Some(124));
    assert_eq!(
        err,
        "execbox: timed out after 5000 ms (wall-time limit); the whole process tree was killed\n"
    );
}

#[test]
fn a_memory_limit_says_so_in_one_line() {
    needs_root!();
    let (code, _, err) = execbox_run(
        &["--language", "python", "--policy", "strict", "-"],
        "x = bytearray(1 << 30)\nx[::4096] = b'1' * len(x[::4096])",
    );
    assert_eq!(code, Some(137));
    assert_eq!(
        err,
        "execbox: memory limit of 134217728 bytes reached; killed\n"
    );
}

#[test]
fn compile_errors_are_shown() {
    needs_root!();
    let (code, _, err) = execbox_run(&["--language", "c", "-"], "int main() { return nope; }");
    assert_eq!(code, Some(1));
    assert!(
        err.contains("nope") && err.ends_with("execbox: compile step failed (error)\n"),
        "{err}"
    );
}

/// `keys list`/`revoke` only read state: a mistyped data dir must fail, not make an empty store.
#[test]
fn keys_list_and_revoke_refuse_a_missing_data_dir() {
    let parent = tempfile::tempdir().unwrap();
    let typo = parent.path().join("typo");
    for args in [
        &["keys", "list"][..],
        &["keys", "revoke", "exb_00000000"][..],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_execbox"))
            .args(args)
            .arg("--data-dir")
            .arg(&typo)
            .env_remove("EXECBOX_CONFIG")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains("there is no store at") && err.contains("typo/execbox.db"),
            "{args:?}: {err}"
        );
        assert!(!typo.exists(), "{args:?} created {}", typo.display());
    }
    // `create` makes the store, after which `list` reads it.
    let created = Command::new(env!("CARGO_BIN_EXE_execbox"))
        .args(["keys", "create", "--team", "alpha", "--data-dir"])
        .arg(&typo)
        .output()
        .unwrap();
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let listed = Command::new(env!("CARGO_BIN_EXE_execbox"))
        .args(["keys", "list", "--data-dir"])
        .arg(&typo)
        .output()
        .unwrap();
    assert!(listed.status.success() && String::from_utf8_lossy(&listed.stdout).contains("alpha"));
}

/// Every option a newcomer types has help text.
#[test]
fn every_option_has_help() {
    let subcommands: &[&[&str]] = &[
        &["serve"],
        &["run"],
        &["eval"],
        &["agent"],
        &["agent-eval"],
        &["keys", "create"],
        &["keys", "list"],
        &["keys", "revoke"],
    ];
    for sub in subcommands {
        let out = Command::new(env!("CARGO_BIN_EXE_execbox"))
            .args(*sub)
            .arg("--help")
            .output()
            .unwrap();
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{sub:?}");
        // clap prints an option's name, two spaces or more, then its help; with no help there is
        // nothing after the name or only `[default: ..]`/`[env: ..]`.
        let bare: Vec<&str> = help
            .lines()
            .map(str::trim)
            .filter(|l| l.starts_with('-') || l.starts_with('<') || l.starts_with('['))
            .filter(|l| {
                l.split_once("  ")
                    .is_none_or(|(_, help)| help.trim_start().starts_with('['))
            })
            .collect();
        assert!(
            bare.is_empty(),
            "{sub:?}: options without help: {bare:?}\n{help}"
        );
    }
    let eval = Command::new(env!("CARGO_BIN_EXE_execbox"))
        .args(["eval", "--help"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&eval.stdout).contains("samples.jsonl_results.jsonl"));
    let data_dir = Command::new(env!("CARGO_BIN_EXE_execbox"))
        .args(["serve", "--help"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&data_dir.stdout).contains("default: /var/lib/execbox as"));
}
