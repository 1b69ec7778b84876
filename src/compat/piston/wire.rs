//! Piston v2's answers: a runtime in the list, and an execution's stages with its fields.

use serde::Serialize;

use crate::exec::{CompileResult, RunResult, Status};

#[derive(Debug, Serialize)]
pub struct RuntimeItem {
    pub language: String,
    pub version: String,
    pub aliases: Vec<String>,
    /// Only when the runtime has a name of its own (`node` for javascript).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runtime: Option<String>,
}

/// One stage (compile or run) as Piston reports it.
#[derive(Debug, Serialize, PartialEq)]
pub struct Stage {
    pub stdout: String,
    pub stderr: String,
    /// Both streams in the order the program wrote them.
    pub output: String,
    /// The exit code, or null when a signal ended it.
    pub code: Option<i32>,
    pub signal: Option<String>,
    pub message: Option<String>,
    /// `RE`, `SG`, `TO`, `OL`, `EL`, `XX`, or null when it exited 0.
    pub status: Option<&'static str>,
    /// Milliseconds.
    pub cpu_time: u64,
    pub wall_time: u64,
    /// Peak memory, bytes.
    pub memory: u64,
}

#[derive(Debug, Serialize)]
pub struct ExecuteResponse {
    /// Only for a language with a compile stage.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compile: Option<Stage>,
    /// Absent when the compile stage failed and nothing ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run: Option<Stage>,
    pub language: String,
    pub version: String,
}

/// Piston's status and message for a stage that ended so.
fn status(
    status: Status,
    exit_code: Option<i32>,
    signal: Option<&str>,
    truncated: (bool, bool),
) -> (Option<&'static str>, Option<String>) {
    let signal_number = signal
        .and_then(|s| s.parse::<nix::sys::signal::Signal>().ok())
        .map(|s| s as i32);
    match (status, truncated) {
        (_, (true, _)) => (Some("OL"), Some("stdout length exceeded".into())),
        (_, (_, true)) => (Some("EL"), Some("stderr length exceeded".into())),
        (Status::Timeout, _) => (Some("TO"), Some("Time limit exceeded (wall clock)".into())),
        (Status::CpuLimit, _) => (Some("TO"), Some("Time limit exceeded".into())),
        (Status::MemoryLimit | Status::Killed, _) => (
            Some("SG"),
            Some(match signal_number {
                Some(n) => format!("Caught fatal signal {n}"),
                None => "Caught fatal signal".into(),
            }),
        ),
        (Status::Error | Status::CompileError, _) => (
            Some("RE"),
            Some(format!(
                "Exited with error status {}",
                exit_code.unwrap_or(-1)
            )),
        ),
        (Status::Ok, _) => (None, None),
    }
}

impl Stage {
    /// The run stage; `output` is both streams as they arrived.
    pub fn run(r: &RunResult, output: String) -> Stage {
        let (status, message) = status(
            r.status,
            r.exit_code,
            r.signal.as_deref(),
            (r.stdout_truncated, r.stderr_truncated),
        );
        Stage {
            stdout: r.stdout.clone(),
            stderr: r.stderr.clone(),
            output,
            code: if r.signal.is_some() {
                None
            } else {
                r.exit_code
            },
            signal: r.signal.clone(),
            message,
            status,
            cpu_time: r.usage.cpu_time_ms,
            wall_time: r.usage.wall_time_ms,
            memory: r.usage.peak_memory_bytes,
        }
    }

    /// The compile stage. Its streams are not interleaved (`output` is stdout then stderr);
    /// the service kills a compile at its limits with SIGKILL.
    pub fn compile(c: &CompileResult) -> Stage {
        let signal = matches!(
            c.status,
            Status::Timeout | Status::CpuLimit | Status::MemoryLimit
        )
        .then(|| "SIGKILL".to_string());
        let (status, message) = status(c.status, c.exit_code, signal.as_deref(), (false, false));
        Stage {
            stdout: c.stdout.clone(),
            stderr: c.stderr.clone(),
            output: format!("{}{}", c.stdout, c.stderr),
            code: if signal.is_some() { None } else { c.exit_code },
            signal,
            message,
            status,
            cpu_time: c.usage.cpu_time_ms,
            wall_time: c.usage.wall_time_ms,
            memory: c.usage.peak_memory_bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::Usage;

    fn result(status: Status, exit: Option<i32>, signal: Option<&str>) -> RunResult {
        RunResult {
            id: "r".into(),
            status,
            exit_code: exit,
            signal: signal.map(str::to_string),
            stdout: "out".into(),
            stderr: "err".into(),
            stdout_truncated: false,
            stderr_truncated: false,
            usage: Usage {
                wall_time_ms: 21,
                cpu_time_ms: 9,
                peak_memory_bytes: 4096,
            },
            compile: None,
            executor: "local".into(),
            policy: "default".into(),
            language: "python".into(),
            runtime_version: "Python 3.11.2".into(),
            results: None,
            error: None,
        }
    }

    #[test]
    fn a_run_maps_to_pistons_stage() {
        let ok = Stage::run(&result(Status::Ok, Some(0), None), "outerr".into());
        assert_eq!(
            (
                ok.code,
                ok.signal.as_deref(),
                ok.status,
                ok.message.as_deref()
            ),
            (Some(0), None, None, None)
        );
        assert_eq!((ok.cpu_time, ok.wall_time, ok.memory), (9, 21, 4096));
        for (r, st, msg, code) in [
            (
                result(Status::Error, Some(2), None),
                "RE",
                "Exited with error status 2",
                Some(2),
            ),
            (
                result(Status::Killed, None, Some("SIGSEGV")),
                "SG",
                "Caught fatal signal 11",
                None,
            ),
            (
                result(Status::MemoryLimit, None, Some("SIGKILL")),
                "SG",
                "Caught fatal signal 9",
                None,
            ),
            (
                result(Status::Timeout, None, Some("SIGKILL")),
                "TO",
                "Time limit exceeded (wall clock)",
                None,
            ),
            (
                result(Status::CpuLimit, None, Some("SIGKILL")),
                "TO",
                "Time limit exceeded",
                None,
            ),
        ] {
            let s = Stage::run(&r, String::new());
            assert_eq!(
                (s.status, s.message.as_deref(), s.code),
                (Some(st), Some(msg), code)
            );
        }
        let mut flood = result(Status::Ok, Some(0), None);
        flood.stderr_truncated = true;
        assert_eq!(Stage::run(&flood, String::new()).status, Some("EL"));
        flood.stdout_truncated = true;
        assert_eq!(Stage::run(&flood, String::new()).status, Some("OL"));
    }

    #[test]
    fn a_compile_that_ran_out_of_time_was_killed() {
        let c = CompileResult {
            status: Status::Timeout,
            exit_code: None,
            stdout: String::new(),
            stderr: "x".into(),
            usage: Usage::default(),
        };
        let s = Stage::compile(&c);
        assert_eq!(
            (s.code, s.signal.as_deref(), s.status),
            (None, Some("SIGKILL"), Some("TO"))
        );
        assert_eq!(s.output, "x");
    }
}
