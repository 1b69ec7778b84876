//! The wire form of `POST /v1/execute` and its validation into a [`Job`]. Every way a request
//! can be wrong has its own [`RequestError`] variant with a stable code; `api/` maps them to
//! HTTP statuses.

use std::collections::BTreeMap;

use base64::Engine;
use serde::Deserialize;

use super::runtime::RuntimeTable;
use super::{Job, JobFile};
use crate::policy::{LimitOverrides, PolicySet};

/// Executors this build knows about.
pub const KNOWN_EXECUTORS: &[&str] = &["local", "docker"];

const MAX_FILES: usize = 1000;
const MAX_PATH_LEN: usize = 1024;

/// The body of `POST /v1/execute` (and, without `executor` and `policy`, of a sandbox call).
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExecuteRequest {
    /// A language of `GET /v1/runtimes`, or one of its aliases.
    pub language: String,
    pub code: String,
    /// Files placed beside the main source.
    #[serde(default)]
    pub files: Vec<FileSpec>,
    #[serde(default)]
    pub stdin: String,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// `local` (the default) or `docker`.
    #[serde(default)]
    pub executor: Option<String>,
    /// A policy of `GET /v1/policies`; `default` when left out.
    #[serde(default)]
    pub policy: Option<String>,
    /// Overrides of the policy's defaults, each at most the policy's maximum.
    #[serde(default)]
    pub limits: LimitOverrides,
}

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FileSpec {
    pub path: String,
    pub content: String,
    #[serde(default)]
    pub encoding: Encoding,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    #[default]
    Utf8,
    Base64,
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
    ExecutorNotAllowed { policy: String, executor: String, allowed: String },
    #[error("limits.{field} = {requested} exceeds the maximum {maximum} of policy \"{policy}\"")]
    LimitExceeded { field: &'static str, requested: u64, maximum: u64, policy: String },
    #[error("files[{index}]: {reason}")]
    InvalidFile { index: usize, reason: String },
    #[error("{0}")]
    InvalidField(String),
    #[error("code and files add up to {total} bytes, more than disk_bytes = {disk} of this run; raise limits.disk_bytes or send less")]
    InputTooLarge { total: u64, disk: u64 },
}

impl RequestError {
    /// The stable machine-readable code of the error JSON.
    pub fn code(&self) -> &'static str {
        match self {
            RequestError::UnknownLanguage(..) => "unknown_language",
            RequestError::UnknownExecutor(..) => "unknown_executor",
            RequestError::UnknownPolicy(..) => "unknown_policy",
            RequestError::ExecutorNotAllowed { .. } => "executor_not_allowed",
            RequestError::LimitExceeded { .. } => "limit_exceeded",
            RequestError::InvalidFile { .. } => "invalid_file",
            RequestError::InvalidField(..) => "invalid_request",
            RequestError::InputTooLarge { .. } => "input_too_large",
        }
    }
}

/// A path relative to /work made only of normal components: no `..`, no absolute paths, no
/// empty or `.` segments, no NUL. Returned normalized.
pub fn check_relative_path(path: &str) -> Result<String, String> {
    if path.is_empty() || path.len() > MAX_PATH_LEN {
        return Err(format!("path must be 1..={MAX_PATH_LEN} bytes"));
    }
    if path.contains('\0') {
        return Err("path contains a NUL byte".into());
    }
    if path.starts_with('/') {
        return Err(format!("path \"{path}\" is absolute; give it relative to the work dir"));
    }
    let parts: Vec<&str> = path.split('/').collect();
    if parts.iter().any(|p| p.is_empty() || *p == "." || *p == "..") {
        return Err(format!("path \"{path}\" has an empty, \".\" or \"..\" segment"));
    }
    Ok(parts.join("/"))
}

