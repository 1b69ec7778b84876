//! File operations on a sandbox's work dir that never leave it, run by the supervisor inside the
//! sandbox (and, until it replaces them, by the local backend on the host). A sandboxed program
//! can plant any symlink there (absolute, `../..`, a directory link used mid-path), so every
//! open is resolved beneath a descriptor of the root and a symlink anywhere in a requested path
//! is refused, never followed: the Judge0 CVE-2024-28185/28189 pattern cannot happen here.
//! Names are bytes (`exec::path::check_raw`); contents and archives stream (`archive.rs`).

mod archive;

use std::ffi::{CString, OsStr, OsString};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use nix::dir::Dir;
use nix::errno::Errno;
use nix::fcntl::{readlinkat, renameat, AtFlags, OFlag};
use nix::sys::stat::{fchmod, fstat, fstatat, mkdirat, FileStat, Mode, SFlag};
use nix::unistd::{fchown, unlinkat, Gid, Uid, UnlinkatFlags};

use super::{names, FileKind};
use crate::exec::path;

#[derive(Debug, thiserror::Error)]
pub enum FsError {
    #[error("no such file or directory: {0}")]
    NotFound(String),
    #[error("path refused: {0}")]
    Refused(String),
    /// The path is well-formed but what is in the work dir now stands in the way (a link, a file
    /// where a directory belongs, a directory where a file belongs).
    #[error("{0}")]
    Conflict(String),
    #[error("{what} exceeds the limit of {max} bytes")]
    TooLarge { what: String, max: u64 },
    /// The work dir's filesystem is full (ENOSPC, EDQUOT): its size is the sandbox's disk.
    #[error("the sandbox's disk is full while {0}")]
    DiskFull(String),
    #[error("the body is not a tar archive: {0}")]
    NotArchive(String),
    #[error("work dir i/o failed while {0}")]
    Io(String, #[source] io::Error),
}

/// Who owns what a write or an unpack creates: the sandbox user inside a sandbox, so that its
/// programs may change it; `None` leaves it to the creating process (the host's service).
pub type Owner = Option<(u32, u32)>;

/// A sandbox's work dir, held open so that every path is resolved from it and never from a name.
pub struct WorkDir {
    root: OwnedFd,
    path: PathBuf,
    /// Tests force the pre-openat2 walk to prove it holds the same line.
    walk_only: bool,
}

/// One entry of a listing: the raw name relative to the work dir.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub path: Vec<u8>,
    pub size: u64,
    pub kind: FileKind,
}

/// Set once openat2 answers ENOSYS (kernel before 5.6): every later open walks instead.
static NO_OPENAT2: AtomicBool = AtomicBool::new(false);
static TEMP_SEQ: AtomicU64 = AtomicU64::new(0);

/// A path that names something (not the root), by the one path rule for sandbox files.
fn named(raw: &[u8]) -> Result<&Path, FsError> {
    path::check_raw(raw)
        .map(|p| Path::new(OsStr::from_bytes(p)))
        .map_err(|e| FsError::Refused(e.to_string()))
}

/// A directory below the work dir, or `""` (also `"."`) for the work dir itself; one trailing
/// slash is dropped.
fn dir_named(raw: &[u8]) -> Result<&Path, FsError> {
    path::check_dir_raw(raw)
        .map(|p| Path::new(OsStr::from_bytes(p)))
        .map_err(|e| FsError::Refused(e.to_string()))
}

/// A path as the files API shows it (percent-encoded when it is not UTF-8).
fn shown(p: &Path) -> String {
    names::shown(p.as_os_str().as_bytes())
}

fn fail(doing: &str, path: &Path, e: Errno) -> FsError {
    let p = shown(path);
    match e {
        Errno::ENOENT | Errno::ENOTDIR => FsError::NotFound(p),
        // ELOOP: a symlink met under RESOLVE_NO_SYMLINKS or O_NOFOLLOW; EXDEV: RESOLVE_BENEATH.
        Errno::ELOOP | Errno::EXDEV => FsError::Conflict(format!("{p}: a symlink is in the way")),
        Errno::EISDIR => FsError::Conflict(format!("{p} is a directory")),
        Errno::ENOSPC | Errno::EDQUOT => FsError::DiskFull(format!("{doing} {p}")),
        e => FsError::Io(format!("{doing} {p}"), e.into()),
    }
}

fn io_fail(doing: &str, path: &Path) -> impl FnOnce(io::Error) -> FsError {
    let what = format!("{doing} {}", shown(path));
    move |e| match e.raw_os_error() {
        Some(libc::ENOSPC | libc::EDQUOT) => FsError::DiskFull(what),
        _ => FsError::Io(what, e),
    }
}

