//! Containers under gVisor (`runsc`): what changes in the create body, whether a policy's OCI
//! runtime can take runs, and the runtime's processes a failed start may leave on the host.
//!
//! Under gVisor the program talks to the Sentry, a kernel in user space, not to the host's
//! kernel. The container's cgroup then holds the Sentry, its gofer and the stub processes of the
//! ptrace platform, not the program's own processes; and the engine's seccomp profile never
//! reaches the program: runsc ignores it without `--oci-seccomp`, and with it applies it to the
//! container's init only, never to exec'd processes (runsc 2022), which is how programs arrive.
//! What stands between the program and the host kernel is the Sentry and the seccomp filter
//! runsc puts on the Sentry itself.

use std::collections::{BTreeMap, HashMap};
use std::sync::RwLock;
use std::time::{Duration, Instant};

use bollard::models::{ContainerCreateBody, ResourcesUlimits};

use crate::policy::{Limits, PolicySet};

/// Host tasks of an idle runsc sandbox (Sentry and gofer threads): about 40 here.
const HOST_TASKS_BASE: i64 = 64;
/// Host tasks per task of the program (a stub process or thread each, plus Sentry threads): 6 to
/// 8 for steady tasks with the ptrace platform, but up to 15 under a shell fork bomb (tasks that
/// come and go faster than their stubs are reaped: 483 host tasks for 31 program tasks here).
/// Twice that: a Sentry that cannot make a host thread dies, taking the run's answer with it.
const HOST_TASKS_PER_TASK: i64 = 32;

/// Whether `runtime` is gVisor: runsc registered under its own name or a `runsc-*` variant.
pub fn is_gvisor(runtime: Option<&str>) -> bool {
    runtime.is_some_and(|r| r == "runsc" || r.starts_with("runsc-"))
}

/// Adjust a create body for gVisor.
///
/// - The policy's `pids` becomes `RLIMIT_NPROC` of the program's uid, which the Sentry enforces
///   on the sandbox's own tasks (processes and threads; the init and the waiter run as another
///   uid and are not counted). The engine's pids limit stays as a backstop on the host tasks of
///   the sandbox, which number several per task of the program: with the policy's own figure
///   the Sentry cannot even start ("cannot read client sync file").
///
/// Everything else (no network, read-only root, bounded tmpfs, no capabilities,
/// no-new-privileges, the unprivileged users, memory, CPU quota, ulimits) holds as under runc;
/// the seccomp profile stays in the body but does not reach programs (see above).
pub fn adjust(body: &mut ContainerCreateBody, limits: &Limits) {
    let Some(host) = body.host_config.as_mut() else {
        return;
    };
    let pids = limits.pids as i64;
    host.pids_limit = Some(HOST_TASKS_BASE + HOST_TASKS_PER_TASK * pids);
    // The program is forked by the supervisor (root) and only then becomes the sandbox user:
    // gVisor's kernel does not count it against that user's processes, only what it starts.
    let nproc = (pids - 1).max(1);
    host.ulimits
        .get_or_insert_with(Vec::new)
        .push(ResourcesUlimits {
            name: Some("nproc".into()),
            soft: Some(nproc),
            hard: Some(nproc),
        });
}

/// A runsc container that would not start: the engine's reason, and what to do when the run
/// asked for less memory than gVisor's own kernel needs (it is held by the same limit).
pub fn start_failed(
    shape: &super::container::Shape,
    e: impl std::fmt::Display,
) -> crate::exec::ExecError {
    let mut why = format!("runsc could not start a sandbox for this run: {e}");
    if shape.limits.memory_bytes < 64 << 20 {
        why.push_str("; under gVisor memory_bytes also holds gVisor's own kernel (about 24 MiB), so ask for more memory");
    }
    crate::exec::ExecError::Unavailable("docker".into(), why)
}

/// What the host sees of a runsc container: processes whose command line names its id.
fn runtime_processes(id: &str) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                c.starts_with(b"runsc") && c.windows(id.len()).any(|w| w == id.as_bytes())
            })
        })
        .collect()
}

/// Kill what runsc left of container `id` on this host (its gofer and sandbox survive some
/// failed starts). Only processes whose command line begins with `runsc` and names the
/// container's full id are touched. With a remote engine there is nothing here to find.
pub fn kill_leftovers(id: &str) -> usize {
    if id.len() < 32 {
        return 0;
    }
    let pids = runtime_processes(id);
    for &pid in &pids {
        // SAFETY: kill(2) with a pid and a signal number has no memory-safety preconditions.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    if !pids.is_empty() {
        tracing::warn!(
            container = id,
            processes = pids.len(),
            "killed runtime processes a container left behind"
        );
    }
    pids.len()
}

/// Whether each OCI runtime the policies name can take runs: registered with the engine, and a
/// container of it runs a program (under the seccomp filter, unless it is gVisor).
#[derive(Default)]
pub struct RuntimeChecks {
    state: RwLock<HashMap<String, Check>>,
}

#[derive(Clone)]
struct Check {
    policies: Vec<String>,
    problem: Option<String>,
    at: Option<Instant>,
}

/// A failed check is repeated at most this often, when a run asks for the runtime.
pub const RECHECK_AFTER: Duration = Duration::from_secs(10);

const UNCHECKED: &str = "not checked yet";

impl RuntimeChecks {
    /// Track the runtime of every policy that allows docker and names one.
    pub fn add_policies(&self, policies: &PolicySet) {
        let mut st = self.state.write().unwrap();
        for p in policies
            .policies
            .values()
            .filter(|p| p.executors.iter().any(|e| e == "docker"))
        {
            if let Some(rt) = &p.docker_runtime {
                let c = st.entry(rt.clone()).or_insert(Check {
                    policies: Vec::new(),
                    problem: Some(UNCHECKED.into()),
                    at: None,
                });
                if !c.policies.contains(&p.name) {
                    c.policies.push(p.name.clone());
                }
            }
        }
    }

