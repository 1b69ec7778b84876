//! cgroup v2: one directory per run below `<own cgroup>/execbox/<instance>`, in the single unified
//! hierarchy.
//!
//! v2 only lets a cgroup hand controllers to its children while it has no processes of its own
//! ("no internal processes"; the root cgroup is exempt), so when the service's own cgroup is not
//! yet delegated that way we move its processes into a child leaf, `execbox-service`, first. A
//! process already in that leaf manages the leaf's parent. A graceful stop removes the instance
//! and, when no other instance is left in it, `execbox`.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use super::v1::{
    check_name, io_err, keyed_value, kill_until_empty, read_u64, remove_trees, rmdir_retry,
    subdirs, tree_procs, write_file,
};
use super::{
    unescape_octal, CgroupBackend, CgroupError, CgroupFeatures, CgroupUsage, CgroupVersion,
    RunCgroup, SandboxCgroup, SUPERVISOR_LEAF,
};
use crate::policy::Limits;

/// `<base>/execbox/<instance>`, with memory and pids (and cpu, when offered) enabled for its children.
#[derive(Debug)]
pub struct V2 {
    dir: PathBuf,
    swap_limit: bool,
    cpu_accounting: bool,
}

impl V2 {
    /// `mountinfo` is `/proc/self/mountinfo`, `self_cgroup` is `/proc/self/cgroup`.
    pub fn from_mountinfo(
        mountinfo: &str,
        self_cgroup: &str,
        instance: &str,
    ) -> Result<V2, String> {
        let own = self_cgroup
            .lines()
            .find_map(|l| l.strip_prefix("0::"))
            .ok_or("/proc/self/cgroup has no cgroup2 (\"0::\") entry")?;
        // The mount's root (field 4) matters when the hierarchy is bind-mounted from a sub-cgroup,
        // as in a container without its own cgroup namespace: our path is then relative to it.
        let base = mountinfo
            .lines()
            .filter_map(|line| {
                let (left, right) = line.split_once(" - ")?;
                if right.split_whitespace().next()? != "cgroup2" {
                    return None;
                }
                let mut fields = left.split_whitespace().skip(3);
                let (root, mount) = (
                    unescape_octal(fields.next()?),
                    unescape_octal(fields.next()?),
                );
                let rel = if root == "/" {
                    own
                } else {
                    own.strip_prefix(root.as_str())?
                };
                // "/a" must not match a mount rooted at "/ab".
                (rel.is_empty() || rel.starts_with('/'))
                    .then(|| Path::new(&mount).join(rel.trim_start_matches('/')))
            })
            .next()
            .ok_or_else(|| format!("no cgroup2 mount contains our own cgroup {own}"))?;
        // Already in the leaf an earlier start moved us to (a shell that ran the CLI, a service
        // restarted in place): manage its parent again rather than nest one level deeper each time.
        let base = match (base.file_name(), base.parent()) {
            (Some(name), Some(parent)) if name == SERVICE_LEAF => parent.to_path_buf(),
            _ => base,
        };
        V2::at(base, instance)
    }

    /// Set up `<base>/execbox/<instance>`, `base` being the cgroup the service may manage.
    pub fn at(base: PathBuf, instance: &str) -> Result<V2, String> {
        check_name(instance, "instance").map_err(|e| e.to_string())?;
        let controllers_file = base.join("cgroup.controllers");
        let offered = std::fs::read_to_string(&controllers_file)
            .map_err(|e| format!("cannot read {}: {e}", controllers_file.display()))?;
        let offered: Vec<&str> = offered.split_whitespace().collect();
        for required in ["memory", "pids"] {
            if !offered.contains(&required) {
                return Err(format!(
                    "cgroup2 at {} offers no {required} controller",
                    base.display()
                ));
            }
        }
        // cpu is optional: cpu.stat's usage_usec exists in every v2 cgroup without it.
        let mut want = vec!["memory", "pids"];
        if offered.contains(&"cpu") {
            want.push("cpu");
        }
        enable(&base, &want, true)?;
        let top = base.join("execbox");
        let dir = top.join(instance);
        for attempt in 0.. {
            mkdir_exist_ok(&top)?;
            enable(&top, &want, false)?;
            match std::fs::create_dir(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
                // Another instance's stop removed an empty `execbox` between our two mkdirs.
                Err(e) if e.kind() == ErrorKind::NotFound && attempt < 3 => continue,
                Err(e) => return Err(format!("cannot create {}: {e}", dir.display())),
            }
            enable(&dir, &want, false)?;
            break;
        }
        // Both files appear in the instance dir once its parent enabled memory (resp. exists always);
        // memory.swap.max is absent when the kernel does not account swap.
        let swap_limit = dir.join("memory.swap.max").exists();
        let cpu_accounting = dir.join("cpu.stat").exists();
        Ok(V2 {
            dir,
            swap_limit,
            cpu_accounting,
        })
    }
}

