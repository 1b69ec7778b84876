//! The sandbox's filesystem, built by the helper's PID 1 inside its own mount namespace: a fresh
//! tmpfs root with read-only binds of `/usr` and what the runtimes need, a synthetic `/etc`, a
//! minimal `/dev`, a fresh `/proc`, and one size-limited tmpfs holding `/work`, `/tmp` and
//! `/dev/shm`. Then `pivot_root` into it and detach the host's tree.

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::unistd::{chown, pivot_root, Gid, Uid};

use super::spec::{BootSpec, RunSpec, DATA, ROOT, SUPERVISOR_RUN};

type R<T> = Result<T, String>;

const NONE: Option<&str> = None;

fn ctx<T, E: std::fmt::Display>(r: Result<T, E>, what: impl FnOnce() -> String) -> R<T> {
    r.map_err(|e| format!("{}: {e}", what()))
}

/// Build the root under `<staging>/root` and pivot into it. On return the cwd is `/work`.
pub fn build_root(staging: &Path, spec: &BootSpec) -> R<()> {
    let root = staging.join(ROOT);
    let data = staging.join(DATA);
    // Nothing we mount may propagate back to the host.
    ctx(
        mount(NONE, "/", NONE, MsFlags::MS_REC | MsFlags::MS_PRIVATE, NONE),
        || "make / private".into(),
    )?;
    // The mount points live on a tmpfs laid over the staging dir in this namespace only, so the
    // host side has just a few files to remove after the run (the helper keeps a descriptor to
    // the real staging dir for its report).
    mount_tmpfs(
        staging,
        "execbox-stage",
        1 << 20,
        "0700",
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
    )?;
    for dir in [&root, &data] {
        ctx(fs::create_dir(dir), || format!("mkdir {}", dir.display()))?;
    }

    mount_tmpfs(&root, "execbox-root", 8 << 20, "0755", MsFlags::empty())?;
    mount_tmpfs(
        &data,
        "execbox-data",
        spec.initial_disk_bytes,
        "0755",
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
    )?;
    // /work goes to the run's uid when the run arrives (`set_identity`).
    for (dir, mode) in [("work", 0o755), ("tmp", 0o1777), ("shm", 0o1777)] {
        let p = data.join(dir);
        ctx(fs::create_dir(&p), || format!("mkdir {}", p.display()))?;
        ctx(
            fs::set_permissions(&p, fs::Permissions::from_mode(mode)),
            || format!("chmod {}", p.display()),
        )?;
    }

    for host in &spec.ro_paths {
        bind_ro_path(Path::new(host), &root)?;
    }
    write_etc(&root, spec)?;
    build_dev(&root, &data)?;
    // A persistent sandbox's /work is its disk on the host; a one-shot run's is on the tmpfs.
    let work = match &spec.supervisor {
        Some(sup) => PathBuf::from(&sup.work),
        None => data.join("work"),
    };
    if let Some(sup) = &spec.supervisor {
        let target = root.join(SUPERVISOR_RUN.trim_start_matches('/'));
        ctx(fs::create_dir_all(&target), || {
            format!("mkdir {}", target.display())
        })?;
        bind(
            Path::new(&sup.run),
            &target,
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            false,
        )?;
    }
    for (dir, src) in [("work", work), ("tmp", data.join("tmp"))] {
        let target = root.join(dir);
        ctx(fs::create_dir_all(&target), || {
            format!("mkdir {}", target.display())
        })?;
        bind(&src, &target, MsFlags::MS_NOSUID | MsFlags::MS_NODEV, false)?;
    }
    let proc_dir = root.join("proc");
    ctx(fs::create_dir_all(&proc_dir), || "mkdir /proc".into())?;
    ctx(
        mount(
            Some("proc"),
            &proc_dir,
            Some("proc"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            NONE,
        ),
        || "mount /proc".into(),
    )?;

    // pivot_root(".", ".") stacks the old root under the new one; detaching it leaves no path
    // back to the host's tree.
    ctx(std::env::set_current_dir(&root), || {
        "chdir to new root".into()
    })?;
    ctx(pivot_root(".", "."), || "pivot_root".into())?;
    ctx(umount2(".", MntFlags::MNT_DETACH), || {
        "detach old root".into()
    })?;
    ctx(std::env::set_current_dir("/"), || "chdir /".into())?;
    ctx(
        mount(
            NONE,
            "/",
            NONE,
            MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            NONE,
        ),
        || "remount / read-only".into(),
    )?;
    ctx(std::env::set_current_dir("/work"), || "chdir /work".into())?;
    Ok(())
}

fn mount_tmpfs(target: &Path, name: &str, size: u64, mode: &str, flags: MsFlags) -> R<()> {
    let opts = format!("size={size},mode={mode}");
    ctx(
        mount(
            Some(name),
            target,
            Some("tmpfs"),
            flags,
            Some(opts.as_str()),
        ),
        || format!("mount tmpfs on {}", target.display()),
    )
}

fn bind(src: &Path, target: &Path, extra: MsFlags, read_only: bool) -> R<()> {
    ctx(
        mount(
            Some(src),
            target,
            NONE,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            NONE,
        ),
        || format!("bind {} on {}", src.display(), target.display()),
    )?;
    let mut flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | extra;
    if read_only {
        flags |= MsFlags::MS_RDONLY;
    }
    ctx(mount(NONE, target, NONE, flags, NONE), || {
        format!("remount {}", target.display())
    })
}

/// Mirror one host path into the new root: symlinks are recreated, directories and files bound
/// read-only with nosuid/nodev. Missing paths are skipped (not every host has /lib32).
fn bind_ro_path(host: &Path, root: &Path) -> R<()> {
    let Ok(meta) = fs::symlink_metadata(host) else {
        return Ok(());
    };
    let target = root.join(host.strip_prefix("/").unwrap_or(host));
    if let Some(parent) = target.parent() {
        ctx(fs::create_dir_all(parent), || {
            format!("mkdir {}", parent.display())
        })?;
    }
    if meta.file_type().is_symlink() {
        let link = ctx(fs::read_link(host), || {
            format!("readlink {}", host.display())
        })?;
        return ctx(symlink(&link, &target), || {
            format!("symlink {}", target.display())
        });
    }
    if meta.is_dir() {
        ctx(fs::create_dir_all(&target), || {
            format!("mkdir {}", target.display())
        })?;
    } else {
        ctx(fs::write(&target, b""), || {
            format!("create {}", target.display())
        })?;
    }
    bind(host, &target, MsFlags::MS_NOSUID | MsFlags::MS_NODEV, true)
}

/// A synthetic /etc: name resolution, nothing of the host's; the identity files are written
/// when the run's uid is known (`set_identity`).
fn write_etc(root: &Path, spec: &BootSpec) -> R<()> {
    let etc = root.join("etc");
    ctx(fs::create_dir_all(&etc), || "mkdir /etc".into())?;
    let files = [
        (
            "hosts",
            format!(
                "127.0.0.1\tlocalhost {0}\n::1\tlocalhost ip6-localhost\n",
                spec.hostname
            ),
        ),
        ("hostname", format!("{}\n", spec.hostname)),
        (
            "nsswitch.conf",
            "passwd: files\ngroup: files\nhosts: files\n".to_string(),
        ),
        ("resolv.conf", String::new()),
    ];
    for (name, content) in files {
        ctx(fs::write(etc.join(name), content), || {
            format!("write /etc/{name}")
        })?;
    }
    Ok(())
}

/// The run's identity, once a run has taken the sandbox: `/etc/passwd` and `/etc/group` name
/// its uid (the read-only root is made writable for the moment it takes), and `/work` is its.
pub fn set_identity(run: &RunSpec, boot: &BootSpec) -> R<()> {
    set_identity_of(run.uid, run.gid, boot)
}

/// As [`set_identity`], for a uid known at boot (a persistent sandbox's).
pub fn set_identity_of(uid: u32, gid: u32, boot: &BootSpec) -> R<()> {
    let (uid, gid) = if boot.user_namespace {
        (0, 0)
    } else {
        (uid, gid)
    };
    let (passwd, group) = if uid == 0 {
        (
            "root:x:0:0:root:/work:/bin/sh\n".to_string(),
            "root:x:0:\n".to_string(),
        )
    } else {
        (
            format!("root:x:0:0:root:/root:/bin/sh\nsandbox:x:{uid}:{gid}:sandbox:/work:/bin/sh\n"),
            format!("root:x:0:\nsandbox:x:{gid}:\n"),
        )
    };
    let remount = |extra: MsFlags, what: &str| {
        ctx(
            mount(
                NONE,
                "/",
                NONE,
                MsFlags::MS_REMOUNT | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | extra,
                NONE,
            ),
            || format!("remount / {what}"),
        )
    };
    remount(MsFlags::empty(), "writable")?;
    let written = ctx(fs::write("/etc/passwd", passwd), || {
        "write /etc/passwd".into()
    })
    .and_then(|_| ctx(fs::write("/etc/group", group), || "write /etc/group".into()));
    remount(MsFlags::MS_RDONLY, "read-only")?;
    written?;
    ctx(
        chown("/work", Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid))),
        || "chown /work".into(),
    )
}

