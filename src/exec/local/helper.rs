//! The sandbox helper: `execbox __sandbox <staging-dir>`, re-executed by the local executor for
//! every run. It is single-threaded and is the only code in execbox that forks, unshares or
//! mounts. Process tree:
//!
//! ```text
//! helper (host pid ns)            unshare(mnt, pid, net, ipc, uts[, user]); waits for PID 1
//!  └─ PID 1 (new pid ns)          builds the root, pivots, reaps; exits when the program does,
//!      └─ program                 which makes the kernel SIGKILL everything left in the namespace
//! ```
//!
//! PID 1 has `PR_SET_PDEATHSIG = SIGKILL`, so the service killing the helper at the deadline
//! takes the whole namespace down with it, whatever the program does with signals.

use std::ffi::CString;
use std::fs::{self, File};
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use nix::fcntl::{openat, OFlag};
use nix::sched::{unshare, CloneFlags};
use nix::sys::resource::{setrlimit, Resource};
use nix::sys::stat::Mode;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{dup2, fork, setresgid, setresuid, setsid, ForkResult, Gid, Pid, Uid};

use super::seccomp;
use super::spec::{BootSpec, RunSpec, SandboxReport, BOOT, OUT, REPORT, STDIN};

/// Entry point of the hidden subcommand. Never returns.
pub fn main(staging: &Path) -> ! {
    let code = match run(staging) {
        Ok(code) => code,
        Err(e) => {
            write_report_path(
                staging,
                &SandboxReport {
                    setup_error: Some(e),
                    ..Default::default()
                },
            );
            125
        }
    };
    std::process::exit(code)
}

fn run(staging: &Path) -> Result<i32, String> {
    let boot: BootSpec = {
        let text = fs::read(staging.join(BOOT)).map_err(|e| format!("read boot spec: {e}"))?;
        serde_json::from_slice(&text).map_err(|e| format!("parse boot spec: {e}"))?
    };
    // Die with the service: a killed service must not leave a sandbox running past its deadline.
    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
        .map_err(|e| format!("pdeathsig: {e}"))?;
    // Join the run's cgroup first: everything from here on is limited and accounted, and the
    // cost of joining is paid before a run waits on this sandbox.
    for p in &boot.cgroup_procs {
        fs::write(p, "0").map_err(|e| format!("join cgroup {p}: {e}"))?;
    }
    // The OOM killer should pick the program, never the sandbox's own init.
    let _ = fs::write("/proc/self/oom_score_adj", "-1000");

    // Everything PID 1 needs from the host is opened now, close-on-exec.
    let staging_fd: OwnedFd = File::open(staging)
        .map_err(|e| format!("open staging dir: {e}"))?
        .into();
    let filters = seccomp::compile()?;

    let (host_uid, host_gid) = (nix::unistd::getuid(), nix::unistd::getgid());
    let mut flags = CloneFlags::CLONE_NEWNS
        | CloneFlags::CLONE_NEWPID
        | CloneFlags::CLONE_NEWNET
        | CloneFlags::CLONE_NEWIPC
        | CloneFlags::CLONE_NEWUTS;
    if boot.user_namespace {
        flags |= CloneFlags::CLONE_NEWUSER;
    }
    unshare(flags).map_err(|e| format!("unshare: {e}"))?;
    if boot.user_namespace {
        map_ids(host_uid, host_gid)?;
    }
    // PID 1 watches the read end: it hangs up when the helper is gone (the PDEATHSIG race).
    let (alive_r, alive_w) =
        nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| format!("pipe: {e}"))?;

    // SAFETY: the helper is single-threaded (it runs before any runtime or thread is started),
    // so the child may allocate and use the whole std library after fork.
    match unsafe { fork() }.map_err(|e| format!("fork: {e}"))? {
        ForkResult::Parent { child } => {
            drop(alive_r);
            let _keep = alive_w;
            loop {
                match waitpid(child, None) {
                    Ok(WaitStatus::Exited(_, c)) => return Ok(c),
                    Ok(WaitStatus::Signaled(..)) => return Ok(137),
                    Ok(_) => continue,
                    Err(nix::errno::Errno::EINTR) => continue,
                    Err(e) => return Err(format!("wait for sandbox init: {e}")),
                }
            }
        }
        ForkResult::Child => {
            drop(alive_w);
            let code = pid1(staging, &boot, staging_fd, &filters, alive_r);
            std::process::exit(code)
        }
    }
}

