//! A run's outcome as Judge0 reports it: the status (Judge0 CE 1.13.1's fourteen), the
//! message isolate would have written, `time` and `wall_time` in seconds, `memory` in KB, and
//! `expected_output` compared the way Judge0 compares it.

use crate::exec::{RunResult, Status};

/// Judge0's statuses, by id.
pub const STATUSES: [(u8, &str); 14] = [
    (1, "In Queue"),
    (2, "Processing"),
    (3, "Accepted"),
    (4, "Wrong Answer"),
    (5, "Time Limit Exceeded"),
    (6, "Compilation Error"),
    (7, "Runtime Error (SIGSEGV)"),
    (8, "Runtime Error (SIGXFSZ)"),
    (9, "Runtime Error (SIGFPE)"),
    (10, "Runtime Error (SIGABRT)"),
    (11, "Runtime Error (NZEC)"),
    (12, "Runtime Error (Other)"),
    (13, "Internal Error"),
    (14, "Exec Format Error"),
];

pub const IN_QUEUE: u8 = 1;
pub const PROCESSING: u8 = 2;
pub const ACCEPTED: u8 = 3;
pub const WRONG_ANSWER: u8 = 4;
pub const TIME_LIMIT_EXCEEDED: u8 = 5;
pub const COMPILATION_ERROR: u8 = 6;
pub const SIGXFSZ: u8 = 8;
pub const NZEC: u8 = 11;
pub const INTERNAL_ERROR: u8 = 13;

pub fn description(id: u8) -> &'static str {
    STATUSES
        .iter()
        .find(|(i, _)| *i == id)
        .map(|(_, d)| *d)
        .unwrap_or("Internal Error")
}

/// Judge0's runtime-error status for a fatal signal.
fn by_signal(signal: i32) -> u8 {
    match signal {
        libc::SIGSEGV => 7,
        libc::SIGXFSZ => 8,
        libc::SIGFPE => 9,
        libc::SIGABRT => 10,
        _ => 12,
    }
}

/// What one run comes to.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub status_id: u8,
    pub stdout: Option<String>,
    pub stderr: Option<String>,
    pub compile_output: Option<String>,
    pub message: Option<String>,
    pub exit_code: Option<i32>,
    pub exit_signal: Option<i32>,
    /// CPU time, milliseconds.
    pub time_ms: Option<u64>,
    pub wall_time_ms: Option<u64>,
    pub memory_kb: Option<u64>,
}

/// The limits a verdict is judged against.
pub struct Judged<'a> {
    pub expected_output: Option<&'a str>,
    /// `cpu_time_limit`: a run that used more CPU is over its limit even when it finished
    /// within `cpu_extra_time`, as isolate reports it.
    pub cpu_time_limit_ms: u64,
    /// `max_file_size`, KB: the output cap of each stream.
    pub max_file_size_kb: u64,
}

fn nonempty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}

fn signal_number(name: &str) -> Option<i32> {
    name.parse::<nix::sys::signal::Signal>()
        .ok()
        .map(|s| s as i32)
}