/// A minimal /dev: the harmless character devices bound from the host, the usual symlinks, and
/// /dev/shm on the run's size-limited tmpfs.
fn build_dev(root: &Path, data: &Path) -> R<()> {
    let dev = root.join("dev");
    ctx(fs::create_dir_all(&dev), || "mkdir /dev".into())?;
    mount_tmpfs(
        &dev,
        "execbox-dev",
        64 << 10,
        "0755",
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
    )?;
    for name in ["null", "zero", "full", "random", "urandom"] {
        let target = dev.join(name);
        ctx(fs::write(&target, b""), || format!("create /dev/{name}"))?;
        bind(
            &PathBuf::from("/dev").join(name),
            &target,
            MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
            false,
        )?;
    }
    for (name, to) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        ctx(symlink(to, dev.join(name)), || {
            format!("symlink /dev/{name}")
        })?;
    }
    let shm = dev.join("shm");
    ctx(fs::create_dir(&shm), || "mkdir /dev/shm".into())?;
    bind(
        &data.join("shm"),
        &shm,
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        false,
    )?;
    ctx(
        mount(
            NONE,
            &dev,
            NONE,
            MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
            Some("size=65536,mode=0755"),
        ),
        || "remount /dev read-only".into(),
    )
}

/// Give the run its disk size, after the root is built and before anything is written to it.
pub fn resize_work(run: &RunSpec) -> R<()> {
    let opts = format!("size={}", run.disk_bytes);
    // Without MS_BIND a remount reconfigures the tmpfs itself, which /work, /tmp and /dev/shm share.
    ctx(
        mount(
            NONE,
            "/work",
            NONE,
            MsFlags::MS_REMOUNT | MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some(opts.as_str()),
        ),
        || "resize the run's tmpfs".into(),
    )
}

