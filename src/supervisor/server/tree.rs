//! Process trees: every program the supervisor starts (a call's step, a context's interpreter, a
//! background process) runs as the init of a PID namespace of its own, so killing that init
//! kills everything the program ever started, however it forked, detached or renamed itself.
//!
//! ```text
//! supervisor
//!  └─ init (PID 1 of a new pid ns)   joins the call's cgroups, forks the program, reaps all;
//!      └─ program                    when the program ends, kills the rest and reports
//! ```
//!
//! The children are made with the raw `clone` system call (no glibc `fork`: its atfork handlers
//! and the set-id broadcast to other threads assume the parent's threads exist), and everything
//! they do before `execve` is a plain system call on memory prepared by the parent: no
//! allocation, no lock. The init reports the program's status through a pipe; the supervisor
//! reaps the init with `wait4`, whose rusage covers every process of the tree the init reaped.
//! Where a new pid namespace cannot be made (no CAP_SYS_ADMIN), the init is a plain child and
//! the program's session is the tree: `kill` then signals the session's process group.

use std::collections::HashMap;
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::sync::Mutex;

use tokio::net::unix::pipe;
use tokio::sync::oneshot;

use super::Shared;
use crate::supervisor::proto::ProcLimits;

pub struct TreeSpec {
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub cwd: PathBuf,
    pub limits: ProcLimits,
    /// `cgroup.procs` files the init joins before it forks the program.
    pub cgroup_fds: Vec<OwnedFd>,
    /// Descriptors dup'ed into the program at these numbers (above 2).
    pub extra_fds: Vec<(OwnedFd, RawFd)>,
    /// A pipe for the program's stdin; else /dev/null.
    pub stdin: bool,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct TreeExit {
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub cpu_time_ms: u64,
    pub max_rss_bytes: u64,
}

pub struct Tree {
    /// The init's pid, in the supervisor's namespace.
    pub pid: i32,
    pub stdin: Option<pipe::Sender>,
    /// Taken by whoever drains them (so they can be read while the tree is waited for).
    pub stdout: Option<pipe::Receiver>,
    pub stderr: Option<pipe::Receiver>,
    /// Whether the tree is a pid namespace (else a session).
    pub namespaced: bool,
    exit: Option<oneshot::Receiver<Reaped>>,
    report: Option<OwnedFd>,
    done: Option<TreeExit>,
}

impl Tree {
    /// Wait for the tree's init to end (the program ended and its tree is gone, or `kill`).
    pub async fn wait(&mut self) -> TreeExit {
        if let Some(done) = self.done {
            return done;
        }
        // Cancel-safe: the receiver stays in place until it has answered.
        let reaped = match &mut self.exit {
            Some(rx) => rx.await.unwrap_or_default(),
            None => Reaped::default(),
        };
        self.exit = None;
        let mut exit = TreeExit {
            cpu_time_ms: reaped.cpu_time_ms,
            max_rss_bytes: reaped.max_rss_bytes,
            ..Default::default()
        };
        // The init's report: 8 bytes, kind (0 exited, 1 signalled) and value.
        let mut buf = [0u8; 8];
        let n = match &self.report {
            // SAFETY: reading into a buffer we own from a descriptor we own.
            Some(fd) => unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), 8) },
            None => -1,
        };
        if n == 8 {
            let kind = i32::from_ne_bytes(buf[..4].try_into().unwrap());
            let value = i32::from_ne_bytes(buf[4..].try_into().unwrap());
            if kind == 0 {
                exit.exit_code = Some(value);
            } else {
                exit.signal = Some(value);
            }
        } else {
            // The init was killed before the program ended (a kill of the tree).
            exit.signal = Some(libc::SIGKILL);
        }
        self.report = None;
        self.done = Some(exit);
        exit
    }

    /// SIGKILL the whole tree.
    pub fn kill(&self) {
        if self.done.is_some() {
            return;
        }
        if self.namespaced {
            // SAFETY: kill(2) on the pid of our own unreaped child: the kernel then kills every
            // process of its pid namespace.
            unsafe { libc::kill(self.pid, libc::SIGKILL) };
        } else {
            // SAFETY: kill(2) on our own unreaped child: its SIGTERM handler SIGKILLs the
            // program's session, then it reaps the program and ends.
            unsafe { libc::kill(self.pid, libc::SIGTERM) };
        }
    }

    /// SIGINT to the program's process group (a terminal's Ctrl-C), through the init.
    pub fn interrupt(&self) {
        if self.done.is_none() {
            // SAFETY: kill(2) on our own unreaped child, which forwards SIGINT to the program.
            unsafe { libc::kill(self.pid, libc::SIGINT) };
        }
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        // A tree nobody waits for any more (a cancelled call) must not outlive its owner.
        if self.done.is_none() {
            self.kill();
        }
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Reaped {
    cpu_time_ms: u64,
    max_rss_bytes: u64,
}

/// The supervisor's children by pid; the SIGCHLD task reaps every child (orphans too, when the
/// supervisor is a pid namespace's init) and hands the trees' inits their rusage.
#[derive(Default)]
pub struct Reaper {
    waiting: Mutex<HashMap<i32, oneshot::Sender<Reaped>>>,
}

impl Reaper {
    /// Reap everything that has ended. Called on every SIGCHLD.
    pub fn reap(&self) {
        loop {
            let mut status = 0;
            // SAFETY: a zeroed rusage is a valid out-parameter.
            let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
            // SAFETY: wait4 with valid pointers to locals.
            let pid = unsafe { libc::wait4(-1, &mut status, libc::WNOHANG, &mut ru) };
            if pid <= 0 {
                return;
            }
            let tv = |t: libc::timeval| t.tv_sec as u64 * 1000 + t.tv_usec as u64 / 1000;
            let reaped = Reaped {
                cpu_time_ms: tv(ru.ru_utime) + tv(ru.ru_stime),
                max_rss_bytes: ru.ru_maxrss as u64 * 1024,
            };
            if let Some(tx) = self.waiting.lock().unwrap().remove(&pid) {
                let _ = tx.send(reaped);
            }
        }
    }
}

/// Everything the children need, prepared before the clone (they may not allocate).
struct Prepared {
    program: CString,
    argv: Vec<CString>,
    argv_ptrs: Vec<*const libc::c_char>,
    envp: Vec<CString>,
    envp_ptrs: Vec<*const libc::c_char>,
    cwd: CString,
    /// (source, target) for the program; sources are above every target.
    fds: Vec<(RawFd, RawFd)>,
    max_target: RawFd,
    cgroup_fds: Vec<RawFd>,
    report_w: RawFd,
    rlimits: Vec<(libc::__rlimit_resource_t, u64, u64)>,
    uid: Option<(u32, u32)>,
    filters: Vec<libc::sock_fprog>,
    dev_null: CString,
    oom_adj: CString,
    root: CString,
    proc_name: CString,
    proc_dir: CString,
}

/// Start a tree. Must be called on the supervisor's runtime thread (the reaper is its task).
pub fn spawn_tree(sup: &Shared, spec: TreeSpec) -> io::Result<Tree> {
    let cfg = &sup.cfg;
    let cstr = |s: &str| {
        CString::new(s).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in a string"))
    };
    if spec.argv.is_empty() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "empty argv"));
    }
    let argv: Vec<CString> = spec
        .argv
        .iter()
        .map(|a| cstr(a))
        .collect::<Result<_, _>>()?;
    let envp: Vec<CString> = spec
        .env
        .iter()
        .map(|(k, v)| cstr(&format!("{k}={v}")))
        .collect::<Result<_, _>>()?;
    let program = resolve(&spec.argv[0], &cfg.path)?;

    let (stdin_r, stdin_w) = if spec.stdin {
        let (r, w) = pipe_pair()?;
        (Some(r), Some(w))
    } else {
        (None, None)
    };
    let (out_r, out_w) = pipe_pair()?;
    let (err_r, err_w) = pipe_pair()?;
    let (report_r, report_w) = pipe_pair()?;

    // The program's descriptors are moved above every target first (dup'ed by the kernel to
    // the lowest free number >= FLOOR), so the dup2s in the child never clobber a source.
    const FLOOR: RawFd = 1000;
    let mut keep: Vec<OwnedFd> = Vec::new();
    let mut high = |fd: &OwnedFd| -> io::Result<RawFd> {
        // SAFETY: F_DUPFD_CLOEXEC on a descriptor we own returns a new one we then own.
        let n = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, FLOOR) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: n is a fresh descriptor.
        keep.push(unsafe { OwnedFd::from_raw_fd(n) });
        Ok(n)
    };
    let mut fds = Vec::new();
    match &stdin_r {
        Some(r) => fds.push((high(r)?, 0)),
        None => fds.push((-1, 0)),
    }
    fds.push((high(&out_w)?, 1));
    fds.push((high(&err_w)?, 2));
    for (fd, target) in &spec.extra_fds {
        fds.push((high(fd)?, *target));
    }
    let max_target = fds.iter().map(|(_, t)| *t).max().unwrap_or(2);
    let mut cgroup_fds = Vec::new();
    for fd in &spec.cgroup_fds {
        cgroup_fds.push(high(fd)?);
    }
    let report_w_high = high(&report_w)?;

    let l = &spec.limits;
    let cpu_secs = l.cpu_time_ms.div_ceil(1000).max(1);
    let mut rlimits = vec![(libc::RLIMIT_CORE, 0, 0)];
    if l.file_bytes > 0 {
        rlimits.push((libc::RLIMIT_FSIZE, l.file_bytes, l.file_bytes));
    }
    if l.open_files > 0 {
        rlimits.push((libc::RLIMIT_NOFILE, l.open_files, l.open_files));
    }
    if l.cpu_time_ms > 0 {
        rlimits.push((libc::RLIMIT_CPU, cpu_secs, cpu_secs + 1));
    }
    let filters: Vec<libc::sock_fprog> = sup
        .filters
        .iter()
        .map(|f| libc::sock_fprog {
            len: f.len() as u16,
            filter: f.as_ptr() as *mut libc::sock_filter,
        })
        .collect();
    let mut p = Prepared {
        program,
        argv_ptrs: Vec::new(),
        argv,
        envp_ptrs: Vec::new(),
        envp,
        cwd: CString::new(spec.cwd.as_os_str().as_encoded_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in cwd"))?,
        fds,
        max_target,
        cgroup_fds,
        report_w: report_w_high,
        rlimits,
        uid: (!cfg.user_namespace).then_some((cfg.uid, cfg.gid)),
        filters,
        dev_null: CString::new("/dev/null").unwrap(),
        oom_adj: CString::new("/proc/self/oom_score_adj").unwrap(),
        root: CString::new("/").unwrap(),
        proc_name: CString::new("proc").unwrap(),
        proc_dir: CString::new("/proc").unwrap(),
    };
    p.argv_ptrs = p.argv.iter().map(|a| a.as_ptr()).collect();
    p.argv_ptrs.push(std::ptr::null());
    p.envp_ptrs = p.envp.iter().map(|a| a.as_ptr()).collect();
    p.envp_ptrs.push(std::ptr::null());

    let (tx, rx) = oneshot::channel();
    // A pid namespace, and a mount namespace for the tree's own /proc (which then shows the
    // tree alone); each dropped in turn where this supervisor may not make it.
    let mut namespaced = sup.pid_namespaces;
    let mut own_proc = namespaced;
    let mut pid = -1;
    if namespaced {
        pid = raw_clone(libc::CLONE_NEWPID | libc::CLONE_NEWNS);
        if pid < 0 {
            own_proc = false;
            pid = raw_clone(libc::CLONE_NEWPID);
        }
    }
    if pid < 0 {
        namespaced = false;
        pid = raw_clone(0);
    }
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    if pid == 0 {
        // SAFETY: the child of a raw clone: `init` only makes system calls on `p`.
        unsafe { init(&p, namespaced, own_proc) }
    }
    // Registered before the next await, so the reaper (a task on this same thread) sees it.
    sup.reaper.waiting.lock().unwrap().insert(pid, tx);
    drop(keep);
    drop((stdin_r, out_w, err_w, report_w));
    let stdin = match stdin_w {
        Some(w) => Some(pipe::Sender::from_owned_fd(w)?),
        None => None,
    };
    Ok(Tree {
        pid,
        stdin,
        stdout: Some(pipe::Receiver::from_owned_fd(out_r)?),
        stderr: Some(pipe::Receiver::from_owned_fd(err_r)?),
        namespaced,
        exit: Some(rx),
        report: Some(report_r),
        done: None,
    })
}