/// PID 1 of the sandbox: build the root, wait for the run, start the program, reap until it
/// ends, report.
fn pid1(
    staging: &Path,
    boot: &BootSpec,
    staging_fd: OwnedFd,
    filters: &[seccompiler::BpfProgram],
    helper_alive: OwnedFd,
) -> i32 {
    let report = |r: SandboxReport| write_report(&staging_fd, &r);
    let fail = |e: String| {
        report(SandboxReport {
            setup_error: Some(e),
            ..Default::default()
        });
        125
    };
    if let Err(e) = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL) {
        return fail(format!("pdeathsig: {e}"));
    }
    {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        let mut fds = [PollFd::new(helper_alive.as_fd(), PollFlags::POLLIN)];
        if poll(&mut fds, PollTimeout::ZERO)
            .map(|n| n > 0)
            .unwrap_or(true)
        {
            return fail("the helper died during setup".into());
        }
        drop(helper_alive);
    }
    if let Err(e) = nix::unistd::sethostname(&boot.hostname) {
        return fail(format!("sethostname: {e}"));
    }
    if let Err(e) = loopback_up() {
        return fail(e);
    }
    if let Err(e) = super::mounts::build_root(staging, boot) {
        return fail(e);
    }
    if let Some(sup) = &boot.supervisor {
        // A persistent sandbox: its uid is known now, and PID 1 becomes its supervisor.
        if let Err(e) = super::mounts::set_identity_of(sup.uid, sup.gid, boot) {
            return fail(e);
        }
        drop(staging_fd);
        crate::supervisor::server::serve(crate::supervisor::server::ServeConfig {
            socket: PathBuf::from(super::spec::SUPERVISOR_RUN).join(super::spec::SUPERVISOR_SOCKET),
            work: PathBuf::from("/work"),
            uid: sup.uid,
            gid: sup.gid,
            path: boot.path.clone(),
            user_namespace: boot.user_namespace,
        });
    }

    // Ready: wait for the run (a warm sandbox may wait here a long time).
    let run: RunSpec = {
        let mut text = Vec::new();
        if let Err(e) = std::io::Read::read_to_end(&mut std::io::stdin(), &mut text) {
            return fail(format!("read run spec: {e}"));
        }
        match serde_json::from_slice(&text) {
            Ok(r) => r,
            Err(e) => return fail(format!("parse run spec: {e}")),
        }
    };
    if let Err(e) = super::mounts::resize_work(&run) {
        return fail(e);
    }
    if let Err(e) = super::mounts::set_identity(&run, boot) {
        return fail(e);
    }
    if let Err(e) = super::mounts::write_files(&run, boot) {
        return fail(e);
    }
    let stdin_fd: OwnedFd = match openat(
        Some(staging_fd.as_raw_fd()),
        STDIN,
        OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW,
        Mode::empty(),
    ) {
        // SAFETY: openat returned a fresh descriptor we now own.
        Ok(fd) => unsafe { OwnedFd::from_raw_fd(fd) },
        Err(e) => return fail(format!("open the program's stdin: {e}")),
    };
    let argv = match to_cstrings(&run.argv) {
        Ok(a) if !a.is_empty() => a,
        Ok(_) => return fail("empty argv".into()),
        Err(e) => return fail(e),
    };
    let envp = match to_cstrings(
        &run.env
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>(),
    ) {
        Ok(e) => e,
        Err(e) => return fail(e),
    };

    let started = Instant::now();
    // SAFETY: still single-threaded; see above.
    let program = match unsafe { fork() } {
        Err(e) => return fail(format!("fork program: {e}")),
        Ok(ForkResult::Child) => exec_program(boot, &run, stdin_fd, filters, &argv, &envp),
        Ok(ForkResult::Parent { child }) => child,
    };
    drop(stdin_fd);

    // Reap everything; the run ends when the program itself ends.
    let status = loop {
        match waitpid(Pid::from_raw(-1), None) {
            Ok(WaitStatus::Exited(pid, code)) if pid == program => break (Some(code), None),
            Ok(WaitStatus::Signaled(pid, sig, _)) if pid == program => {
                break (None, Some(sig as i32))
            }
            Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return fail(format!("wait for program: {e}")),
        }
    };
    let wall_time_ms = started.elapsed().as_millis() as u64;
    let usage = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN).ok();
    let cpu_time_ms = usage
        .map(|u| {
            let t = |tv: nix::sys::time::TimeVal| {
                tv.tv_sec() as u64 * 1000 + tv.tv_usec() as u64 / 1000
            };
            t(u.user_time()) + t(u.system_time())
        })
        .unwrap_or(0);
    let max_rss_bytes = usage.map(|u| u.max_rss() as u64 * 1024).unwrap_or(0);
    let collected = match &run.collect {
        Some(name) => collect(&staging_fd, name, run.disk_bytes),
        None => false,
    };
    report(SandboxReport {
        setup_error: None,
        exit_code: status.0,
        signal: status.1,
        wall_time_ms,
        cpu_time_ms,
        max_rss_bytes,
        collected,
    });
    0
}

