//! cgroup v1: one directory per run in each of the memory, pids and cpuacct hierarchies.
//!
//! The small file helpers at the bottom are shared with the v2 backend: both versions are the
//! same kind of filesystem (write a value, read a number, rmdir an empty cgroup).

use std::collections::BTreeSet;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{
    cgroup_mounts, CgroupBackend, CgroupError, CgroupFeatures, CgroupUsage, CgroupVersion,
    RunCgroup, SandboxCgroup, SUPERVISOR_LEAF,
};
use crate::policy::Limits;

/// The three hierarchies a run needs, each already pointing at `<mount>/execbox/<instance>`.
#[derive(Debug)]
pub struct V1 {
    memory: PathBuf,
    pids: PathBuf,
    cpuacct: PathBuf,
    /// `memory.memsw.*` exists only when the kernel accounts swap (`swapaccount=1`).
    swap_limit: bool,
    /// `memory.kmem.tcp.*` exists when the kernel accounts kernel memory.
    tcp_limit: bool,
}

impl V1 {
    pub fn from_mountinfo(mountinfo: &str, instance: &str) -> Result<V1, String> {
        check_name(instance, "instance").map_err(|e| e.to_string())?;
        let mounts = cgroup_mounts(mountinfo);
        // A controller is found by its name in the super options ("rw,cpu,cpuacct"), never by the
        // mount point's name: hosts co-mount controllers under arbitrary directory names.
        let find = |controller: &str| {
            mounts
                .iter()
                .find(|(_, fstype, opts)| {
                    fstype == "cgroup" && opts.split(',').any(|o| o == controller)
                })
                .map(|(mount, _, _)| mount.clone())
                .ok_or_else(|| {
                    format!("no cgroup v1 hierarchy with the {controller} controller is mounted")
                })
        };
        let (memory, pids, cpuacct) = (find("memory")?, find("pids")?, find("cpuacct")?);
        let swap_limit = memory.join("memory.memsw.limit_in_bytes").exists();
        let tcp_limit = memory.join("memory.kmem.tcp.limit_in_bytes").exists();
        if !tcp_limit {
            tracing::warn!("cgroup v1 without memory.kmem.tcp: a run's socket buffers are not bounded by its memory limit");
        }
        let instance_dir = |mount: &Path| mount.join("execbox").join(instance);
        let backend = V1 {
            memory: instance_dir(&memory),
            pids: instance_dir(&pids),
            cpuacct: instance_dir(&cpuacct),
            swap_limit,
            tcp_limit,
        };
        for dir in backend.dirs() {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        Ok(backend)
    }

    fn dirs(&self) -> [&PathBuf; 3] {
        [&self.memory, &self.pids, &self.cpuacct]
    }

    fn run(&self, run_id: &str) -> V1Run {
        V1Run {
            memory: self.memory.join(run_id),
            pids: self.pids.join(run_id),
            cpuacct: self.cpuacct.join(run_id),
            swap_limit: self.swap_limit,
            tcp_limit: self.tcp_limit,
        }
    }
}

impl CgroupBackend for V1 {
    fn features(&self) -> CgroupFeatures {
        CgroupFeatures {
            version: CgroupVersion::V1,
            memory: true,
            swap_limit: self.swap_limit,
            pids: true,
            cpu_accounting: true,
            socket_memory_limit: self.tcp_limit,
        }
    }

    fn create(&self, run_id: &str, limits: &Limits) -> Result<Box<dyn RunCgroup>, CgroupError> {
        check_name(run_id, "run id")?;
        let run = self.run(run_id);
        run.make(limits)?;
        Ok(Box::new(run))
    }

