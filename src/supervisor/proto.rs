//! The supervisor's wire protocol: one unix-socket connection per operation, carrying frames.
//!
//! A frame is `len: u32 BE` (of what follows), `kind: u8`, then `len - 1` bytes of payload. The
//! service opens a connection, sends one [`Request`] frame, then the operation's input (`Input`
//! frames ended by an empty `InputEnd`) when it has one; the supervisor answers with the
//! operation's output (`Stdout`, `Stderr`, `Data`, `Event` frames) and ends with exactly one
//! [`Response`] frame. The service may send a [`Control`] frame at any time during a call. A
//! connection that closes before its `Response` cancels the operation: a call's processes are
//! killed, a half-written file is discarded. Program output only ever travels inside `Stdout`
//! and `Stderr` payloads, so nothing a program prints can be read as a message of the protocol.

use std::io::{self, Read, Write};

use serde::{Deserialize, Serialize};

/// The largest frame either side accepts (a listing of a full work dir fits; data is chunked
/// far below it).
pub const MAX_FRAME: usize = 16 << 20;
/// The size of the data chunks either side writes.
pub const CHUNK: usize = 64 << 10;
/// Bumped when a message changes shape; `Hello` carries it.
pub const VERSION: u32 = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    Request = 1,
    Response = 2,
    Input = 3,
    InputEnd = 4,
    Stdout = 5,
    Stderr = 6,
    Data = 7,
    Event = 8,
    Control = 9,
}

impl Kind {
    pub fn from_u8(b: u8) -> Option<Kind> {
        Some(match b {
            1 => Kind::Request,
            2 => Kind::Response,
            3 => Kind::Input,
            4 => Kind::InputEnd,
            5 => Kind::Stdout,
            6 => Kind::Stderr,
            7 => Kind::Data,
            8 => Kind::Event,
            9 => Kind::Control,
            _ => return None,
        })
    }
}

/// Encode one frame's header (the payload follows it).
pub fn header(kind: Kind, payload_len: usize) -> [u8; 5] {
    let len = (payload_len + 1) as u32;
    let b = len.to_be_bytes();
    [b[0], b[1], b[2], b[3], kind as u8]
}

/// Blocking write of one frame (the supervisor's side).
pub fn write_frame(w: &mut impl Write, kind: Kind, payload: &[u8]) -> io::Result<()> {
    w.write_all(&header(kind, payload.len()))?;
    w.write_all(payload)
}

/// Blocking read of one frame; `Ok(None)` at a clean end of stream between frames.
pub fn read_frame(r: &mut impl Read) -> io::Result<Option<(Kind, Vec<u8>)>> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len == 0 || len > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {len} bytes"),
        ));
    }
    let mut kind = [0u8; 1];
    r.read_exact(&mut kind)?;
    let kind = Kind::from_u8(kind[0]).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame kind {}", kind[0]),
        )
    })?;
    let mut payload = vec![0u8; len - 1];
    r.read_exact(&mut payload)?;
    Ok(Some((kind, payload)))
}

/// A path inside the sandbox, relative to /work. Paths are bytes on the wire (file names need
/// not be UTF-8): base64 of the raw bytes.
pub type RawPath = String;

/// What the service asks; the first frame of every connection.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Liveness and identity.
    Hello,
    /// Run one program (a call's step) to its end; see [`CallSpec`]. Input frames are its stdin.
    Exec(CallSpec),
    /// Make the next call's process tree ahead of it: its init joins the `cgroup_fds`
    /// descriptors passed along (the next call's cgroup) and waits. An `Exec` naming `token`
    /// then starts its program in it. At most two wait: a third replaces (kills) the oldest.
    Prepare {
        token: String,
        cgroup_fds: usize,
    },
    /// Refuse paths a call would write that the work dir cannot take as files.
    CheckPaths {
        paths: Vec<RawPath>,
    },
    /// A file's bytes as `Data` frames (at most `max` bytes, else `TooLarge`).
    Read {
        path: RawPath,
        max: u64,
    },
    /// Input frames are the file's new content; written to a temp file and renamed over it.
    Write {
        path: RawPath,
        executable: bool,
    },
    /// Everything below `path` ("" = the work dir), recursively, without following links.
    List {
        path: RawPath,
    },
    /// A tar of the work dir as `Data` frames.
    TarOut,
    /// Input frames are a tar to unpack into the work dir (checked entry by entry; nothing
    /// escapes it, links are refused).
    TarIn,
    /// Start a persistent interpreter (a context); answers its id.
    ContextCreate(ContextSpec),
    /// Run code in a context; output as `Stdout`/`Stderr`, display results as `Event` frames.
    ContextExec(ContextExecSpec),
    ContextDelete {
        id: String,
    },
    ContextList,
    /// Start a background process; answers its id.
    ProcessStart(ProcessSpec),
    ProcessList,
    /// Its output so far as `Stdout`/`Stderr` frames; with `follow`, then as it comes until it
    /// exits.
    ProcessLogs {
        id: String,
        follow: bool,
    },
    ProcessKill {
        id: String,
    },
    /// Kill every process in the sandbox but the supervisor (calls, contexts, background).
    KillAll,
}