/// Enable `want` for the children of `dir`, skipping what is already on. With `migrate`, a refusal
/// because `dir` still holds processes moves them to `execbox-service` and tries again.
fn enable(dir: &Path, want: &[&str], migrate: bool) -> Result<(), String> {
    let path = dir.join("cgroup.subtree_control");
    // Missing reads as empty: on cgroupfs the write below then fails and names the path.
    let current = std::fs::read_to_string(&path).unwrap_or_default();
    let mut missing: Vec<&str> = want
        .iter()
        .copied()
        .filter(|c| !current.split_whitespace().any(|x| x == *c))
        .collect();
    let mut attempts = 0;
    while !missing.is_empty() {
        let line = missing
            .iter()
            .map(|c| format!("+{c}"))
            .collect::<Vec<_>>()
            .join(" ");
        match std::fs::write(&path, &line) {
            Ok(()) => return Ok(()),
            // Retried: a process may be forked into `dir` while we move the others out.
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && migrate && attempts < 3 => {
                attempts += 1;
                migrate_procs(dir)?;
            }
            // cpu can be refused for reasons of its own (e.g. realtime tasks); we can do without.
            Err(e) if missing.contains(&"cpu") && e.raw_os_error() != Some(libc::EBUSY) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot enable the cpu controller; continuing without");
                missing.retain(|c| *c != "cpu");
            }
            Err(e) => {
                return Err(format!(
                    "cannot write \"{line}\" to {}: {e}",
                    path.display()
                ))
            }
        }
    }
    Ok(())
}

fn mkdir_exist_ok(dir: &Path) -> Result<(), String> {
    match std::fs::create_dir(dir) {
        Err(e) if e.kind() != ErrorKind::AlreadyExists => {
            Err(format!("cannot create {}: {e}", dir.display()))
        }
        _ => Ok(()),
    }
}

/// The leaf below the delegated cgroup that holds the service's own processes (and any other
/// process that was in that cgroup), so the cgroup itself may hand controllers to its children.
const SERVICE_LEAF: &str = "execbox-service";

/// Move every process of `dir` into `dir/execbox-service`, one pid per write as cgroupfs wants.
fn migrate_procs(dir: &Path) -> Result<(), String> {
    let procs = dir.join("cgroup.procs");
    let pids = std::fs::read_to_string(&procs)
        .map_err(|e| format!("cannot read {}: {e}", procs.display()))?;
    let leaf = dir.join(SERVICE_LEAF);
    mkdir_exist_ok(&leaf)?;
    let target = leaf.join("cgroup.procs");
    for pid in pids.split_whitespace() {
        match std::fs::write(&target, pid) {
            Ok(()) => {}
            // The process exited since we read the list.
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {}
            Err(e) => {
                return Err(format!(
                    "cannot move pid {pid} into {}: {e}",
                    target.display()
                ))
            }
        }
    }
    Ok(())
}

impl CgroupBackend for V2 {
    fn features(&self) -> CgroupFeatures {
        CgroupFeatures {
            // v2 charges socket buffers to the cgroup's memory (unless the host boots with
            // cgroup.memory=nosocket), so memory.max bounds them with everything else.
            socket_memory_limit: true,
            version: CgroupVersion::V2,
            memory: true,
            swap_limit: self.swap_limit,
            pids: true,
            cpu_accounting: self.cpu_accounting,
        }
    }

    fn create(&self, run_id: &str, limits: &Limits) -> Result<Box<dyn RunCgroup>, CgroupError> {
        check_name(run_id, "run id")?;
        Ok(Box::new(make_run(
            self.dir.join(run_id),
            limits,
            self.swap_limit,
        )?))
    }

