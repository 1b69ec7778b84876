//! The supervisor's file operations on temp dirs, as root (the supervisor's own identity).

use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::*;

const OWNER: (u32, u32) = (54321, 54322);

/// Root runs these (chown, mount); anywhere else they say so loudly and pass.
macro_rules! needs_root {
    () => {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("\n!!! SKIPPING {}: needs root !!!\n", module_path!());
            return;
        }
    };
}

/// A work dir under a temp dir, beside an `outside` dir (holding `secret`) that links aim at.
fn setup() -> (tempfile::TempDir, WorkDir, PathBuf) {
    let t = tempfile::tempdir().unwrap();
    let outside = t.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("secret"), b"host secret").unwrap();
    let work = WorkDir::create(&t.path().join("work")).unwrap();
    (t, work, outside)
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

fn read_all(w: &WorkDir, path: &[u8]) -> Result<Vec<u8>, FsError> {
    let mut out = Vec::new();
    read(w, path, 1 << 30, &mut out).map(|_| out)
}

fn put(w: &WorkDir, path: &[u8], data: &[u8]) -> Result<(), FsError> {
    write(w, path, false, OWNER, &mut &data[..])
}

fn kind(r: Result<impl std::fmt::Debug, FsError>) -> ErrorKind {
    error_reply(&r.expect_err("an error")).kind
}

fn listed(w: &WorkDir, path: &[u8]) -> Vec<(Vec<u8>, u64, String)> {
    list(w, path)
        .unwrap()
        .into_iter()
        .map(|e| (raw_path(&e.path).unwrap(), e.size, e.kind))
        .collect()
}

/// A tar entry from raw header bytes: the builder refuses the hostile names these tests need.
fn entry(
    b: &mut tar::Builder<Vec<u8>>,
    name: &[u8],
    kind: tar::EntryType,
    link: &[u8],
    data: &[u8],
) {
    let mut h = tar::Header::new_gnu();
    h.as_old_mut().name[..name.len()].copy_from_slice(name);
    h.as_old_mut().linkname[..link.len()].copy_from_slice(link);
    h.set_entry_type(kind);
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    b.append(&h, data).unwrap();
}

#[test]
fn a_planted_symlink_is_never_followed() {
    needs_root!();
    let (t, w, outside) = setup();
    let root = t.path().join("work");
    symlink(outside.join("secret"), root.join("file-link")).unwrap();
    symlink(&outside, root.join("dir-link")).unwrap();
    symlink("../outside", root.join("rel-link")).unwrap();
    for p in [&b"file-link"[..], b"dir-link/secret", b"rel-link/secret"] {
        assert_eq!(kind(read_all(&w, p)), ErrorKind::Conflict, "{p:?}");
    }
    for p in [
        &b"dir-link/x"[..],
        b"dir-link/a/b",
        b"rel-link/x",
        b"file-link",
    ] {
        assert_eq!(kind(put(&w, p, b"pwned")), ErrorKind::Conflict, "{p:?}");
    }
    assert_eq!(kind(list(&w, b"dir-link")), ErrorKind::Conflict);
    assert_eq!(
        kind(check_paths(&w, &[b"dir-link/x".to_vec()])),
        ErrorKind::Conflict
    );
    check_paths(&w, &[b"file-link".to_vec(), b"new/x".to_vec()]).unwrap();
    for p in [&b"../x"[..], b"/etc/passwd", b"a//b", b"a/\0"] {
        assert_eq!(kind(put(&w, p, b"x")), ErrorKind::Refused, "{p:?}");
    }
    // The archive carries the links as links.
    let mut tar = Vec::new();
    tar_out(&w, &mut tar).unwrap();
    let mut a = tar::Archive::new(&tar[..]);
    for e in a.entries().unwrap() {
        let e = e.unwrap();
        assert_eq!(e.header().entry_type(), tar::EntryType::Symlink);
        assert_eq!(e.size(), 0);
    }
    outside_untouched(&outside);
    assert!(!root.join("x").exists() && !t.path().join("x").exists());
}

