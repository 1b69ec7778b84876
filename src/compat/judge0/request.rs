//! A Judge0 submission's body, read as Judge0 CE 1.13.1 reads it: unknown fields ignored,
//! numbers and booleans also as strings, a blank value as absent (the configured default), and
//! every way it can be wrong collected as `{field: [messages]}` in the order Judge0's model
//! validates, for the 422 answer.

use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{Map, Value};

use super::config::{ConfigInfo, MIN_MEMORY_KB, MIN_PROCESSES};
use super::encoding;
use super::verdict::decimal;
use crate::compat::languages::Offered;

/// A valid submission: every attribute Judge0 keeps, defaults filled in.
#[derive(Debug, Clone)]
pub struct Params {
    pub source_code: String,
    pub language: Offered,
    pub language_id: u32,
    pub stdin: Option<String>,
    pub expected_output: Option<String>,
    pub compiler_options: Option<String>,
    pub command_line_arguments: Option<String>,
    /// `compiler_options` as the words bash would make of it.
    pub compiler_flags: Vec<String>,
    /// `command_line_arguments` likewise: the program's arguments.
    pub args: Vec<String>,
    pub number_of_runs: u32,
    pub cpu_time_limit: f64,
    pub cpu_extra_time: f64,
    pub wall_time_limit: f64,
    pub memory_limit: u64,
    pub stack_limit: u64,
    pub max_processes_and_or_threads: u64,
    pub max_file_size: u64,
    pub redirect_stderr_to_stdout: bool,
}

/// Judge0's 422 body: each field with its messages, in validation order.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct FieldErrors(Vec<(&'static str, Vec<String>)>);

impl FieldErrors {
    fn add(&mut self, field: &'static str, message: impl Into<String>) {
        match self.0.iter_mut().find(|(f, _)| *f == field) {
            Some((_, m)) => m.push(message.into()),
            None => self.0.push((field, vec![message.into()])),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The messages of `field`, for tests.
    pub fn of(&self, field: &str) -> Vec<String> {
        self.0
            .iter()
            .find(|(f, _)| *f == field)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }
}

impl Serialize for FieldErrors {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (field, messages) in &self.0 {
            map.serialize_entry(field, messages)?;
        }
        map.end()
    }
}

/// A value as Rails' attribute casting sees it.
enum Read<T> {
    Absent,
    Value(T),
    Invalid,
}

/// Rails' `blank?`: absent, null, or a string of only whitespace.
fn blank(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => s.trim().is_empty(),
        _ => false,
    }
}

fn text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

fn number(v: Option<&Value>) -> Read<f64> {
    match v {
        _ if blank(v) => Read::Absent,
        Some(Value::Number(n)) => n.as_f64().map_or(Read::Invalid, Read::Value),
        Some(Value::String(s)) => s.trim().parse().map_or(Read::Invalid, Read::Value),
        _ => Read::Invalid,
    }
}

fn boolean(v: Option<&Value>) -> Option<bool> {
    match v {
        _ if blank(v) => None,
        Some(Value::Bool(b)) => Some(*b),
        Some(Value::Number(n)) => Some(n.as_f64() != Some(0.0)),
        Some(Value::String(s)) => Some(!matches!(
            s.trim().to_ascii_lowercase().as_str(),
            "false" | "f" | "0" | "off"
        )),
        _ => Some(true),
    }
}

/// Checks one numeric attribute: its default when blank, "is not a number", then its bounds
/// (`low` inclusive unless `above`), with the bound written as Judge0 writes it.
struct Bounded<'a> {
    errors: &'a mut FieldErrors,
    body: &'a Map<String, Value>,
}

impl Bounded<'_> {
    fn check(
        &mut self,
        field: &'static str,
        default: f64,
        low: (f64, bool),
        high: f64,
        show: fn(f64) -> String,
    ) -> f64 {
        let value = match number(self.body.get(field)) {
            Read::Absent => default,
            Read::Value(v) => v,
            Read::Invalid => {
                self.errors.add(field, "is not a number");
                return default;
            }
        };
        let (min, above) = low;
        if above && value <= min {
            self.errors
                .add(field, format!("must be greater than {}", show(min)));
        } else if !above && value < min {
            self.errors.add(
                field,
                format!("must be greater than or equal to {}", show(min)),
            );
        }
        if value > high {
            self.errors.add(
                field,
                format!("must be less than or equal to {}", show(high)),
            );
        }
        value
    }
}

