//! `POST /api/v2/execute`: Piston's request read and checked as Piston checks it (its
//! messages), made into a run, and its result answered as Piston's stages.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::{Extension, Json};
use base64::Engine;
use serde_json::{Map, Value};

use super::wire::{ExecuteResponse, Stage};
use super::PistonError;
use crate::compat::languages::{version_matches, Offered};
use crate::compat::{offered, run};
use crate::exec::request::Utf8Chunks;
use crate::exec::request::{Encoding, ExecuteRequest, FileSpec};
use crate::exec::{Status, StreamKind};
use crate::policy::{LimitOverrides, Limits};
use crate::service::AppState;
use crate::store::Team;

/// Piston's defaults for a request that leaves a limit out (milliseconds), each at most what
/// the compat policy allows.
const RUN_TIMEOUT_MS: u64 = 3000;
const COMPILE_TIMEOUT_MS: u64 = 10_000;

/// A request's limits, checked against the configured ones.
struct Asked {
    run: LimitOverrides,
    compile: Limits,
}

fn string<'a>(body: &'a Map<String, Value>, field: &str) -> Option<&'a str> {
    body.get(field)?.as_str()
}

/// One of Piston's optional limits: absent, null or 0 is "not given" (as Piston reads it), a
/// negative memory limit is "no limit" (the policy's default), anything else a number at most
/// `configured`.
fn limit(
    body: &Map<String, Value>,
    name: &str,
    configured: u64,
) -> Result<Option<u64>, PistonError> {
    let value = match body.get(name) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Number(n)) => n.as_f64().unwrap_or(0.0),
        Some(_) => {
            return Err(PistonError::bad(format!(
                "If specified, {name} must be a number"
            )))
        }
    };
    if value == 0.0 || (value < 0.0 && name.ends_with("memory_limit")) {
        return Ok(None);
    }
    if value > configured as f64 {
        return Err(PistonError::bad(format!(
            "{name} cannot exceed the configured limit of {configured}"
        )));
    }
    if value < 0.0 {
        return Err(PistonError::bad(format!("{name} must be non-negative")));
    }
    Ok(Some(value.round() as u64))
}

fn limits(state: &AppState, body: &Map<String, Value>) -> Result<Asked, PistonError> {
    let policy = state
        .policies
        .get(&state.compat.policy)
        .expect("compat.policy is checked at start");
    let (max, compile) = (policy.maxima, policy.compile);
    let run = LimitOverrides {
        wall_time_ms: Some(
            limit(body, "run_timeout", max.wall_time_ms)?
                .unwrap_or(RUN_TIMEOUT_MS.min(max.wall_time_ms)),
        ),
        cpu_time_ms: Some(
            limit(body, "run_cpu_time", max.cpu_time_ms)?
                .unwrap_or(RUN_TIMEOUT_MS.min(max.cpu_time_ms)),
        ),
        memory_bytes: limit(body, "run_memory_limit", max.memory_bytes)?,
        ..LimitOverrides::default()
    };
    let mut c = compile;
    c.wall_time_ms = limit(body, "compile_timeout", compile.wall_time_ms)?
        .unwrap_or(COMPILE_TIMEOUT_MS.min(compile.wall_time_ms));
    c.cpu_time_ms = limit(body, "compile_cpu_time", compile.cpu_time_ms)?
        .unwrap_or(COMPILE_TIMEOUT_MS.min(compile.cpu_time_ms));
    if let Some(m) = limit(body, "compile_memory_limit", compile.memory_bytes)? {
        c.memory_bytes = m;
    }
    for (name, value, minimum) in [
        (
            "compile_timeout",
            c.wall_time_ms,
            crate::policy::MINIMUMS.wall_time_ms,
        ),
        (
            "compile_cpu_time",
            c.cpu_time_ms,
            crate::policy::MINIMUMS.cpu_time_ms,
        ),
        (
            "compile_memory_limit",
            c.memory_bytes,
            crate::policy::MINIMUMS.memory_bytes,
        ),
    ] {
        if value < minimum {
            return Err(PistonError::bad(format!(
                "{name} = {value} is below the minimum {minimum} a run needs on every executor"
            )));
        }
    }
    Ok(Asked { run, compile: c })
}