    fn create_sandbox(
        &self,
        id: &str,
        limits: &Limits,
    ) -> Result<Box<dyn SandboxCgroup>, CgroupError> {
        check_name(id, "sandbox id")?;
        let run = self.run(id);
        run.make(limits)?;
        // Always 1 on current kernels (and no longer writable); older ones need it before the
        // first child, so a call's memory counts against the sandbox's.
        let _ = std::fs::write(run.memory.join("memory.use_hierarchy"), "1");
        let leaf = run.child(SUPERVISOR_LEAF);
        for dir in leaf.dirs() {
            if let Err(e) = std::fs::create_dir(dir) {
                let _ = run.destroy();
                return Err(io_err(dir, "mkdir")(e));
            }
        }
        Ok(Box::new(V1Sandbox { run }))
    }

    fn sweep(&self) -> Result<usize, CgroupError> {
        // A run is one name in three hierarchies; a crash may have left it in only some of them.
        let mut names = BTreeSet::new();
        for dir in self.dirs() {
            names.extend(subdirs(dir)?);
        }
        let mut removed = 0;
        for name in names {
            self.run(&name).destroy()?;
            removed += 1;
        }
        Ok(removed)
    }

    fn remove_instance(&self) -> Result<(), CgroupError> {
        // `<mount>/execbox` itself stays: other instances on this host may live in it.
        self.dirs().into_iter().try_for_each(|dir| rmdir_retry(dir))
    }
}

/// One run's directories in the memory, pids and cpuacct hierarchies.
#[derive(Debug)]
struct V1Run {
    memory: PathBuf,
    pids: PathBuf,
    cpuacct: PathBuf,
    swap_limit: bool,
    tcp_limit: bool,
}

impl V1Run {
    fn dirs(&self) -> [&PathBuf; 3] {
        [&self.memory, &self.pids, &self.cpuacct]
    }

    fn child(&self, name: &str) -> V1Run {
        V1Run {
            memory: self.memory.join(name),
            pids: self.pids.join(name),
            cpuacct: self.cpuacct.join(name),
            swap_limit: self.swap_limit,
            tcp_limit: self.tcp_limit,
        }
    }

    /// Make the directories and write the limits; on error remove what was made.
    fn make(&self, limits: &Limits) -> Result<(), CgroupError> {
        let mut created = Vec::new();
        let result = (|| {
            for dir in self.dirs() {
                std::fs::create_dir(dir).map_err(io_err(dir, "mkdir"))?;
                created.push(dir.clone());
            }
            self.apply_limits(limits)
        })();
        if let Err(e) = result {
            // Nothing has joined yet, so the directories are empty and rmdir succeeds.
            for dir in &created {
                let _ = rmdir_retry(dir);
            }
            return Err(e);
        }
        Ok(())
    }

    fn apply_limits(&self, limits: &Limits) -> Result<(), CgroupError> {
        let bytes = limits.memory_bytes.to_string();
        // limit_in_bytes first: the kernel refuses a memsw limit below the memory limit.
        write_file(&self.memory.join("memory.limit_in_bytes"), &bytes)?;
        if self.swap_limit {
            // memory+swap == memory: the run may not swap at all.
            write_file(&self.memory.join("memory.memsw.limit_in_bytes"), &bytes)?;
        } else {
            // No swap accounting: the best we can do is ask the kernel not to swap this cgroup.
            write_file(&self.memory.join("memory.swappiness"), "0")?;
        }
        if self.tcp_limit {
            // v1 charges TCP buffers to a counter of their own, unlimited and outside
            // limit_in_bytes: without this a run pins host memory far past its limit. Written
            // before anything joins, so every socket of the run is charged (v1 starts
            // accounting a cgroup's sockets at the first write).
            write_file(&self.memory.join("memory.kmem.tcp.limit_in_bytes"), &bytes)?;
        }
        write_file(&self.pids.join("pids.max"), &limits.pids.to_string())
    }
}

/// A sandbox's directories in the three hierarchies; calls are children of them.
#[derive(Debug)]
struct V1Sandbox {
    run: V1Run,
}

impl SandboxCgroup for V1Sandbox {
    fn supervisor_procs(&self) -> Vec<PathBuf> {
        self.run.child(SUPERVISOR_LEAF).procs_files()
    }