fn pipe_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(io::Error::from)?;
    Ok((r, w))
}

/// fork(2) by the raw system call: the child returns 0 on a copy of the parent's stack.
fn raw_clone(flags: libc::c_int) -> i32 {
    // SAFETY: clone with no new stack behaves as fork; the child only runs `init`.
    unsafe {
        libc::syscall(
            libc::SYS_clone,
            (flags | libc::SIGCHLD) as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        ) as i32
    }
}

/// The program's pid as the init sees it, for the signal forwarders.
static PROGRAM: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

/// In the init: SIGINT goes on to the program's session as is, SIGTERM as SIGKILL.
extern "C" fn forward(sig: libc::c_int) {
    let p = PROGRAM.load(std::sync::atomic::Ordering::SeqCst);
    let sig = if sig == libc::SIGTERM {
        libc::SIGKILL
    } else {
        sig
    };
    if p > 0 {
        // SAFETY: kill(2) is async-signal-safe; the program leads its own process group.
        unsafe { libc::kill(-p, sig) };
    }
}

/// The tree's init. Never returns.
///
/// # Safety
/// Only in the child of `raw_clone`, with `p` prepared by the parent.
unsafe fn init(p: &Prepared, namespaced: bool, own_proc: bool) -> ! {
    // Signal dispositions are the supervisor's (its runtime's SIGCHLD handler writes to a
    // descriptor of the parent's): back to the defaults, then forward SIGINT and SIGTERM.
    // The tree never outlives its supervisor (as the sandbox's init, its death ends the
    // sandbox anyway); dying, this init takes its pid namespace along.
    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
    for sig in 1..=64 {
        if sig != libc::SIGKILL && sig != libc::SIGSTOP {
            libc::signal(sig, libc::SIG_DFL);
        }
    }
    if own_proc {
        // Nothing mounted here propagates out; the fresh /proc shows this pid namespace only.
        // Where it cannot be mounted the sandbox's own /proc stays (it shows the sandbox).
        libc::mount(
            std::ptr::null(),
            p.root.as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        );
        libc::mount(
            p.proc_name.as_ptr(),
            p.proc_dir.as_ptr(),
            p.proc_name.as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            std::ptr::null(),
        );
    }
    for fd in &p.cgroup_fds {
        if libc::write(*fd, b"0".as_ptr().cast(), 1) != 1 {
            fail(p, b"execbox: cannot join the call's cgroup\n");
        }
    }
    let child = raw_clone(0);
    if child < 0 {
        fail(p, b"execbox: cannot fork the program\n");
    }
    if child == 0 {
        program(p);
    }
    PROGRAM.store(child, std::sync::atomic::Ordering::SeqCst);
    libc::signal(libc::SIGINT, forward as *const () as usize);
    libc::signal(libc::SIGTERM, forward as *const () as usize);
    // The init keeps only its report pipe.
    libc::syscall(libc::SYS_close_range, 0u32, (p.report_w - 1) as u32, 0u32);
    libc::syscall(
        libc::SYS_close_range,
        (p.report_w + 1) as u32,
        u32::MAX,
        0u32,
    );
    let mut report: (i32, i32) = (1, libc::SIGKILL);
    loop {
        let mut status = 0;
        let pid = libc::waitpid(-1, &mut status, 0);
        if pid < 0 {
            if *libc::__errno_location() == libc::EINTR {
                continue;
            }
            break; // ECHILD: everything is reaped
        }
        if pid == child {
            report = if libc::WIFEXITED(status) {
                (0, libc::WEXITSTATUS(status))
            } else {
                (1, libc::WTERMSIG(status))
            };
            // The program is done: nothing it started may outlive it.
            if namespaced {
                libc::kill(-1, libc::SIGKILL);
            } else {
                libc::kill(-child, libc::SIGKILL);
            }
        }
    }
    let mut buf = [0u8; 8];
    buf[..4].copy_from_slice(&report.0.to_ne_bytes());
    buf[4..].copy_from_slice(&report.1.to_ne_bytes());
    libc::write(p.report_w, buf.as_ptr().cast(), 8);
    libc::_exit(0)
}