/// The main file (Piston's first utf8 file) and the others, as execbox's `code` and `files`.
fn files(body: &Map<String, Value>) -> Result<(String, Vec<FileSpec>), PistonError> {
    let Some(Value::Array(items)) = body.get("files") else {
        return Err(PistonError::bad("files is required as an array"));
    };
    let mut main = None;
    let mut others = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let content = item.get("content").and_then(Value::as_str).ok_or_else(|| {
            PistonError::bad(format!("files[{i}].content is required as a string"))
        })?;
        let encoding = item
            .get("encoding")
            .and_then(Value::as_str)
            .unwrap_or("utf8");
        let encoding = if matches!(encoding, "base64" | "hex") {
            encoding
        } else {
            "utf8"
        };
        if encoding == "utf8" && main.is_none() {
            main = Some(content.to_string());
            continue;
        }
        let name = match item.get("name") {
            None | Some(Value::Null) => format!("file{i}.code"),
            Some(Value::String(n)) if !n.is_empty() => n.clone(),
            Some(_) => {
                return Err(PistonError::bad(format!(
                    "files[{i}].name must be a string"
                )))
            }
        };
        crate::exec::path::check(&name)
            .map_err(|e| PistonError::bad(format!("files[{i}].name: {e}")))?;
        let b64 = base64::engine::general_purpose::STANDARD;
        let (content, encoding) = match encoding {
            "utf8" => (content.to_string(), Encoding::Utf8),
            "base64" => (content.to_string(), Encoding::Base64),
            _ => {
                let bytes = hex(content).ok_or_else(|| {
                    PistonError::bad(format!("files[{i}].content is not valid hex"))
                })?;
                (b64.encode(bytes), Encoding::Base64)
            }
        };
        others.push(FileSpec {
            path: name,
            content,
            encoding,
        });
    }
    let main =
        main.ok_or_else(|| PistonError::bad("files must include at least one utf8 encoded file"))?;
    Ok((main, others))
}

fn hex(text: &str) -> Option<Vec<u8>> {
    let digits = text.as_bytes();
    if !digits.len().is_multiple_of(2) {
        return None;
    }
    digits
        .chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok())
        .collect()
}

fn runtime(languages: Vec<Offered>, language: &str, version: &str) -> Result<Offered, PistonError> {
    languages
        .into_iter()
        .find(|l| l.has_piston_name(language) && version_matches(version, &l.version))
        .ok_or_else(|| PistonError::bad(format!("{language}-{version} runtime is unknown")))
}

