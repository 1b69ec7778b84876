//! Background processes of a sandbox: programs that outlive the call that started them (a dev
//! server the next call tests over the sandbox's loopback), their logs and their end.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::sandboxes::{deleted_or, unlocked, use_sandbox};
use super::{AppState, ServiceError};
use crate::sandbox::stateful::{self, LogStream, ProcessView, StartProcess};
use crate::sandbox::SandboxError;
use crate::store::Team;

/// What to start (`POST /v1/sandboxes/{id}/processes`).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateProcess {
    /// The program and its arguments, e.g. `["python3", "-m", "http.server", "8000"]`; a bare
    /// name is looked up in the sandbox's `PATH`. One that cannot be started is listed as
    /// exited with code 127 and the reason in its stderr.
    #[schema(min_items = 1, max_items = 1000)]
    pub command: Vec<String>,
    /// Added to the sandbox's `env`, winning over it.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// A directory relative to the work dir; the work dir when left out.
    #[serde(default)]
    pub cwd: Option<String>,
}

/// A process's kept output: the newest bytes of each stream, as much as the sandbox policy's
/// `output_bytes`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ProcessLogs {
    pub stdout: String,
    pub stderr: String,
    #[schema(required = true)]
    pub process: Option<ProcessView>,
}

/// A process's logs: collected as they are now, or followed as they come.
pub enum Logs {
    Collected(ProcessLogs),
    /// Output chunks as they come, then one end with the process once it has exited.
    Followed(LogStream),
}

/// Start a background process in the team's sandbox `id`.
pub async fn start(
    state: &AppState,
    team: &Team,
    id: &str,
    req: CreateProcess,
) -> Result<ProcessView, ServiceError> {
    if req.command.is_empty() || req.command.iter().any(|a| a.contains('\0')) {
        return Err(ServiceError::InvalidRequest(
            "`command` must name a program (at least one item), with no NUL byte in any".into(),
        ));
    }
    for (k, v) in &req.env {
        if !crate::exec::request::valid_env_name(k) || v.contains('\0') {
            return Err(ServiceError::InvalidRequest(format!(
                "env name \"{k}\" is not a valid variable name (not empty, no = or NUL, not starting with a digit), or its value has a NUL byte"
            )));
        }
    }
    let cwd = req.cwd.unwrap_or_default();
    let cwd = crate::exec::path::check_dir_raw(cwd.as_bytes())
        .map(|d| String::from_utf8_lossy(d).into_owned())
        .map_err(|e| ServiceError::PathRefused(e.to_string()))?;
    let sb = use_sandbox(state, team, id).await?;
    let open_files = state
        .policies
        .get(&sb.sandbox.policy)
        .map(|p| p.open_files)
        .unwrap_or(1024);
    let start = StartProcess {
        command: req.command,
        env: req.env.into_iter().collect(),
        cwd,
        open_files,
        log_bytes: sb.sandbox.limits.output_bytes,
    };
    let pid = stateful::process_start(&*sb.backend, &sb.sandbox, start).await?;
    let view = stateful::process_list(&*sb.backend, &sb.sandbox)
        .await?
        .into_iter()
        .find(|p| p.id == pid)
        .ok_or_else(|| SandboxError::ProcessNotFound(format!("process {pid} vanished")))?;
    Ok(view)
}

/// The sandbox's background processes, running and exited (until deleted).
pub async fn list(
    state: &AppState,
    team: &Team,
    id: &str,
) -> Result<Vec<ProcessView>, ServiceError> {
    let (sandbox, backend) = unlocked(state, team, id).await?;
    match stateful::process_list(&*backend, &sandbox).await {
        Err(SandboxError::Unsupported(_)) => Ok(Vec::new()),
        Err(e) => Err(deleted_or(state, team, id, e).await),
        Ok(p) => Ok(p),
    }
}

/// Kill a background process's whole tree.
pub async fn kill(
    state: &AppState,
    team: &Team,
    id: &str,
    process: &str,
) -> Result<(), ServiceError> {
    let (sandbox, backend) = unlocked(state, team, id).await?;
    match stateful::process_kill(&*backend, &sandbox, process).await {
        Err(SandboxError::Unsupported(_)) => Err(no_process(process)),
        Err(e) => Err(deleted_or(state, team, id, e).await),
        Ok(()) => Ok(()),
    }
}

/// A process's kept output, or (`follow`) its output as it comes until it exits.
pub async fn logs(
    state: &AppState,
    team: &Team,
    id: &str,
    process: &str,
    follow: bool,
) -> Result<Logs, ServiceError> {
    let (sandbox, backend) = unlocked(state, team, id).await?;
    let logs = match stateful::process_logs(&*backend, &sandbox, process, follow).await {
        Err(SandboxError::Unsupported(_)) => return Err(no_process(process)),
        Err(e) => return Err(deleted_or(state, team, id, e).await),
        Ok(l) => l,
    };
    if follow {
        return Ok(Logs::Followed(logs));
    }
    let (stdout, stderr, process) = stateful::collect_logs(logs).await?;
    Ok(Logs::Collected(ProcessLogs {
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
        process,
    }))
}

fn no_process(id: &str) -> ServiceError {
    SandboxError::ProcessNotFound(format!("no background process {id} in this sandbox")).into()
}