    fn call(&self, name: &str, limits: &Limits) -> Result<Box<dyn RunCgroup>, CgroupError> {
        check_name(name, "call id")?;
        let call = self.run.child(name);
        call.make(limits)?;
        Ok(Box::new(call))
    }

    fn destroy(&self) -> Result<(), CgroupError> {
        self.run.destroy()
    }
}

impl RunCgroup for V1Run {
    fn procs_files(&self) -> Vec<PathBuf> {
        self.dirs().iter().map(|d| d.join("cgroup.procs")).collect()
    }

    fn cpu_time_ns(&self) -> u64 {
        read_u64(&self.cpuacct.join("cpuacct.usage")).unwrap_or(0)
    }

    fn usage(&self) -> CgroupUsage {
        let oom_control =
            std::fs::read_to_string(self.memory.join("memory.oom_control")).unwrap_or_default();
        CgroupUsage {
            cpu_time_ns: self.cpu_time_ns(),
            peak_memory_bytes: read_u64(&self.memory.join("memory.max_usage_in_bytes"))
                .unwrap_or(0),
            // The `oom_kill` counter exists since Linux 4.13; older kernels report 0 here. There is
            // deliberately no guess from memory.failcnt: hitting the limit (reclaim) is not a kill.
            oom_kills: keyed_value(&oom_control, "oom_kill").unwrap_or(0),
        }
    }

    fn set_limits(&self, limits: &Limits) -> Result<(), CgroupError> {
        let bytes = limits.memory_bytes.to_string();
        if self.swap_limit {
            // memsw may never be below the memory limit: lift it, move the limit, set it equal.
            write_file(&self.memory.join("memory.memsw.limit_in_bytes"), "-1")?;
            write_file(&self.memory.join("memory.limit_in_bytes"), &bytes)?;
            write_file(&self.memory.join("memory.memsw.limit_in_bytes"), &bytes)?;
        } else {
            write_file(&self.memory.join("memory.limit_in_bytes"), &bytes)?;
        }
        if self.tcp_limit {
            // The sandbox has opened no socket while it waited, so nothing is over the new cap.
            write_file(&self.memory.join("memory.kmem.tcp.limit_in_bytes"), &bytes)?;
        }
        write_file(&self.pids.join("pids.max"), &limits.pids.to_string())
    }

    fn reset_peak(&self) {
        let _ = std::fs::write(self.memory.join("memory.max_usage_in_bytes"), "0");
    }

    fn kill_all(&self) {
        kill_until_empty(&tree_procs(&self.dirs()));
    }

    fn destroy(&self) -> Result<(), CgroupError> {
        remove_trees(&self.dirs())
    }
}

// ---- helpers shared with v2 ----

pub(super) fn io_err<'a>(
    path: &'a Path,
    op: &'static str,
) -> impl FnOnce(std::io::Error) -> CgroupError + 'a {
    move |source| CgroupError::Io {
        path: path.to_path_buf(),
        op,
        source,
    }
}

/// Instance names and run ids become path components: refuse anything that could escape.
pub(super) fn check_name(name: &str, what: &'static str) -> Result<(), CgroupError> {
    if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\0']) {
        let source =
            std::io::Error::new(ErrorKind::InvalidInput, format!("invalid {what} {name:?}"));
        return Err(CgroupError::Io {
            path: PathBuf::from(name),
            op: "check name",
            source,
        });
    }
    Ok(())
}

/// One write(2) of the whole value, which is what cgroupfs expects; on a plain directory (tests)
/// it creates the file.
pub(super) fn write_file(path: &Path, value: &str) -> Result<(), CgroupError> {
    std::fs::write(path, value).map_err(io_err(path, "write"))
}

