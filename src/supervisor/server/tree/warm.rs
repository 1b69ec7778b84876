//! Trees made ahead of their call. A warm init is cloned, mounts its /proc and joins the next
//! call's cgroups (on cgroup v1 a join after an idle spell waits out an RCU grace period, 6 to
//! 15 ms here), then blocks on a pipe. When the call comes, the supervisor writes the program
//! into memory it shares with the init (a `MAP_SHARED` region mapped before the clone, so at the
//! same address in both) and writes one byte to the pipe: the init forks the program as a cold
//! one would. Only calls use them (stdin a pipe, no extra descriptors).

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use libc::c_char;

use super::{pipe_pair, start, Launch, Pipes, Program, Shared, Source, Tree};

/// The room for a program's strings: argv and env of a call fit many times over; one that
/// does not starts cold.
const REGION_BYTES: usize = 1 << 20;

/// A tree whose init waits for its program.
pub struct Warm {
    /// The service's name for it (the call that may use it names it).
    token: String,
    tree: Tree,
    go: OwnedFd,
    region: Region,
}

impl Warm {
    /// Clone an init that joins `cgroup_fds` and waits.
    pub fn prepare(sup: &Shared, token: String, cgroup_fds: Vec<OwnedFd>) -> io::Result<Warm> {
        let region = Region::new(REGION_BYTES)?;
        let (go_r, go_w) = pipe_pair()?;
        let tree = start(
            sup,
            Pipes {
                stdin: true,
                extra_fds: Vec::new(),
                cgroup_fds,
            },
            &Source::Later {
                go: go_r.as_raw_fd(),
                at: region.base as *const Launch,
            },
        )?;
        drop(go_r);
        Ok(Warm {
            token,
            tree,
            go: go_w,
            region,
        })
    }

    pub fn token(&self) -> &str {
        &self.token
    }

    /// Hand the init its program: the tree is then the call's. None where it cannot take it
    /// (the program does not fit the region, or the init is gone): the call starts cold, and
    /// this init, dropped, is killed.
    pub fn launch(mut self, program: &Program) -> Option<Tree> {
        if !self.region.write(program) {
            return None;
        }
        let byte = 1u8;
        // SAFETY: a one-byte write from a local to a pipe we own. A dead init closed the read
        // end: EPIPE (SIGPIPE is ignored in the supervisor).
        let n = unsafe { libc::write(self.go.as_raw_fd(), (&byte as *const u8).cast(), 1) };
        (n == 1).then_some(self.tree)
    }
}

/// Anonymous shared memory, mapped before the clone and so at the same address in the init.
struct Region {
    base: *mut u8,
    len: usize,
}

// SAFETY: the region is plain memory owned by one `Warm` at a time.
unsafe impl Send for Region {}

impl Region {
    fn new(len: usize) -> io::Result<Region> {
        // SAFETY: a fresh anonymous mapping; unmapped on drop.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Region {
            base: p.cast(),
            len,
        })
    }

    /// Write `program`'s strings and pointer arrays, then its `Launch` at the start. False when
    /// it does not fit.
    fn write(&mut self, program: &Program) -> bool {
        let mut w = Writer {
            region: self,
            at: std::mem::size_of::<Launch>(),
        };
        let Some(path) = w.bytes(program.path.as_bytes_with_nul()) else {
            return false;
        };
        let Some(cwd) = w.bytes(program.cwd.as_bytes_with_nul()) else {
            return false;
        };
        let Some(argv) = w.strings(&program.argv) else {
            return false;
        };
        let Some(envp) = w.strings(&program.envp) else {
            return false;
        };
        let launch = Launch {
            program: path,
            argv,
            envp,
            cwd,
            rlimits: program.rlimits,
            n_rlimits: program.n_rlimits,
        };
        // SAFETY: the start of a page-aligned mapping of more than size_of::<Launch>() bytes.
        unsafe { std::ptr::write(self.base as *mut Launch, launch) };
        true
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: our own mapping (the init keeps its own, which the kernel holds alive).
        unsafe { libc::munmap(self.base.cast(), self.len) };
    }
}

/// A bump writer over a region.
struct Writer<'a> {
    region: &'a mut Region,
    at: usize,
}

impl Writer<'_> {
    /// Room for `n` bytes aligned to `align`, or None.
    fn room(&mut self, n: usize, align: usize) -> Option<*mut u8> {
        let at = self.at.next_multiple_of(align);
        let end = at.checked_add(n)?;
        if end > self.region.len {
            return None;
        }
        self.at = end;
        // SAFETY: at < len: inside the mapping.
        Some(unsafe { self.region.base.add(at) })
    }

    fn bytes(&mut self, b: &[u8]) -> Option<*const c_char> {
        let dst = self.room(b.len(), 1)?;
        // SAFETY: `room` gave b.len() writable bytes at dst, which `b` cannot overlap.
        unsafe { std::ptr::copy_nonoverlapping(b.as_ptr(), dst, b.len()) };
        Some(dst as *const c_char)
    }

    /// Each string, then a NULL-terminated array of pointers to them.
    fn strings(&mut self, v: &[std::ffi::CString]) -> Option<*const *const c_char> {
        let ptrs = v
            .iter()
            .map(|s| self.bytes(s.as_bytes_with_nul()))
            .collect::<Option<Vec<_>>>()?;
        let size = std::mem::size_of::<*const c_char>();
        let dst = self.room((ptrs.len() + 1) * size, size)? as *mut *const c_char;
        for (i, p) in ptrs.iter().chain([&std::ptr::null()]).enumerate() {
            // SAFETY: `room` gave (len + 1) aligned pointer slots at dst.
            unsafe { dst.add(i).write(*p) };
        }
        Some(dst as *const *const c_char)
    }
}