pub fn verdict(r: &RunResult, judged: &Judged) -> Verdict {
    let compile_output = r
        .compile
        .as_ref()
        .and_then(|c| nonempty(&format!("{}{}", c.stdout, c.stderr)));
    if r.status == Status::CompileError {
        let timed_out = r
            .compile
            .as_ref()
            .is_some_and(|c| matches!(c.status, Status::Timeout | Status::CpuLimit));
        return Verdict {
            status_id: COMPILATION_ERROR,
            compile_output: if timed_out {
                Some("Compilation time limit exceeded.".into())
            } else {
                compile_output
            },
            stdout: None,
            stderr: None,
            message: None,
            exit_code: None,
            exit_signal: None,
            time_ms: None,
            wall_time_ms: None,
            memory_kb: None,
        };
    }
    let signal = r.signal.as_deref().and_then(signal_number);
    let (status_id, message) = if r.stdout_truncated || r.stderr_truncated {
        // Isolate would have killed the program with SIGXFSZ at the cap; execbox drops the rest.
        (
            SIGXFSZ,
            Some(format!(
                "Output exceeded max_file_size ({} KB); the rest was dropped",
                judged.max_file_size_kb
            )),
        )
    } else {
        match r.status {
            Status::Timeout => (
                TIME_LIMIT_EXCEEDED,
                Some("Time limit exceeded (wall clock)".into()),
            ),
            Status::CpuLimit => (TIME_LIMIT_EXCEEDED, Some("Time limit exceeded".into())),
            _ if r.usage.cpu_time_ms > judged.cpu_time_limit_ms => {
                (TIME_LIMIT_EXCEEDED, Some("Time limit exceeded".into()))
            }
            Status::MemoryLimit | Status::Killed => {
                let sig = signal.unwrap_or(libc::SIGKILL);
                (by_signal(sig), Some(format!("Caught fatal signal {sig}")))
            }
            Status::Error => (
                NZEC,
                Some(format!(
                    "Exited with error status {}",
                    r.exit_code.unwrap_or(-1)
                )),
            ),
            Status::Ok | Status::CompileError => {
                let accepted = match judged.expected_output {
                    None => true,
                    Some(expected) => {
                        let stdout = nonempty(&r.stdout);
                        Some(strip(expected)) == stdout.as_deref().map(strip)
                    }
                };
                (if accepted { ACCEPTED } else { WRONG_ANSWER }, None)
            }
        }
    };
    Verdict {
        status_id,
        stdout: nonempty(&r.stdout),
        stderr: nonempty(&r.stderr),
        compile_output,
        message,
        // Isolate writes an exit code only for a program that exited; Judge0 reads a missing
        // one as 0.
        exit_code: Some(r.exit_code.unwrap_or(0)),
        exit_signal: signal,
        time_ms: Some(r.usage.cpu_time_ms),
        wall_time_ms: Some(r.usage.wall_time_ms),
        memory_kb: Some(r.usage.peak_memory_bytes / 1024),
    }
}

/// Judge0's comparison form: every line without its trailing whitespace, then the whole
/// without its trailing whitespace (so trailing blank lines and `\r` do not count; leading
/// whitespace does). An empty `stdout` is Judge0's `nil` and matches no `expected_output`,
/// not even an empty one.
pub fn strip(text: &str) -> String {
    const SPACE: &[char] = &[' ', '\t', '\n', '\x0b', '\x0c', '\r', '\0'];
    text.split('\n')
        .map(|l| l.trim_end_matches(SPACE))
        .collect::<Vec<_>>()
        .join("\n")
        .trim_end_matches(SPACE)
        .to_string()
}

