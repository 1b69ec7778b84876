//! Sandboxes for teams: a workspace that lives across calls (write a file, run the tests, fix,
//! run again). The manager (`manager.rs`) keeps the records in the store, enforces team scoping,
//! quotas and expiry; a [`SandboxBackend`] per executor holds the files and runs the calls.

pub mod disk;
pub mod docker;
pub mod fs;
pub mod local;
pub mod manager;
pub mod names;
pub mod stateful;
pub mod supervised;
pub mod warm_calls;

use std::collections::BTreeMap;

use serde::Serialize;

use crate::exec::{BoxFuture, ExecError, Job, RunResult};
use crate::policy::Limits;

/// A sandbox as the API shows it and the store keeps it.
#[derive(Debug, Clone, Serialize)]
pub struct Sandbox {
    pub id: String,
    #[serde(skip)]
    pub team_id: i64,
    pub executor: String,
    pub policy: String,
    pub state: String,
    pub metadata: BTreeMap<String, String>,
    #[serde(skip)]
    pub env: Vec<(String, String)>,
    /// Unix seconds (RFC 3339 in the API).
    #[serde(skip)]
    pub created_at: i64,
    #[serde(skip)]
    pub expires_at: i64,
    #[serde(skip)]
    pub last_used_at: i64,
    pub idle_timeout_seconds: Option<u64>,
    /// What a keepalive without its own `ttl_seconds` extends by.
    #[serde(skip)]
    pub ttl_seconds: Option<u64>,
    /// The sandbox's limits: the policy's defaults; `disk_bytes` caps its work dir.
    #[serde(skip)]
    pub limits: Limits,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum FileKind {
    File,
    Dir,
    Symlink,
}

/// One entry of a listing; `path` is relative to the work dir, in the form `path_encoding`
/// says (see `names.rs`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FileEntry {
    /// The name as is when it is valid UTF-8; else percent-encoded (`path_encoding` says which).
    pub path: String,
    pub path_encoding: names::PathEncoding,
    pub size: u64,
    #[serde(rename = "type")]
    pub kind: FileKind,
}

impl FileEntry {
    /// The entry of the raw name `path`.
    pub fn new(path: &[u8], size: u64, kind: FileKind) -> FileEntry {
        let (path, path_encoding) = names::encode(path);
        FileEntry {
            path,
            path_encoding,
            size,
            kind,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("no such file or directory in the sandbox: {0}")]
    NotFound(String),
    #[error("path refused: {0}")]
    PathRefused(String),
    /// A well-formed path that what is in the work dir now stands in the way of.
    #[error("{0}")]
    PathConflict(String),
    #[error("{what} would exceed the sandbox's limit of {max} bytes")]
    TooLarge { what: String, max: u64 },
    #[error("the body is not a tar archive: {0}")]
    InvalidArchive(String),
    #[error(transparent)]
    Exec(#[from] ExecError),
    #[error("sandbox i/o failed while {0}: {1}")]
    Io(String, #[source] std::io::Error),
    #[error("{0}")]
    ContextNotFound(String),
    #[error("{0}")]
    ContextLost(String),
    #[error("{0}")]
    ProcessNotFound(String),
    /// The executor's sandboxes have no contexts or background processes.
    #[error("{0}")]
    Unsupported(String),
}

/// An archive as it streams (a `GET /archive` body out, a `POST /archive` body in), so no
/// archive is ever whole in the service's memory.
pub type TarStream = futures_util::stream::BoxStream<'static, std::io::Result<bytes::Bytes>>;

/// Where a sandbox's files live and how its calls run: one per executor.
pub trait SandboxBackend: Send + Sync {
    /// Allocate what the sandbox needs (local: a work dir; docker: a long-lived container).
    fn create<'a>(&'a self, sb: &'a Sandbox) -> BoxFuture<'a, Result<(), SandboxError>>;
    /// Run one call in the sandbox's work dir, under the job's own limits and deadline. No
    /// process of the call outlives it.
    fn exec<'a>(
        &'a self,
        sb: &'a Sandbox,
        job: &'a Job,
    ) -> BoxFuture<'a, Result<RunResult, ExecError>>;
    /// Before a call: refuse (`PathRefused`) a path the call would write that the work dir
    /// cannot take as a file: one with a link or a file on the way, or a directory of that name.
    /// A file or link of that name is replaced, never written through.
    fn check_call_paths<'a>(
        &'a self,
        sb: &'a Sandbox,
        paths: Vec<String>,
    ) -> BoxFuture<'a, Result<(), SandboxError>>;
    /// File names are raw bytes, checked by `exec::path::check_raw`.
    fn read_file<'a>(
        &'a self,
        sb: &'a Sandbox,
        path: &'a [u8],
    ) -> BoxFuture<'a, Result<Vec<u8>, SandboxError>>;
    fn write_file<'a>(
        &'a self,
        sb: &'a Sandbox,
        path: &'a [u8],
        content: Vec<u8>,
    ) -> BoxFuture<'a, Result<(), SandboxError>>;
    /// Everything below `dir` (recursively), without following links.
    fn list<'a>(
        &'a self,
        sb: &'a Sandbox,
        dir: &'a [u8],
    ) -> BoxFuture<'a, Result<Vec<FileEntry>, SandboxError>>;
    /// The work dir as a tar, streamed as the supervisor makes it.
    fn export_tar<'a>(&'a self, sb: &'a Sandbox) -> BoxFuture<'a, Result<TarStream, SandboxError>>;
    /// Unpack a tar into the work dir as it arrives.
    fn import_tar<'a>(
        &'a self,
        sb: &'a Sandbox,
        tar: TarStream,
    ) -> BoxFuture<'a, Result<(), SandboxError>>;
    /// Free everything the sandbox holds; a missing one is fine.
    fn destroy<'a>(&'a self, sb: &'a Sandbox) -> BoxFuture<'a, Result<(), SandboxError>>;
    /// At start: keep the resources of `known` sandboxes that still exist, remove any other
    /// resources this instance's sandboxes left; return the ids of known sandboxes whose
    /// resources are gone (the manager then deletes their records).
    fn reconcile<'a>(&'a self, known: &'a [Sandbox]) -> BoxFuture<'a, Vec<String>>;
    /// Graceful stop: release what must not outlive the service, keep what must survive a restart.
    fn shutdown(&self) -> BoxFuture<'_, ()>;
    /// The sandbox's supervisor, for contexts and background processes (`stateful.rs`).
    fn session<'a>(
        &'a self,
        _sb: &'a Sandbox,
    ) -> BoxFuture<'a, Result<stateful::Session, SandboxError>> {
        Box::pin(async {
            Err(SandboxError::Unsupported(
                "this executor's sandboxes have no contexts or background processes".into(),
            ))
        })
    }
}
