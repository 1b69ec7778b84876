//! The service as the MCP door reaches it: one function per tool, each the service function its
//! HTTP route calls (validation, the team's quotas, admission, run tracking, the audit log, the
//! sandbox's lock). What goes wrong is a `ServiceError`; `tools.rs` answers it with the API's
//! code and message.

use std::sync::Arc;

use crate::exec::request::{ExecuteRequest, SandboxCallRequest};
use crate::exec::RunResult;
use crate::sandbox::manager::CreateSandbox;
use crate::sandbox::names::PathEncoding;
use crate::sandbox::FileEntry;
use crate::service::{self, AppState, ServiceError};
use crate::store::Team;

pub use crate::service::files::FileWritten;
pub use crate::service::sandboxes::SandboxView;

/// `POST /v1/execute`, answered as JSON. A tool call dropped before the result (the client
/// cancelled it, or hung up on its HTTP request) cancels the run, as closing an event stream
/// does.
pub async fn execute(
    state: &Arc<AppState>,
    team: &Team,
    req: ExecuteRequest,
) -> Result<RunResult, ServiceError> {
    let run = service::run::prepare(state, team, req)?;
    run.start(state).await?.outcome_or_kill().await
}

/// `POST /v1/sandboxes/{id}/execute`, in a context when the request names one.
pub async fn sandbox_execute(
    state: &Arc<AppState>,
    team: &Team,
    id: &str,
    req: SandboxCallRequest,
) -> Result<RunResult, ServiceError> {
    let call = service::sandboxes::prepare_call(state, team, id, req).await?;
    call.start(state).await?.outcome_or_kill().await
}

/// `POST /v1/sandboxes`.
pub async fn create_sandbox(
    state: &AppState,
    team: &Team,
    req: CreateSandbox,
) -> Result<SandboxView, ServiceError> {
    let sandbox = service::sandboxes::create(state, team, req).await?;
    Ok(SandboxView::from(&sandbox))
}

/// `DELETE /v1/sandboxes/{id}`.
pub async fn delete_sandbox(state: &AppState, team: &Team, id: &str) -> Result<(), ServiceError> {
    service::sandboxes::delete(state, team, id).await
}

/// `POST /v1/sandboxes/{id}/contexts`: the new context's id.
pub async fn create_context(
    state: &AppState,
    team: &Team,
    id: &str,
    language: &str,
) -> Result<String, ServiceError> {
    Ok(service::contexts::create(state, team, id, language)
        .await?
        .id)
}

/// `PUT /v1/sandboxes/{id}/files/{path}`.
pub async fn write_file(
    state: &AppState,
    team: &Team,
    id: &str,
    path: &str,
    content: Vec<u8>,
) -> Result<FileWritten, ServiceError> {
    let rel = service::files::file_path(path, PathEncoding::Utf8)?;
    service::files::write(state, team, id, &rel, content).await
}

/// `GET /v1/sandboxes/{id}/files/{path}`.
pub async fn read_file(
    state: &AppState,
    team: &Team,
    id: &str,
    path: &str,
) -> Result<Vec<u8>, ServiceError> {
    let rel = service::files::file_path(path, PathEncoding::Utf8)?;
    service::files::read(state, team, id, &rel).await
}

/// `GET /v1/sandboxes/{id}/files?path=DIR`.
pub async fn list_files(
    state: &AppState,
    team: &Team,
    id: &str,
    dir: &str,
) -> Result<Vec<FileEntry>, ServiceError> {
    service::files::list(state, team, id, dir, PathEncoding::Utf8).await
}