    fn create_sandbox(
        &self,
        id: &str,
        limits: &Limits,
    ) -> Result<Box<dyn SandboxCgroup>, CgroupError> {
        check_name(id, "sandbox id")?;
        let run = make_run(self.dir.join(id), limits, self.swap_limit)?;
        // The sandbox's own processes go to a leaf, so the sandbox's cgroup holds none itself
        // and may hand its controllers to the calls' cgroups (v2's no-internal-processes rule).
        let own =
            std::fs::read_to_string(self.dir.join("cgroup.subtree_control")).unwrap_or_default();
        let want: Vec<&str> = own
            .split_whitespace()
            .map(|c| c.trim_start_matches('+'))
            .collect();
        let leaf = run.dir.join(SUPERVISOR_LEAF);
        let made = enable(&run.dir, &want, false)
            .map_err(|e| CgroupError::Io {
                path: run.dir.clone(),
                op: "enable controllers",
                source: std::io::Error::other(e),
            })
            .and_then(|()| std::fs::create_dir(&leaf).map_err(io_err(&leaf, "mkdir")));
        if let Err(e) = made {
            let _ = run.destroy();
            return Err(e);
        }
        Ok(Box::new(V2Sandbox {
            run,
            swap_limit: self.swap_limit,
        }))
    }

    fn sweep(&self) -> Result<usize, CgroupError> {
        let names = subdirs(&self.dir)?;
        for name in &names {
            V2Run {
                dir: self.dir.join(name),
            }
            .destroy()?;
        }
        Ok(names.len())
    }

    fn remove_instance(&self) -> Result<(), CgroupError> {
        rmdir_retry(&self.dir)?;
        // `<base>/execbox` goes too once no other instance lives in it (the kernel refuses with
        // EBUSY while it has children), so a stopped service leaves nothing below its cgroup but
        // the leaf it moved itself into.
        if let Some(top) = self.dir.parent() {
            if let Err(e) = std::fs::remove_dir(top) {
                if !matches!(
                    e.raw_os_error(),
                    Some(libc::EBUSY | libc::ENOTEMPTY | libc::ENOENT)
                ) {
                    return Err(io_err(top, "rmdir")(e));
                }
            }
        }
        Ok(())
    }
}

/// Make a run's (or a call's, or a sandbox's) directory with its limits; on error remove it.
fn make_run(dir: PathBuf, limits: &Limits, swap_limit: bool) -> Result<V2Run, CgroupError> {
    std::fs::create_dir(&dir).map_err(io_err(&dir, "mkdir"))?;
    let run = V2Run { dir };
    let result = (|| {
        write_file(
            &run.dir.join("memory.max"),
            &limits.memory_bytes.to_string(),
        )?;
        if swap_limit {
            write_file(&run.dir.join("memory.swap.max"), "0")?;
        }
        write_file(&run.dir.join("pids.max"), &limits.pids.to_string())
    })();
    if let Err(e) = result {
        // Nothing has joined yet, so the directory is empty and rmdir succeeds.
        let _ = rmdir_retry(&run.dir);
        return Err(e);
    }
    Ok(run)
}

#[derive(Debug)]
struct V2Run {
    dir: PathBuf,
}

#[derive(Debug)]
struct V2Sandbox {
    run: V2Run,
    swap_limit: bool,
}

impl SandboxCgroup for V2Sandbox {
    fn supervisor_procs(&self) -> Vec<PathBuf> {
        vec![self.run.dir.join(SUPERVISOR_LEAF).join("cgroup.procs")]
    }

    fn call(&self, name: &str, limits: &Limits) -> Result<Box<dyn RunCgroup>, CgroupError> {
        check_name(name, "call id")?;
        Ok(Box::new(make_run(
            self.run.dir.join(name),
            limits,
            self.swap_limit,
        )?))
    }

    fn destroy(&self) -> Result<(), CgroupError> {
        self.run.destroy()
    }
}

impl RunCgroup for V2Run {
    fn procs_files(&self) -> Vec<PathBuf> {
        vec![self.dir.join("cgroup.procs")]
    }

    fn cpu_time_ns(&self) -> u64 {
        let stat = std::fs::read_to_string(self.dir.join("cpu.stat")).unwrap_or_default();
        keyed_value(&stat, "usage_usec")
            .unwrap_or(0)
            .saturating_mul(1000)
    }