#[test]
fn a_name_that_is_not_utf8_is_written_listed_read_and_archived_both_ways() {
    needs_root!();
    let (t, w, _) = setup();
    let (dir, name) = (&b"caf\xe9"[..], &b"caf\xe9/\xff%.bin"[..]);
    write(&w, name, true, OWNER, &mut &b"bytes"[..]).unwrap();
    let on_disk = t
        .path()
        .join("work")
        .join(std::ffi::OsStr::from_bytes(name));
    let meta = std::fs::symlink_metadata(&on_disk).unwrap();
    assert_eq!((meta.uid(), meta.gid()), OWNER, "the sandbox user owns it");
    assert_eq!(meta.permissions().mode() & 0o777, 0o755);
    let parent = std::fs::metadata(on_disk.parent().unwrap()).unwrap();
    assert_eq!(
        (parent.uid(), parent.gid()),
        OWNER,
        "and the directory made for it"
    );
    let want = vec![
        (dir.to_vec(), 0, "dir".to_string()),
        (name.to_vec(), 5, "file".to_string()),
    ];
    assert_eq!(listed(&w, b""), want);
    assert_eq!(listed(&w, dir), want[1..]);
    assert_eq!(read_all(&w, name).unwrap(), b"bytes");

    let mut tar = Vec::new();
    tar_out(&w, &mut tar).unwrap();
    let names: Vec<Vec<u8>> = tar::Archive::new(&tar[..])
        .entries()
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path_bytes().into_owned();
            p.strip_suffix(b"/").map(<[u8]>::to_vec).unwrap_or(p)
        })
        .collect();
    assert_eq!(names, [dir.to_vec(), name.to_vec()]);
    let (_t2, w2, _) = setup();
    tar_in(&w2, &mut &tar[..], OWNER).unwrap();
    assert_eq!(listed(&w2, b""), want);
    assert_eq!(read_all(&w2, name).unwrap(), b"bytes");
}

#[test]
fn tar_in_refuses_escapes_and_links_but_keeps_symlinks_inside() {
    needs_root!();
    use tar::EntryType::{Fifo, Link, Regular, Symlink};
    let (t, w, outside) = setup();
    let out = outside.as_os_str().as_bytes();
    let cases: [(&[u8], tar::EntryType, &[u8]); 6] = [
        (b"../x", Regular, b""),
        (b"/tmp/execbox-files-abs", Regular, b""),
        (b"a/../../x", Regular, b""),
        (b"hard", Link, b"/etc/passwd"),
        (b"fifo", Fifo, b""),
        (b"l/pwn", Regular, b""), // after `l`, a symlink entry to the outside
    ];
    for (name, kind, link) in cases {
        let mut b = tar::Builder::new(Vec::new());
        entry(&mut b, b"ok", Regular, b"", b"fine");
        entry(&mut b, b"l", Symlink, out, b"");
        entry(&mut b, name, kind, link, b"pwned");
        let tar = b.into_inner().unwrap();
        assert_eq!(
            kind_of(tar_in(&w, &mut &tar[..], OWNER)),
            ErrorKind::Refused,
            "{}",
            String::from_utf8_lossy(name)
        );
    }
    // Entry by entry: those before the refused one are in place, the link as a link.
    assert_eq!(read_all(&w, b"ok").unwrap(), b"fine");
    let l = t.path().join("work/l");
    assert_eq!(std::fs::read_link(&l).unwrap(), outside);
    assert_eq!(std::fs::symlink_metadata(&l).unwrap().uid(), OWNER.0);
    outside_untouched(&outside);
    assert!(!t.path().join("x").exists() && !Path::new("/tmp/execbox-files-abs").exists());
    // A body that is not a tar.
    assert_eq!(
        kind_of(tar_in(&w, &mut &[b'x'; 1024][..], OWNER)),
        ErrorKind::InvalidArchive
    );
}

fn kind_of(r: Result<(), FsError>) -> ErrorKind {
    kind(r)
}

#[test]
fn tar_in_refuses_metadata_it_would_have_to_hold_whole() {
    needs_root!();
    let (_t, w, _) = setup();
    // A GNU long name of 1 MiB: tar-rs would read it into memory before we saw the entry.
    let mut h = tar::Header::new_gnu();
    h.as_old_mut().name[..13].copy_from_slice(b"././@LongLink");
    h.set_entry_type(tar::EntryType::GNULongName);
    h.set_size(1 << 20);
    h.set_cksum();
    let mut b = tar::Builder::new(Vec::new());
    b.append(&h, io::repeat(b'a').take(1 << 20)).unwrap();
    let tar = b.into_inner().unwrap();
    let e = tar_in(&w, &mut &tar[..], OWNER).unwrap_err();
    assert_eq!(error_reply(&e).kind, ErrorKind::InvalidArchive, "{e}");
    assert!(e.to_string().contains("at most 65536"), "{e}");
    // A long name the archive needs (a deep path) is fine.
    let deep = format!("{}x", "d/".repeat(31)).into_bytes();
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(1);
    h.set_mode(0o644);
    b.append_data(&mut h, std::ffi::OsStr::from_bytes(&deep), &b"x"[..])
        .unwrap();
    tar_in(&w, &mut &b.into_inner().unwrap()[..], OWNER).unwrap();
    assert_eq!(read_all(&w, &deep).unwrap(), b"x");
}

