//! The supervisor's file operations: one blocking function per file request of `proto.rs`, run
//! as root inside the sandbox on its /work through [`WorkDir`], which resolves every path
//! beneath /work and never follows a link a program planted. Contents and archives stream, so
//! memory stays bounded whatever the sizes; names are raw bytes; what is written is given to the
//! sandbox user. The filesystem under /work is the sandbox's disk: when it is full, `TooLarge`.

use std::io::{Read, Write};

use crate::sandbox::fs::{FsError, WorkDir};
use crate::sandbox::FileKind;
use crate::supervisor::proto::{self, ErrorKind, ErrorReply};

/// A path as it travels ([`proto::RawPath`]): base64 of the raw bytes.
pub fn wire_path(raw: &[u8]) -> proto::RawPath {
    proto::raw_path(raw)
}

/// The raw bytes of a path off the wire; one that is not base64 is a protocol error.
pub fn raw_path(p: &proto::RawPath) -> Result<Vec<u8>, ErrorReply> {
    proto::path_bytes(p).map_err(|message| ErrorReply {
        kind: ErrorKind::Protocol,
        message,
    })
}

/// `Read`: the file's bytes into `out` (the connection's `Data` frames); over `max` is
/// `TooLarge`, before a byte is sent when the file is already larger.
pub fn read(work: &WorkDir, path: &[u8], max: u64, out: &mut dyn Write) -> Result<u64, FsError> {
    work.read(path, max, out)
}

/// `Write`: `input` (the connection's `Input` frames) becomes the file, through a temp file
/// renamed over the target; parents are made; the file and new parents belong to `owner`.
pub fn write(
    work: &WorkDir,
    path: &[u8],
    executable: bool,
    owner: (u32, u32),
    input: &mut dyn Read,
) -> Result<(), FsError> {
    work.write(path, executable, Some(owner), input).map(drop)
}

/// `List`: everything below `path` ("" = /work), in path order, links listed and not followed.
pub fn list(work: &WorkDir, path: &[u8]) -> Result<Vec<proto::Entry>, FsError> {
    Ok(work
        .list(path)?
        .into_iter()
        .map(|e| proto::Entry {
            path: wire_path(&e.path),
            size: e.size,
            kind: match e.kind {
                FileKind::File => "file",
                FileKind::Dir => "dir",
                FileKind::Symlink => "symlink",
            }
            .into(),
        })
        .collect())
}

/// `CheckPaths`: refuse a path a call would write that /work cannot take as a file.
pub fn check_paths(work: &WorkDir, paths: &[Vec<u8>]) -> Result<(), FsError> {
    paths.iter().try_for_each(|p| work.check_writable(p))
}

/// `TarOut`: /work as a tar into `out`, file by file as it is read.
pub fn tar_out(work: &WorkDir, out: &mut dyn Write) -> Result<(), FsError> {
    work.export_tar(out)
}

/// `TarIn`: unpack `input` into /work entry by entry, each checked before it is written; what
/// it makes belongs to `owner`. The disk bounds the size.
pub fn tar_in(work: &WorkDir, input: &mut dyn Read, owner: (u32, u32)) -> Result<(), FsError> {
    work.import_tar(input, Some(owner), u64::MAX)
}

/// The `Response::Error` of a failed file operation.
pub fn error_reply(e: &FsError) -> ErrorReply {
    let kind = match e {
        FsError::NotFound(_) => ErrorKind::NotFound,
        FsError::Refused(_) => ErrorKind::Refused,
        FsError::Conflict(_) => ErrorKind::Conflict,
        FsError::TooLarge { .. } | FsError::DiskFull(_) => ErrorKind::TooLarge,
        FsError::NotArchive(_) => ErrorKind::InvalidArchive,
        FsError::Io(..) => ErrorKind::Io,
    };
    let message = match e {
        // The source says what the kernel answered.
        FsError::Io(_, source) => format!("{e}: {source}"),
        _ => e.to_string(),
    };
    ErrorReply { kind, message }
}

#[cfg(test)]
mod tests;
