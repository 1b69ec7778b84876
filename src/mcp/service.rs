//! The run path as the MCP door reaches it: one function per tool, each going the way its HTTP
//! route goes (validation, the team's quotas, admission, the audit log, the sandbox's lock).
//! Today these call into `api/`'s functions; this file is the one seam to move when the run
//! path has a layer of its own below the doors.

use std::sync::Arc;

use crate::api::{contexts, execute, sandboxes, ApiError, AppState};
use crate::exec::request::{ExecuteRequest, SandboxCallRequest};
use crate::exec::RunResult;
use crate::sandbox::manager::CreateSandbox;
use crate::sandbox::names::{self, PathEncoding};
use crate::sandbox::FileEntry;
use crate::store::Team;

pub use crate::api::sandboxes::{FileWritten, SandboxView};

/// `POST /v1/execute`, answered as JSON.
pub async fn execute(
    state: &Arc<AppState>,
    team: &Team,
    req: ExecuteRequest,
) -> Result<RunResult, ApiError> {
    let (job, executor) = execute::prepare(state, req)?;
    let origin = execute::Origin {
        team: team.clone(),
        sandbox_id: None,
    };
    let task = execute::admit_and_spawn(state, origin, job, executor).await?;
    join(task).await
}

/// `POST /v1/sandboxes/{id}/execute`, in a context when the request names one.
pub async fn sandbox_execute(
    state: &Arc<AppState>,
    team: &Team,
    id: &str,
    req: SandboxCallRequest,
) -> Result<RunResult, ApiError> {
    let origin = execute::Origin {
        team: team.clone(),
        sandbox_id: Some(id.to_string()),
    };
    let task = if req.context.is_some() {
        let (job, call) = contexts::context_call(state, team, id, req).await?;
        execute::admit_and_spawn(state, origin, job, Arc::new(call)).await?
    } else {
        let (job, call) = sandboxes::call(state, team, id, req).await?;
        execute::admit_and_spawn(state, origin, job, Arc::new(call)).await?
    };
    join(task).await
}

/// The run's result; a tool call dropped before it (the client cancelled it, or hung up on
/// its HTTP request) cancels the run, as closing an event stream does.
async fn join(
    task: tokio::task::JoinHandle<Result<RunResult, crate::exec::ExecError>>,
) -> Result<RunResult, ApiError> {
    let _cancel = execute::AbortOnDrop(task.abort_handle());
    execute::join(task).await
}

/// `POST /v1/sandboxes`.
pub async fn create_sandbox(
    state: &AppState,
    team: &Team,
    req: CreateSandbox,
) -> Result<SandboxView, ApiError> {
    let sandbox = sandboxes::manager(state)?.create(team, req).await?;
    Ok(sandboxes::view(&sandbox))
}

/// `DELETE /v1/sandboxes/{id}`.
pub async fn delete_sandbox(state: &AppState, team: &Team, id: &str) -> Result<(), ApiError> {
    Ok(sandboxes::manager(state)?.delete(team, id).await?)
}

/// `POST /v1/sandboxes/{id}/contexts`: the new context's id and language.
pub async fn create_context(
    state: &AppState,
    team: &Team,
    id: &str,
    language: &str,
) -> Result<String, ApiError> {
    contexts::start_context(state, team, id, language).await
}

/// `PUT /v1/sandboxes/{id}/files/{path}`.
pub async fn write_file(
    state: &AppState,
    team: &Team,
    id: &str,
    path: &str,
    content: Vec<u8>,
) -> Result<FileWritten, ApiError> {
    let rel = sandboxes::rel_path(path, PathEncoding::Utf8)?;
    let size = content.len();
    let m = sandboxes::manager(state)?;
    let (sandbox, _guard) = m.use_sandbox(team, id).await?;
    sandboxes::backend_of(m, &sandbox)?
        .write_file(&sandbox, &rel, content)
        .await?;
    let (path, path_encoding) = names::encode(&rel);
    Ok(FileWritten {
        path,
        path_encoding,
        size,
    })
}

/// `GET /v1/sandboxes/{id}/files/{path}`.
pub async fn read_file(
    state: &AppState,
    team: &Team,
    id: &str,
    path: &str,
) -> Result<Vec<u8>, ApiError> {
    let rel = sandboxes::rel_path(path, PathEncoding::Utf8)?;
    let m = sandboxes::manager(state)?;
    let (sandbox, _guard) = m.use_sandbox(team, id).await?;
    let backend = sandboxes::backend_of(m, &sandbox)?;
    Ok(backend.read_file(&sandbox, &rel).await?)
}

/// `GET /v1/sandboxes/{id}/files?path=DIR`.
pub async fn list_files(
    state: &AppState,
    team: &Team,
    id: &str,
    dir: &str,
) -> Result<Vec<FileEntry>, ApiError> {
    let dir = sandboxes::dir_path(dir, PathEncoding::Utf8)?;
    let m = sandboxes::manager(state)?;
    let (sandbox, _guard) = m.use_sandbox(team, id).await?;
    let backend = sandboxes::backend_of(m, &sandbox)?;
    Ok(backend.list(&sandbox, &dir).await?)
}