pub(super) fn read_u64(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The number on the `key N` line of a flat-keyed file (memory.oom_control, memory.events, cpu.stat).
pub(super) fn keyed_value(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (k, v) = line.split_once(' ')?;
        if k == key {
            v.trim().parse().ok()
        } else {
            None
        }
    })
}

/// Names of the child cgroups of `dir` (control files are skipped); a missing `dir` has none.
pub(super) fn subdirs(dir: &Path) -> Result<Vec<String>, CgroupError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(dir, "read_dir")(e)),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_err(dir, "read_dir"))?;
        if entry.file_type().map_err(io_err(dir, "read_dir"))?.is_dir() {
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    Ok(names)
}

/// SIGKILL every pid listed in `procs_files` until they all read empty. Rounds are needed because
/// a process may fork between our read and our kill; pids.max bounds how many such children exist.
/// A missing or unreadable file counts as empty (the cgroup is already gone).
pub(super) fn kill_until_empty(procs_files: &[PathBuf]) {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    for _ in 0..200 {
        let pids: BTreeSet<i32> = procs_files
            .iter()
            .filter_map(|f| std::fs::read_to_string(f).ok())
            .flat_map(|text| {
                text.lines()
                    .filter_map(|l| l.trim().parse().ok())
                    .collect::<Vec<i32>>()
            })
            .filter(|&pid| pid > 0)
            .collect();
        if pids.is_empty() {
            return;
        }
        for pid in pids {
            // ESRCH just means it exited since the read.
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    tracing::warn!(files = ?procs_files, "cgroup still has processes after 200 kill rounds");
}

/// Every directory of the cgroup trees at `roots`, children before their parents.
fn tree_dirs(roots: &[&PathBuf]) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for name in subdirs(dir).unwrap_or_default() {
            walk(&dir.join(name), out);
        }
        out.push(dir.to_path_buf());
    }
    let mut out = Vec::new();
    for root in roots {
        walk(root, &mut out);
    }
    out
}

/// The `cgroup.procs` files of the whole trees at `roots` (a sandbox's calls are its children).
pub(super) fn tree_procs(roots: &[&PathBuf]) -> Vec<PathBuf> {
    tree_dirs(roots)
        .iter()
        .map(|d| d.join("cgroup.procs"))
        .collect()
}

/// Kill everything in the trees at `roots`, then remove them, children first. Every directory
/// is tried even if one fails, so one stuck directory leaves no others behind.
pub(super) fn remove_trees(roots: &[&PathBuf]) -> Result<(), CgroupError> {
    let dirs = tree_dirs(roots);
    kill_until_empty(
        &dirs
            .iter()
            .map(|d| d.join("cgroup.procs"))
            .collect::<Vec<_>>(),
    );
    let mut first_err = None;
    for dir in &dirs {
        if let Err(e) = rmdir_retry(dir) {
            first_err.get_or_insert(e);
        }
    }
    first_err.map_or(Ok(()), Err)
}

