//! The wire form of `POST /v1/execute` and its validation into a [`Job`]. Every way a request
//! can be wrong has its own [`RequestError`] variant; `api/error.rs` maps each to an HTTP status
//! and a stable code.

use std::collections::BTreeMap;

use base64::Engine;
use serde::Deserialize;

use super::runtime::RuntimeTable;
use super::{Job, JobFile};
use crate::policy::{LimitError, LimitOverrides, PolicySet, KNOWN_EXECUTORS};
use crate::wire::object;

/// Most files one request may carry.
pub const MAX_FILES: usize = 1000;
/// /work is a tmpfs, which hands out whole pages: a file takes its size rounded up to one.
const PAGE: u64 = 4096;

fn on_tmpfs(len: usize) -> u64 {
    (len as u64).div_ceil(PAGE) * PAGE
}

/// A relative path as [`crate::exec::path::check`] accepts it, as an ECMA-262 (and Python) regular
/// expression for the API description: 1 to 32 (`path::MAX_DEPTH`) segments joined by `/`, none
/// empty, `.` or `..`, no NUL, at most 255 long. (Lengths count characters here where the service
/// counts bytes.)
pub const PATH_PATTERN: &str = r"^(?:[^/\x00.][^/\x00]{0,254}|\.[^/\x00.][^/\x00]{0,253}|\.\.[^/\x00]{1,253})(?:/(?:[^/\x00.][^/\x00]{0,254}|\.[^/\x00.][^/\x00]{0,253}|\.\.[^/\x00]{1,253})){0,31}$";

/// An environment variable name a run accepts: not empty, no `=` or NUL, not starting with a
/// digit. As a pattern for the API description: [`ENV_NAME_PATTERN`].
pub fn valid_env_name(name: &str) -> bool {
    !name.is_empty() && !name.contains(['=', '\0']) && !name.as_bytes()[0].is_ascii_digit()
}

pub const ENV_NAME_PATTERN: &str = r"^[^0-9=\x00][^=\x00]*$";

/// The body of `POST /v1/execute`. The API description adds what depends on the loaded runtimes
/// and policies (`api/openapi.rs`): the names `language`, `executor` and `policy` take, and each
/// policy's maxima for `limits`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExecuteRequest {
    /// A language of `GET /v1/runtimes`, or one of its aliases.
    pub language: String,
    pub code: String,
    /// Files placed beside the main source.
    #[serde(default, deserialize_with = "object::vec")]
    #[schema(max_items = 1000)]
    pub files: Vec<FileSpec>,
    #[serde(default)]
    pub stdin: String,
    /// Arguments after the program; no NUL bytes.
    #[serde(default)]
    pub args: Vec<String>,
    /// Environment variables of the program: names not empty, without `=` or NUL and not
    /// starting with a digit; values without NUL.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// `local` (the default) or `docker`.
    #[serde(default)]
    pub executor: Option<String>,
    /// A policy of `GET /v1/policies`; `default` when left out.
    #[serde(default)]
    pub policy: Option<String>,
    /// Overrides of the policy's defaults, each at most the policy's maximum.
    #[serde(default, deserialize_with = "object::field")]
    pub limits: LimitOverrides,
    /// How `stdout` and `stderr` come back (in the result, its compile step and streamed
    /// events): `utf8` text, bytes that are not UTF-8 as U+FFFD (the default), or `base64` of
    /// the exact bytes.
    #[serde(default)]
    pub output_encoding: Encoding,
}