unsafe fn fail(p: &Prepared, msg: &[u8]) -> ! {
    for (src, target) in &p.fds {
        if *target == 2 {
            libc::write(*src, msg.as_ptr().cast(), msg.len());
        }
    }
    libc::_exit(126)
}

/// The program's side: descriptors, limits, identity, lockdown, exec. Never returns.
unsafe fn program(p: &Prepared) -> ! {
    let die = |msg: &[u8]| -> ! {
        libc::write(2, msg.as_ptr().cast(), msg.len());
        libc::_exit(126)
    };
    libc::setsid();
    for (src, target) in &p.fds {
        if *src < 0 {
            let fd = libc::open(p.dev_null.as_ptr(), libc::O_RDONLY);
            if fd >= 0 && fd != *target {
                libc::dup2(fd, *target);
                libc::close(fd);
            }
        } else if libc::dup2(*src, *target) < 0 {
            libc::_exit(126);
        }
    }
    libc::syscall(
        libc::SYS_close_range,
        (p.max_target + 1) as u32,
        u32::MAX,
        0u32,
    );
    if libc::chdir(p.cwd.as_ptr()) != 0 {
        die(b"execbox: cannot enter the working directory\n");
    }
    for (res, soft, hard) in &p.rlimits {
        let rl = libc::rlimit {
            rlim_cur: *soft,
            rlim_max: *hard,
        };
        if libc::setrlimit(*res, &rl) != 0 {
            die(b"execbox: setrlimit failed\n");
        }
    }
    // The program, not the supervisor, is the OOM killer's first choice.
    let fd = libc::open(p.oom_adj.as_ptr(), libc::O_WRONLY);
    if fd >= 0 {
        libc::write(fd, b"0".as_ptr().cast(), 1);
        libc::close(fd);
    }
    if let Some((uid, gid)) = p.uid {
        // Raw system calls: glibc's wrappers would broadcast to threads this child lacks.
        if libc::syscall(libc::SYS_setgroups, 0usize, std::ptr::null::<libc::gid_t>()) != 0
            || libc::syscall(libc::SYS_setresgid, gid, gid, gid) != 0
            || libc::syscall(libc::SYS_setresuid, uid, uid, uid) != 0
        {
            die(b"execbox: cannot drop to the sandbox user\n");
        }
    }
    if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
        die(b"execbox: no_new_privs failed\n");
    }
    for f in &p.filters {
        if libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            0,
            f as *const libc::sock_fprog,
        ) != 0
        {
            die(b"execbox: seccomp failed\n");
        }
    }
    libc::execve(
        p.program.as_ptr(),
        p.argv_ptrs.as_ptr(),
        p.envp_ptrs.as_ptr(),
    );
    let msg = b"execbox: cannot run the program\n";
    libc::write(2, msg.as_ptr().cast(), msg.len());
    libc::_exit(127)
}

/// A bare command name is looked up on the sandbox's PATH, as a shell would.
fn resolve(name: &str, path: &str) -> io::Result<CString> {
    let to_c = |s: &str| {
        CString::new(s).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in argv"))
    };
    if name.contains('/') {
        return to_c(name);
    }
    for dir in path.split(':').filter(|d| !d.is_empty()) {
        let candidate = format!("{dir}/{name}");
        if nix::unistd::access(candidate.as_str(), nix::unistd::AccessFlags::X_OK).is_ok() {
            return to_c(&candidate);
        }
    }
    to_c(name)
}