fn file_type(st: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits())
}

fn chown_fd(fd: BorrowedFd, owner: Owner) -> Result<(), Errno> {
    match owner {
        Some((u, g)) => fchown(
            fd.as_raw_fd(),
            Some(Uid::from_raw(u)),
            Some(Gid::from_raw(g)),
        ),
        None => Ok(()),
    }
}

/// Which side of a copy failed.
enum CopyError {
    Read(io::Error),
    Write(io::Error),
}

/// io::copy with the side that failed told apart, in 64 KiB steps.
fn copy(r: &mut dyn Read, w: &mut dyn Write) -> Result<u64, CopyError> {
    let mut buf = vec![0u8; 64 << 10];
    let mut total = 0u64;
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CopyError::Read(e)),
        };
        w.write_all(&buf[..n]).map_err(CopyError::Write)?;
        total += n as u64;
    }
}

/// openat2 with the whole contract in the kernel: beneath `dir`, no symlink at any step.
fn openat2_beneath(dir: BorrowedFd, rel: &Path, flags: OFlag, mode: u32) -> Result<OwnedFd, Errno> {
    let rel = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    };
    let c = CString::new(rel.as_os_str().as_bytes()).map_err(|_| Errno::EINVAL)?;
    // SAFETY: open_how is three integers; all-zero is valid and is what the kernel defaults to.
    // (libc marks it #[non_exhaustive], so it cannot be built with a literal.)
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (flags | OFlag::O_CLOEXEC).bits() as u64;
    how.mode = if flags.contains(OFlag::O_CREAT) {
        mode as u64
    } else {
        0
    };
    how.resolve = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS;
    // EAGAIN: a concurrent rename raced the BENEATH check; the kernel asks us to retry.
    for _ in 0..8 {
        // SAFETY: `c` is a NUL-terminated string and `how` a valid open_how, both alive for the
        // call; the size passed is the struct's.
        let r = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                dir.as_raw_fd(),
                c.as_ptr(),
                &how,
                std::mem::size_of_val(&how),
            )
        };
        if r >= 0 {
            // SAFETY: the kernel just returned this descriptor and nothing else owns it.
            return Ok(unsafe { OwnedFd::from_raw_fd(r as RawFd) });
        }
        match Errno::last() {
            Errno::EAGAIN => continue,
            e => return Err(e),
        }
    }
    Err(Errno::EAGAIN)
}

