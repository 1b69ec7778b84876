//! Host-side file operations on a sandbox's work dir that never leave it. A sandboxed program can
//! plant any symlink there (absolute, `../..`, a directory link used mid-path), so every open is
//! resolved beneath an O_PATH descriptor of the root and a symlink anywhere in a requested path is
//! refused, never followed: the Judge0 CVE-2024-28185/28189 pattern cannot happen here.

use std::ffi::{CString, OsStr, OsString};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use nix::dir::Dir;
use nix::errno::Errno;
use nix::fcntl::{readlinkat, renameat, AtFlags, OFlag};
use nix::sys::stat::{fstat, fstatat, mkdirat, FileStat, Mode, SFlag};
use nix::unistd::{symlinkat, unlinkat, UnlinkatFlags};

use super::{FileEntry, FileKind};
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
    #[error("the body is not a tar archive: {0}")]
    NotArchive(String),
    #[error("work dir i/o failed while {0}")]
    Io(String, #[source] std::io::Error),
}

/// A sandbox's work dir, held open so that every path is resolved from it and never from a name.
pub struct WorkDir {
    root: OwnedFd,
    path: PathBuf,
    /// Tests force the pre-openat2 walk to prove it holds the same line.
    walk_only: bool,
}

/// Set once openat2 answers ENOSYS (kernel before 5.6): every later open walks instead.
static NO_OPENAT2: AtomicBool = AtomicBool::new(false);
static TEMP_SEQ: AtomicU64 = AtomicU64::new(0);

/// A directory below the work dir, or `""` (also `"."`) for the work dir itself, by the one path
/// rule of `exec::path`; one trailing slash is dropped.
pub fn check_rel(path: &str) -> Result<String, FsError> {
    path::check_dir(path).map_err(|e| FsError::Refused(e.to_string()))
}

/// A path that names something (not the root), by the one path rule.
fn named(raw: &[u8]) -> Result<PathBuf, FsError> {
    path::check_bytes(raw)
        .map(PathBuf::from)
        .map_err(|e| FsError::Refused(e.to_string()))
}

fn fail(doing: &str, path: &Path, e: Errno) -> FsError {
    let p = path.display();
    match e {
        Errno::ENOENT | Errno::ENOTDIR => FsError::NotFound(p.to_string()),
        // ELOOP: a symlink met under RESOLVE_NO_SYMLINKS or O_NOFOLLOW; EXDEV: RESOLVE_BENEATH.
        Errno::ELOOP | Errno::EXDEV => FsError::Conflict(format!("{p}: a symlink is in the way")),
        Errno::EISDIR => FsError::Conflict(format!("{p} is a directory")),
        e => FsError::Io(format!("{doing} {p}"), e.into()),
    }
}

fn io_fail(doing: &str, path: &Path) -> impl FnOnce(std::io::Error) -> FsError {
    let what = format!("{doing} {}", path.display());
    move |e| FsError::Io(what, e)
}

fn file_type(st: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits())
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

struct Node {
    path: PathBuf,
    kind: FileKind,
    size: u64,
    mode: u32,
    mtime: i64,
    target: Option<OsString>,
}

enum Item {
    Skip,
    Dir,
    File(u32),
    Link(OsString),
}

impl WorkDir {
    /// mkdir -p the work dir, then open it.
    pub fn create(path: &Path) -> Result<WorkDir, FsError> {
        std::fs::create_dir_all(path).map_err(io_fail("creating", path))?;
        Self::open(path)
    }

    /// The service chose `path`, so its parents may be links; the work dir itself never is one.
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

    pub fn read(&self, rel: &str, max: u64) -> Result<Vec<u8>, FsError> {
        self.read_path(&named(rel.as_bytes())?, max)
    }

    fn read_path(&self, p: &Path, max: u64) -> Result<Vec<u8>, FsError> {
        // O_NONBLOCK: a FIFO planted under this name must not hang us in open().
        let fd = self
            .open_rel(p, OFlag::O_RDONLY | OFlag::O_NONBLOCK)
            .map_err(|e| fail("opening", p, e))?;
        let f = File::from(fd);
        let meta = f.metadata().map_err(io_fail("reading", p))?;
        if !meta.is_file() {
            return Err(FsError::Conflict(format!(
                "{} is not a regular file",
                p.display()
            )));
        }
        let too_large = || FsError::TooLarge {
            what: p.display().to_string(),
            max,
        };
        if meta.len() > max {
            return Err(too_large());
        }
        let mut buf = Vec::with_capacity(meta.len() as usize);
        f.take(max.saturating_add(1))
            .read_to_end(&mut buf)
            .map_err(io_fail("reading", p))?;
        if buf.len() as u64 > max {
            return Err(too_large()); // it grew while we read
        }
        Ok(buf)
    }