/// The body of `POST /v1/sandboxes/{id}/execute`: a run's body without `executor` and `policy`,
/// which are the sandbox's own.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SandboxCallRequest {
    /// A language of `GET /v1/runtimes`, or one of its aliases.
    pub language: String,
    pub code: String,
    /// Files placed beside the main source, in the sandbox's work dir.
    #[serde(default, deserialize_with = "object::vec")]
    #[schema(max_items = 1000)]
    pub files: Vec<FileSpec>,
    #[serde(default)]
    pub stdin: String,
    /// Arguments after the program; no NUL bytes.
    #[serde(default)]
    pub args: Vec<String>,
    /// Added to the sandbox's `env`, winning over it; the same rules as a run's `env`.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Overrides of the sandbox policy's defaults, each at most its maximum; `disk_bytes` at
    /// most the sandbox's own disk.
    #[serde(default, deserialize_with = "object::field")]
    pub limits: LimitOverrides,
    /// Run `code` in this stateful context (`POST /v1/sandboxes/{id}/contexts`) instead of as
    /// a new program: its variables, imports and definitions persist between calls. The
    /// language must be the context's; `files`, `stdin`, `args` and `env` are refused with it.
    #[serde(default)]
    pub context: Option<String>,
    /// As a run's `output_encoding`.
    #[serde(default)]
    pub output_encoding: Encoding,
}

impl SandboxCallRequest {
    /// The run it is in a sandbox with `executor` and `policy`.
    pub fn in_sandbox(self, executor: String, policy: String) -> ExecuteRequest {
        let SandboxCallRequest {
            language,
            code,
            files,
            stdin,
            args,
            env,
            limits,
            context: _,
            output_encoding,
        } = self;
        ExecuteRequest {
            language,
            code,
            files,
            stdin,
            args,
            env,
            executor: Some(executor),
            policy: Some(policy),
            limits,
            output_encoding,
        }
    }
}

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FileSpec {
    /// Relative to the work dir: no `..`, `.` or empty segments, not absolute, no NUL; not the
    /// language's own source file (`GET /v1/runtimes`), and no two files at one path or one
    /// inside another.
    #[schema(max_length = 1024)]
    pub path: String,
    /// With `encoding: base64`, standard base64 with its padding.
    pub content: String,
    #[serde(default)]
    pub encoding: Encoding,
}

/// How bytes travel in JSON: `utf8` text, or `base64` (standard, padded) of the exact bytes.
#[derive(
    Debug, Clone, Copy, Default, Deserialize, serde::Serialize, PartialEq, Eq, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    #[default]
    Utf8,
    Base64,
}

impl Encoding {
    /// `bytes` as this encoding's text: UTF-8 with each invalid sequence as U+FFFD, or base64.
    pub fn encode(self, bytes: &[u8]) -> String {
        match self {
            Encoding::Utf8 => String::from_utf8_lossy(bytes).into_owned(),
            Encoding::Base64 => base64::engine::general_purpose::STANDARD.encode(bytes),
        }
    }
}

/// Turns byte chunks into text without splitting a UTF-8 sequence across events; invalid bytes
/// become U+FFFD, as in the JSON result.
#[derive(Default)]
pub struct Utf8Chunks {
    pending: Vec<u8>,
}

impl Utf8Chunks {
    pub fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let valid = match std::str::from_utf8(&self.pending) {
            Ok(_) => self.pending.len(),
            // An incomplete sequence at the end waits for the next chunk; anything else is lossy.
            Err(e) if e.error_len().is_none() => e.valid_up_to(),
            Err(_) => self.pending.len(),
        };
        let text = String::from_utf8_lossy(&self.pending[..valid]).into_owned();
        self.pending.drain(..valid);
        text
    }

    pub fn finish(&mut self) -> String {
        String::from_utf8_lossy(&std::mem::take(&mut self.pending)).into_owned()
    }
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum RequestError {
    #[error("unknown language \"{0}\"; available: {1}")]
    UnknownLanguage(String, String),
    #[error("unknown executor \"{0}\"; available: {1}")]
    UnknownExecutor(String, String),
    #[error("unknown policy \"{0}\"; available: {1}")]
    UnknownPolicy(String, String),
    #[error("policy \"{policy}\" does not allow executor \"{executor}\"; it allows: {allowed}")]
    ExecutorNotAllowed {
        policy: String,
        executor: String,
        allowed: String,
    },
    #[error("limits.{field} = {requested} exceeds the maximum {maximum} of policy \"{policy}\"")]
    LimitExceeded {
        field: &'static str,
        requested: u64,
        maximum: u64,
        policy: String,
    },
    #[error("limits.{field} = {requested} is below the minimum {minimum} a run needs on every executor; ask for at least {minimum} (GET /v1/policies lists the minimums)")]
    LimitBelowMinimum {
        field: &'static str,
        requested: u64,
        minimum: u64,
    },
    #[error("files[{index}]: {reason}")]
    InvalidFile { index: usize, reason: String },
    #[error("{0}")]
    InvalidField(String),
    #[error("code and files take {total} bytes of /work (each file in whole 4 KiB pages), more than disk_bytes = {disk} of this run; raise limits.disk_bytes or send fewer or smaller files")]
    InputTooLarge { total: u64, disk: u64 },
}

