//! `execbox run`: one sandboxed run without a server.

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
    child.stdin.take().unwrap().write_all(program.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

#[test]
fn prints_output_and_exits_with_the_programs_code() {
    let (code, out, err) = execbox_run(&["--language", "python", "-", "--", "a1"], "import sys\nprint('hi', sys.argv[1])\nprint('e', file=sys.stderr)\nsys.exit(7)");
    assert_eq!((code, out.as_str(), err.as_str()), (Some(7), "hi a1\n", "e\n"));
}

#[test]
fn a_timeout_says_so_in_one_line() {
    let (code, _, err) = execbox_run(&["--language", "bash", "--policy", "strict", "-"], "trap '' TERM; sleep 30");
    assert_eq!(code, Some(124));
    assert_eq!(err, "execbox: timed out after 5000 ms (wall-time limit); the whole process tree was killed\n");
}

#[test]
fn a_memory_limit_says_so_in_one_line() {
    let (code, _, err) = execbox_run(&["--language", "python", "--policy", "strict", "-"], "x = bytearray(1 << 30)\nx[::4096] = b'1' * len(x[::4096])");
    assert_eq!(code, Some(137));
    assert_eq!(err, "execbox: memory limit of 134217728 bytes reached; killed\n");
}

#[test]
fn compile_errors_are_shown() {
    let (code, _, err) = execbox_run(&["--language", "c", "-"], "int main() { return nope; }");
    assert_eq!(code, Some(1));
    assert!(err.contains("nope") && err.ends_with("execbox: compile step failed (error)\n"), "{err}");
}