    pub fn write(&self, rel: &str, content: &[u8]) -> Result<(), FsError> {
        self.write_path(&named(rel.as_bytes())?, content, 0o644)
    }

    /// Write to a fresh temp name beside the target, then rename over it: the target's inode is
    /// never opened for writing, so neither a link planted there nor a hard link can redirect us.
    fn write_path(&self, p: &Path, content: &[u8], mode: u32) -> Result<(), FsError> {
        let (dir, name) = self.parent_of(p)?;
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
                Err(Errno::EEXIST) => continue, // a leftover of an earlier process with our pid
                r => break (tmp, r.map_err(|e| fail("creating", p, e))?),
            }
        };
        let done = File::from(fd)
            .write_all(content)
            .map_err(io_fail("writing", p))
            .and_then(|()| {
                renameat(
                    Some(dir.as_raw_fd()),
                    tmp.as_str(),
                    Some(dir.as_raw_fd()),
                    name,
                )
                .map_err(|e| fail("renaming", p, e))
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
    fn parent_of<'p>(&self, p: &'p Path) -> Result<(OwnedFd, &'p OsStr), FsError> {
        let name = p
            .file_name()
            .ok_or_else(|| FsError::Refused(format!("{}: no file name", p.display())))?;
        Ok((self.mkdir_p(p.parent().unwrap_or(Path::new("")))?, name))
    }

    fn mkdir_p(&self, rel: &Path) -> Result<OwnedFd, FsError> {
        let mut cur = self
            .root
            .try_clone()
            .map_err(io_fail("opening", &self.path))?;
        for c in rel.iter() {
            match mkdirat(Some(cur.as_raw_fd()), c, Mode::from_bits_truncate(0o755)) {
                Ok(()) | Err(Errno::EEXIST) => {} // EEXIST may be a link: the open below refuses it
                Err(e) => return Err(fail("creating", rel, e)),
            }
            let flags = OFlag::O_PATH | OFlag::O_DIRECTORY;
            cur = self
                .open_at(cur.as_fd(), Path::new(c), flags, 0)
                .map_err(|e| fail("opening", rel, e))?;
        }
        Ok(cur)
    }

    /// Whether a call may write its file `rel` here: every directory on the way is a directory
    /// or absent (so the call makes it), never a link or a file; `rel` itself is no directory
    /// (a file or link of that name is replaced, never written through). Nothing runs in a
    /// sandbox between calls, so the answer holds when the call writes.
    pub fn check_writable(&self, rel: &str) -> Result<(), FsError> {
        let p = named(rel.as_bytes())?;
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
            let shown = seen.display();
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

    /// Everything below `rel_dir` ("" = the root), sorted by path; links are reported, not descended.
    pub fn list(&self, rel_dir: &str) -> Result<Vec<FileEntry>, FsError> {
        let nodes = self.walk(Path::new(&check_rel(rel_dir)?))?;
        Ok(nodes
            .into_iter()
            .map(|n| FileEntry {
                path: n.path.to_string_lossy().into_owned(),
                size: n.size,
                kind: n.kind,
            })
            .collect())
    }

    pub fn usage(&self) -> Result<u64, FsError> {
        Ok(self
            .walk(Path::new(""))?
            .iter()
            .filter(|n| n.kind == FileKind::File)
            .map(|n| n.size)
            .sum())
    }

    /// Iterative (a deep tree must not exhaust the stack) and each directory opened beneath the
    /// root again, so one swapped for a link meanwhile is refused like any other.
    fn walk(&self, top: &Path) -> Result<Vec<Node>, FsError> {
        let mut out = Vec::new();
        let mut pending = vec![top.to_path_buf()];
        while let Some(dir_path) = pending.pop() {
            let fd = self
                .open_rel(&dir_path, OFlag::O_RDONLY | OFlag::O_DIRECTORY)
                .map_err(|e| fail("listing", &dir_path, e))?;
            let mut dir = Dir::from(fd).map_err(|e| fail("listing", &dir_path, e))?;
            let raw = dir.as_raw_fd();
            for entry in dir.iter() {
                let entry = entry.map_err(|e| fail("listing", &dir_path, e))?;
                let name = OsStr::from_bytes(entry.file_name().to_bytes());
                if name == "." || name == ".." {
                    continue;
                }
                let path = dir_path.join(name);
                let st = match fstatat(Some(raw), name, AtFlags::AT_SYMLINK_NOFOLLOW) {
                    Err(Errno::ENOENT) => continue, // removed while we looked
                    r => r.map_err(|e| fail("inspecting", &path, e))?,
                };
                let (kind, size, target) = match file_type(&st) {
                    SFlag::S_IFDIR => (FileKind::Dir, 0, None),
                    SFlag::S_IFREG => (FileKind::File, st.st_size as u64, None),
                    SFlag::S_IFLNK => (
                        FileKind::Symlink,
                        0,
                        Some(
                            readlinkat(Some(raw), name)
                                .map_err(|e| fail("reading link", &path, e))?,
                        ),
                    ),
                    _ => continue, // fifos, sockets, devices: nothing to serve or archive
                };
                if kind == FileKind::Dir {
                    pending.push(path.clone());
                }
                out.push(Node {
                    path,
                    kind,
                    size,
                    mode: st.st_mode & 0o777,
                    mtime: st.st_mtime,
                    target,
                });
            }
        }
        // Component order puts each directory right before its contents, as a tar wants.
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    /// The whole tree; a link becomes a symlink entry holding its target text, never followed.
    pub fn export_tar(&self) -> Result<Vec<u8>, FsError> {
        let mut b = tar::Builder::new(Vec::new());
        for n in self.walk(Path::new(""))? {
            let mut h = tar::Header::new_gnu();
            h.set_mode(n.mode);
            h.set_size(0);
            h.set_mtime(n.mtime.max(0) as u64);
            let done = match n.kind {
                FileKind::Dir => {
                    h.set_entry_type(tar::EntryType::Directory);
                    b.append_data(&mut h, &n.path, std::io::empty())
                }
                FileKind::File => {
                    let data = self.read_path(&n.path, u64::MAX)?;
                    h.set_size(data.len() as u64);
                    b.append_data(&mut h, &n.path, &data[..])
                }
                FileKind::Symlink => {
                    h.set_entry_type(tar::EntryType::Symlink);
                    b.append_link(&mut h, &n.path, n.target.as_deref().unwrap_or_default())
                }
            };
            done.map_err(io_fail("archiving", &n.path))?;
        }
        b.into_inner().map_err(io_fail("archiving", &self.path))
    }

    /// Unpack beneath the root. Pass one checks every entry and the total size before a byte is
    /// written; pass two writes through the same no-follow resolution as `write`.
    pub fn import_tar(&self, tar: &[u8], max_total: u64) -> Result<(), FsError> {
        let (mut total, mut links) = (0u64, Vec::<PathBuf>::new());
        let not_tar = |e: std::io::Error| FsError::NotArchive(e.to_string());
        let mut archive = tar::Archive::new(tar);
        for entry in archive.entries().map_err(not_tar)? {
            let entry = entry.map_err(not_tar)?;
            let (path, item) = classify(&entry)?;
            // Caught here so the archive is refused whole; RESOLVE_NO_SYMLINKS would refuse it
            // at write time anyway, after the entries before it were written.
            if links.iter().any(|l| path.starts_with(l) && path != *l) {
                return Err(FsError::Refused(format!(
                    "{}: goes through a symlink entry",
                    path.display()
                )));
            }
            match item {
                Item::File(_) => total = total.saturating_add(entry.size()),
                Item::Link(_) => links.push(path),
                _ => {}
            }
            if total > max_total {
                return Err(FsError::TooLarge {
                    what: "the archive's files".into(),
                    max: max_total,
                });
            }
        }
        let mut archive = tar::Archive::new(tar);
        for entry in archive
            .entries()
            .map_err(io_fail("reading archive", &self.path))?
        {
            let mut entry = entry.map_err(io_fail("reading archive", &self.path))?;
            match classify(&entry)? {
                (_, Item::Skip) => {}
                (path, Item::Dir) => drop(self.mkdir_p(&path)?),
                (path, Item::File(mode)) => {
                    let mut data = Vec::with_capacity(entry.size() as usize);
                    entry
                        .read_to_end(&mut data)
                        .map_err(io_fail("reading archive", &path))?;
                    self.write_path(&path, &data, mode)?;
                }
                (path, Item::Link(target)) => {
                    let (dir, name) = self.parent_of(&path)?;
                    let link = || symlinkat(target.as_os_str(), Some(dir.as_raw_fd()), name);
                    // Like tar: a later entry replaces what is there, but never a directory.
                    link()
                        .or_else(|e| match e {
                            Errno::EEXIST => {
                                unlinkat(Some(dir.as_raw_fd()), name, UnlinkatFlags::NoRemoveDir)
                                    .and_then(|()| link())
                            }
                            e => Err(e),
                        })
                        .map_err(|e| fail("linking", &path, e))?;
                }
            }
        }
        Ok(())
    }

    /// Delete the tree. std's remove_dir_all walks with openat/O_NOFOLLOW and unlinks links
    /// themselves (hardened for CVE-2022-21658), so a planted link never redirects the delete.
    pub fn remove_all(self) -> Result<(), FsError> {
        let WorkDir { root, path, .. } = self;
        drop(root);
        match std::fs::remove_dir_all(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(FsError::Io(format!("removing {}", path.display()), e))
            }
            _ => Ok(()),
        }
    }
}

/// An entry's checked path and what to make of it; anything but files, dirs and links is refused.
fn classify(e: &tar::Entry<&[u8]>) -> Result<(PathBuf, Item), FsError> {
    let (h, raw) = (e.header(), e.path_bytes());
    // `tar -C dir -c .` names everything "./x": that prefix is the archive's root, not a segment;
    // a directory's name may end in a slash.
    let rel = raw.strip_prefix(b"./").unwrap_or(&raw);
    let rel = rel.strip_suffix(b"/").unwrap_or(rel);
    let kind = h.entry_type();
    if kind == tar::EntryType::XGlobalHeader || (kind.is_dir() && matches!(rel, b"" | b"." | b"/"))
    {
        return Ok((PathBuf::new(), Item::Skip));
    }
    let path = named(rel)?;
    let item = match kind {
        tar::EntryType::Directory => Item::Dir,
        tar::EntryType::Regular | tar::EntryType::Continuous => {
            Item::File(if h.mode().unwrap_or(0) & 0o111 != 0 {
                0o755
            } else {
                0o644
            })
        }
        tar::EntryType::Symlink => {
            Item::Link(OsStr::from_bytes(&e.link_name_bytes().unwrap_or_default()).to_owned())
        }
        other => {
            return Err(FsError::Refused(format!(
                "{}: {other:?} entries are not accepted",
                path.display()
            )))
        }
    };
    Ok((path, item))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, PermissionsExt};
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
    fn check_rel_refuses_escapes() {
        for bad in [
            "../x", "a/../b", "/abs", "/", "a//b", "a//", "./a", "a/.", "a\0b",
        ] {
            refused(check_rel(bad));
        }
        assert_eq!(check_rel("a/b/").unwrap(), "a/b");
        assert_eq!(check_rel("").unwrap(), "");
        let (_t, w, _) = setup(false);
        refused(w.read("", 10));
        refused(w.write("../x", b"x"));
        refused(w.list("/etc"));
    }

    #[test]
    fn planted_file_links_are_refused() {
        both(|walk| {
            let (_t, w, outside) = setup(walk);
            symlink("/etc/passwd", w.path.join("evil")).unwrap();
            symlink(outside.join("secret"), w.path.join("evil2")).unwrap();
            symlink("../outside/secret", w.path.join("rel")).unwrap();
            w.write("a.txt", b"abc").unwrap();
            symlink("a.txt", w.path.join("inner")).unwrap(); // even a link that stays inside
            refused(w.read("inner", 1 << 20));
            refused(w.read("evil", 1 << 20));
            refused(w.read("rel", 1 << 20));
            refused(w.write("evil2", b"pwned"));
            refused(w.write("rel", b"pwned"));
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
                refused(w.read(p, 1 << 20));
            }
            for p in ["d/x", "d/sub/x", "up/x", "up/outside/x", "real/back/x"] {
                refused(w.write(p, b"pwned"));
            }
            refused(w.list("d"));
            refused(w.list("real/back"));
            assert!(
                WorkDir::open(&w.path.join("d")).is_err(),
                "a work dir that is a link"
            );
            // An archive entry through a link the program planted: refused by the kernel walk.
            refused(w.import_tar(
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
        w.write("f", b"x").unwrap();
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
    fn hostile_archives_are_refused_whole() {
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
                refused(w.import_tar(&tar_of(c), 1 << 20));
            }
            let big = tar_of(&[("a", F, "12345"), ("b", F, "123456")]);
            assert!(matches!(
                w.import_tar(&big, 10),
                Err(FsError::TooLarge { max: 10, .. })
            ));
            assert_eq!(
                w.list("").unwrap(),
                vec![],
                "nothing may be written before a refusal"
            );
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
        w.write("plain", b"x").unwrap();
        w.write("sub/inner", b"x").unwrap();
        for (p, why) in [
            ("d/x", "d is a symlink"),
            ("d/a/b", "d is a symlink"),
            ("plain/x", "plain is a file"),
            ("sub", "sub is a directory"),
        ] {
            let err = w.check_writable(p).unwrap_err();
            assert!(
                matches!(&err, FsError::Conflict(m) if m.starts_with(why)),
                "{p}: {err:?}"
            );
        }
        for p in ["f", "plain", "sub/inner", "sub/new/deeper", "new/x"] {
            w.check_writable(p).unwrap_or_else(|e| panic!("{p}: {e:?}"));
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
            refused(w.import_tar(&b.into_inner().unwrap(), 1 << 20));
        }
        let mut h = tar::Header::new_gnu();
        h.as_old_mut().name[..4].copy_from_slice(b"bad\xff");
        h.set_size(0);
        h.set_mode(0o644);
        h.set_cksum();
        let mut b = tar::Builder::new(Vec::new());
        b.append(&h, &b""[..]).unwrap();
        refused(w.import_tar(&b.into_inner().unwrap(), 1 << 20));
        assert!(matches!(
            w.import_tar(&[b'x'; 1024], 1 << 20),
            Err(FsError::NotArchive(_))
        ));
        assert_eq!(w.list("").unwrap(), vec![]);
    }

    #[test]
    fn export_import_round_trips_files_dirs_and_links() {
        both(|walk| {
            let (_t, w, _) = setup(walk);
            w.write("a.txt", b"abc").unwrap();
            w.write("d/e/run.sh", b"echo hi").unwrap();
            std::fs::set_permissions(
                w.path.join("d/e/run.sh"),
                std::fs::Permissions::from_mode(0o755),
            )
            .unwrap();
            std::fs::create_dir(w.path.join("empty")).unwrap();
            symlink("d/e/run.sh", w.path.join("ln")).unwrap();
            symlink("/etc/passwd", w.path.join("abs")).unwrap();
            let tar = w.export_tar().unwrap();
            let (_t2, w2, _) = setup(walk);
            w2.import_tar(&tar, 1 << 20).unwrap();
            w2.import_tar(&tar, 1 << 20).unwrap(); // a second time replaces files and links in place
            assert_eq!(w2.list("").unwrap(), w.list("").unwrap());
            assert_eq!(w2.list("").unwrap().len(), 7);
            assert_eq!(w2.read("d/e/run.sh", 100).unwrap(), b"echo hi");
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
        w.write("b/c.txt", b"12345").unwrap();
        w.write("a.txt", b"abc").unwrap();
        symlink(&outside, w.path.join("b/out")).unwrap();
        let e = |path: &str, size, kind| FileEntry {
            path: path.into(),
            size,
            kind,
        };
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
        assert_eq!(w.list("").unwrap(), all);
        assert_eq!(w.list("b/").unwrap(), vec![b_c, b_out]);
        assert_eq!(
            w.usage().unwrap(),
            8,
            "the 11-byte secret behind the link is not counted"
        );
        assert!(matches!(w.list("nope"), Err(FsError::NotFound(_))));
    }

    #[test]
    fn reads_and_writes_regular_files_only() {
        let (_t, w, _) = setup(false);
        w.write("x/y.txt", b"one").unwrap();
        w.write("x/y.txt", b"second").unwrap();
        assert_eq!(w.read("x/y.txt", 6).unwrap(), b"second");
        assert!(matches!(
            w.read("x/y.txt", 5),
            Err(FsError::TooLarge { max: 5, .. })
        ));
        assert!(matches!(w.read("nope", 5), Err(FsError::NotFound(_))));
        refused(w.read("x", 100));
        refused(w.write("x", b""));
        nix::unistd::mkfifo(&w.path.join("fifo"), Mode::from_bits_truncate(0o644)).unwrap();
        refused(w.read("fifo", 100)); // and returns at once rather than waiting for a writer
        assert_eq!(w.list("x").unwrap().len(), 1, "no temp file is left behind");
    }

    #[test]
    fn remove_all_deletes_links_not_their_targets() {
        let (_t, w, outside) = setup(false);
        w.write("d/f", b"x").unwrap();
        symlink(&outside, w.path.join("d/out")).unwrap();
        symlink(&outside, w.path.join("top")).unwrap();
        let path = w.path.clone();
        w.remove_all().unwrap();
        assert!(!path.exists());
        outside_untouched(&outside);
    }
}
