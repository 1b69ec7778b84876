//! The tools' arguments: each a JSON Schema (from the doc comments here) for the client and the
//! request body of the HTTP route it stands for, built without interpreting anything the
//! route's own validation checks.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;

use crate::exec::request::{self, ExecuteRequest, FileSpec, SandboxCallRequest};
use crate::policy::LimitOverrides;
use crate::sandbox::manager;
use crate::wire::whole;

/// A sandbox's lifetime when `create_sandbox` names none (capped by the service's maximum).
pub const DEFAULT_TTL_SECONDS: u64 = 3600;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Execute {
    /// The program's language, a name or an alias from the server's runtimes.
    pub language: String,
    /// The program's source code.
    pub code: String,
    /// What the program reads on its standard input.
    #[serde(default)]
    pub stdin: String,
    /// Arguments passed to the program.
    #[serde(default)]
    pub args: Vec<String>,
    /// Files placed beside the program in its working directory.
    #[serde(default)]
    pub files: Vec<File>,
    /// The wall-clock limit in milliseconds (the policy's default when left out; at most its
    /// maximum).
    #[serde(default, deserialize_with = "whole::option")]
    #[schemars(range(min = 1))]
    pub timeout_ms: Option<u64>,
    /// `local` or `docker` (the server's default when left out).
    #[serde(default)]
    pub executor: Option<String>,
    /// The resource-limit policy, by name (`default` when left out).
    #[serde(default)]
    pub policy: Option<String>,
}

/// A file the program finds in its working directory.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct File {
    /// Relative to the working directory, e.g. `data/input.csv`; no `..`.
    pub path: String,
    /// The file's content: text, or base64 with `encoding: base64`.
    pub content: String,
    /// `utf8` (the default): `content` is the text itself; `base64`: standard base64 (with
    /// padding) of the bytes.
    #[serde(default)]
    pub encoding: Encoding,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    #[default]
    Utf8,
    Base64,
}

impl From<Encoding> for request::Encoding {
    fn from(e: Encoding) -> request::Encoding {
        match e {
            Encoding::Utf8 => request::Encoding::Utf8,
            Encoding::Base64 => request::Encoding::Base64,
        }
    }
}

fn files(files: Vec<File>) -> Vec<FileSpec> {
    files
        .into_iter()
        .map(|f| FileSpec {
            path: f.path,
            content: f.content,
            encoding: f.encoding.into(),
        })
        .collect()
}

fn limits(timeout_ms: Option<u64>) -> LimitOverrides {
    LimitOverrides {
        wall_time_ms: timeout_ms,
        ..LimitOverrides::default()
    }
}

impl Execute {
    /// The body of `POST /v1/execute`, on `default_executor` unless the call names one.
    pub fn into_request(self, default_executor: &str) -> ExecuteRequest {
        ExecuteRequest {
            language: self.language,
            code: self.code,
            files: files(self.files),
            stdin: self.stdin,
            args: self.args,
            env: BTreeMap::new(),
            executor: Some(self.executor.unwrap_or_else(|| default_executor.into())),
            policy: self.policy,
            limits: limits(self.timeout_ms),
            output_encoding: Default::default(),
        }
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSandbox {
    /// Seconds until the sandbox and its files are deleted (default 3600, at most the
    /// server's maximum).
    #[serde(default, deserialize_with = "whole::option")]
    #[schemars(range(min = 1))]
    pub ttl_seconds: Option<u64>,
    /// Deleted sooner after this many seconds without a call or file operation.
    #[serde(default, deserialize_with = "whole::option")]
    #[schemars(range(min = 1))]
    pub idle_timeout_seconds: Option<u64>,
    /// Environment variables every call in the sandbox starts with.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Free labels kept with the sandbox.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// `local` or `docker` (the server's default when left out).
    #[serde(default)]
    pub executor: Option<String>,
    /// The resource-limit policy, by name (`default` when left out).
    #[serde(default)]
    pub policy: Option<String>,
}

impl CreateSandbox {
    /// The body of `POST /v1/sandboxes`; the TTL defaults to an hour, or the service's
    /// maximum when that is shorter.
    pub fn into_request(self, default_executor: &str, max_ttl: u64) -> manager::CreateSandbox {
        manager::CreateSandbox {
            executor: Some(self.executor.unwrap_or_else(|| default_executor.into())),
            policy: self.policy,
            ttl_seconds: self.ttl_seconds.unwrap_or(DEFAULT_TTL_SECONDS.min(max_ttl)),
            idle_timeout_seconds: self.idle_timeout_seconds,
            env: self.env,
            metadata: self.metadata,
        }
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SandboxExecute {
    /// The sandbox, as `create_sandbox` answered (`sb_...`).
    pub sandbox_id: String,
    /// The program's language, a name or an alias from the server's runtimes.
    pub language: String,
    /// The program's source code.
    pub code: String,
    /// What the program reads on its standard input (not with `context`).
    #[serde(default)]
    pub stdin: String,
    /// Arguments passed to the program (not with `context`).
    #[serde(default)]
    pub args: Vec<String>,
    /// Files written into the sandbox's working directory before the run (not with
    /// `context`).
    #[serde(default)]
    pub files: Vec<File>,
    /// The wall-clock limit in milliseconds (the sandbox policy's default when left out).
    #[serde(default, deserialize_with = "whole::option")]
    #[schemars(range(min = 1))]
    pub timeout_ms: Option<u64>,
    /// A stateful Python context, as `create_context` answered (`ctx_...`): the code runs in
    /// that interpreter, so variables, imports and definitions persist between calls, and the
    /// value of a last expression is shown.
    #[serde(default)]
    pub context: Option<String>,
}

impl SandboxExecute {
    /// The sandbox's id and the body of `POST /v1/sandboxes/{id}/execute`.
    pub fn into_request(self) -> (String, SandboxCallRequest) {
        let req = SandboxCallRequest {
            language: self.language,
            code: self.code,
            files: files(self.files),
            stdin: self.stdin,
            args: self.args,
            env: BTreeMap::new(),
            limits: limits(self.timeout_ms),
            context: self.context,
            output_encoding: Default::default(),
        };
        (self.sandbox_id, req)
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateContext {
    /// The sandbox, as `create_sandbox` answered (`sb_...`).
    pub sandbox_id: String,
    /// The interpreter's language: `python` (the default; contexts are Python interpreters).
    #[serde(default = "python")]
    pub language: String,
}

fn python() -> String {
    "python".into()
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WriteFile {
    /// The sandbox, as `create_sandbox` answered (`sb_...`).
    pub sandbox_id: String,
    /// Relative to the sandbox's working directory; parent directories are created.
    pub path: String,
    /// The file's content: text, or base64 with `encoding: base64`.
    pub content: String,
    /// `utf8` (the default): `content` is the text itself; `base64`: standard base64 (with
    /// padding) of the bytes.
    #[serde(default)]
    pub encoding: Encoding,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReadFile {
    /// The sandbox, as `create_sandbox` answered (`sb_...`).
    pub sandbox_id: String,
    /// Relative to the sandbox's working directory.
    pub path: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListFiles {
    /// The sandbox, as `create_sandbox` answered (`sb_...`).
    pub sandbox_id: String,
    /// A directory relative to the working directory; the whole working directory when left
    /// out.
    #[serde(default)]
    pub path: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeleteSandbox {
    /// The sandbox, as `create_sandbox` answered (`sb_...`).
    pub sandbox_id: String,
}