impl ExecuteRequest {
    /// Validate against the policies and runtimes; `id` names the run.
    pub fn into_job(self, id: String, policies: &PolicySet, runtimes: &RuntimeTable) -> Result<(Job, String), RequestError> {
        let runtime = runtimes.find(&self.language).cloned().ok_or_else(|| {
            let mut names: Vec<String> = runtimes.runtimes.iter().flat_map(|r| std::iter::once(r.language.clone()).chain(r.aliases.clone())).collect();
            names.sort();
            RequestError::UnknownLanguage(self.language.clone(), names.join(", "))
        })?;
        let executor = self.executor.unwrap_or_else(|| "local".into());
        if !KNOWN_EXECUTORS.contains(&executor.as_str()) {
            return Err(RequestError::UnknownExecutor(executor, KNOWN_EXECUTORS.join(", ")));
        }
        let policy_name = self.policy.unwrap_or_else(|| "default".into());
        let policy = policies.get(&policy_name).ok_or_else(|| {
            RequestError::UnknownPolicy(policy_name.clone(), policies.policies.keys().cloned().collect::<Vec<_>>().join(", "))
        })?;
        if !policy.executors.contains(&executor) {
            return Err(RequestError::ExecutorNotAllowed { policy: policy_name, executor, allowed: policy.executors.join(", ") });
        }
        let limits = policy.resolve(&self.limits).map_err(|o| RequestError::LimitExceeded {
            field: o.field,
            requested: o.requested,
            maximum: o.maximum,
            policy: policy_name.clone(),
        })?;

        if self.files.len() > MAX_FILES {
            return Err(RequestError::InvalidField(format!("{} files sent; at most {MAX_FILES} are accepted", self.files.len())));
        }
        let mut files = Vec::with_capacity(self.files.len());
        let mut total = self.code.len() as u64;
        for (index, f) in self.files.into_iter().enumerate() {
            let bad = |reason: String| RequestError::InvalidFile { index, reason };
            let path = check_relative_path(&f.path).map_err(bad)?;
            if path == runtime.source_file || runtime.artifact.as_deref() == Some(path.as_str()) {
                return Err(bad(format!("path \"{path}\" is reserved for the main program of {}", runtime.language)));
            }
            if files.iter().any(|g: &JobFile| g.path == path || g.path.starts_with(&format!("{path}/")) || path.starts_with(&format!("{}/", g.path))) {
                return Err(bad(format!("path \"{path}\" collides with another file")));
            }
            let content = match f.encoding {
                Encoding::Utf8 => f.content.into_bytes(),
                Encoding::Base64 => base64::engine::general_purpose::STANDARD
                    .decode(f.content.as_bytes())
                    .map_err(|e| bad(format!("content is not valid base64: {e}")))?,
            };
            total += content.len() as u64;
            files.push(JobFile { path, content });
        }
        if total > limits.disk_bytes {
            return Err(RequestError::InputTooLarge { total, disk: limits.disk_bytes });
        }
        for a in &self.args {
            if a.contains('\0') {
                return Err(RequestError::InvalidField("args may not contain NUL bytes".into()));
            }
        }
        for (k, v) in &self.env {
            let valid = !k.is_empty() && !k.contains('=') && !k.contains('\0') && !k.as_bytes()[0].is_ascii_digit();
            if !valid || v.contains('\0') {
                return Err(RequestError::InvalidField(format!("env name \"{k}\" is not a valid variable name (or its value has a NUL byte)")));
            }
        }
        let job = Job {
            id,
            runtime,
            policy: policy_name,
            limits,
            compile_limits: policy.compile,
            open_files: policy.open_files,
            docker_runtime: policy.docker_runtime.clone(),
            code: self.code,
            files,
            stdin: self.stdin.into_bytes(),
            args: self.args,
            env: self.env.into_iter().collect(),
            stream: None,
        };
        Ok((job, executor))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traversal_and_absolute_paths_are_refused() {
        for bad in ["../x", "a/../../x", "/etc/passwd", "a//b", "./a", "", "a/\0b", "a/.."] {
            assert!(check_relative_path(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(check_relative_path("pkg/mod.py").unwrap(), "pkg/mod.py");
        assert_eq!(check_relative_path("%2e%2e/x").unwrap(), "%2e%2e/x", "percent signs are just characters in a file name");
    }
}
