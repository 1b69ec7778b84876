//! A local sandbox's disk: `<data-dir>/sandboxes/<id>/disk.img`, a sparse ext4 image of exactly
//! the sandbox's `disk_bytes`, loop-mounted (nosuid, nodev) at `<id>/work`. The filesystem
//! itself holds the limit, whatever a program does (sparse files, hard links, many small
//! files): the image's blocks on the host can never exceed its size.
//!
//! A service that is not root, or a host without loop devices, gets a plain directory instead
//! (disk_bytes is then not enforced on the host; README says so). Sandboxes made before images
//! existed (a `work/` dir and no image) stay plain directories.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The persistent work dir inside a sandbox's host directory (a mount point or a plain dir).
pub const WORK: &str = "work";
pub const IMAGE: &str = "disk.img";

#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{cmd} failed for {path}: {output}")]
    Command {
        cmd: &'static str,
        path: PathBuf,
        output: String,
    },
}

/// How this host keeps sandbox disks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskMode {
    /// An ext4 image per sandbox, loop-mounted.
    Image,
    /// A plain directory; `disk_bytes` is not enforced on the host.
    Plain,
}

/// Decide once at start: images need root (mount) and a loop device.
pub fn detect() -> (DiskMode, Option<String>) {
    if !nix::unistd::geteuid().is_root() {
        return (
            DiskMode::Plain,
            Some("the service is not root, so it cannot mount disk images".into()),
        );
    }
    if !Path::new("/dev/loop-control").exists() {
        return (
            DiskMode::Plain,
            Some("the host has no loop devices (/dev/loop-control)".into()),
        );
    }
    for tool in ["mkfs.ext4", "mount", "umount"] {
        if which(tool).is_none() {
            return (DiskMode::Plain, Some(format!("{tool} is not installed")));
        }
    }
    (DiskMode::Image, None)
}