#[test]
fn tar_in_refuses_a_cut_archive_and_what_would_misplace_the_next_header() {
    needs_root!();
    let (_t, w, _) = setup();
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(4096);
    h.set_mode(0o644);
    b.append_data(&mut h, "cut", &[5u8; 4096][..]).unwrap();
    let tar = b.into_inner().unwrap();
    // Cut inside the file's data: the file is not written short.
    let e = tar_in(&w, &mut &tar[..2048], OWNER).unwrap_err();
    assert_eq!(error_reply(&e).kind, ErrorKind::InvalidArchive, "{e}");
    assert_eq!(listed(&w, b""), vec![], "no file and no temp file");
    // A pax `size` record moves the next header where a reader of the plain header would not
    // look; a GNU sparse entry carries blocks of its own.
    let mut b = tar::Builder::new(Vec::new());
    b.append_pax_extensions([("size", &b"10"[..])]).unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_size(10);
    h.set_mode(0o644);
    b.append_data(&mut h, "p", &[1u8; 10][..]).unwrap();
    let e = tar_in(&w, &mut &b.into_inner().unwrap()[..], OWNER).unwrap_err();
    assert!(e.to_string().contains("pax size records"), "{e}");
    let mut b = tar::Builder::new(Vec::new());
    entry(&mut b, b"sparse", tar::EntryType::GNUSparse, b"", b"");
    let e = tar_in(&w, &mut &b.into_inner().unwrap()[..], OWNER).unwrap_err();
    assert!(e.to_string().contains("sparse"), "{e}");
    assert_eq!(listed(&w, b""), vec![]);
}

/// A small tmpfs as the work dir's filesystem, unmounted when dropped.
struct Tmpfs(tempfile::TempDir);

impl Tmpfs {
    fn new(size: &str) -> Tmpfs {
        let t = tempfile::tempdir().unwrap();
        nix::mount::mount(
            Some("tmpfs"),
            t.path(),
            Some("tmpfs"),
            nix::mount::MsFlags::MS_NOSUID | nix::mount::MsFlags::MS_NODEV,
            Some(format!("size={size}").as_str()),
        )
        .unwrap();
        Tmpfs(t)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(self.0.path(), nix::mount::MntFlags::MNT_DETACH);
    }
}

#[test]
fn a_full_disk_is_too_large_and_leaves_nothing_half_written() {
    needs_root!();
    let fs = Tmpfs::new("1m");
    let w = WorkDir::open(fs.0.path()).unwrap();
    put(&w, b"keep", b"old").unwrap();
    let big = vec![7u8; 2 << 20];
    for p in [&b"keep"[..], b"new/big"] {
        let e = put(&w, p, &big).unwrap_err();
        assert_eq!(error_reply(&e).kind, ErrorKind::TooLarge, "{e}");
        assert!(e.to_string().contains("disk is full"), "{e}");
    }
    assert_eq!(
        read_all(&w, b"keep").unwrap(),
        b"old",
        "the old file stands"
    );
    let names = |w: &WorkDir| -> Vec<Vec<u8>> { listed(w, b"").into_iter().map(|e| e.0).collect() };
    assert_eq!(
        names(&w),
        [b"keep".to_vec(), b"new".to_vec()],
        "no temp file is left"
    );
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(big.len() as u64);
    h.set_mode(0o644);
    b.append_data(&mut h, "t/big", &big[..]).unwrap();
    let e = tar_in(&w, &mut &b.into_inner().unwrap()[..], OWNER).unwrap_err();
    assert_eq!(error_reply(&e).kind, ErrorKind::TooLarge, "{e}");
    assert_eq!(listed(&w, b"t"), vec![], "no temp file is left");
}

