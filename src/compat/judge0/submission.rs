//! A Judge0 submission as it is kept (in the store, as JSON) and as it is answered: Judge0 CE
//! 1.13.1's attributes, in its order, filtered by `fields` and with the text attributes
//! base64-encoded on `base64_encoded=true`.

use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::encoding;
use super::request::Params;
use super::verdict::{self, decimal, Verdict};

/// Every attribute a submission is answered with, in Judge0's order (`fields=*`).
pub const FIELDS: &[&str] = &[
    "source_code",
    "language_id",
    "stdin",
    "expected_output",
    "stdout",
    "status_id",
    "created_at",
    "finished_at",
    "time",
    "memory",
    "stderr",
    "token",
    "number_of_runs",
    "cpu_time_limit",
    "cpu_extra_time",
    "wall_time_limit",
    "memory_limit",
    "stack_limit",
    "max_processes_and_or_threads",
    "enable_per_process_and_thread_time_limit",
    "enable_per_process_and_thread_memory_limit",
    "max_file_size",
    "compile_output",
    "exit_code",
    "exit_signal",
    "message",
    "wall_time",
    "compiler_options",
    "command_line_arguments",
    "redirect_stderr_to_stdout",
    "callback_url",
    "additional_files",
    "enable_network",
    "status",
    "language",
];

/// What an answer holds when `fields` is left out.
pub const DEFAULT_FIELDS: &[&str] = &[
    "token",
    "time",
    "memory",
    "stdout",
    "stderr",
    "compile_output",
    "message",
    "status",
];

/// The attributes an answer holds, in Judge0's order.
#[derive(Debug, Clone, PartialEq)]
pub struct Fields(Vec<&'static str>);

impl Fields {
    /// `fields` as Judge0 reads it: comma-separated names, `*` for all, left out or empty for
    /// the defaults. The names it does not know come back as the error.
    pub fn parse(requested: Option<&str>) -> Result<Fields, Vec<String>> {
        let names: Vec<&str> = requested
            .unwrap_or("")
            .split(',')
            .filter(|n| !n.is_empty())
            .collect();
        let invalid: Vec<String> = names
            .iter()
            .filter(|n| **n != "*" && !FIELDS.contains(n))
            .map(|n| n.to_string())
            .collect();
        if !invalid.is_empty() {
            return Err(invalid);
        }
        let wanted: &[&str] = if names.contains(&"*") {
            FIELDS
        } else if names.is_empty() {
            DEFAULT_FIELDS
        } else {
            &names
        };
        Ok(Fields(
            FIELDS
                .iter()
                .copied()
                .filter(|f| wanted.contains(f))
                .collect(),
        ))
    }

    pub fn token_only() -> Fields {
        Fields(vec!["token"])
    }
}

/// A submission with its outcome so far. Text is kept as text; times in milliseconds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Submission {
    pub token: String,
    pub source_code: String,
    pub language_id: u32,
    pub language_name: String,
    pub stdin: Option<String>,
    pub expected_output: Option<String>,
    pub compiler_options: Option<String>,
    pub command_line_arguments: Option<String>,
    pub number_of_runs: u32,
    pub cpu_time_limit: f64,
    pub cpu_extra_time: f64,
    pub wall_time_limit: f64,
    pub memory_limit: u64,
    pub stack_limit: u64,
    pub max_processes_and_or_threads: u64,
    pub max_file_size: u64,
    pub redirect_stderr_to_stdout: bool,
    pub status_id: u8,
    pub stdout: Option<String>,
    pub stderr: Option<String>,
    pub compile_output: Option<String>,
    pub message: Option<String>,
    pub exit_code: Option<i32>,
    pub exit_signal: Option<i32>,
    /// Seconds (Judge0's `time`: the CPU time, averaged over `number_of_runs`).
    pub time: Option<f64>,
    pub wall_time: Option<f64>,
    pub memory: Option<u64>,
    /// Unix milliseconds.
    pub created_at: i64,
    pub finished_at: Option<i64>,
}

impl Submission {
    /// A new submission, in the queue.
    pub fn queued(token: String, p: &Params, now_ms: i64) -> Submission {
        Submission {
            token,
            source_code: p.source_code.clone(),
            language_id: p.language_id,
            language_name: p.language.judge0_name(),
            stdin: p.stdin.clone(),
            expected_output: p.expected_output.clone(),
            compiler_options: p.compiler_options.clone(),
            command_line_arguments: p.command_line_arguments.clone(),
            number_of_runs: p.number_of_runs,
            cpu_time_limit: p.cpu_time_limit,
            cpu_extra_time: p.cpu_extra_time,
            wall_time_limit: p.wall_time_limit,
            memory_limit: p.memory_limit,
            stack_limit: p.stack_limit,
            max_processes_and_or_threads: p.max_processes_and_or_threads,
            max_file_size: p.max_file_size,
            redirect_stderr_to_stdout: p.redirect_stderr_to_stdout,
            status_id: verdict::IN_QUEUE,
            stdout: None,
            stderr: None,
            compile_output: None,
            message: None,
            exit_code: None,
            exit_signal: None,
            time: None,
            wall_time: None,
            memory: None,
            created_at: now_ms,
            finished_at: None,
        }
    }

    /// Whether it is still waiting or running.
    pub fn pending(&self) -> bool {
        matches!(self.status_id, verdict::IN_QUEUE | verdict::PROCESSING)
    }