impl ExecuteRequest {
    /// Validate against the policies and runtimes; `id` names the run.
    pub fn into_job(
        self,
        id: String,
        policies: &PolicySet,
        runtimes: &RuntimeTable,
    ) -> Result<(Job, String), RequestError> {
        let runtime = runtimes.find(&self.language).cloned().ok_or_else(|| {
            let mut names: Vec<String> = runtimes
                .runtimes
                .iter()
                .flat_map(|r| std::iter::once(r.language.clone()).chain(r.aliases.clone()))
                .collect();
            names.sort();
            RequestError::UnknownLanguage(self.language.clone(), names.join(", "))
        })?;
        let executor = self.executor.unwrap_or_else(|| "local".into());
        if !KNOWN_EXECUTORS.contains(&executor.as_str()) {
            return Err(RequestError::UnknownExecutor(
                executor,
                KNOWN_EXECUTORS.join(", "),
            ));
        }
        let policy_name = self.policy.unwrap_or_else(|| "default".into());
        let policy = policies.get(&policy_name).ok_or_else(|| {
            RequestError::UnknownPolicy(
                policy_name.clone(),
                policies
                    .policies
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", "),
            )
        })?;
        if !policy.executors.contains(&executor) {
            return Err(RequestError::ExecutorNotAllowed {
                policy: policy_name,
                executor,
                allowed: policy.executors.join(", "),
            });
        }
        let limits = policy.resolve(&self.limits).map_err(|e| match e {
            LimitError::Above {
                field,
                requested,
                maximum,
            } => RequestError::LimitExceeded {
                field,
                requested,
                maximum,
                policy: policy_name.clone(),
            },
            LimitError::Below {
                field,
                requested,
                minimum,
            } => RequestError::LimitBelowMinimum {
                field,
                requested,
                minimum,
            },
        })?;
        // A runtime that needs more than the policy gives by default (a JVM's memory) asks for
        // it in its table entry, within the policy's maxima.
        let limits = runtime.limits.raise(limits, &policy.maxima, &self.limits);
        let compile_limits = runtime.compile_limits.raise(
            policy.compile,
            &policy.maxima,
            &LimitOverrides::default(),
        );

