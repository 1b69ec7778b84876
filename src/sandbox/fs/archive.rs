//! A work dir as a tar and back, streamed both ways with bounded memory: out, each file is read
//! as the archive is written; in, each entry is checked, then written, before the next is read.
//! Names are raw bytes in both directions.

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::unistd::{fchownat, symlinkat, unlinkat, Gid, Uid, UnlinkatFlags};

use super::{fail, named, shown, FsError, Owner, WorkDir};
use crate::sandbox::FileKind;

/// The largest GNU long name, long link or pax header accepted: tar-rs holds each in memory
/// whole, and a name here is at most `exec::path::MAX_PATH_BYTES`, a link target at most
/// PATH_MAX.
const META_MAX: u64 = 64 << 10;
const BLOCK: u64 = 512;

enum Item {
    Skip,
    Dir,
    File(u32),
    Link(OsString),
}

impl WorkDir {
    /// The whole tree into `out`; a link becomes a symlink entry holding its target text, never
    /// followed. A file that changes while it is archived is cut or padded to the size its
    /// header gave; one that is gone or became something else is left out.
    pub fn export_tar(&self, out: &mut dyn Write) -> Result<(), FsError> {
        let mut b = tar::Builder::new(out);
        self.visit(Path::new(""), &mut |n, dir| {
            let mut h = tar::Header::new_gnu();
            h.set_mode(n.mode);
            h.set_size(0);
            h.set_mtime(n.mtime.max(0) as u64);
            let sent = match n.kind {
                FileKind::Dir => {
                    h.set_entry_type(tar::EntryType::Directory);
                    b.append_data(&mut h, &n.path, io::empty())
                }
                FileKind::File => {
                    let flags = OFlag::O_RDONLY | OFlag::O_NONBLOCK;
                    let f = match self.open_at(dir, Path::new(&n.name), flags, 0) {
                        Ok(fd) => File::from(fd),
                        Err(Errno::ENOENT | Errno::ELOOP | Errno::ENXIO) => return Ok(()),
                        Err(e) => return Err(fail("archiving", &n.path, e)),
                    };
                    let meta = f.metadata().map_err(super::io_fail("archiving", &n.path))?;
                    if !meta.is_file() {
                        return Ok(());
                    }
                    h.set_size(meta.len());
                    let data = Exact {
                        inner: f,
                        left: meta.len(),
                        pad: true,
                    };
                    b.append_data(&mut h, &n.path, data)
                }
                FileKind::Symlink => {
                    h.set_entry_type(tar::EntryType::Symlink);
                    b.append_link(&mut h, &n.path, n.target.as_deref().unwrap_or_default())
                }
            };
            sent.map_err(|e| FsError::Io(format!("archiving {}", shown(&n.path)), e))
        })?;
        b.into_inner()
            .map(drop)
            .map_err(|e| FsError::Io("ending the archive".into(), e))
    }

    /// Unpack `input` beneath the root, entry by entry: each is checked (the path rule, nothing
    /// through a link, only files, directories and symlinks) and written through the same
    /// no-follow resolution as `write` before the next is read, so a refused entry stops the
    /// unpack with the entries before it written. `max_total` bounds the files' bytes; a full
    /// disk is `DiskFull`.
    pub fn import_tar(
        &self,
        input: &mut dyn Read,
        owner: Owner,
        max_total: u64,
    ) -> Result<(), FsError> {
        let not_tar = |e: io::Error| FsError::NotArchive(e.to_string());
        let mut archive = tar::Archive::new(MetaGuard::new(input));
        // Symlink entries of this archive: a later entry beneath one is refused here, before
        // RESOLVE_NO_SYMLINKS would refuse it as a conflict.
        let mut links = HashSet::<PathBuf>::new();
        let mut total = 0u64;
        for entry in archive.entries().map_err(not_tar)? {
            let mut entry = entry.map_err(not_tar)?;
            let (path, item) = classify(&entry)?;
            if matches!(item, Item::Skip) {
                continue;
            }
            if path.ancestors().skip(1).any(|a| links.contains(a)) {
                return Err(FsError::Refused(format!(
                    "{}: goes through a symlink entry",
                    shown(&path)
                )));
            }
            // Whatever the entry is, it replaces a link of that name.
            links.remove(&path);
            match item {
                Item::Skip => {}
                Item::Dir => drop(self.mkdir_p(&path, owner)?),
                Item::File(mode) => {
                    let size = entry.size();
                    total = total.saturating_add(size);
                    if total > max_total {
                        return Err(FsError::TooLarge {
                            what: "the archive's files".into(),
                            max: max_total,
                        });
                    }
                    let mut data = Exact {
                        inner: &mut entry,
                        left: size,
                        pad: false,
                    };
                    self.write_path(&path, mode, owner, &mut data, &not_tar)?;
                }
                Item::Link(target) => {
                    self.link(&path, &target, owner)?;
                    links.insert(path);
                }
            }
        }
        Ok(())
    }