/// The program's side of the last fork: join the cgroup, drop to the sandbox identity, lock
/// down, exec. Never returns.
fn exec_program(
    boot: &BootSpec,
    run: &RunSpec,
    stdin_fd: OwnedFd,
    filters: &[seccompiler::BpfProgram],
    argv: &[CString],
    envp: &[CString],
) -> ! {
    let die = |what: &str, e: &dyn std::fmt::Display| -> ! {
        let _ = writeln!(std::io::stderr(), "execbox: {what}: {e}");
        // SAFETY: _exit is always safe; it skips destructors that belong to PID 1.
        unsafe { libc::_exit(126) }
    };
    if let Err(e) = setsid() {
        die("setsid", &e);
    }
    if let Err(e) = dup2(stdin_fd.as_raw_fd(), 0) {
        die("stdin", &e);
    }
    let cpu_secs = run.cpu_time_ms.div_ceil(1000).max(1);
    let limits = [
        (Resource::RLIMIT_CORE, 0, 0),
        (Resource::RLIMIT_FSIZE, run.disk_bytes, run.disk_bytes),
        (Resource::RLIMIT_NOFILE, run.open_files, run.open_files),
        (Resource::RLIMIT_CPU, cpu_secs, cpu_secs + 1),
    ];
    for (res, soft, hard) in limits {
        if let Err(e) = setrlimit(res, soft, hard) {
            die("setrlimit", &e);
        }
    }
    // The program is not init's favourite: the OOM killer takes it first.
    let _ = fs::write("/proc/self/oom_score_adj", "0");
    if !boot.user_namespace {
        let (uid, gid) = (Uid::from_raw(run.uid), Gid::from_raw(run.gid));
        if let Err(e) = nix::unistd::setgroups(&[]) {
            die("setgroups", &e);
        }
        if let Err(e) = setresgid(gid, gid, gid) {
            die("setgid", &e);
        }
        if let Err(e) = setresuid(uid, uid, uid) {
            die("setuid", &e);
        }
    }
    if let Err(e) = nix::sys::prctl::set_no_new_privs() {
        die("no_new_privs", &e);
    }
    close_fds_from(3);
    if let Err(e) = seccomp::install(filters) {
        die("seccomp", &e);
    }
    let program = resolve(&argv[0], boot);
    let e = nix::unistd::execve(&program, argv, envp).unwrap_err();
    die(&format!("cannot run {}", argv[0].to_string_lossy()), &e)
}

/// A bare command name is looked up on the runtime table's PATH, as a shell would; a request's
/// own `PATH` applies to what the program runs, not to which interpreter runs it.
fn resolve(name: &CString, boot: &BootSpec) -> CString {
    let bytes = name.as_bytes();
    if bytes.contains(&b'/') {
        return name.clone();
    }
    for dir in boot.path.split(':').filter(|d| !d.is_empty()) {
        let candidate = format!("{dir}/{}", name.to_string_lossy());
        if nix::unistd::access(candidate.as_str(), nix::unistd::AccessFlags::X_OK).is_ok() {
            if let Ok(c) = CString::new(candidate) {
                return c;
            }
        }
    }
    name.clone()
}

