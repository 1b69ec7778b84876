//! The files of a sandbox's work dir: one file in and out, listings, and the whole work dir as
//! a tar out and in. Paths come in the files API's reversible form (`sandbox/names.rs`) and are
//! checked by the one path rule (`exec::path`) before any sandbox is looked up; every operation
//! holds the sandbox's lock for its whole length.

use futures_util::StreamExt;
use serde::Serialize;

use super::sandboxes::use_sandbox;
use super::{AppState, ServiceError};
use crate::sandbox::names::{self, PathEncoding};
use crate::sandbox::{FileEntry, TarStream};
use crate::store::Team;

fn path_refused(e: impl ToString) -> ServiceError {
    ServiceError::PathRefused(e.to_string())
}

/// A file's path as given (`shown`, in `encoding`), as raw bytes by the one path rule — so a
/// `../` arrives as `../` and is refused, in either encoding.
pub fn file_path(shown: &str, encoding: PathEncoding) -> Result<Vec<u8>, ServiceError> {
    let raw = names::decode(shown, encoding).map_err(path_refused)?;
    crate::exec::path::check_raw(&raw).map_err(path_refused)?;
    Ok(raw)
}

/// What a file write wrote.
#[derive(Serialize, utoipa::ToSchema)]
pub struct FileWritten {
    /// As a listing shows it: as is when valid UTF-8, else percent-encoded.
    pub path: String,
    pub path_encoding: PathEncoding,
    pub size: usize,
}

/// Write `content` to the file at `path` (parent directories are made).
pub async fn write(
    state: &AppState,
    team: &Team,
    id: &str,
    path: &[u8],
    content: Vec<u8>,
) -> Result<FileWritten, ServiceError> {
    let size = content.len();
    let sb = use_sandbox(state, team, id).await?;
    sb.backend.write_file(&sb.sandbox, path, content).await?;
    let (path, path_encoding) = names::encode(path);
    Ok(FileWritten {
        path,
        path_encoding,
        size,
    })
}

/// The bytes of the file at `path`.
pub async fn read(
    state: &AppState,
    team: &Team,
    id: &str,
    path: &[u8],
) -> Result<Vec<u8>, ServiceError> {
    let sb = use_sandbox(state, team, id).await?;
    Ok(sb.backend.read_file(&sb.sandbox, path).await?)
}

/// Everything below the directory `dir` (shown in `encoding`; "" is the work dir), recursively;
/// links are listed, never followed.
pub async fn list(
    state: &AppState,
    team: &Team,
    id: &str,
    dir: &str,
    encoding: PathEncoding,
) -> Result<Vec<FileEntry>, ServiceError> {
    let raw = names::decode(dir, encoding).map_err(path_refused)?;
    let dir = crate::exec::path::check_dir_raw(&raw).map_err(path_refused)?;
    let sb = use_sandbox(state, team, id).await?;
    Ok(sb.backend.list(&sb.sandbox, dir).await?)
}

/// The whole work dir as a tar, streamed as it is made. The sandbox stays locked until the
/// stream is read to its end or dropped.
pub async fn export_tar(
    state: &AppState,
    team: &Team,
    id: &str,
) -> Result<TarStream, ServiceError> {
    let sb = use_sandbox(state, team, id).await?;
    let tar = sb.backend.export_tar(&sb.sandbox).await?;
    let guard = sb.guard;
    Ok(tar
        .map(move |chunk| {
            let _held = &guard;
            chunk
        })
        .boxed())
}

/// Unpack a tar into the work dir as it arrives, entry by entry, each checked before it is
/// written (a refused entry stops the unpack with those before it in place).
pub async fn import_tar(
    state: &AppState,
    team: &Team,
    id: &str,
    tar: TarStream,
) -> Result<(), ServiceError> {
    let sb = use_sandbox(state, team, id).await?;
    Ok(sb.backend.import_tar(&sb.sandbox, tar).await?)
}