    pub fn runtimes(&self) -> Vec<String> {
        self.state.read().unwrap().keys().cloned().collect()
    }

    /// None when `runtime` passed its last check; else the problem, and whether it is due for
    /// another check (a runtime never checked is due).
    pub fn problem(&self, runtime: &str) -> Option<(String, bool)> {
        let st = self.state.read().unwrap();
        let Some(c) = st.get(runtime) else {
            return Some((UNCHECKED.into(), true));
        };
        let problem = c.problem.clone()?;
        Some((problem, c.at.is_none_or(|t| t.elapsed() >= RECHECK_AFTER)))
    }

    pub fn record(&self, runtime: &str, problem: Option<String>) {
        let mut st = self.state.write().unwrap();
        let c = st.entry(runtime.to_string()).or_insert(Check {
            policies: Vec::new(),
            problem: None,
            at: None,
        });
        if c.problem != problem {
            match &problem {
                Some(p) => {
                    tracing::warn!(runtime, policies = ?c.policies, problem = %p, "OCI runtime cannot take runs")
                }
                None => tracing::info!(runtime, policies = ?c.policies, "OCI runtime ready"),
            }
        }
        c.problem = problem;
        c.at = Some(Instant::now());
    }

    /// For `/readyz`: each runtime's state and the policies that use it.
    pub fn report(&self) -> serde_json::Value {
        let st = self.state.read().unwrap();
        let m: BTreeMap<&String, serde_json::Value> = st
            .iter()
            .map(|(rt, c)| {
                let detail = c.problem.clone().unwrap_or_else(|| "ready".into());
                (rt, serde_json::json!({"ready": c.problem.is_none(), "detail": detail, "policies": c.policies}))
            })
            .collect();
        serde_json::json!(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runsc_and_its_variants_are_gvisor() {
        assert!(is_gvisor(Some("runsc")) && is_gvisor(Some("runsc-kvm")));
        assert!(
            !is_gvisor(Some("runc"))
                && !is_gvisor(Some("crun"))
                && !is_gvisor(None)
                && !is_gvisor(Some("runscx"))
        );
    }

    /// Under runsc: every other protection as under runc; pids as RLIMIT_NPROC with the host's
    /// pids limit as a backstop the Sentry can start under.
    #[test]
    fn a_gvisor_container_counts_tasks_in_the_sentry() {
        use super::super::container::{create_body, Shape};
        let limits = Limits {
            wall_time_ms: 1000,
            cpu_time_ms: 2500,
            memory_bytes: 64 << 20,
            pids: 16,
            output_bytes: 1 << 20,
            disk_bytes: 8 << 20,
        };
        let shape = Shape {
            image: "img".into(),
            limits,
            open_files: 128,
            runtime: Some("runsc".into()),
            nano_cpus: 1_000_000_000,
        };
        let mounts = super::super::container::Mounts {
            binary: "/usr/bin/execbox".into(),
            run_dir: "/run/x".into(),
            work: None,
            path: "/usr/bin:/bin".into(),
        };
        let (runc, runsc) = (
            create_body(
                &Shape {
                    runtime: None,
                    ..shape.clone()
                },
                "i",
                60_001,
                &mounts,
            )
            .host_config
            .unwrap(),
            create_body(&shape, "i", 60_001, &mounts)
                .host_config
                .unwrap(),
        );
        assert_eq!(runsc.runtime.as_deref(), Some("runsc"));
        assert_eq!(runsc.pids_limit, Some(64 + 32 * 16));
        let nproc = runsc
            .ulimits
            .as_ref()
            .unwrap()
            .iter()
            .find(|u| u.name.as_deref() == Some("nproc"))
            .unwrap();
        assert_eq!((nproc.soft, nproc.hard), (Some(15), Some(15)));
        // No call cgroup under gVisor: the container's memory is the run's own, no supervisor share.
        assert_eq!(runsc.memory, Some(64 << 20));
        assert!(runc.memory > runsc.memory);
        // Everything else is the same body.
        let same = |h: &bollard::models::HostConfig| {
            (
                h.network_mode.clone(),
                h.nano_cpus,
                h.readonly_rootfs,
                h.tmpfs.clone(),
                h.cap_drop.clone(),
                h.init,
                h.ipc_mode.clone(),
                h.security_opt.clone(),
            )
        };
        assert_eq!(same(&runsc), same(&runc));
        assert!(runc
            .ulimits
            .unwrap()
            .iter()
            .all(|u| u.name.as_deref() != Some("nproc")));
    }

    #[test]
    fn unchecked_runtimes_are_not_ready_and_due() {
        let set = PolicySet::embedded().unwrap();
        let checks = RuntimeChecks::default();
        assert_eq!(checks.problem("runsc"), Some((UNCHECKED.into(), true)));
        checks.add_policies(&set);
        assert_eq!(checks.runtimes(), ["runsc"]);
        assert_eq!(checks.problem("runsc"), Some((UNCHECKED.into(), true)));
        assert_eq!(checks.report()["runsc"]["ready"], false);
        checks.record("runsc", None);
        assert!(checks.problem("runsc").is_none());
        checks.record("runsc", Some("broken".into()));
        assert_eq!(checks.problem("runsc"), Some(("broken".into(), false)));
        assert_eq!(
            checks.report()["runsc"]["policies"],
            serde_json::json!(["gvisor"])
        );
    }
}