/// Copy `/work/<name>` to `<staging>/out/<name>`: no symlinks followed, regular files only,
/// at most `max` bytes (the program may have replaced the artifact with anything).
fn collect(staging_fd: &OwnedFd, name: &str, max: u64) -> bool {
    let Ok(src) = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(PathBuf::from("/work").join(name))
    else {
        return false;
    };
    match src.metadata() {
        Ok(m) if m.is_file() && m.len() <= max => {}
        _ => return false,
    }
    // Made only when a step collects something, through the real staging dir's descriptor.
    let _ = nix::sys::stat::mkdirat(
        Some(staging_fd.as_raw_fd()),
        OUT,
        Mode::from_bits_truncate(0o700),
    );
    let out = format!("{OUT}/{name}");
    let Ok(fd) = openat(
        Some(staging_fd.as_raw_fd()),
        out.as_str(),
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o755),
    ) else {
        return false;
    };
    // SAFETY: openat returned a fresh descriptor we now own.
    let mut dst = unsafe { File::from_raw_fd(fd) };
    std::io::copy(&mut std::io::Read::take(&src, max), &mut dst).is_ok()
}

fn write_report(staging_fd: &OwnedFd, report: &SandboxReport) {
    let Ok(fd) = openat(
        Some(staging_fd.as_raw_fd()),
        REPORT,
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_TRUNC | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o600),
    ) else {
        return;
    };
    // SAFETY: openat returned a fresh descriptor we now own.
    let mut f = unsafe { File::from_raw_fd(fd) };
    let _ = f.write_all(&serde_json::to_vec(report).unwrap_or_default());
}

fn write_report_path(staging: &Path, report: &SandboxReport) {
    let _ = fs::write(
        staging.join(REPORT),
        serde_json::to_vec(report).unwrap_or_default(),
    );
}

fn to_cstrings(items: &[String]) -> Result<Vec<CString>, String> {
    items
        .iter()
        .map(|s| CString::new(s.as_bytes()).map_err(|_| format!("NUL byte in {s:?}")))
        .collect()
}

/// Map the service's uid/gid to 0 inside a new user namespace (non-root service).
fn map_ids(uid: Uid, gid: Gid) -> Result<(), String> {
    fs::write("/proc/self/setgroups", "deny").map_err(|e| format!("setgroups deny: {e}"))?;
    fs::write("/proc/self/uid_map", format!("0 {uid} 1")).map_err(|e| format!("uid_map: {e}"))?;
    fs::write("/proc/self/gid_map", format!("0 {gid} 1")).map_err(|e| format!("gid_map: {e}"))?;
    Ok(())
}

/// Bring up `lo` in the new network namespace: the program may talk to itself, nothing else.
fn loopback_up() -> Result<(), String> {
    // SAFETY: plain socket/ioctl calls on a zeroed ifreq whose name is set to "lo"; the socket is
    // owned by OwnedFd and closed on return.
    unsafe {
        let sock = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if sock < 0 {
            return Err(format!("socket: {}", std::io::Error::last_os_error()));
        }
        let sock = OwnedFd::from_raw_fd(sock);
        let mut req: libc::ifreq = std::mem::zeroed();
        for (i, b) in b"lo".iter().enumerate() {
            req.ifr_name[i] = *b as libc::c_char;
        }
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) < 0 {
            return Err(format!("get lo flags: {}", std::io::Error::last_os_error()));
        }
        req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) < 0 {
            return Err(format!("set lo up: {}", std::io::Error::last_os_error()));
        }
    }
    Ok(())
}

fn close_fds_from(first: RawFd) {
    // SAFETY: close_range only closes descriptors; none above 2 is used after this point.
    unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first as libc::c_uint,
            libc::c_uint::MAX,
            0 as libc::c_uint,
        );
    }
}
