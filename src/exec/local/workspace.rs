//! A sandbox's persistent work dir, copied into a call's fresh /work before the program starts
//! and copied back after it (and everything it started) is dead. Runs inside the sandbox's PID 1,
//! through descriptors opened before pivot_root. Nothing here follows a symlink: links are read
//! with readlinkat and recreated with symlinkat, every open is O_NOFOLLOW, and the copy back
//! goes into a fresh directory that is then swapped in with one atomic rename — so a link the
//! program planted is stored as a link, never written through.

use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::fcntl::{openat, readlinkat, renameat2, AtFlags, OFlag, RenameFlags};
use nix::sys::stat::{fstatat, mkdirat, Mode, SFlag};
use nix::unistd::{fchownat, symlinkat, Gid, Uid};

/// The persistent dir inside a sandbox's host directory.
pub const WORK: &str = "work";
/// Where a copy back is built before it is swapped in; the service removes it afterwards.
pub const NEXT: &str = "work.next";

const MAX_DEPTH: usize = 64;

type R<T> = Result<T, String>;

fn open_dir(dirfd: RawFd, name: &str) -> R<OwnedFd> {
    let fd = openat(
        Some(dirfd),
        name,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| format!("open dir {name}: {e}"))?;
    // SAFETY: openat returned a fresh descriptor we now own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Copy the workspace (`<sandbox>/work`) into the call's /work, owned by `owner`.
pub fn copy_in(sandbox_dir: &OwnedFd, work: &OwnedFd, owner: (u32, u32)) -> R<()> {
    let src = open_dir(sandbox_dir.as_raw_fd(), WORK)?;
    copy_tree(&src, work, Some(owner), 0)
}

/// Copy the call's /work back as the new workspace: build `work.next`, then swap it with
/// `work` atomically. The old tree is left at `work.next` for the service to remove.
pub fn copy_out(sandbox_dir: &OwnedFd, work: &OwnedFd) -> R<()> {
    let dir = sandbox_dir.as_raw_fd();
    mkdirat(Some(dir), NEXT, Mode::from_bits_truncate(0o700))
        .map_err(|e| format!("mkdir {NEXT}: {e}"))?;
    let next = open_dir(dir, NEXT)?;
    copy_tree(work, &next, None, 0)?;
    renameat2(
        Some(dir),
        WORK,
        Some(dir),
        NEXT,
        RenameFlags::RENAME_EXCHANGE,
    )
    .map_err(|e| format!("swap in the new work dir: {e}"))
}

fn copy_tree(src: &OwnedFd, dst: &OwnedFd, owner: Option<(u32, u32)>, depth: usize) -> R<()> {
    if depth > MAX_DEPTH {
        return Err(format!(
            "the work dir is nested deeper than {MAX_DEPTH} levels"
        ));
    }
    // Dir takes ownership of the descriptor it reads, so give it a duplicate.
    let dup = nix::unistd::dup(src.as_raw_fd()).map_err(|e| format!("dup: {e}"))?;
    let mut entries = nix::dir::Dir::from_fd(dup).map_err(|e| format!("read dir: {e}"))?;
    let names: Vec<String> = entries
        .iter()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "." && n != "..")
        .collect();
    let chown = |name: &str| -> R<()> {
        if let Some((uid, gid)) = owner {
            fchownat(
                Some(dst.as_raw_fd()),
                name,
                Some(Uid::from_raw(uid)),
                Some(Gid::from_raw(gid)),
                AtFlags::AT_SYMLINK_NOFOLLOW,
            )
            .map_err(|e| format!("chown {name}: {e}"))?;
        }
        Ok(())
    };
    for name in names {
        let st = fstatat(
            Some(src.as_raw_fd()),
            name.as_str(),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(|e| format!("stat {name}: {e}"))?;
        let mode = Mode::from_bits_truncate(st.st_mode & 0o777);
        match SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) {
            SFlag::S_IFDIR => {
                mkdirat(Some(dst.as_raw_fd()), name.as_str(), mode | Mode::S_IRWXU)
                    .map_err(|e| format!("mkdir {name}: {e}"))?;
                chown(&name)?;
                let (s, d) = (
                    open_dir(src.as_raw_fd(), &name)?,
                    open_dir(dst.as_raw_fd(), &name)?,
                );
                copy_tree(&s, &d, owner, depth + 1)?;
            }
            SFlag::S_IFREG => {
                let from = openat(
                    Some(src.as_raw_fd()),
                    name.as_str(),
                    OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| format!("open {name}: {e}"))?;
                let to = openat(
                    Some(dst.as_raw_fd()),
                    name.as_str(),
                    OFlag::O_WRONLY
                        | OFlag::O_CREAT
                        | OFlag::O_EXCL
                        | OFlag::O_NOFOLLOW
                        | OFlag::O_CLOEXEC,
                    mode,
                )
                .map_err(|e| format!("create {name}: {e}"))?;
                // SAFETY: both descriptors were just returned by openat and are owned here.
                let (mut from, mut to) =
                    unsafe { (File::from_raw_fd(from), File::from_raw_fd(to)) };
                std::io::copy(&mut from, &mut to).map_err(|e| format!("copy {name}: {e}"))?;
                chown(&name)?;
            }
            SFlag::S_IFLNK => {
                let target = readlinkat(Some(src.as_raw_fd()), name.as_str())
                    .map_err(|e| format!("readlink {name}: {e}"))?;
                symlinkat(target.as_os_str(), Some(dst.as_raw_fd()), name.as_str())
                    .map_err(|e| format!("symlink {name}: {e}"))?;
                chown(&name)?;
            }
            // Fifos, sockets and devices are not workspace content.
            _ => {}
        }
    }
    Ok(())
}