fn openat_one(dir: BorrowedFd, name: &OsStr, flags: OFlag, mode: u32) -> Result<OwnedFd, Errno> {
    let fd = nix::fcntl::openat(
        Some(dir.as_raw_fd()),
        name,
        flags | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(mode),
    )?;
    // SAFETY: openat just returned this descriptor and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The same contract for kernels without openat2: one component at a time, each with
/// O_NOFOLLOW from the descriptor of the one before, so a planted link is met as a link. Paths
/// here are already checked (no `..`), so staying beneath `dir` follows.
fn walk_beneath(dir: BorrowedFd, rel: &Path, flags: OFlag, mode: u32) -> Result<OwnedFd, Errno> {
    let comps: Vec<&OsStr> = rel.iter().collect();
    let (last, parents) = comps
        .split_last()
        .map_or((OsStr::new("."), &[][..]), |(l, p)| (*l, p));
    let mut cur: Option<OwnedFd> = None;
    for c in parents {
        let fd = openat_one(
            cur.as_ref().map_or(dir, |f| f.as_fd()),
            c,
            OFlag::O_PATH | OFlag::O_NOFOLLOW,
            0,
        )?;
        // O_PATH|O_NOFOLLOW opens a link itself; fstat on what we hold tells, race-free.
        match file_type(&fstat(fd.as_raw_fd())?) {
            SFlag::S_IFDIR => cur = Some(fd),
            SFlag::S_IFLNK => return Err(Errno::ELOOP),
            _ => return Err(Errno::ENOTDIR),
        }
    }
    let at = cur.as_ref().map_or(dir, |f| f.as_fd());
    let fd = match openat_one(at, last, flags | OFlag::O_NOFOLLOW, mode) {
        // O_DIRECTORY|O_NOFOLLOW on a link answers ENOTDIR; say ELOOP, as openat2 does.
        Err(Errno::ENOTDIR)
            if fstatat(Some(at.as_raw_fd()), last, AtFlags::AT_SYMLINK_NOFOLLOW)
                .is_ok_and(|st| file_type(&st) == SFlag::S_IFLNK) =>
        {
            return Err(Errno::ELOOP)
        }
        r => r?,
    };
    if flags.contains(OFlag::O_PATH) && file_type(&fstat(fd.as_raw_fd())?) == SFlag::S_IFLNK {
        return Err(Errno::ELOOP);
    }
    Ok(fd)
}

/// One entry met by [`WorkDir::visit`].
struct Node {
    path: PathBuf,
    name: OsString,
    kind: FileKind,
    size: u64,
    mode: u32,
    mtime: i64,
    target: Option<OsString>,
}

impl WorkDir {
    /// mkdir -p the work dir, then open it.
    pub fn create(path: &Path) -> Result<WorkDir, FsError> {
        std::fs::create_dir_all(path).map_err(io_fail("creating", path))?;
        Self::open(path)
    }

    /// The caller chose `path`, so its parents may be links; the work dir itself never is one.
    pub fn open(path: &Path) -> Result<WorkDir, FsError> {
        let f = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW)
            .open(path)
            .map_err(io_fail("opening", path))?;
        Ok(WorkDir {
            root: f.into(),
            path: path.to_path_buf(),
            walk_only: false,
        })
    }

    fn open_at(
        &self,
        at: BorrowedFd,
        rel: &Path,
        flags: OFlag,
        mode: u32,
    ) -> Result<OwnedFd, Errno> {
        if !self.walk_only && !NO_OPENAT2.load(Ordering::Relaxed) {
            match openat2_beneath(at, rel, flags, mode) {
                Err(Errno::ENOSYS) => NO_OPENAT2.store(true, Ordering::Relaxed),
                // Seccomp profiles older than openat2 answer EPERM; the walk is as safe.
                Err(Errno::EPERM) => {}
                r => return r,
            }
        }
        walk_beneath(at, rel, flags, mode)
    }

    fn open_rel(&self, rel: &Path, flags: OFlag) -> Result<OwnedFd, Errno> {
        self.open_at(self.root.as_fd(), rel, flags, 0)
    }

    /// Stream the regular file `rel` into `out`; its size, at most `max` (else `TooLarge`,
    /// before a byte is sent when the file is already larger).
    pub fn read(&self, rel: &[u8], max: u64, out: &mut dyn Write) -> Result<u64, FsError> {
        let p = named(rel)?;
        // O_NONBLOCK: a FIFO planted under this name must not hang us in open().
        let fd = self
            .open_rel(p, OFlag::O_RDONLY | OFlag::O_NONBLOCK)
            .map_err(|e| fail("opening", p, e))?;
        let f = File::from(fd);
        let meta = f.metadata().map_err(io_fail("reading", p))?;
        if !meta.is_file() {
            return Err(FsError::Conflict(format!(
                "{} is not a regular file",
                shown(p)
            )));
        }
        let too_large = || FsError::TooLarge {
            what: shown(p),
            max,
        };
        if meta.len() > max {
            return Err(too_large());
        }
        let n = match copy(&mut f.take(max.saturating_add(1)), out) {
            Ok(n) => n,
            Err(CopyError::Read(e)) => return Err(io_fail("reading", p)(e)),
            Err(CopyError::Write(e)) => {
                return Err(FsError::Io(format!("sending {}", shown(p)), e))
            }
        };
        if n > max {
            return Err(too_large()); // it grew while we read
        }
        Ok(n)
    }

    /// Write `input` as the file `rel` (mode 0755 when `executable`, else 0644), parents made as
    /// needed; the bytes written. A full disk is `DiskFull` and leaves the old file as it was.
    pub fn write(
        &self,
        rel: &[u8],
        executable: bool,
        owner: Owner,
        input: &mut dyn Read,
    ) -> Result<u64, FsError> {
        let p = named(rel)?;
        let mode = if executable { 0o755 } else { 0o644 };
        self.write_path(p, mode, owner, input, &|e| {
            FsError::Io(format!("receiving {}", shown(p)), e)
        })
    }

    /// Write to a fresh temp name beside the target, then rename over it: the target's inode is
    /// never opened for writing, so neither a link planted there nor a hard link can redirect us,
    /// and a write that fails (a full disk, an input that breaks off) changes nothing.
    fn write_path(
        &self,
        p: &Path,
        mode: u32,
        owner: Owner,
        input: &mut dyn Read,
        input_failed: &dyn Fn(io::Error) -> FsError,
    ) -> Result<u64, FsError> {
        let (dir, name) = self.parent_of(p, owner)?;
        match fstatat(Some(dir.as_raw_fd()), name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) if file_type(&st) == SFlag::S_IFLNK => {
                return Err(fail("writing", p, Errno::ELOOP))
            }
            Ok(st) if file_type(&st) == SFlag::S_IFDIR => {
                return Err(fail("writing", p, Errno::EISDIR))
            }
            Ok(_) | Err(Errno::ENOENT) => {}
            Err(e) => return Err(fail("inspecting", p, e)),
        }
        let (tmp, fd) = loop {
            let tmp = format!(
                ".execbox-{}-{}.tmp",
                std::process::id(),
                TEMP_SEQ.fetch_add(1, Ordering::Relaxed)
            );
            let flags = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL;
            match self.open_at(dir.as_fd(), Path::new(&tmp), flags, mode) {
                // A leftover of an earlier process with our pid, or a name a program took.
                Err(Errno::EEXIST) => continue,
                r => break (tmp, r.map_err(|e| fail("creating", p, e))?),
            }
        };
        let mut f = File::from(fd);
        let done = chown_fd(f.as_fd(), owner)
            // The umask does not decide a file's mode; the request does.
            .and_then(|()| fchmod(f.as_raw_fd(), Mode::from_bits_truncate(mode)))
            .map_err(|e| fail("creating", p, e))
            .and_then(|()| match copy(input, &mut f) {
                Ok(n) => Ok(n),
                Err(CopyError::Read(e)) => Err(input_failed(e)),
                Err(CopyError::Write(e)) => Err(io_fail("writing", p)(e)),
            })
            .and_then(|n| {
                renameat(
                    Some(dir.as_raw_fd()),
                    tmp.as_str(),
                    Some(dir.as_raw_fd()),
                    name,
                )
                .map_err(|e| fail("renaming", p, e))
                .map(|()| n)
            });
        if done.is_err() {
            let _ = unlinkat(
                Some(dir.as_raw_fd()),
                tmp.as_str(),
                UnlinkatFlags::NoRemoveDir,
            );
        }
        done
    }

    /// mkdir -p `p`'s parent beneath the root, each step refusing a link; its fd and `p`'s name.
    fn parent_of<'p>(&self, p: &'p Path, owner: Owner) -> Result<(OwnedFd, &'p OsStr), FsError> {
        let name = p
            .file_name()
            .ok_or_else(|| FsError::Refused(format!("{}: no file name", shown(p))))?;
        Ok((
            self.mkdir_p(p.parent().unwrap_or(Path::new("")), owner)?,
            name,
        ))
    }

    /// Each directory this makes is given to `owner`, through the descriptor it opened.
    fn mkdir_p(&self, rel: &Path, owner: Owner) -> Result<OwnedFd, FsError> {
        let mut cur = self
            .root
            .try_clone()
            .map_err(io_fail("opening", &self.path))?;
        for c in rel.iter() {
            let made = match mkdirat(Some(cur.as_raw_fd()), c, Mode::from_bits_truncate(0o755)) {
                Ok(()) => true,
                Err(Errno::EEXIST) => false, // may be a link: the open below refuses it
                Err(e) => return Err(fail("creating", rel, e)),
            };
            let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY;
            cur = self
                .open_at(cur.as_fd(), Path::new(c), flags, 0)
                .map_err(|e| fail("opening", rel, e))?;
            if made {
                chown_fd(cur.as_fd(), owner).map_err(|e| fail("creating", rel, e))?;
            }
        }
        Ok(cur)
    }

    /// Whether a call may write its file `rel` here: every directory on the way is a directory
    /// or absent (so the call makes it), never a link or a file; `rel` itself is no directory
    /// (a file or link of that name is replaced, never written through).
    pub fn check_writable(&self, rel: &[u8]) -> Result<(), FsError> {
        let p = named(rel)?;
        let comps: Vec<&OsStr> = p.iter().collect();
        let mut cur = self
            .root
            .try_clone()
            .map_err(io_fail("opening", &self.path))?;
        let mut seen = PathBuf::new();
        for (i, c) in comps.iter().enumerate() {
            seen.push(c);
            let st = match fstatat(Some(cur.as_raw_fd()), *c, AtFlags::AT_SYMLINK_NOFOLLOW) {
                Err(Errno::ENOENT) => return Ok(()),
                r => r.map_err(|e| fail("inspecting", &seen, e))?,
            };
            let last = i + 1 == comps.len();
            let shown = shown(&seen);
            match file_type(&st) {
                SFlag::S_IFDIR if last => return Err(FsError::Conflict(format!("{shown} is a directory in the sandbox's work dir; a file cannot replace it"))),
                SFlag::S_IFDIR => {
                    cur = openat_one(cur.as_fd(), c, OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW, 0).map_err(|e| fail("opening", &seen, e))?
                }
                _ if last => {}
                SFlag::S_IFLNK => {
                    return Err(FsError::Conflict(format!("{shown} is a symlink in the sandbox's work dir; files are never written through links")))
                }
                _ => return Err(FsError::Conflict(format!("{shown} is a file in the sandbox's work dir, not a directory"))),
            }
        }
        Ok(())
    }

    /// Everything below `rel_dir` ("" = the root), sorted by path; links are reported, not
    /// descended.
    pub fn list(&self, rel_dir: &[u8]) -> Result<Vec<Listed>, FsError> {
        let mut out = Vec::new();
        self.visit(dir_named(rel_dir)?, &mut |n, _| {
            out.push(Listed {
                path: n.path.as_os_str().as_bytes().to_vec(),
                size: n.size,
                kind: n.kind,
            });
            Ok(())
        })?;
        Ok(out)
    }

    /// Bytes of the regular files in the work dir.
    pub fn usage(&self) -> Result<u64, FsError> {
        let mut used = 0u64;
        self.visit(Path::new(""), &mut |n, _| {
            if n.kind == FileKind::File {
                used += n.size;
            }
            Ok(())
        })?;
        Ok(used)
    }

    /// Depth first, in path order (each directory right before its contents, as a tar wants),
    /// calling `f` with each entry and a descriptor of its directory. Iterative (a deep tree must
    /// not exhaust the stack); each directory is opened beneath its parent's descriptor, so one
    /// swapped for a link meanwhile is refused like any other, and only one directory's names
    /// are held at a time per level.
    fn visit(
        &self,
        top: &Path,
        f: &mut dyn FnMut(&Node, BorrowedFd) -> Result<(), FsError>,
    ) -> Result<(), FsError> {
        let fd = self
            .open_rel(top, OFlag::O_RDONLY | OFlag::O_DIRECTORY)
            .map_err(|e| fail("listing", top, e))?;
        let kids = children(&fd, top)?;
        let mut stack = vec![(fd, kids)];
        while let Some((dir, kids)) = stack.last_mut() {
            let Some(node) = kids.pop() else {
                stack.pop();
                continue;
            };
            f(&node, dir.as_fd())?;
            if node.kind != FileKind::Dir {
                continue;
            }
            let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY;
            match self.open_at(dir.as_fd(), Path::new(&node.name), flags, 0) {
                Ok(sub) => {
                    let kids = children(&sub, &node.path)?;
                    stack.push((sub, kids));
                }
                Err(Errno::ENOENT) => {} // removed while we looked
                Err(e) => return Err(fail("listing", &node.path, e)),
            }
        }
        Ok(())
    }
}