    fn usage(&self) -> CgroupUsage {
        let events = std::fs::read_to_string(self.dir.join("memory.events")).unwrap_or_default();
        CgroupUsage {
            cpu_time_ns: self.cpu_time_ns(),
            // memory.peak is Linux 5.19+; before it, the current charge is the best lower bound.
            peak_memory_bytes: read_u64(&self.dir.join("memory.peak"))
                .or_else(|| read_u64(&self.dir.join("memory.current")))
                .unwrap_or(0),
            oom_kills: keyed_value(&events, "oom_kill").unwrap_or(0),
        }
    }

    fn set_limits(&self, limits: &Limits) -> Result<(), CgroupError> {
        write_file(
            &self.dir.join("memory.max"),
            &limits.memory_bytes.to_string(),
        )?;
        write_file(&self.dir.join("pids.max"), &limits.pids.to_string())
    }

    fn reset_peak(&self) {}

    fn kill_all(&self) {
        // cgroup.kill (Linux 5.14+) kills the whole subtree at once, racing no forks; the loop
        // below still runs to wait until the cgroup is empty, and does the job on older kernels.
        let kill = self.dir.join("cgroup.kill");
        if kill.exists() {
            if let Err(e) = std::fs::write(&kill, "1") {
                tracing::debug!(path = %kill.display(), error = %e, "cgroup.kill failed; falling back to signals");
            }
        }
        kill_until_empty(&tree_procs(&[&self.dir]));
    }