        if self.files.len() > MAX_FILES {
            return Err(RequestError::InvalidField(format!(
                "{} files sent; at most {MAX_FILES} are accepted",
                self.files.len()
            )));
        }
        let mut files = Vec::with_capacity(self.files.len());
        // Counted as the tmpfs counts, so what passes here fits when an executor writes it.
        let mut total = on_tmpfs(self.code.len());
        for (index, f) in self.files.into_iter().enumerate() {
            let bad = |reason: String| RequestError::InvalidFile { index, reason };
            let path = super::path::check(&f.path)
                .map_err(|e| bad(e.to_string()))?
                .to_string();
            // `main.py/x` would need the main program's name as a directory, as `main.py` would
            // overwrite it.
            for reserved in std::iter::once(&runtime.source_file).chain(runtime.artifact.as_ref()) {
                if super::path::overlaps(&path, reserved) {
                    return Err(bad(format!(
                        "path \"{path}\" collides with {reserved}, the main program of {}",
                        runtime.language
                    )));
                }
            }
            if let Some(g) = files
                .iter()
                .find(|g: &&JobFile| super::path::overlaps(&g.path, &path))
            {
                return Err(bad(format!("path \"{path}\" collides with \"{}\": one file cannot be the directory of another", g.path)));
            }
            let content = match f.encoding {
                Encoding::Utf8 => f.content.into_bytes(),
                Encoding::Base64 => base64::engine::general_purpose::STANDARD
                    .decode(f.content.as_bytes())
                    .map_err(|e| bad(format!("content is not valid base64: {e}")))?,
            };
            total += on_tmpfs(content.len());
            files.push(JobFile { path, content });
        }
        if total > limits.disk_bytes {
            return Err(RequestError::InputTooLarge {
                total,
                disk: limits.disk_bytes,
            });
        }
        for a in &self.args {
            if a.contains('\0') {
                return Err(RequestError::InvalidField(
                    "args may not contain NUL bytes".into(),
                ));
            }
        }
        for (k, v) in &self.env {
            if !valid_env_name(k) || v.contains('\0') {
                return Err(RequestError::InvalidField(format!(
                    "env name \"{k}\" is not a valid variable name (or its value has a NUL byte)"
                )));
            }
        }
        let job = Job {
            id,
            runtime,
            policy: policy_name,
            limits,
            compile_limits,
            open_files: policy.open_files,
            docker_runtime: policy.docker_runtime.clone(),
            code: self.code,
            files,
            stdin: self.stdin.into_bytes(),
            args: self.args,
            env: self.env.into_iter().collect(),
            output_encoding: self.output_encoding,
            stream: None,
        };
        Ok((job, executor))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sequence_split_across_chunks_is_kept_whole() {
        let mut d = Utf8Chunks::default();
        let euro = "€".as_bytes();
        assert_eq!(d.push(&[b'a', euro[0]]), "a");
        assert_eq!(d.push(&euro[1..]), "€");
        assert_eq!(d.push(&[0xff, b'b']), "\u{fffd}b");
        assert_eq!(d.push(&[0xe2]), "");
        assert_eq!(d.finish(), "\u{fffd}");
    }

    fn job_of(body: serde_json::Value) -> Result<Job, RequestError> {
        let req: ExecuteRequest = serde_json::from_value(body).unwrap();
        req.into_job(
            "r".into(),
            &PolicySet::embedded().unwrap(),
            &RuntimeTable::embedded(),
        )
        .map(|(j, _)| j)
    }

    #[test]
    fn a_file_may_not_turn_another_or_the_program_into_a_directory() {
        for (files, collides_with) in [
            (
                serde_json::json!([{"path": "main.py/x", "content": ""}]),
                "main.py",
            ),
            (
                serde_json::json!([{"path": "main.py", "content": ""}]),
                "main.py",
            ),
            (
                serde_json::json!([{"path": "a", "content": ""}, {"path": "a/b", "content": ""}]),
                "\"a\"",
            ),
            (
                serde_json::json!([{"path": "a/b/c", "content": ""}, {"path": "a/b", "content": ""}]),
                "\"a/b/c\"",
            ),
        ] {
            let err = job_of(serde_json::json!({"language": "python", "code": "", "files": files}))
                .unwrap_err();
            assert!(matches!(err, RequestError::InvalidFile { .. }), "{err}");
            assert!(
                err.to_string()
                    .contains(&format!("collides with {collides_with}")),
                "{err}"
            );
        }
        let ok = job_of(
            serde_json::json!({"language": "python", "code": "", "files": [{"path": "a/b", "content": ""}, {"path": "a/bc", "content": ""}]}),
        );
        assert_eq!(ok.unwrap().files.len(), 2);
    }

    #[test]
    fn limits_below_their_minimum_are_refused_with_the_minimum_named() {
        let err =
            job_of(serde_json::json!({"language": "python", "code": "", "limits": {"pids": 2}}))
                .unwrap_err();
        assert_eq!(
            err,
            RequestError::LimitBelowMinimum {
                field: "pids",
                requested: 2,
                minimum: crate::policy::MINIMUMS.pids
            }
        );
        assert!(
            err.to_string()
                .starts_with("limits.pids = 2 is below the minimum 8"),
            "{err}"
        );
    }
}