/// Write the run's files into /work before the program starts. Nothing else runs yet; a link
/// copied in from a workspace is refused as a parent and replaced, never written through.
pub fn write_files(run: &RunSpec, boot: &BootSpec) -> R<()> {
    let owner = if boot.user_namespace {
        (0, 0)
    } else {
        (run.uid, run.gid)
    };
    let chown_to = |p: &Path| {
        ctx(
            chown(
                p,
                Some(Uid::from_raw(owner.0)),
                Some(Gid::from_raw(owner.1)),
            ),
            || format!("chown {}", p.display()),
        )
    };
    let work = Path::new("/work");
    for f in &run.files {
        use base64::Engine;
        let content = base64::engine::general_purpose::STANDARD
            .decode(&f.content_b64)
            .map_err(|e| format!("file {}: {e}", f.path))?;
        let rel = &f.path;
        let dest = work.join(rel);
        let mut dir = work.to_path_buf();
        for part in Path::new(rel)
            .parent()
            .into_iter()
            .flat_map(|p| p.components())
        {
            dir.push(part);
            if fs::symlink_metadata(&dir).is_ok_and(|m| m.file_type().is_symlink()) {
                return Err(format!(
                    "{} is a symlink in the workspace; files are not written through links",
                    dir.display()
                ));
            }
            if !dir.exists() {
                ctx(fs::create_dir(&dir), || format!("mkdir {}", dir.display()))?;
                chown_to(&dir)?;
            }
        }
        if fs::symlink_metadata(&dest).is_ok_and(|m| m.file_type().is_symlink()) {
            ctx(fs::remove_file(&dest), || {
                format!("replace link {}", dest.display())
            })?;
        }
        ctx(fs::write(&dest, content), || {
            format!("write {}", dest.display())
        })?;
        let mode = if f.executable { 0o755 } else { 0o644 };
        ctx(
            fs::set_permissions(&dest, fs::Permissions::from_mode(mode)),
            || format!("chmod {}", dest.display()),
        )?;
        chown_to(&dest)?;
    }
    Ok(())
}