/// The limits and identity of one program run by the supervisor.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ProcLimits {
    pub wall_time_ms: u64,
    pub cpu_time_ms: u64,
    /// Per stream: the supervisor forwards at most this many bytes of each and says when it cut.
    pub output_bytes: u64,
    pub open_files: u64,
    /// RLIMIT_FSIZE.
    pub file_bytes: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CallSpec {
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    /// Relative to /work; "" is /work.
    pub cwd: String,
    /// Files written into /work (as the sandbox user) before the program starts.
    pub files: Vec<InlineFile>,
    pub limits: ProcLimits,
    /// The number of descriptors passed with the request frame (SCM_RIGHTS): `cgroup.procs`
    /// files the call's first process joins before anything else runs.
    pub cgroup_fds: usize,
    /// A tree made ahead by `Prepare` in these same cgroups: used when the supervisor still
    /// has it, else the call starts cold with the descriptors passed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warm: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InlineFile {
    pub path: RawPath,
    /// Base64.
    pub content: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContextSpec {
    pub language: String,
    pub env: Vec<(String, String)>,
    pub cwd: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContextExecSpec {
    pub id: String,
    pub code: String,
    pub limits: ProcLimits,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProcessSpec {
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub cwd: String,
    pub open_files: u64,
    /// How much of each stream the supervisor keeps for `ProcessLogs` (the newest bytes).
    pub log_bytes: u64,
}

/// Sent by the service during a call.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Control {
    /// The call's CPU time reached its limit (the service watches the call's cgroup).
    CpuLimit,
    /// The service's own deadline (the supervisor keeps `wall_time_ms` itself as well).
    Deadline,
}

/// How a call's program ended.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Ended {
    Exited,
    Deadline,
    CpuLimit,
}

/// The last frame of every connection.
#[allow(clippy::large_enum_variant)] // one per operation, serialized at once
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Response {
    Ok(Reply),
    Error(ErrorReply),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorReply {
    pub kind: ErrorKind,
    pub message: String,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    NotFound,
    /// A path the rule refuses.
    Refused,
    /// What is in the work dir stands in the way (a link, a file for a directory, ...).
    Conflict,
    /// The sandbox's disk is full, or a read is over its bound.
    TooLarge,
    InvalidArchive,
    /// An unknown context or process, or a context that is not usable.
    NoSuchContext,
    NoSuchProcess,
    ContextLost,
    /// The program could not be started (setup inside the sandbox failed).
    Setup,
    Io,
    Protocol,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Reply {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hello: Option<Hello>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit: Option<CallExit>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entries: Option<Vec<Entry>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contexts: Option<Vec<ContextInfo>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub processes: Option<Vec<ProcessInfo>>,
    /// A context call's display results and error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_result: Option<ContextResult>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Hello {
    pub version: u32,
    pub pid: u32,
}

/// How a call ended, measured inside the sandbox.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CallExit {
    pub ended: Option<Ended>,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub wall_time_ms: u64,
    /// rusage of the call's whole process tree.
    pub cpu_time_ms: u64,
    pub max_rss_bytes: u64,
    pub stdout_truncated: bool,
    pub stderr_truncated: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Entry {
    pub path: RawPath,
    pub size: u64,
    /// "file", "dir" or "symlink".
    pub kind: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContextInfo {
    pub id: String,
    pub language: String,
    /// "idle", "busy" or "lost".
    pub state: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProcessInfo {
    pub id: String,
    pub argv: Vec<String>,
    /// "running" or "exited".
    pub state: String,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub pid: u32,
    pub started_at_ms: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ContextResult {
    /// Display bundles keyed by MIME type, as Jupyter's.
    pub results: Vec<serde_json::Map<String, serde_json::Value>>,
    pub error: Option<ContextError>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContextError {
    pub name: String,
    pub value: String,
    pub traceback: String,
}

/// Async frame I/O (the service's client and the supervisor's server both run on tokio).
pub mod io_async {
    use super::{header, Kind, MAX_FRAME};
    use std::io;
    use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

    pub async fn write_frame(
        w: &mut (impl AsyncWrite + Unpin),
        kind: Kind,
        payload: &[u8],
    ) -> io::Result<()> {
        w.write_all(&header(kind, payload.len())).await?;
        w.write_all(payload).await
    }

    /// `Ok(None)` at a clean end of stream between frames.
    pub async fn read_frame(
        r: &mut (impl AsyncRead + Unpin),
    ) -> io::Result<Option<(Kind, Vec<u8>)>> {
        let mut len = [0u8; 4];
        match r.read_exact(&mut len).await {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e),
        }
        read_rest(r, len).await.map(Some)
    }

    /// The rest of a frame whose length was read.
    pub async fn read_rest(
        r: &mut (impl AsyncRead + Unpin),
        len: [u8; 4],
    ) -> io::Result<(Kind, Vec<u8>)> {
        let len = u32::from_be_bytes(len) as usize;
        if len == 0 || len > MAX_FRAME {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("frame of {len} bytes"),
            ));
        }
        let kind = r.read_u8().await?;
        let kind = Kind::from_u8(kind).ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidData, format!("frame kind {kind}"))
        })?;
        let mut payload = vec![0u8; len - 1];
        r.read_exact(&mut payload).await?;
        Ok((kind, payload))
    }
}

/// Base64 of raw path bytes, as paths travel.
pub fn raw_path(bytes: &[u8]) -> RawPath {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The bytes of a wire path.
pub fn path_bytes(p: &RawPath) -> Result<Vec<u8>, String> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(p)
        .map_err(|e| format!("a path that is not base64: {e}"))
}