/// The words bash makes of an option or argument string once Judge0 has taken out the
/// characters it refuses to pass to a shell (`$&;<>|` and backquote); `None` when a quote is
/// left open.
pub fn words(text: &str) -> Option<Vec<String>> {
    let kept: String = text.chars().filter(|c| !"$&;<>|`".contains(*c)).collect();
    shlex::split(kept.trim())
}

fn whole(v: f64) -> String {
    format!("{}", v as i64)
}

/// Read and check a submission body. `base64`: `source_code`, `stdin` and `expected_output`
/// come base64-encoded (`base64_encoded=true`).
pub fn parse(
    body: &Map<String, Value>,
    base64: bool,
    config: &ConfigInfo,
    languages: &[Offered],
) -> Result<Params, FieldErrors> {
    let mut errors = FieldErrors::default();
    let decoded = |field: &str| {
        text(body.get(field)).map(|t| if base64 { encoding::decode_text(&t) } else { t })
    };
    let source_code = decoded("source_code");
    let stdin = decoded("stdin");
    let expected_output = decoded("expected_output");
    if source_code.as_deref().is_none_or(|s| s.trim().is_empty()) {
        errors.add("source_code", "can't be blank");
    }
    let language_id = match number(body.get("language_id")) {
        Read::Absent => {
            errors.add("language_id", "can't be blank");
            None
        }
        Read::Value(v) => Some(v as i64),
        Read::Invalid => Some(0),
    };

    let mut b = Bounded {
        errors: &mut errors,
        body,
    };
    let c = config;
    let number_of_runs = b.check(
        "number_of_runs",
        c.number_of_runs.into(),
        (0.0, true),
        c.max_number_of_runs.into(),
        whole,
    );
    let cpu_time_limit = b.check(
        "cpu_time_limit",
        c.cpu_time_limit,
        (0.0, false),
        c.max_cpu_time_limit,
        decimal,
    );
    let cpu_extra_time = b.check(
        "cpu_extra_time",
        c.cpu_extra_time,
        (0.0, false),
        c.max_cpu_extra_time,
        decimal,
    );
    let wall_time_limit = b.check(
        "wall_time_limit",
        c.wall_time_limit,
        (1.0, false),
        c.max_wall_time_limit,
        decimal,
    );
    let memory_limit = b.check(
        "memory_limit",
        c.memory_limit as f64,
        (MIN_MEMORY_KB as f64, false),
        c.max_memory_limit as f64,
        whole,
    );
    let stack_limit = b.check(
        "stack_limit",
        c.stack_limit as f64,
        (0.0, false),
        c.max_stack_limit as f64,
        whole,
    );
    let max_processes = b.check(
        "max_processes_and_or_threads",
        c.max_processes_and_or_threads as f64,
        (MIN_PROCESSES as f64, false),
        c.max_max_processes_and_or_threads as f64,
        whole,
    );
    for (field, allowed) in [
        (
            "enable_per_process_and_thread_time_limit",
            c.allow_enable_per_process_and_thread_time_limit,
        ),
        (
            "enable_per_process_and_thread_memory_limit",
            c.allow_enable_per_process_and_thread_memory_limit,
        ),
    ] {
        if boolean(body.get(field)) == Some(true) && !allowed {
            errors.add(field, "this option cannot be enabled");
        }
    }
    let mut b = Bounded {
        errors: &mut errors,
        body,
    };
    let max_file_size = b.check(
        "max_file_size",
        c.max_file_size as f64,
        (0.0, false),
        c.max_max_file_size as f64,
        whole,
    );
    let compiler_options = text(body.get("compiler_options")).filter(|s| !s.trim().is_empty());
    let command_line_arguments =
        text(body.get("command_line_arguments")).filter(|s| !s.trim().is_empty());
    for (field, value) in [
        ("compiler_options", &compiler_options),
        ("command_line_arguments", &command_line_arguments),
    ] {
        if value.as_ref().is_some_and(|v| v.chars().count() > 512) {
            errors.add(field, "is too long (maximum is 512 characters)");
        } else if value.as_deref().is_some_and(|v| words(v).is_none()) {
            errors.add(field, "has a quote that is not closed");
        }
    }

    let language = language_id.and_then(|id| {
        let found = u32::try_from(id)
            .ok()
            .and_then(|id| languages.iter().find(|l| l.has_judge0_id(id)));
        if found.is_none() {
            errors.add(
                "language_id",
                format!("language with id {id} doesn't exist"),
            );
        }
        found
    });
    if compiler_options.is_some() {
        if !c.enable_compiler_options {
            errors.add(
                "compiler_options",
                "setting compiler options is not allowed",
            );
        } else if let Some(l) = language {
            match &l.runtime.compile {
                None => errors.add(
                    "compiler_options",
                    "setting compiler options is only allowed for compiled languages",
                ),
                // They go before the source file; a compile command that does not name it as
                // an argument of its own (a shell script) takes none.
                Some(c) if !c.contains(&l.runtime.source_file) => errors.add(
                    "compiler_options",
                    format!(
                        "setting compiler options is not supported for {} here",
                        l.judge0_name()
                    ),
                ),
                Some(_) => {}
            }
        }
    }
    if command_line_arguments.is_some() && !c.enable_command_line_arguments {
        errors.add(
            "command_line_arguments",
            "setting command line arguments is not allowed",
        );
    }
    if !blank(body.get("callback_url")) && !c.enable_callbacks {
        errors.add("callback_url", "setting callback is not allowed");
    }
    if !blank(body.get("additional_files")) && !c.enable_additional_files {
        errors.add(
            "additional_files",
            "setting additional files is not allowed",
        );
    }
    if boolean(body.get("enable_network")) == Some(true) && !c.allow_enable_network {
        errors.add("enable_network", "enabling network is not allowed");
    }

    if !errors.is_empty() {
        return Err(errors);
    }
    let language = language.expect("checked above").clone();
    Ok(Params {
        source_code: source_code.expect("checked above"),
        language_id: language_id.expect("checked above") as u32,
        language,
        stdin,
        expected_output,
        compiler_flags: compiler_options
            .as_deref()
            .and_then(words)
            .unwrap_or_default(),
        args: command_line_arguments
            .as_deref()
            .and_then(words)
            .unwrap_or_default(),
        compiler_options,
        command_line_arguments,
        number_of_runs: number_of_runs as u32,
        cpu_time_limit,
        cpu_extra_time,
        wall_time_limit,
        memory_limit: memory_limit as u64,
        stack_limit: stack_limit as u64,
        max_processes_and_or_threads: max_processes as u64,
        max_file_size: max_file_size as u64,
        redirect_stderr_to_stdout: boolean(body.get("redirect_stderr_to_stdout"))
            .unwrap_or(c.redirect_stderr_to_stdout),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compat::languages;
    use crate::exec::runtime::RuntimeTable;
    use crate::policy::PolicySet;

    fn offered() -> Vec<Offered> {
        let runtimes = RuntimeTable::embedded();
        languages::table()
            .iter()
            .filter_map(|row| {
                let runtime = runtimes.find(&row.runtime)?.clone();
                Some(Offered {
                    row,
                    runtime,
                    probed: "1.2.3".into(),
                    version: "1.2.3".into(),
                })
            })
            .collect()
    }

    fn config() -> ConfigInfo {
        ConfigInfo::new(PolicySet::embedded().unwrap().get("default").unwrap(), 64)
    }

    fn parse_json(body: serde_json::Value, base64: bool) -> Result<Params, FieldErrors> {
        parse(body.as_object().unwrap(), base64, &config(), &offered())
    }

    #[test]
    fn defaults_fill_what_is_left_out_and_strings_are_read_as_rails_casts_them() {
        let p = parse_json(
            serde_json::json!({"source_code": "print(1)", "language_id": "71", "cpu_time_limit": "2.5", "redirect_stderr_to_stdout": "true", "unknown": 1}),
            false,
        )
        .unwrap();
        assert_eq!(p.language.row.runtime, "python");
        assert_eq!(p.cpu_time_limit, 2.5);
        assert_eq!((p.cpu_extra_time, p.wall_time_limit), (1.0, 10.0));
        assert_eq!(
            (p.memory_limit, p.max_processes_and_or_threads),
            (128_000, 60)
        );
        assert_eq!((p.number_of_runs, p.max_file_size), (1, 1024));
        assert!(p.redirect_stderr_to_stdout);
        let c = parse_json(
            serde_json::json!({"source_code": "x", "language_id": 48}),
            false,
        )
        .unwrap();
        assert_eq!((c.language.row.runtime.as_str(), c.language_id), ("c", 48));
    }

    #[test]
    fn arguments_and_options_are_split_as_bash_would_after_judge0s_filter() {
        let p = parse_json(
            serde_json::json!({"source_code": "x", "language_id": 50, "compiler_options": " -O0  -DX=1 ", "command_line_arguments": "a 'b c' d\\ e $HOME;rm"}),
            false,
        )
        .unwrap();
        assert_eq!(p.compiler_flags, ["-O0", "-DX=1"]);
        assert_eq!(p.args, ["a", "b c", "d e", "HOMErm"]);
        let e = parse_json(
            serde_json::json!({"source_code": "x", "language_id": 71, "command_line_arguments": "'open"}),
            false,
        )
        .unwrap_err();
        assert_eq!(
            e.of("command_line_arguments"),
            ["has a quote that is not closed"]
        );
    }

    #[test]
    fn compiler_options_need_the_source_file_as_an_argument_of_its_own() {
        let mut langs = offered();
        let c = langs.iter_mut().find(|l| l.row.runtime == "c").unwrap();
        c.runtime.compile = Some(vec!["sh".into(), "-c".into(), "gcc -o main main.c".into()]);
        let body =
            serde_json::json!({"source_code": "x", "language_id": 50, "compiler_options": "-O0"});
        let e = parse(body.as_object().unwrap(), false, &config(), &langs).unwrap_err();
        assert_eq!(
            e.of("compiler_options"),
            ["setting compiler options is not supported for C (GCC 1.2.3) here"]
        );
    }

    #[test]
    fn base64_fields_are_decoded() {
        let p = parse_json(
            serde_json::json!({"source_code": "cHJpbnQoMSk=\n", "language_id": 71, "stdin": "eA==", "expected_output": "MQo="}),
            true,
        )
        .unwrap();
        assert_eq!(p.source_code, "print(1)");
        assert_eq!(p.stdin.as_deref(), Some("x"));
        assert_eq!(p.expected_output.as_deref(), Some("1\n"));
    }

    #[test]
    fn every_error_is_named_with_judge0s_message() {
        let e = parse_json(serde_json::json!({"source_code": "  ", "cpu_time_limit": 16, "wall_time_limit": 0.5, "memory_limit": "lots", "number_of_runs": 0, "enable_network": true, "callback_url": "http://x", "enable_per_process_and_thread_time_limit": true}), false).unwrap_err();
        assert_eq!(e.of("source_code"), ["can't be blank"]);
        assert_eq!(e.of("language_id"), ["can't be blank"]);
        assert_eq!(
            e.of("cpu_time_limit"),
            ["must be less than or equal to 15.0"]
        );
        assert_eq!(
            e.of("wall_time_limit"),
            ["must be greater than or equal to 1.0"]
        );
        assert_eq!(e.of("memory_limit"), ["is not a number"]);
        assert_eq!(e.of("number_of_runs"), ["must be greater than 0"]);
        assert_eq!(e.of("enable_network"), ["enabling network is not allowed"]);
        assert_eq!(e.of("callback_url"), ["setting callback is not allowed"]);
        assert_eq!(
            e.of("enable_per_process_and_thread_time_limit"),
            ["this option cannot be enabled"]
        );
        let json = serde_json::to_string(&e).unwrap();
        assert!(json.starts_with(r#"{"source_code":["can't be blank"],"language_id":["can't be blank"],"number_of_runs""#), "{json}");
        let e = parse_json(serde_json::json!({"source_code": "x", "language_id": 9999, "memory_limit": 4096, "compiler_options": "-O3"}), false).unwrap_err();
        assert_eq!(e.of("language_id"), ["language with id 9999 doesn't exist"]);
        assert_eq!(
            e.of("memory_limit"),
            ["must be greater than or equal to 8192"]
        );
        assert!(e.of("compiler_options").is_empty());
        let e = parse_json(
            serde_json::json!({"source_code": "x", "language_id": 71, "compiler_options": "-O3"}),
            false,
        )
        .unwrap_err();
        assert_eq!(
            e.of("compiler_options"),
            ["setting compiler options is only allowed for compiled languages"]
        );
    }
}