/// rmdir a cgroup, retrying while the kernel still reports it busy (killed processes are still
/// being torn down); an already-removed directory is fine.
pub(super) fn rmdir_retry(dir: &Path) -> Result<(), CgroupError> {
    let mut attempts = 0;
    loop {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && attempts < 10 => {
                attempts += 1;
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => return Err(io_err(dir, "rmdir")(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn limits(memory_bytes: u64, pids: u64) -> Limits {
        Limits {
            wall_time_ms: 1000,
            cpu_time_ms: 1000,
            memory_bytes,
            pids,
            output_bytes: 1 << 20,
            disk_bytes: 1 << 20,
        }
    }

    /// A fake cgroupfs under `root`: memory, pids and a co-mounted cpu,cpuacct hierarchy, plus the
    /// mounts a real host also has (systemd's named hierarchy, a plain cpu one, the v2 one).
    fn fake(root: &Path, memsw: bool) -> String {
        for d in ["memory", "pids", "cpu,cpuacct", "cpu", "systemd", "unified"] {
            fs::create_dir_all(root.join(d)).unwrap();
        }
        if memsw {
            // A host that accounts swap here also accounts kernel (and TCP) memory.
            fs::write(
                root.join("memory/memory.memsw.limit_in_bytes"),
                "9223372036854771712\n",
            )
            .unwrap();
            fs::write(
                root.join("memory/memory.kmem.tcp.limit_in_bytes"),
                "9223372036854771712\n",
            )
            .unwrap();
        }
        let r = root.display();
        format!(
            "25 1 0:24 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw\n\
             32 25 0:27 / {r}/systemd rw,nosuid,nodev,noexec,relatime shared:10 - cgroup cgroup rw,xattr,name=systemd\n\
             33 25 0:28 / {r}/cpu rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup rw,cpu\n\
             34 25 0:29 / {r}/unified rw,nosuid,nodev,noexec,relatime shared:14 - cgroup2 cgroup2 rw,nsdelegate\n\
             35 25 0:30 / {r}/memory rw,nosuid,nodev,noexec,relatime shared:15 - cgroup cgroup rw,memory\n\
             36 25 0:31 / {r}/pids rw,nosuid,nodev,noexec,relatime shared:16 - cgroup cgroup rw,pids\n\
             37 25 0:32 / {r}/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:17 - cgroup cgroup rw,cpu,cpuacct\n"
        )
    }

    #[test]
    fn finds_hierarchies_by_controller_name_and_creates_instance_dirs() {
        let tmp = tempfile::tempdir().unwrap();
        let v1 = V1::from_mountinfo(&fake(tmp.path(), true), "i1").unwrap();
        assert_eq!(v1.memory, tmp.path().join("memory/execbox/i1"));
        assert_eq!(v1.pids, tmp.path().join("pids/execbox/i1"));
        // "rw,cpu" alone must not be taken for cpuacct.
        assert_eq!(v1.cpuacct, tmp.path().join("cpu,cpuacct/execbox/i1"));
        assert!(v1.dirs().iter().all(|d| d.is_dir()));
        assert!(v1.features().swap_limit);
        assert_eq!(v1.features().version, CgroupVersion::V1);
    }

    #[test]
    fn missing_controller_is_named() {
        let tmp = tempfile::tempdir().unwrap();
        let text: String = fake(tmp.path(), false)
            .lines()
            .filter(|l| !l.ends_with("rw,pids"))
            .map(|l| format!("{l}\n"))
            .collect();
        let err = V1::from_mountinfo(&text, "i1").unwrap_err();
        assert!(err.contains("pids controller"), "{err}");
        assert!(V1::from_mountinfo(&fake(tmp.path(), false), "../x").is_err());
    }

    #[test]
    fn create_writes_limits() {
        let tmp = tempfile::tempdir().unwrap();
        let v1 = V1::from_mountinfo(&fake(tmp.path(), true), "i1").unwrap();
        let run = v1.create("r1", &limits(64 << 20, 32)).unwrap();
        let read = |p: &str| fs::read_to_string(tmp.path().join(p)).unwrap();
        assert_eq!(
            read("memory/execbox/i1/r1/memory.limit_in_bytes"),
            (64u64 << 20).to_string()
        );
        assert_eq!(
            read("memory/execbox/i1/r1/memory.memsw.limit_in_bytes"),
            (64u64 << 20).to_string()
        );
        assert_eq!(
            read("memory/execbox/i1/r1/memory.kmem.tcp.limit_in_bytes"),
            (64u64 << 20).to_string(),
            "socket buffers capped at the memory limit"
        );
        assert_eq!(read("pids/execbox/i1/r1/pids.max"), "32");
        assert!(v1.features().socket_memory_limit);
        run.set_limits(&limits(32 << 20, 8)).unwrap();
        assert_eq!(
            read("memory/execbox/i1/r1/memory.kmem.tcp.limit_in_bytes"),
            (32u64 << 20).to_string(),
            "and follow the run's limit"
        );
        assert_eq!(
            run.procs_files(),
            ["memory", "pids", "cpu,cpuacct"]
                .map(|h| tmp.path().join(h).join("execbox/i1/r1/cgroup.procs"))
                .to_vec()
        );

        // Without swap accounting the run gets swappiness 0 instead.
        let tmp = tempfile::tempdir().unwrap();
        let v1 = V1::from_mountinfo(&fake(tmp.path(), false), "i1").unwrap();
        assert!(!v1.features().swap_limit);
        v1.create("r1", &limits(8 << 20, 4)).unwrap();
        let dir = tmp.path().join("memory/execbox/i1/r1");
        assert_eq!(
            fs::read_to_string(dir.join("memory.swappiness")).unwrap(),
            "0"
        );
        assert!(!dir.join("memory.memsw.limit_in_bytes").exists());
        assert!(
            !dir.join("memory.kmem.tcp.limit_in_bytes").exists()
                && !v1.features().socket_memory_limit
        );
    }

    #[test]
    fn failed_create_removes_what_it_made() {
        let tmp = tempfile::tempdir().unwrap();
        let v1 = V1::from_mountinfo(&fake(tmp.path(), false), "i1").unwrap();
        // A stale directory in the last hierarchy makes its mkdir fail.
        fs::create_dir(v1.cpuacct.join("r1")).unwrap();
        let err = v1.create("r1", &limits(8 << 20, 4)).err().unwrap();
        assert!(
            err.to_string().contains("cpu,cpuacct/execbox/i1/r1"),
            "{err}"
        );
        assert!(!v1.memory.join("r1").exists() && !v1.pids.join("r1").exists());
        assert!(v1.cpuacct.join("r1").exists(), "not ours, so not removed");
        assert!(v1.create("../r", &limits(8 << 20, 4)).is_err());
    }

    #[test]
    fn usage_reads_cpu_peak_and_oom_kills() {
        let tmp = tempfile::tempdir().unwrap();
        let v1 = V1::from_mountinfo(&fake(tmp.path(), false), "i1").unwrap();
        let run = v1.run("r1");
        assert_eq!(
            run.usage(),
            CgroupUsage::default(),
            "missing files read as zero"
        );
        run.dirs().iter().for_each(|d| fs::create_dir(d).unwrap());
        fs::write(run.cpuacct.join("cpuacct.usage"), "123456789\n").unwrap();
        fs::write(run.memory.join("memory.max_usage_in_bytes"), "4096\n").unwrap();
        fs::write(
            run.memory.join("memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
        )
        .unwrap();
        assert_eq!(run.cpu_time_ns(), 123456789);
        assert_eq!(
            run.usage(),
            CgroupUsage {
                cpu_time_ns: 123456789,
                peak_memory_bytes: 4096,
                oom_kills: 2
            }
        );
    }

    #[test]
    fn sweep_and_remove_instance() {
        let tmp = tempfile::tempdir().unwrap();
        let v1 = V1::from_mountinfo(&fake(tmp.path(), false), "i1").unwrap();
        // Leftovers of a crashed instance; "b" made it into only one hierarchy.
        for d in v1.dirs() {
            fs::create_dir(d.join("a")).unwrap();
        }
        fs::create_dir(v1.pids.join("b")).unwrap();
        fs::write(v1.memory.join("cgroup.procs"), "").unwrap(); // a control file, not a run
        assert_eq!(v1.sweep().unwrap(), 2);
        assert_eq!(
            subdirs(&v1.memory).unwrap().len() + subdirs(&v1.pids).unwrap().len(),
            0
        );
        fs::remove_file(v1.memory.join("cgroup.procs")).unwrap();
        v1.remove_instance().unwrap();
        assert!(v1.dirs().iter().all(|d| !d.exists()));
        assert!(
            tmp.path().join("memory/execbox").is_dir(),
            "shared parent stays"
        );
        v1.remove_instance().unwrap();
    }

    /// Against the host's real cgroup v1 hierarchies (needs root and a v1 memory controller).
    #[test]
    fn live_v1_sandbox_with_calls_nests_and_is_removed_whole() {
        use std::os::unix::process::ExitStatusExt;
        if !Path::new("/sys/fs/cgroup/memory/memory.limit_in_bytes").exists()
            || !nix::unistd::geteuid().is_root()
        {
            eprintln!("!!! SKIPPED live_v1_sandbox_with_calls_nests_and_is_removed_whole: needs root and cgroup v1 !!!");
            return;
        }
        let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap();
        let v1 =
            V1::from_mountinfo(&mountinfo, &format!("unit-nest-{}", std::process::id())).unwrap();
        let sb = v1.create_sandbox("sb1", &limits(128 << 20, 32)).unwrap();
        assert_eq!(
            sb.supervisor_procs(),
            vec![
                v1.memory.join("sb1/sup/cgroup.procs"),
                v1.pids.join("sb1/sup/cgroup.procs"),
                v1.cpuacct.join("sb1/sup/cgroup.procs"),
            ]
        );
        let call = sb.call("call1", &limits(32 << 20, 8)).unwrap();
        assert_eq!(
            read_u64(&v1.memory.join("sb1/call1/memory.limit_in_bytes")),
            Some(32 << 20)
        );
        assert_eq!(
            read_u64(&v1.memory.join("sb1/memory.limit_in_bytes")),
            Some(128 << 20)
        );
        let mut sup = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let mut prog = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        for f in sb.supervisor_procs() {
            write_file(&f, &sup.id().to_string()).unwrap();
        }
        for f in call.procs_files() {
            write_file(&f, &prog.id().to_string()).unwrap();
        }
        // A call's pids count in the sandbox's (hierarchical).
        assert_eq!(read_u64(&v1.pids.join("sb1/pids.current")), Some(2));
        // Removing the sandbox kills and removes everything in it, calls included.
        sb.destroy().unwrap();
        assert_eq!(sup.wait().unwrap().signal(), Some(libc::SIGKILL));
        assert_eq!(prog.wait().unwrap().signal(), Some(libc::SIGKILL));
        assert!(v1.dirs().iter().all(|d| !d.join("sb1").exists()));
        drop(call);
        v1.remove_instance().unwrap();
    }

    #[test]
    fn live_v1_kill_and_destroy() {
        use std::os::unix::process::ExitStatusExt;
        if !Path::new("/sys/fs/cgroup/memory/memory.limit_in_bytes").exists()
            || !nix::unistd::geteuid().is_root()
        {
            eprintln!("!!! SKIPPED live_v1_kill_and_destroy: needs root and cgroup v1 at /sys/fs/cgroup/memory !!!");
            return;
        }
        let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap();
        let v1 =
            V1::from_mountinfo(&mountinfo, &format!("unit-test-{}", std::process::id())).unwrap();
        let run = v1.create("run1", &limits(64 << 20, 16)).unwrap();
        assert_eq!(
            read_u64(&v1.memory.join("run1/memory.limit_in_bytes")),
            Some(64 << 20)
        );
        if v1.tcp_limit {
            assert_eq!(
                read_u64(&v1.memory.join("run1/memory.kmem.tcp.limit_in_bytes")),
                Some(64 << 20)
            );
        }
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        for f in run.procs_files() {
            write_file(&f, &child.id().to_string()).unwrap();
        }
        assert!(read_u64(&v1.cpuacct.join("run1/cpuacct.usage")).is_some());
        let _ = run.usage();
        run.kill_all();
        assert_eq!(child.wait().unwrap().signal(), Some(libc::SIGKILL));
        run.destroy().unwrap();
        assert!(v1.dirs().iter().all(|d| !d.join("run1").exists()));
        v1.remove_instance().unwrap();
        assert!(v1.dirs().iter().all(|d| !d.exists()));
    }
}
