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
//!
//! A call's tree can also be made ahead of its call (`warm.rs`): the init is cloned, mounts its
//! /proc and joins the next call's cgroups, then waits for its program, which then costs the
//! call one pipe write.
//!
//! `child.rs` is the children's side, `warm.rs` the trees made ahead.

mod child;
mod warm;

use std::collections::HashMap;
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use tokio::net::unix::pipe;
use tokio::sync::oneshot;

use super::Shared;
use crate::supervisor::proto::ProcLimits;
use child::{init, raw_clone, Launch, Plumbing, Rlimit, Source, MAX_RLIMITS};
pub use warm::Warm;

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
        if self.done.is_some() {
            return;
        }
        // An init already reaped (killed from outside: a tree made ahead whose cgroup was
        // removed) has a pid the kernel may have given to another process. The reaper runs on
        // this same thread, so an init not reaped yet cannot be reaped before the kill below.
        if let Some(rx) = &mut self.exit {
            if rx.try_recv().is_ok() {
                return;
            }
        }
        self.kill();
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

/// A program to start, owned: its strings, and the limits as rlimits.
pub struct Program {
    path: CString,
    argv: Vec<CString>,
    envp: Vec<CString>,
    cwd: CString,
    /// The first `n_rlimits` hold.
    rlimits: [Rlimit; MAX_RLIMITS],
    n_rlimits: usize,
}

impl Program {
    pub fn new(
        sup: &Shared,
        argv: &[String],
        env: &[(String, String)],
        cwd: &Path,
        l: &ProcLimits,
    ) -> io::Result<Program> {
        let cstr = |s: &[u8]| {
            CString::new(s)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in a string"))
        };
        let Some(first) = argv.first() else {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "empty argv"));
        };
        let cpu_secs = l.cpu_time_ms.div_ceil(1000).max(1);
        let rlimit = |resource, soft, hard| Rlimit {
            resource,
            soft,
            hard,
        };
        let mut rlimits = [Rlimit::default(); MAX_RLIMITS];
        let mut n_rlimits = 0;
        let mut push = |r: Rlimit| {
            rlimits[n_rlimits] = r;
            n_rlimits += 1;
        };
        push(rlimit(libc::RLIMIT_CORE, 0, 0));
        if l.file_bytes > 0 {
            push(rlimit(libc::RLIMIT_FSIZE, l.file_bytes, l.file_bytes));
        }
        if l.open_files > 0 {
            push(rlimit(libc::RLIMIT_NOFILE, l.open_files, l.open_files));
        }
        if l.cpu_time_ms > 0 {
            push(rlimit(libc::RLIMIT_CPU, cpu_secs, cpu_secs + 1));
        }
        Ok(Program {
            path: resolve(first, &sup.cfg.path)?,
            argv: argv
                .iter()
                .map(|a| cstr(a.as_bytes()))
                .collect::<Result<_, _>>()?,
            envp: env
                .iter()
                .map(|(k, v)| cstr(format!("{k}={v}").as_bytes()))
                .collect::<Result<_, _>>()?,
            cwd: cstr(cwd.as_os_str().as_encoded_bytes())?,
            rlimits,
            n_rlimits,
        })
    }

    /// The launch, pointing into `self` and the two pointer arrays `ptrs` keeps.
    fn launch(&self, ptrs: &mut Pointers) -> Launch {
        let nul = |v: &[CString]| {
            let mut p: Vec<*const libc::c_char> = v.iter().map(|s| s.as_ptr()).collect();
            p.push(std::ptr::null());
            p
        };
        ptrs.argv = nul(&self.argv);
        ptrs.envp = nul(&self.envp);
        Launch {
            program: self.path.as_ptr(),
            argv: ptrs.argv.as_ptr(),
            envp: ptrs.envp.as_ptr(),
            cwd: self.cwd.as_ptr(),
            rlimits: self.rlimits,
            n_rlimits: self.n_rlimits,
        }
    }
}

#[derive(Default)]
struct Pointers {
    argv: Vec<*const libc::c_char>,
    envp: Vec<*const libc::c_char>,
}

/// Start a tree. Must be called on the supervisor's runtime thread (the reaper is its task).
pub fn spawn_tree(sup: &Shared, spec: TreeSpec) -> io::Result<Tree> {
    let program = Program::new(sup, &spec.argv, &spec.env, &spec.cwd, &spec.limits)?;
    let mut ptrs = Pointers::default();
    let launch = program.launch(&mut ptrs);
    start(
        sup,
        Pipes {
            stdin: spec.stdin,
            extra_fds: spec.extra_fds,
            cgroup_fds: spec.cgroup_fds,
        },
        &Source::Now(launch),
    )
}

/// What a tree is plumbed with, known before its program is.
struct Pipes {
    stdin: bool,
    extra_fds: Vec<(OwnedFd, RawFd)>,
    cgroup_fds: Vec<OwnedFd>,
}

/// Make the tree's pipes and clone its init, which starts the program from `source`.
fn start(sup: &Shared, pipes: Pipes, source: &Source) -> io::Result<Tree> {
    let cfg = &sup.cfg;
    let (stdin_r, stdin_w) = if pipes.stdin {
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
    for (fd, target) in &pipes.extra_fds {
        fds.push((high(fd)?, *target));
    }
    let max_target = fds.iter().map(|(_, t)| *t).max().unwrap_or(2);
    let mut cgroup_fds = Vec::new();
    for fd in &pipes.cgroup_fds {
        cgroup_fds.push(high(fd)?);
    }
    let report_w_high = high(&report_w)?;

    let filters: Vec<libc::sock_fprog> = sup
        .filters
        .iter()
        .map(|f| libc::sock_fprog {
            len: f.len() as u16,
            filter: f.as_ptr() as *mut libc::sock_filter,
        })
        .collect();
    let p = Plumbing {
        fds,
        max_target,
        cgroup_fds,
        report_w: report_w_high,
        uid: (!cfg.user_namespace).then_some((cfg.uid, cfg.gid)),
        filters,
        dev_null: CString::new("/dev/null").unwrap(),
        oom_adj: CString::new("/proc/self/oom_score_adj").unwrap(),
        root: CString::new("/").unwrap(),
        proc_name: CString::new("proc").unwrap(),
        proc_dir: CString::new("/proc").unwrap(),
    };

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
        // SAFETY: the child of a raw clone: `init` only makes system calls on `p` and `source`.
        unsafe { init(&p, source, namespaced, own_proc) }
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