/// The entries of one directory, last name first (so popping gives them in order); fifos,
/// sockets and devices are left out (nothing to serve or archive).
fn children(dir: &OwnedFd, dir_path: &Path) -> Result<Vec<Node>, FsError> {
    let mut d = Dir::openat(
        Some(dir.as_raw_fd()),
        ".",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| fail("listing", dir_path, e))?;
    let mut out = Vec::new();
    for entry in d.iter() {
        let entry = entry.map_err(|e| fail("listing", dir_path, e))?;
        let name = OsStr::from_bytes(entry.file_name().to_bytes());
        if name == "." || name == ".." {
            continue;
        }
        let path = dir_path.join(name);
        let st = match fstatat(Some(dir.as_raw_fd()), name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Err(Errno::ENOENT) => continue, // removed while we looked
            r => r.map_err(|e| fail("inspecting", &path, e))?,
        };
        let (kind, size, target) = match file_type(&st) {
            SFlag::S_IFDIR => (FileKind::Dir, 0, None),
            SFlag::S_IFREG => (FileKind::File, st.st_size as u64, None),
            SFlag::S_IFLNK => match readlinkat(Some(dir.as_raw_fd()), name) {
                Ok(t) => (FileKind::Symlink, 0, Some(t)),
                Err(Errno::ENOENT | Errno::EINVAL) => continue, // replaced while we looked
                Err(e) => return Err(fail("reading link", &path, e)),
            },
            _ => continue,
        };
        out.push(Node {
            path,
            name: name.to_owned(),
            kind,
            size,
            mode: st.st_mode & 0o777,
            mtime: st.st_mtime,
            target,
        });
    }
    out.sort_by(|a, b| b.name.cmp(&a.name));
    Ok(out)
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::FileEntry;
    use std::os::unix::fs::{symlink, PermissionsExt};

    /// The host-side shapes these tests were written against, over the streaming calls.
    impl WorkDir {
        fn rd(&self, rel: &str, max: u64) -> Result<Vec<u8>, FsError> {
            let mut out = Vec::new();
            self.read(rel.as_bytes(), max, &mut out).map(|_| out)
        }
        fn wr(&self, rel: &str, data: &[u8]) -> Result<(), FsError> {
            self.write(rel.as_bytes(), false, None, &mut &data[..])
                .map(drop)
        }
        fn ls(&self, rel: &str) -> Result<Vec<FileEntry>, FsError> {
            Ok(self
                .list(rel.as_bytes())?
                .into_iter()
                .map(|e| FileEntry::new(&e.path, e.size, e.kind))
                .collect())
        }
        fn import(&self, tar: &[u8], max: u64) -> Result<(), FsError> {
            self.import_tar(&mut &tar[..], None, max)
        }
        fn export(&self) -> Vec<u8> {
            let mut out = Vec::new();
            self.export_tar(&mut out).unwrap();
            out
        }
    }
    use tar::EntryType::{self, Directory as D, Fifo, Link as H, Regular as F, Symlink as L};

    /// A work dir under a temp dir, beside an `outside` dir (holding `secret`) that links aim at.
    fn setup(walk_only: bool) -> (tempfile::TempDir, WorkDir, PathBuf) {
        let t = tempfile::tempdir().unwrap();
        let outside = t.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("secret"), b"host secret").unwrap();
        let w = WorkDir {
            walk_only,
            ..WorkDir::create(&t.path().join("work")).unwrap()
        };
        (t, w, outside)
    }

    /// Every attack runs twice: through openat2 and through the fallback walk.
    fn both(test: impl Fn(bool)) {
        test(false);
        test(true);
    }

    /// Refused as a bad path, or as one that what is in the work dir stands in the way of.
    fn refused<T: std::fmt::Debug>(r: Result<T, FsError>) {
        assert!(
            matches!(r, Err(FsError::Refused(_) | FsError::Conflict(_))),
            "expected a refusal, got {r:?}"
        );
    }

    fn outside_untouched(outside: &Path) {
        let names: Vec<_> = std::fs::read_dir(outside)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["secret"]);
        assert_eq!(
            std::fs::read(outside.join("secret")).unwrap(),
            b"host secret"
        );
    }

    /// Raw header bytes: `set_path` would refuse the hostile names these tests need. The third
    /// field is the data of a file, the target of a link.
    fn tar_of(entries: &[(&str, EntryType, &str)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for &(name, kind, extra) in entries {
            let mut h = tar::Header::new_gnu();
            h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
            let data = if kind == F { extra.as_bytes() } else { b"" };
            if kind != F {
                h.as_old_mut().linkname[..extra.len()].copy_from_slice(extra.as_bytes());
            }
            h.set_entry_type(kind);
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append(&h, data).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn dir_named_refuses_escapes() {
        for bad in [
            "../x", "a/../b", "/abs", "/", "a//b", "a//", "./a", "a/.", "a\0b",
        ] {
            refused(dir_named(bad.as_bytes()));
        }
        assert_eq!(dir_named(b"a/b/").unwrap(), Path::new("a/b"));
        assert_eq!(
            dir_named(b"a/\xff/").unwrap().as_os_str().as_bytes(),
            b"a/\xff"
        );
        assert_eq!(dir_named(b"").unwrap(), Path::new(""));
        let (_t, w, _) = setup(false);
        refused(w.rd("", 10));
        refused(w.wr("../x", b"x"));
        refused(w.ls("/etc"));
    }

    #[test]
    fn planted_file_links_are_refused() {
        both(|walk| {
            let (_t, w, outside) = setup(walk);
            symlink("/etc/passwd", w.path.join("evil")).unwrap();
            symlink(outside.join("secret"), w.path.join("evil2")).unwrap();
            symlink("../outside/secret", w.path.join("rel")).unwrap();
            w.wr("a.txt", b"abc").unwrap();
            symlink("a.txt", w.path.join("inner")).unwrap(); // even a link that stays inside
            refused(w.rd("inner", 1 << 20));
            refused(w.rd("evil", 1 << 20));
            refused(w.rd("rel", 1 << 20));
            refused(w.wr("evil2", b"pwned"));
            refused(w.wr("rel", b"pwned"));
            outside_untouched(&outside);
            assert!(w
                .path
                .join("evil2")
                .symlink_metadata()
                .unwrap()
                .file_type()
                .is_symlink());
        });
    }

    #[test]
    fn planted_dir_links_are_refused_mid_path() {
        both(|walk| {
            let (t, w, outside) = setup(walk);
            symlink(&outside, w.path.join("d")).unwrap();
            symlink("..", w.path.join("up")).unwrap();
            std::fs::create_dir(w.path.join("real")).unwrap();
            symlink("../../outside", w.path.join("real/back")).unwrap();
            for p in ["d/secret", "up/outside/secret", "real/back/secret"] {
                refused(w.rd(p, 1 << 20));
            }
            for p in ["d/x", "d/sub/x", "up/x", "up/outside/x", "real/back/x"] {
                refused(w.wr(p, b"pwned"));
            }
            refused(w.ls("d"));
            refused(w.ls("real/back"));
            assert!(
                WorkDir::open(&w.path.join("d")).is_err(),
                "a work dir that is a link"
            );
            // An archive entry through a link the program planted: refused by the kernel walk.
            refused(w.import(
                &tar_of(&[("d/pwn", F, "pwned"), ("d/sub/", D, "")]),
                1 << 20,
            ));
            outside_untouched(&outside);
            assert!(!t.path().join("x").exists());
        });
    }

    #[test]
    fn fallback_walk_answers_like_openat2() {
        let (_t, w, outside) = setup(false);
        symlink(&outside, w.path.join("d")).unwrap();
        w.wr("f", b"x").unwrap();
        let (rd, dir, path) = (
            OFlag::O_RDONLY,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY,
            OFlag::O_PATH,
        );
        let cases = [
            ("d", dir, Err(Errno::ELOOP)),
            ("d/secret", rd, Err(Errno::ELOOP)),
            ("d", path, Err(Errno::ELOOP)),
            ("f/x", rd, Err(Errno::ENOTDIR)),
            ("f", rd, Ok(())),
        ];
        for (rel, flags, want) in cases {
            assert_eq!(
                openat2_beneath(w.root.as_fd(), Path::new(rel), flags, 0).map(drop),
                want,
                "openat2 {rel}"
            );
            assert_eq!(
                walk_beneath(w.root.as_fd(), Path::new(rel), flags, 0).map(drop),
                want,
                "walk {rel}"
            );
        }
    }

    #[test]
    fn hostile_archive_entries_are_refused() {
        both(|walk| {
            let (t, w, outside) = setup(walk);
            let out = outside.to_str().unwrap();
            let cases: [&[(&str, EntryType, &str)]; 6] = [
                &[("ok", F, "x"), ("../escape", F, "pwned")],
                &[("ok", F, "x"), ("/tmp/execbox-abs-escape", F, "pwned")],
                &[("ok", F, "x"), ("a//b", F, "pwned")],
                &[("ok", F, "x"), ("l", L, out), ("l/pwn", F, "pwned")],
                &[("ok", F, "x"), ("h", H, "/etc/passwd")],
                &[("ok", F, "x"), ("p", Fifo, "")],
            ];
            for c in cases {
                refused(w.import(&tar_of(c), 1 << 20));
            }
            let big = tar_of(&[("a", F, "12345"), ("b", F, "123456")]);
            assert!(matches!(
                w.import(&big, 10),
                Err(FsError::TooLarge { max: 10, .. })
            ));
            // Entry by entry: what came before a refused entry is in place, nothing else.
            let names: Vec<String> = w.ls("").unwrap().into_iter().map(|e| e.path).collect();
            assert_eq!(names, ["a", "l", "ok"]);
            outside_untouched(&outside);
            assert!(
                !t.path().join("escape").exists() && !Path::new("/tmp/execbox-abs-escape").exists()
            );
        });
    }

    #[test]
    fn a_call_writes_no_file_through_a_link_a_file_or_over_a_directory() {
        let (_t, w, outside) = setup(false);
        symlink(&outside, w.path.join("d")).unwrap();
        symlink(outside.join("secret"), w.path.join("f")).unwrap();
        w.wr("plain", b"x").unwrap();
        w.wr("sub/inner", b"x").unwrap();
        for (p, why) in [
            ("d/x", "d is a symlink"),
            ("d/a/b", "d is a symlink"),
            ("plain/x", "plain is a file"),
            ("sub", "sub is a directory"),
        ] {
            let err = w.check_writable(p.as_bytes()).unwrap_err();
            assert!(
                matches!(&err, FsError::Conflict(m) if m.starts_with(why)),
                "{p}: {err:?}"
            );
        }
        for p in ["f", "plain", "sub/inner", "sub/new/deeper", "new/x"] {
            w.check_writable(p.as_bytes())
                .unwrap_or_else(|e| panic!("{p}: {e:?}"));
        }
        outside_untouched(&outside);
    }

    #[test]
    fn archive_names_follow_the_one_path_rule_and_a_non_tar_is_told_apart() {
        let (_t, w, _) = setup(false);
        let long = format!("{}/x", "n".repeat(300));
        let deep = format!("{}x", "d/".repeat(40));
        for name in [long.as_str(), deep.as_str()] {
            let mut b = tar::Builder::new(Vec::new());
            let mut h = tar::Header::new_gnu();
            h.set_size(1);
            h.set_mode(0o644);
            b.append_data(&mut h, name, &b"x"[..]).unwrap();
            refused(w.import(&b.into_inner().unwrap(), 1 << 20));
        }
        // A name need not be UTF-8.
        let mut h = tar::Header::new_gnu();
        h.as_old_mut().name[..4].copy_from_slice(b"bad\xff");
        h.set_size(0);
        h.set_mode(0o644);
        h.set_cksum();
        let mut b = tar::Builder::new(Vec::new());
        b.append(&h, &b""[..]).unwrap();
        w.import(&b.into_inner().unwrap(), 1 << 20).unwrap();
        assert!(matches!(
            w.import(&[b'x'; 1024], 1 << 20),
            Err(FsError::NotArchive(_))
        ));
        assert_eq!(
            w.ls("").unwrap(),
            vec![FileEntry::new(b"bad\xff", 0, FileKind::File)]
        );
        assert_eq!(w.ls("").unwrap()[0].path, "bad%FF");
    }

    #[test]
    fn export_import_round_trips_files_dirs_and_links() {
        both(|walk| {
            let (_t, w, _) = setup(walk);
            w.wr("a.txt", b"abc").unwrap();
            w.wr("d/e/run.sh", b"echo hi").unwrap();
            std::fs::set_permissions(
                w.path.join("d/e/run.sh"),
                std::fs::Permissions::from_mode(0o755),
            )
            .unwrap();
            std::fs::create_dir(w.path.join("empty")).unwrap();
            symlink("d/e/run.sh", w.path.join("ln")).unwrap();
            symlink("/etc/passwd", w.path.join("abs")).unwrap();
            let tar = w.export();
            let (_t2, w2, _) = setup(walk);
            w2.import(&tar, 1 << 20).unwrap();
            w2.import(&tar, 1 << 20).unwrap(); // a second time replaces files and links in place
            assert_eq!(w2.ls("").unwrap(), w.ls("").unwrap());
            assert_eq!(w2.ls("").unwrap().len(), 7);
            assert_eq!(w2.rd("d/e/run.sh", 100).unwrap(), b"echo hi");
            assert_eq!(
                std::fs::read_link(w2.path.join("abs")).unwrap(),
                Path::new("/etc/passwd")
            );
            assert_eq!(
                std::fs::read_link(w2.path.join("ln")).unwrap(),
                Path::new("d/e/run.sh")
            );
            let mode = std::fs::metadata(w2.path.join("d/e/run.sh"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o111, 0o111);
        });
    }

    #[test]
    fn list_reports_links_without_descending_and_usage_sums_files() {
        let (_t, w, outside) = setup(false);
        w.wr("b/c.txt", b"12345").unwrap();
        w.wr("a.txt", b"abc").unwrap();
        symlink(&outside, w.path.join("b/out")).unwrap();
        let e = |path: &str, size, kind| FileEntry::new(path.as_bytes(), size, kind);
        let (b_c, b_out) = (
            e("b/c.txt", 5, FileKind::File),
            e("b/out", 0, FileKind::Symlink),
        );
        let all = vec![
            e("a.txt", 3, FileKind::File),
            e("b", 0, FileKind::Dir),
            b_c.clone(),
            b_out.clone(),
        ];
        assert_eq!(w.ls("").unwrap(), all);
        assert_eq!(w.ls("b/").unwrap(), vec![b_c, b_out]);
        assert_eq!(
            w.usage().unwrap(),
            8,
            "the 11-byte secret behind the link is not counted"
        );
        assert!(matches!(w.ls("nope"), Err(FsError::NotFound(_))));
    }

    #[test]
    fn reads_and_writes_regular_files_only() {
        let (_t, w, _) = setup(false);
        w.wr("x/y.txt", b"one").unwrap();
        w.wr("x/y.txt", b"second").unwrap();
        assert_eq!(w.rd("x/y.txt", 6).unwrap(), b"second");
        assert!(matches!(
            w.rd("x/y.txt", 5),
            Err(FsError::TooLarge { max: 5, .. })
        ));
        assert!(matches!(w.rd("nope", 5), Err(FsError::NotFound(_))));
        refused(w.rd("x", 100));
        refused(w.wr("x", b""));
        nix::unistd::mkfifo(&w.path.join("fifo"), Mode::from_bits_truncate(0o644)).unwrap();
        refused(w.rd("fifo", 100)); // and returns at once rather than waiting for a writer
        assert_eq!(w.ls("x").unwrap().len(), 1, "no temp file is left behind");
    }
}