    fn destroy(&self) -> Result<(), CgroupError> {
        let kill = self.dir.join("cgroup.kill");
        if kill.exists() {
            let _ = std::fs::write(&kill, "1");
        }
        remove_trees(&[&self.dir])
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

    /// A fake delegated cgroup at `base`. mkdir on a plain fs creates no control files, so the
    /// instance dir's `memory.swap.max` and `cpu.stat` (which the kernel would add) are made here.
    fn fake(base: &Path, controllers: &str, subtree: &str) {
        fs::create_dir_all(base.join("execbox/i1")).unwrap();
        fs::write(base.join("cgroup.controllers"), controllers).unwrap();
        fs::write(base.join("cgroup.subtree_control"), subtree).unwrap();
        fs::write(base.join("execbox/i1/memory.swap.max"), "max\n").unwrap();
        fs::write(base.join("execbox/i1/cpu.stat"), "usage_usec 0\n").unwrap();
    }

    #[test]
    fn from_mountinfo_finds_own_cgroup() {
        let tmp = tempfile::tempdir().unwrap();
        let mount = tmp.path().join("cg2");
        let base = mount.join("system.slice/execbox.service");
        fake(&base, "cpuset cpu io memory pids\n", "");
        let m = mount.display();
        let mountinfo = format!(
            "30 25 0:26 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:15 - cgroup cgroup rw,memory\n\
             34 25 0:29 / {m} rw,nosuid,nodev,noexec,relatime shared:14 - cgroup2 cgroup2 rw,nsdelegate\n"
        );
        let v2 =
            V2::from_mountinfo(&mountinfo, "0::/system.slice/execbox.service\n", "i1").unwrap();
        assert_eq!(v2.dir, base.join("execbox/i1"));
        let f = v2.features();
        assert!(f.swap_limit && f.cpu_accounting && f.version == CgroupVersion::V2);

        // Bind-mounted from a sub-cgroup (container without a cgroup namespace).
        let mountinfo =
            format!("34 25 0:29 /system.slice {m}/system.slice rw - cgroup2 cgroup2 rw\n");
        let v2 =
            V2::from_mountinfo(&mountinfo, "0::/system.slice/execbox.service\n", "i1").unwrap();
        assert_eq!(v2.dir, base.join("execbox/i1"));

        // Already in the leaf an earlier start made: the leaf's parent is managed again, no nesting.
        let v2 = V2::from_mountinfo(
            &mountinfo,
            "0::/system.slice/execbox.service/execbox-service\n",
            "i1",
        )
        .unwrap();
        assert_eq!(v2.dir, base.join("execbox/i1"));

        let err = V2::from_mountinfo(&mountinfo, "0::/user.slice\n", "i1").unwrap_err();
        assert!(err.contains("/user.slice"), "{err}");
        let err = V2::from_mountinfo(&mountinfo, "4:memory:/\n", "i1").unwrap_err();
        assert!(err.contains("0::"), "{err}");
    }

    #[test]
    fn refuses_a_hierarchy_without_memory() {
        // Like a hybrid host's /sys/fs/cgroup/unified: mounted, but every controller is on v1.
        let tmp = tempfile::tempdir().unwrap();
        fs::write(tmp.path().join("cgroup.controllers"), "\n").unwrap();
        let err = V2::at(tmp.path().to_path_buf(), "i1").unwrap_err();
        assert_eq!(
            err,
            format!(
                "cgroup2 at {} offers no memory controller",
                tmp.path().display()
            )
        );
        assert!(
            !tmp.path().join("execbox").exists(),
            "nothing is created before the check"
        );
        fs::write(tmp.path().join("cgroup.controllers"), "memory\n").unwrap();
        assert!(V2::at(tmp.path().to_path_buf(), "i1")
            .unwrap_err()
            .contains("no pids controller"));
    }

    #[test]
    fn enables_controllers_down_to_the_instance() {
        let tmp = tempfile::tempdir().unwrap();
        fake(
            tmp.path(),
            "cpuset cpu io memory hugetlb pids rdma misc\n",
            "io\n",
        );
        V2::at(tmp.path().to_path_buf(), "i1").unwrap();
        for d in ["", "execbox", "execbox/i1"] {
            let got =
                fs::read_to_string(tmp.path().join(d).join("cgroup.subtree_control")).unwrap();
            assert_eq!(got, "+memory +pids +cpu", "in {d:?}");
        }

        // Already delegated (the kernel lists them without '+'): nothing is rewritten; no cpu offered.
        let tmp = tempfile::tempdir().unwrap();
        fake(tmp.path(), "memory pids\n", "memory pids\n");
        V2::at(tmp.path().to_path_buf(), "i1").unwrap();
        assert_eq!(
            fs::read_to_string(tmp.path().join("cgroup.subtree_control")).unwrap(),
            "memory pids\n"
        );
        assert_eq!(
            fs::read_to_string(tmp.path().join("execbox/cgroup.subtree_control")).unwrap(),
            "+memory +pids"
        );
    }

    #[test]
    fn migrate_moves_processes_to_the_service_leaf() {
        let tmp = tempfile::tempdir().unwrap();
        fs::write(tmp.path().join("cgroup.procs"), "4242\n").unwrap();
        migrate_procs(tmp.path()).unwrap();
        assert_eq!(
            fs::read_to_string(tmp.path().join("execbox-service/cgroup.procs")).unwrap(),
            "4242"
        );
    }

    #[test]
    fn create_writes_limits() {
        let tmp = tempfile::tempdir().unwrap();
        fake(tmp.path(), "memory pids\n", "");
        let v2 = V2::at(tmp.path().to_path_buf(), "i1").unwrap();
        let run = v2.create("r1", &limits(64 << 20, 32)).unwrap();
        let dir = tmp.path().join("execbox/i1/r1");
        assert_eq!(
            fs::read_to_string(dir.join("memory.max")).unwrap(),
            (64u64 << 20).to_string()
        );
        assert_eq!(
            fs::read_to_string(dir.join("memory.swap.max")).unwrap(),
            "0"
        );
        assert_eq!(fs::read_to_string(dir.join("pids.max")).unwrap(), "32");
        assert_eq!(run.procs_files(), vec![dir.join("cgroup.procs")]);
        assert!(v2
            .create("r1", &limits(64 << 20, 32))
            .err()
            .unwrap()
            .to_string()
            .contains("i1/r1"));

        // No swap accounting: memory.swap.max is not written.
        fs::remove_file(tmp.path().join("execbox/i1/memory.swap.max")).unwrap();
        let v2 = V2::at(tmp.path().to_path_buf(), "i1").unwrap();
        assert!(!v2.features().swap_limit);
        v2.create("r2", &limits(8 << 20, 4)).unwrap();
        assert!(!tmp.path().join("execbox/i1/r2/memory.swap.max").exists());
    }

    #[test]
    fn a_sandbox_hands_its_controllers_to_its_calls() {
        let tmp = tempfile::tempdir().unwrap();
        fake(tmp.path(), "memory pids cpu\n", "");
        let v2 = V2::at(tmp.path().to_path_buf(), "i1").unwrap();
        let sb = v2.create_sandbox("sb1", &limits(128 << 20, 32)).unwrap();
        let dir = tmp.path().join("execbox/i1/sb1");
        assert_eq!(
            fs::read_to_string(dir.join("memory.max")).unwrap(),
            (128u64 << 20).to_string()
        );
        // The sandbox holds no process itself: its own are in `sup`, its calls below it.
        assert_eq!(
            fs::read_to_string(dir.join("cgroup.subtree_control")).unwrap(),
            "+memory +pids +cpu"
        );
        assert_eq!(sb.supervisor_procs(), vec![dir.join("sup/cgroup.procs")]);
        let call = sb.call("c1", &limits(32 << 20, 8)).unwrap();
        assert_eq!(call.procs_files(), vec![dir.join("c1/cgroup.procs")]);
        assert_eq!(fs::read_to_string(dir.join("c1/pids.max")).unwrap(), "8");
        assert!(sb.call("../x", &limits(1, 1)).is_err());
    }

    #[test]
    fn usage_reads_cpu_peak_and_oom_kills() {
        let tmp = tempfile::tempdir().unwrap();
        let run = V2Run {
            dir: tmp.path().to_path_buf(),
        };
        assert_eq!(
            run.usage(),
            CgroupUsage::default(),
            "missing files read as zero"
        );
        fs::write(
            tmp.path().join("cpu.stat"),
            "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\n",
        )
        .unwrap();
        fs::write(tmp.path().join("memory.current"), "100\n").unwrap();
        fs::write(
            tmp.path().join("memory.events"),
            "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\noom_group_kill 0\n",
        )
        .unwrap();
        assert_eq!(
            run.usage(),
            CgroupUsage {
                cpu_time_ns: 1_500_000,
                peak_memory_bytes: 100,
                oom_kills: 1
            }
        );
        fs::write(tmp.path().join("memory.peak"), "9000\n").unwrap();
        assert_eq!(run.usage().peak_memory_bytes, 9000);
    }

    #[test]
    fn kill_sweep_and_remove_instance() {
        let tmp = tempfile::tempdir().unwrap();
        fake(tmp.path(), "memory pids\n", "");
        let v2 = V2::at(tmp.path().to_path_buf(), "i1").unwrap();
        fs::remove_file(v2.dir.join("memory.swap.max")).unwrap();
        fs::remove_file(v2.dir.join("cpu.stat")).unwrap();
        fs::create_dir(v2.dir.join("a")).unwrap();
        fs::create_dir(v2.dir.join("b")).unwrap();
        // kill_all writes cgroup.kill when the kernel has it; here a plain file stands in.
        fs::write(v2.dir.join("a/cgroup.kill"), "0").unwrap();
        let a = V2Run {
            dir: v2.dir.join("a"),
        };
        a.kill_all();
        assert_eq!(
            fs::read_to_string(v2.dir.join("a/cgroup.kill")).unwrap(),
            "1"
        );
        fs::remove_file(v2.dir.join("a/cgroup.kill")).unwrap();
        fs::remove_file(v2.dir.join("cgroup.subtree_control")).unwrap();
        assert_eq!(v2.sweep().unwrap(), 2);
        // Another instance lives beside us: `execbox` stays.
        fs::create_dir(tmp.path().join("execbox/i2")).unwrap();
        v2.remove_instance().unwrap();
        assert!(!v2.dir.exists() && tmp.path().join("execbox/i2").is_dir());
        // The last one out removes `execbox` (on cgroupfs its control files do not count).
        fs::remove_file(tmp.path().join("execbox/cgroup.subtree_control")).unwrap();
        let i2 = V2 {
            dir: tmp.path().join("execbox/i2"),
            swap_limit: false,
            cpu_accounting: false,
        };
        i2.remove_instance().unwrap();
        assert!(!tmp.path().join("execbox").exists());
        // A later start makes it again.
        V2::at(tmp.path().to_path_buf(), "i1").unwrap();
        assert!(tmp.path().join("execbox/i1").is_dir());
    }
}