fn which(tool: &str) -> Option<PathBuf> {
    ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
        .iter()
        .map(|d| Path::new(d).join(tool))
        .find(|p| p.exists())
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> DiskError + 'a {
    move |source| DiskError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

fn run(cmd: &'static str, args: &[&std::ffi::OsStr], path: &Path) -> Result<(), DiskError> {
    let tool = which(cmd).unwrap_or_else(|| PathBuf::from(cmd));
    let out = Command::new(tool)
        .args(args)
        .env("LC_ALL", "C")
        .output()
        .map_err(io("running", Path::new(cmd)))?;
    if out.status.success() {
        return Ok(());
    }
    let mut text = String::from_utf8_lossy(&out.stderr).trim().to_string();
    if text.is_empty() {
        text = format!("{}", out.status);
    }
    Err(DiskError::Command {
        cmd,
        path: path.to_path_buf(),
        output: text,
    })
}

/// Create `<dir>/disk.img` (`bytes` long, sparse, ext4 without a journal, a little kept for
/// root, its root owned by `owner`) and mount it at `<dir>/work`. On error nothing is left mounted.
pub fn create(dir: &Path, bytes: u64, owner: (u32, u32)) -> Result<(), DiskError> {
    let image = dir.join(IMAGE);
    let work = dir.join(WORK);
    std::fs::create_dir_all(&work).map_err(io("mkdir", &work))?;
    let f = std::fs::File::create(&image).map_err(io("create", &image))?;
    f.set_len(bytes).map_err(io("truncate", &image))?;
    drop(f);
    let root_owner = format!("root_owner={}:{}", owner.0, owner.1);
    let reserved = format!("{:.3}", reserved_percent(bytes));
    let mut args: Vec<&std::ffi::OsStr> = ["-F", "-q", "-O", "^has_journal", "-m"]
        .iter()
        .map(std::ffi::OsStr::new)
        .collect();
    args.push(reserved.as_ref());
    // Below 3 MiB mke2fs picks its "floppy" type, whose 8 KiB per inode leaves a 64 KiB image
    // fewer inodes than ext4 reserves ("Illegal inode number"); "small" (4 KiB per inode) works
    // down to the policy minimum of 64 KiB.
    if bytes < 3 << 20 {
        args.extend(["-T", "small"].iter().map(std::ffi::OsStr::new));
    }
    args.extend([std::ffi::OsStr::new("-E"), root_owner.as_ref()]);
    args.push(image.as_os_str());
    run("mkfs.ext4", &args, &image)?;
    mount(dir)?;
    // lost+found is root's and useless to a sandbox (no fsck ever runs on it).
    let lf = work.join("lost+found");
    if let Err(e) = std::fs::remove_dir(&lf) {
        if e.kind() != std::io::ErrorKind::NotFound {
            let _ = unmount(dir);
            return Err(io("removing", &lf)(e));
        }
    }
    Ok(())
}

/// The share of the image kept for root: about 256 KiB (at most 5%), so that a program that
/// fills the disk cannot keep the supervisor (which keeps CAP_SYS_RESOURCE while it writes as the
/// sandbox's user) from writing the next call's source file. Programs hold no capabilities.
fn reserved_percent(bytes: u64) -> f64 {
    ((256u64 << 10) as f64 * 100.0 / bytes.max(1) as f64).clamp(0.001, 5.0)
}

/// Whether `<dir>/disk.img` exists (the sandbox has an image, whether or not it is mounted).
pub fn has_image(dir: &Path) -> bool {
    dir.join(IMAGE).is_file()
}

/// Whether something is mounted at `path` (its device differs from its parent's).
pub fn is_mounted(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let (Ok(m), Some(parent)) = (std::fs::symlink_metadata(path), path.parent()) else {
        return false;
    };
    std::fs::metadata(parent).is_ok_and(|p| p.dev() != m.dev())
}

/// Mount `<dir>/disk.img` at `<dir>/work` unless it already is (after a restart the mount
/// survives; after a host reboot it does not).
pub fn mount(dir: &Path) -> Result<(), DiskError> {
    let image = dir.join(IMAGE);
    let work = dir.join(WORK);
    if is_mounted(&work) {
        return Ok(());
    }
    std::fs::create_dir_all(&work).map_err(io("mkdir", &work))?;
    // noinit_itable: the kernel would otherwise zero the inode tables in the background,
    // allocating host blocks no file needs.
    run(
        "mount",
        &[
            "-t".as_ref(),
            "ext4".as_ref(),
            "-o".as_ref(),
            "loop,nosuid,nodev,noinit_itable".as_ref(),
            image.as_os_str(),
            work.as_os_str(),
        ],
        &image,
    )
}

/// Unmount `<dir>/work` if it is mounted (lazily: a process that still holds a descriptor in it
/// cannot keep the sandbox's deletion from going on; the loop device goes with the last user).
pub fn unmount(dir: &Path) -> Result<(), DiskError> {
    let work = dir.join(WORK);
    if !is_mounted(&work) {
        return Ok(());
    }
    nix::mount::umount2(&work, nix::mount::MntFlags::MNT_DETACH).map_err(|e| DiskError::Io {
        what: "unmount",
        path: work.clone(),
        source: e.into(),
    })
}

/// Unmount and delete everything of a sandbox's host directory; a missing one is fine.
pub fn destroy(dir: &Path) -> Result<(), DiskError> {
    unmount(dir)?;
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io("removing", dir)(e)),
        _ => Ok(()),
    }
}

/// The host blocks an image holds (st_blocks × 512).
pub fn allocated_bytes(dir: &Path) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(dir.join(IMAGE))
        .ok()
        .map(|m| m.blocks() * 512)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Root only: mkfs and mount a 64 KiB image (the policy minimum), use it, remove it.
    #[test]
    fn tiny_image_mounts_and_is_removed() {
        if detect().0 != DiskMode::Image {
            eprintln!("skipped: needs root and loop devices");
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("sb");
        create(&dir, 64 << 10, (4321, 4321)).unwrap();
        let work = dir.join(WORK);
        assert!(is_mounted(&work));
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(&work).unwrap();
        assert_eq!((m.uid(), m.gid()), (4321, 4321));
        assert_eq!(
            std::fs::read_dir(&work).unwrap().count(),
            0,
            "no lost+found"
        );
        assert_eq!(std::fs::metadata(dir.join(IMAGE)).unwrap().len(), 64 << 10);
        // Filling it fails with ENOSPC, never grows the image.
        let big = vec![7u8; 128 << 10];
        let err = std::fs::write(work.join("f"), &big).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOSPC));
        assert!(allocated_bytes(&dir).unwrap() <= 64 << 10);
        // Unmounted and mounted again (a restart after a reboot).
        unmount(&dir).unwrap();
        assert!(!is_mounted(&work));
        mount(&dir).unwrap();
        assert!(is_mounted(&work));
        destroy(&dir).unwrap();
        assert!(!dir.exists());
    }
}