/// A writer that, when the first 64 KiB of the archive reach it, removes the last file of the
/// tree: an archive streamed as it is read then no longer holds that file; one built whole
/// before the first byte is sent would.
struct RemoveLastAt64k {
    seen: u64,
    last: PathBuf,
    removed_at: Option<u64>,
}

impl Write for RemoveLastAt64k {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.seen += buf.len() as u64;
        if self.seen >= 64 << 10 && self.removed_at.is_none() {
            std::fs::remove_file(&self.last).unwrap();
            self.removed_at = Some(self.seen);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn archives_and_reads_stream_in_chunks() {
    needs_root!();
    let (t, w, _) = setup();
    let mb = vec![1u8; 1 << 20];
    for i in 0..8 {
        put(&w, format!("f{i}").as_bytes(), &mb).unwrap();
    }
    let mut out = RemoveLastAt64k {
        seen: 0,
        last: t.path().join("work/f7"),
        removed_at: None,
    };
    tar_out(&w, &mut out).unwrap();
    let at = out.removed_at.expect("the archive reached the writer");
    assert!(at < 1 << 20, "the first 64 KiB came after {at} bytes");
    // Seven files of 1 MiB with their headers and the end blocks; f7 is gone.
    assert_eq!(out.seen, 7 * ((1 << 20) + 512) + 1024);

    // A read streams too: many writes, none larger than the copy's step.
    struct Sizes(Vec<usize>);
    impl Write for Sizes {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.push(buf.len());
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let mut sizes = Sizes(Vec::new());
    assert_eq!(read(&w, b"f0", 1 << 20, &mut sizes).unwrap(), 1 << 20);
    assert_eq!(sizes.0.len(), 16);
    assert!(sizes.0.iter().all(|&n| n <= 64 << 10));
    assert_eq!(
        kind(read(&w, b"f0", (1 << 20) - 1, &mut sizes)),
        ErrorKind::TooLarge
    );

    // And an unpack writes each entry before it reads the next: the first file is in place
    // while the archive's end is still unread.
    let mut b = tar::Builder::new(Vec::new());
    for name in ["a", "b"] {
        let mut h = tar::Header::new_gnu();
        h.set_size(mb.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, name, &mb[..]).unwrap();
    }
    let tar = b.into_inner().unwrap();
    struct Watch<'a> {
        data: &'a [u8],
        at: usize,
        a: PathBuf,
        a_before_end: bool,
    }
    impl Read for Watch<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.data.len() - self.at <= 1 << 20 && self.a.exists() {
                self.a_before_end = true;
            }
            let n = buf.len().min(self.data.len() - self.at);
            buf[..n].copy_from_slice(&self.data[self.at..self.at + n]);
            self.at += n;
            Ok(n)
        }
    }
    let (t2, w2, _) = setup();
    let mut watch = Watch {
        data: &tar,
        at: 0,
        a: t2.path().join("work/a"),
        a_before_end: false,
    };
    tar_in(&w2, &mut watch, OWNER).unwrap();
    assert!(
        watch.a_before_end,
        "a was written only after the whole archive was read"
    );
    assert_eq!(listed(&w2, b"").len(), 2);
}

#[test]
fn errors_map_to_the_protocols_kinds() {
    let io = || io::Error::from_raw_os_error(libc::EIO);
    for (e, k) in [
        (FsError::NotFound("x".into()), ErrorKind::NotFound),
        (FsError::Refused("x".into()), ErrorKind::Refused),
        (FsError::Conflict("x".into()), ErrorKind::Conflict),
        (
            FsError::TooLarge {
                what: "x".into(),
                max: 1,
            },
            ErrorKind::TooLarge,
        ),
        (FsError::DiskFull("x".into()), ErrorKind::TooLarge),
        (FsError::NotArchive("x".into()), ErrorKind::InvalidArchive),
        (FsError::Io("x".into(), io()), ErrorKind::Io),
    ] {
        assert_eq!(error_reply(&e).kind, k, "{e}");
    }
    assert!(error_reply(&FsError::Io("reading x".into(), io()))
        .message
        .ends_with("Input/output error (os error 5)"));
    assert_eq!(raw_path(&wire_path(b"\xff/a")).unwrap(), b"\xff/a");
    assert_eq!(
        raw_path(&"not base64!".to_string()).unwrap_err().kind,
        ErrorKind::Protocol
    );
}