/// A decimal column as Rails writes it: `5.0`, `0.282`, `0.01`.
pub fn decimal(value: f64) -> String {
    let rounded = (value * 1e6).round() / 1e6;
    if rounded.fract() == 0.0 {
        format!("{rounded:.1}")
    } else {
        format!("{rounded}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::{CompileResult, Usage};

    fn result(status: Status, exit: Option<i32>, signal: Option<&str>, stdout: &str) -> RunResult {
        RunResult {
            id: "r".into(),
            status,
            exit_code: exit,
            signal: signal.map(str::to_string),
            stdout: stdout.into(),
            stderr: String::new(),
            stdout_truncated: false,
            stderr_truncated: false,
            usage: Usage {
                wall_time_ms: 20,
                cpu_time_ms: 12,
                peak_memory_bytes: 3_391_488,
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

    fn judged(expected: Option<&str>) -> Judged<'_> {
        Judged {
            expected_output: expected,
            cpu_time_limit_ms: 5000,
            max_file_size_kb: 1024,
        }
    }

    #[test]
    fn expected_output_is_compared_as_judge0_compares_it() {
        let ok = result(Status::Ok, Some(0), None, "1 2  \r\n3\n\n\n");
        for (expected, status) in [
            (Some("1 2\n3"), ACCEPTED),
            (Some("1 2\n3\n"), ACCEPTED),
            (Some("1 2 \n3   \n \n"), ACCEPTED),
            (Some(" 1 2\n3"), WRONG_ANSWER),
            (Some("1 2\n\n3"), WRONG_ANSWER),
            (Some("1  2\n3"), WRONG_ANSWER),
            (None, ACCEPTED),
        ] {
            assert_eq!(
                verdict(&ok, &judged(expected)).status_id,
                status,
                "{expected:?}"
            );
        }
        let silent = result(Status::Ok, Some(0), None, "");
        assert_eq!(verdict(&silent, &judged(Some(""))).status_id, WRONG_ANSWER);
        assert_eq!(verdict(&silent, &judged(None)).status_id, ACCEPTED);
    }

    #[test]
    fn signals_exits_and_limits_map_to_judge0s_statuses() {
        let cases = [
            (
                result(Status::Killed, None, Some("SIGSEGV"), ""),
                7,
                "Caught fatal signal 11",
            ),
            (
                result(Status::Killed, None, Some("SIGFPE"), ""),
                9,
                "Caught fatal signal 8",
            ),
            (
                result(Status::Killed, None, Some("SIGABRT"), ""),
                10,
                "Caught fatal signal 6",
            ),
            (
                result(Status::Killed, None, Some("SIGTERM"), ""),
                12,
                "Caught fatal signal 15",
            ),
            (
                result(Status::MemoryLimit, None, Some("SIGKILL"), ""),
                12,
                "Caught fatal signal 9",
            ),
            (
                result(Status::Error, Some(3), None, ""),
                11,
                "Exited with error status 3",
            ),
            (
                result(Status::Timeout, None, Some("SIGKILL"), ""),
                5,
                "Time limit exceeded (wall clock)",
            ),
            (
                result(Status::CpuLimit, None, Some("SIGKILL"), ""),
                5,
                "Time limit exceeded",
            ),
        ];
        for (r, status, message) in cases {
            let v = verdict(&r, &judged(None));
            assert_eq!(
                (v.status_id, v.message.as_deref()),
                (status, Some(message)),
                "{r:?}"
            );
        }
        let segv = verdict(&cases_segv(), &judged(None));
        assert_eq!((segv.exit_code, segv.exit_signal), (Some(0), Some(11)));
    }

    fn cases_segv() -> RunResult {
        result(Status::Killed, None, Some("SIGSEGV"), "")
    }

    #[test]
    fn cpu_past_the_limit_within_the_extra_time_is_over_the_limit() {
        let mut r = result(Status::Ok, Some(0), None, "x");
        r.usage.cpu_time_ms = 5001;
        assert_eq!(verdict(&r, &judged(None)).status_id, TIME_LIMIT_EXCEEDED);
    }

    #[test]
    fn output_past_max_file_size_is_sigxfsz() {
        let mut r = result(Status::Ok, Some(0), None, "x");
        r.stdout_truncated = true;
        let v = verdict(&r, &judged(None));
        assert_eq!(v.status_id, SIGXFSZ);
        assert_eq!(v.exit_signal, None);
    }

    #[test]
    fn a_failed_compile_is_a_compilation_error_with_nothing_run() {
        let mut r = result(Status::CompileError, None, None, "");
        let compile = CompileResult {
            status: Status::Error,
            exit_code: Some(1),
            stdout: String::new(),
            stderr: "main.c:1: error\n".into(),
            usage: Usage::default(),
        };
        r.compile = Some(compile.clone());
        let v = verdict(&r, &judged(None));
        assert_eq!(v.status_id, COMPILATION_ERROR);
        assert_eq!(v.compile_output.as_deref(), Some("main.c:1: error\n"));
        assert_eq!((v.time_ms, v.exit_code, v.message), (None, None, None));
        r.compile = Some(CompileResult {
            status: Status::Timeout,
            ..compile
        });
        assert_eq!(
            verdict(&r, &judged(None)).compile_output.as_deref(),
            Some("Compilation time limit exceeded.")
        );
    }

    #[test]
    fn decimals_are_written_as_rails_writes_them() {
        assert_eq!(decimal(5.0), "5.0");
        assert_eq!(decimal(0.282), "0.282");
        assert_eq!(decimal(0.01), "0.01");
        assert_eq!(decimal(0.0), "0.0");
        assert_eq!(decimal(0.1 + 0.2), "0.3");
        assert_eq!(decimal(0.0015), "0.0015");
    }
}