    /// Like tar: a symlink entry replaces what is there, but never a directory.
    fn link(&self, path: &Path, target: &OsStr, owner: Owner) -> Result<(), FsError> {
        let (dir, name) = self.parent_of(path, owner)?;
        let at = Some(dir.as_raw_fd());
        let link = || symlinkat(target, at, name);
        link()
            .or_else(|e| match e {
                Errno::EEXIST => {
                    unlinkat(at, name, UnlinkatFlags::NoRemoveDir).and_then(|()| link())
                }
                e => Err(e),
            })
            .map_err(|e| fail("linking", path, e))?;
        if let Some((u, g)) = owner {
            // The link itself (never what it names): a program swapping it meanwhile only gets
            // its own entry in /work chowned to itself.
            fchownat(
                at,
                name,
                Some(Uid::from_raw(u)),
                Some(Gid::from_raw(g)),
                AtFlags::AT_SYMLINK_NOFOLLOW,
            )
            .map_err(|e| fail("linking", path, e))?;
        }
        Ok(())
    }
}

/// An entry's checked path and what to make of it; anything but files, dirs and links is refused.
fn classify<R: Read>(e: &tar::Entry<R>) -> Result<(PathBuf, Item), FsError> {
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
    let path = named(rel)?.to_path_buf();
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
                shown(&path)
            )))
        }
    };
    Ok((path, item))
}

/// Exactly `left` bytes of `inner`: out, a file that shrank is padded with zeros (its header
/// promised the size); in, an entry that ends early is a broken archive.
struct Exact<R> {
    inner: R,
    left: u64,
    pad: bool,
}

impl<R: Read> Read for Exact<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let max = buf.len().min(self.left.min(usize::MAX as u64) as usize);
        if max == 0 {
            return Ok(0);
        }
        let n = match self.inner.read(&mut buf[..max])? {
            0 if self.pad => {
                buf[..max].fill(0);
                max
            }
            0 => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the archive ends inside an entry",
                ))
            }
            n => n,
        };
        self.left -= n as u64;
        Ok(n)
    }
}

/// Follows the archive's blocks as tar-rs reads them and refuses, before tar-rs buffers it, a
/// GNU long name or link or a pax header over [`META_MAX`], and what would make the two
/// disagree on where the next header is: GNU sparse entries (their extension blocks) and a pax
/// `size` record (never needed: no file here is over 8 GiB).
struct MetaGuard<R> {
    inner: R,
    block: [u8; BLOCK as usize],
    filled: usize,
    /// Bytes of the current entry's data and padding still to pass.
    skip: u64,
    /// The data of a pax header being passed (bounded by META_MAX), and how much is left of it.
    pax: Option<Vec<u8>>,
    pax_left: u64,
}

impl<R: Read> MetaGuard<R> {
    fn new(inner: R) -> Self {
        MetaGuard {
            inner,
            block: [0; BLOCK as usize],
            filled: 0,
            skip: 0,
            pax: None,
            pax_left: 0,
        }
    }

    fn header(&mut self) -> io::Result<()> {
        let refuse = |m: String| Err(io::Error::new(io::ErrorKind::InvalidData, m));
        if self.block.iter().all(|&b| b == 0) {
            return Ok(());
        }
        let flag = self.block[156];
        // A header tar-rs cannot read either: it fails there, whatever we count.
        let Ok(size) = tar::Header::from_byte_slice(&self.block).entry_size() else {
            return Ok(());
        };
        if flag == b'S' {
            return refuse("GNU sparse entries are not accepted".into());
        }
        if matches!(flag, b'L' | b'K' | b'x') && size > META_MAX {
            return refuse(format!(
                "a long name or pax header of {size} bytes; at most {META_MAX} are accepted"
            ));
        }
        if flag == b'x' {
            self.pax = Some(Vec::with_capacity(size as usize));
            self.pax_left = size;
            self.pax_done()?;
        }
        self.skip = size.div_ceil(BLOCK) * BLOCK;
        Ok(())
    }

    fn pax_done(&mut self) -> io::Result<()> {
        if self.pax_left > 0 {
            return Ok(());
        }
        if let Some(pax) = self.pax.take() {
            if pax.windows(6).any(|w| w == b" size=") {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "pax size records are not accepted",
                ));
            }
        }
        Ok(())
    }
}

impl<R: Read> Read for MetaGuard<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let mut i = 0;
        while i < n {
            if self.skip > 0 {
                let take = (n - i).min(self.skip.min(usize::MAX as u64) as usize);
                if let Some(pax) = &mut self.pax {
                    let real = take.min(self.pax_left as usize);
                    pax.extend_from_slice(&buf[i..i + real]);
                    self.pax_left -= real as u64;
                    self.pax_done()?;
                }
                self.skip -= take as u64;
                i += take;
                continue;
            }
            let take = (n - i).min(BLOCK as usize - self.filled);
            self.block[self.filled..self.filled + take].copy_from_slice(&buf[i..i + take]);
            self.filled += take;
            i += take;
            if self.filled == BLOCK as usize {
                self.filled = 0;
                self.header()?;
            }
        }
        Ok(n)
    }
}
