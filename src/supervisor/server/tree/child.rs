//! The children's side of a tree, from the clone to `execve`: the init and the program.
//!
//! Nothing here allocates or takes a lock: it runs on memory the parent prepared before the
//! clone ([`Plumbing`]) and on a [`Launch`], which is plain pointers and numbers so that it can
//! also arrive after the clone, written by the supervisor into memory it shares with a warm
//! init (`warm.rs`).

use std::ffi::CString;
use std::os::fd::RawFd;

use libc::c_char;

/// The most rlimits a program gets (core, file size, open files, CPU).
pub const MAX_RLIMITS: usize = 4;

#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct Rlimit {
    pub resource: libc::__rlimit_resource_t,
    pub soft: u64,
    pub hard: u64,
}

/// The program an init starts. Every pointer points at memory the init can read: the parent's,
/// copied with the clone, or the region it shares with a warm init.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct Launch {
    pub program: *const c_char,
    /// NULL-terminated.
    pub argv: *const *const c_char,
    /// NULL-terminated.
    pub envp: *const *const c_char,
    pub cwd: *const c_char,
    pub rlimits: [Rlimit; MAX_RLIMITS],
    pub n_rlimits: usize,
}

/// Where an init finds its program.
pub enum Source {
    /// Known at the clone.
    Now(Launch),
    /// A warm init: it waits for one byte on `go`, then reads the `Launch` at `at`.
    Later { go: RawFd, at: *const Launch },
}

/// The descriptors, identity and lockdown of a tree, prepared by the parent before the clone.
pub struct Plumbing {
    /// (source, target) for the program; sources are above every target; -1 is /dev/null.
    pub fds: Vec<(RawFd, RawFd)>,
    pub max_target: RawFd,
    pub cgroup_fds: Vec<RawFd>,
    pub report_w: RawFd,
    pub uid: Option<(u32, u32)>,
    pub filters: Vec<libc::sock_fprog>,
    pub dev_null: CString,
    pub oom_adj: CString,
    pub root: CString,
    pub proc_name: CString,
    pub proc_dir: CString,
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

/// fork(2) by the raw system call: the child returns 0 on a copy of the parent's stack.
pub fn raw_clone(flags: libc::c_int) -> i32 {
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

/// The tree's init. Never returns.
///
/// # Safety
/// Only in the child of `raw_clone`, with `p` and `source` prepared by the parent.
pub unsafe fn init(p: &Plumbing, source: &Source, namespaced: bool, own_proc: bool) -> ! {
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
    // The join is the slow part on cgroup v1 (the attach lock's RCU grace period): a warm init
    // has done it before its call arrives.
    for fd in &p.cgroup_fds {
        if libc::write(*fd, b"0".as_ptr().cast(), 1) != 1 {
            fail(p, b"execbox: cannot join the call's cgroup\n");
        }
    }
    let launch = match source {
        Source::Now(l) => *l,
        Source::Later { go, at } => {
            let mut byte = 0u8;
            loop {
                let n = libc::read(*go, (&mut byte as *mut u8).cast(), 1);
                if n == 1 {
                    break;
                }
                if n < 0 && *libc::__errno_location() == libc::EINTR {
                    continue;
                }
                // The supervisor dropped this warm init unused.
                libc::_exit(0);
            }
            std::ptr::read_volatile(*at)
        }
    };
    let child = raw_clone(0);
    if child < 0 {
        fail(p, b"execbox: cannot fork the program\n");
    }
    if child == 0 {
        program(p, &launch);
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

unsafe fn fail(p: &Plumbing, msg: &[u8]) -> ! {
    for (src, target) in &p.fds {
        if *target == 2 {
            libc::write(*src, msg.as_ptr().cast(), msg.len());
        }
    }
    libc::_exit(126)
}

/// The program's side: descriptors, limits, identity, lockdown, exec. Never returns.
unsafe fn program(p: &Plumbing, l: &Launch) -> ! {
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
    if libc::chdir(l.cwd) != 0 {
        die(b"execbox: cannot enter the working directory\n");
    }
    for r in &l.rlimits[..l.n_rlimits.min(MAX_RLIMITS)] {
        let rl = libc::rlimit {
            rlim_cur: r.soft,
            rlim_max: r.hard,
        };
        if libc::setrlimit(r.resource, &rl) != 0 {
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
    libc::execve(l.program, l.argv, l.envp);
    let msg = b"execbox: cannot run the program\n";
    libc::write(2, msg.as_ptr().cast(), msg.len());
    libc::_exit(127)
}