/// `POST /api/v2/execute` (and with a trailing slash).
pub async fn execute(
    State(state): State<Arc<AppState>>,
    Extension(team): Extension<Team>,
    body: Bytes,
) -> Result<Json<ExecuteResponse>, PistonError> {
    let body: Value = serde_json::from_slice(&body)
        .map_err(|e| PistonError::bad(format!("the body is not valid JSON: {e}")))?;
    let empty = Map::new();
    let body = body.as_object().unwrap_or(&empty);
    let language = string(body, "language")
        .filter(|l| !l.is_empty())
        .ok_or_else(|| PistonError::bad("language is required as a string"))?;
    let version = string(body, "version")
        .filter(|v| !v.is_empty())
        .ok_or_else(|| PistonError::bad("version is required as a string"))?;
    let (code, files) = files(body)?;
    let rt = runtime(offered(&state), language, version)?;
    let stdin = match body.get("stdin") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err(PistonError::bad("stdin must be a string")),
    };
    let args = match body.get("args") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| v.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| PistonError::bad("args must be an array of strings"))?,
        Some(_) => return Err(PistonError::bad("args must be an array of strings")),
    };
    let asked = limits(&state, body)?;
    let settings = &state.compat;
    let req = ExecuteRequest {
        language: rt.runtime.language.clone(),
        code,
        files,
        stdin,
        args,
        env: Default::default(),
        executor: Some(settings.executor.clone()),
        policy: Some(settings.policy.clone()),
        limits: asked.run,
        output_encoding: Default::default(),
    };
    let mut prepared = run::prepare(&state, &team, req)?;
    prepared.job.compile_limits = asked.compile;
    // The run step's output as it arrives, for `output` in the order it was written.
    let mut rx = prepared.stream();
    let collector = tokio::spawn(async move {
        let (mut out, mut err) = (Utf8Chunks::default(), Utf8Chunks::default());
        let mut output = String::new();
        while let Some((kind, bytes)) = rx.recv().await {
            output.push_str(&match kind {
                StreamKind::Stdout => out.push(&bytes),
                StreamKind::Stderr => err.push(&bytes),
            });
        }
        output.push_str(&out.finish());
        output.push_str(&err.finish());
        output
    });
    let running = run::admit(state.clone(), prepared).await?;
    let result = run::finish(running).await?;
    let output = collector.await.unwrap_or_default();
    let compiled = result.compile.as_ref().map(Stage::compile);
    let ran = (result.status != Status::CompileError).then(|| Stage::run(&result, output));
    Ok(Json(ExecuteResponse {
        compile: compiled,
        run: ran,
        language: rt.row.piston.clone(),
        version: rt.version.clone(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_take_the_first_utf8_file_as_the_program() {
        let body = serde_json::json!({"files": [
            {"name": "data.bin", "content": "AAE=", "encoding": "base64"},
            {"name": "solution.py", "content": "print(1)"},
            {"name": "helper.py", "content": "x = 1"},
            {"content": "6869", "encoding": "hex"},
        ]});
        let (main, others) = files(body.as_object().unwrap()).unwrap();
        assert_eq!(main, "print(1)");
        let listed: Vec<(&str, &str)> = others
            .iter()
            .map(|f| (f.path.as_str(), f.content.as_str()))
            .collect();
        assert_eq!(
            listed,
            [
                ("data.bin", "AAE="),
                ("helper.py", "x = 1"),
                ("file3.code", "aGk=")
            ]
        );
        for (body, message) in [
            (serde_json::json!({}), "files is required as an array"),
            (
                serde_json::json!({"files": [{"name": "a"}]}),
                "files[0].content is required as a string",
            ),
            (
                serde_json::json!({"files": [{"content": "AA==", "encoding": "base64"}]}),
                "files must include at least one utf8 encoded file",
            ),
            (
                serde_json::json!({"files": [{"content": "x"}, {"content": "6", "encoding": "hex"}]}),
                "files[1].content is not valid hex",
            ),
        ] {
            assert_eq!(
                files(body.as_object().unwrap()).unwrap_err().message,
                message
            );
        }
    }

    #[test]
    fn limits_are_read_as_piston_reads_them() {
        let body =
            serde_json::json!({"run_timeout": 0, "run_memory_limit": -1, "compile_timeout": "x"});
        let b = body.as_object().unwrap();
        assert_eq!(limit(b, "run_timeout", 10).unwrap(), None);
        assert_eq!(limit(b, "run_memory_limit", 10).unwrap(), None);
        assert_eq!(
            limit(b, "compile_timeout", 10).unwrap_err().message,
            "If specified, compile_timeout must be a number"
        );
        let body = serde_json::json!({"run_timeout": 11, "run_cpu_time": -5, "x": 5});
        let b = body.as_object().unwrap();
        assert_eq!(
            limit(b, "run_timeout", 10).unwrap_err().message,
            "run_timeout cannot exceed the configured limit of 10"
        );
        assert_eq!(
            limit(b, "run_cpu_time", 10).unwrap_err().message,
            "run_cpu_time must be non-negative"
        );
        assert_eq!(limit(b, "x", 10).unwrap(), Some(5));
    }
}
