//! What a call needs in /work before its program starts: its files, written as the sandbox's
//! user through `WorkDir` (never through a link the sandbox planted), and its working directory.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use super::{error, Shared};
use crate::sandbox::fs::{FsError, WorkDir};
use crate::supervisor::proto::{self, ErrorKind, InlineFile, Response};

pub fn write_inline(shared: &Shared, files: &[InlineFile]) -> Result<(), Response> {
    use base64::Engine;
    if files.is_empty() {
        return Ok(());
    }
    let work = WorkDir::open(&shared.cfg.work).map_err(fs_error)?;
    for f in files {
        let path = proto::path_bytes(&f.path).map_err(|e| error(ErrorKind::Refused, e))?;
        let content = base64::engine::general_purpose::STANDARD
            .decode(&f.content)
            .map_err(|e| error(ErrorKind::Protocol, format!("file content: {e}")))?;
        work.write_replacing_link(&path, false, Some(shared.owner()), &mut &content[..])
            .map_err(fs_error)?;
    }
    Ok(())
}

/// The call's working directory: /work, or a directory below it named by the one path rule
/// (`exec::path`).
pub fn cwd(shared: &Shared, raw: &proto::RawPath) -> Result<PathBuf, Response> {
    let bytes = proto::path_bytes(raw).map_err(|e| error(ErrorKind::Refused, e))?;
    let dir = crate::exec::path::check_dir_raw(&bytes)
        .map_err(|e| error(ErrorKind::Refused, format!("the working directory: {e}")))?;
    if dir.is_empty() {
        return Ok(shared.cfg.work.clone());
    }
    Ok(shared.cfg.work.join(OsStr::from_bytes(dir)))
}

pub fn fs_error(e: FsError) -> Response {
    Response::Error(super::files::error_reply(&e))
}