    /// Its outcome from the verdicts of its runs, as Judge0 sums them: the last run's output
    /// and status, `time` and `memory` averaged over the runs, the last run's `wall_time`.
    pub fn finish(&mut self, verdicts: &[Verdict], now_ms: i64) {
        let last = verdicts.last().expect("at least one run");
        let average = |f: fn(&Verdict) -> Option<u64>| {
            let values: Vec<u64> = verdicts.iter().filter_map(f).collect();
            (!values.is_empty() && values.len() == verdicts.len())
                .then(|| values.iter().sum::<u64>() as f64 / values.len() as f64)
        };
        self.status_id = last.status_id;
        self.stdout = last.stdout.clone();
        self.stderr = last.stderr.clone();
        self.compile_output = last.compile_output.clone();
        self.message = last.message.clone();
        self.exit_code = last.exit_code;
        self.exit_signal = last.exit_signal;
        self.time = average(|v| v.time_ms).map(|ms| ms / 1000.0);
        self.wall_time = last.wall_time_ms.map(|ms| ms as f64 / 1000.0);
        self.memory = average(|v| v.memory_kb).map(|kb| kb as u64);
        self.finished_at = Some(now_ms);
    }

    /// Ended by the service, not the program: Judge0's Internal Error with why.
    pub fn fail(&mut self, message: String, now_ms: i64) {
        self.status_id = verdict::INTERNAL_ERROR;
        self.message = Some(message);
        self.finished_at = Some(now_ms);
    }

    /// The answer: `fields` in Judge0's order; with `base64`, the text attributes encoded.
    pub fn render(&self, fields: &Fields, base64: bool) -> Rendered {
        let text = |t: &Option<String>| -> Value {
            match t {
                None => Value::Null,
                Some(t) if base64 => encoding::encode(t.as_bytes()).into(),
                Some(t) => t.clone().into(),
            }
        };
        let time = |ms: i64| Value::from(crate::store::rfc3339_millis(ms));
        Rendered(
            fields
                .0
                .iter()
                .map(|&f| {
                    let v = match f {
                        "source_code" => text(&Some(self.source_code.clone())),
                        "language_id" => self.language_id.into(),
                        "stdin" => text(&self.stdin),
                        "expected_output" => text(&self.expected_output),
                        "stdout" => text(&self.stdout),
                        "status_id" => self.status_id.into(),
                        "created_at" => time(self.created_at),
                        "finished_at" => self.finished_at.map_or(Value::Null, time),
                        "time" => self.time.map_or(Value::Null, |t| decimal(t).into()),
                        "memory" => self.memory.into(),
                        "stderr" => text(&self.stderr),
                        "token" => self.token.clone().into(),
                        "number_of_runs" => self.number_of_runs.into(),
                        "cpu_time_limit" => decimal(self.cpu_time_limit).into(),
                        "cpu_extra_time" => decimal(self.cpu_extra_time).into(),
                        "wall_time_limit" => decimal(self.wall_time_limit).into(),
                        "memory_limit" => self.memory_limit.into(),
                        "stack_limit" => self.stack_limit.into(),
                        "max_processes_and_or_threads" => self.max_processes_and_or_threads.into(),
                        "enable_per_process_and_thread_time_limit"
                        | "enable_per_process_and_thread_memory_limit"
                        | "enable_network" => false.into(),
                        "max_file_size" => self.max_file_size.into(),
                        "compile_output" => text(&self.compile_output),
                        "exit_code" => self.exit_code.into(),
                        "exit_signal" => self.exit_signal.into(),
                        "message" => text(&self.message),
                        "wall_time" => self.wall_time.map_or(Value::Null, |t| decimal(t).into()),
                        "compiler_options" => self.compiler_options.clone().into(),
                        "command_line_arguments" => self.command_line_arguments.clone().into(),
                        "redirect_stderr_to_stdout" => self.redirect_stderr_to_stdout.into(),
                        "callback_url" | "additional_files" => Value::Null,
                        "status" => {
                            return (
                                f,
                                Field::Status {
                                    id: self.status_id,
                                    description: verdict::description(self.status_id),
                                },
                            )
                        }
                        "language" => {
                            return (
                                f,
                                Field::Language {
                                    id: self.language_id,
                                    name: self.language_name.clone(),
                                },
                            )
                        }
                        other => unreachable!("{other} is not in FIELDS"),
                    };
                    (f, Field::Value(v))
                })
                .collect(),
        )
    }
}

/// An answer object whose keys keep Judge0's order (a `serde_json::Value` object would sort
/// them), nested objects included.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered(pub Vec<(&'static str, Field)>);

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Field {
    Value(Value),
    Status { id: u8, description: &'static str },
    Language { id: u32, name: String },
}

impl Serialize for Rendered {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_parsed_as_judge0_reads_them_and_answered_in_its_order() {
        assert_eq!(
            Fields::parse(None).unwrap().0,
            [
                "stdout",
                "time",
                "memory",
                "stderr",
                "token",
                "compile_output",
                "message",
                "status"
            ]
        );
        assert_eq!(
            Fields::parse(Some("")).unwrap(),
            Fields::parse(None).unwrap()
        );
        assert_eq!(Fields::parse(Some("*")).unwrap().0.len(), FIELDS.len());
        assert_eq!(
            Fields::parse(Some("status,stdout,token")).unwrap().0,
            ["stdout", "token", "status"]
        );
        assert_eq!(
            Fields::parse(Some("stdout,nope, time")).unwrap_err(),
            ["nope", " time"]
        );
    }
}
