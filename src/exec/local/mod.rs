//! The local executor: every run in fresh Linux namespaces, a per-run cgroup, rlimits and a
//! seccomp filter, built by re-executing our own binary as a single-threaded helper
//! (`helper.rs`), prepared ahead of time (`warm.rs`). This side (inside the tokio service)
//! hands a sandbox its run, owns the deadline, drains the output and turns what happened into
//! a [`RunResult`].

pub mod cgroup;
pub mod helper;
mod mounts;
mod output;
pub mod seccomp;
pub mod spec;
mod warm;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use cgroup::{CgroupBackend, RunCgroup};
use spec::{BootSpec, RunSpec, SandboxReport, StagedFile};
use tokio::io::AsyncWriteExt;
use warm::{Preparer, WarmPool};

use super::pipeline::{self, compile_then_run, Compiled, Steps};
use super::runtime::{Runtime, RuntimeTable};
use super::uids::{UidLease, Uids};
use super::{
    BoxFuture, ExecError, Executor, Job, JobFile, Readiness, RunResult, Status, StepEnd,
    StepResult, Usage,
};
use crate::policy::Limits;

/// How the local executor is set up (from the service config).
#[derive(Debug, Clone)]
pub struct LocalConfig {
    /// The binary re-executed as `<helper> __sandbox <dir>` (normally our own executable).
    pub helper: PathBuf,
    /// Where runs are staged; `<data-dir>/runs/<instance>`.
    pub staging_root: PathBuf,
    pub instance: String,
    /// The service's one uid allocator: each run takes its own uid for as long as it lives.
    pub uids: Arc<Uids>,
    /// The languages (`runtimes.toml`, or the config's file).
    pub runtimes: Arc<RuntimeTable>,
    /// Run without cgroup limits when the host offers none (reported on /readyz).
    pub allow_degraded: bool,
    /// Sandboxes kept prepared ahead of runs.
    pub warm: usize,
}

pub struct LocalExecutor {
    cfg: LocalConfig,
    table: Arc<RuntimeTable>,
    cgroups: Option<Arc<dyn CgroupBackend>>,
    pool: Arc<WarmPool>,
    user_namespace: bool,
    degraded: Option<String>,
    /// Probed at start: language → version line, for the runtimes that work here.
    versions: RwLock<HashMap<String, String>>,
}

/// One sandboxed process to run.
struct Step<'a> {
    argv: Vec<String>,
    env: Vec<(String, String)>,
    files: &'a [JobFile],
    /// A file from an earlier step's `out/` to place in /work (the compiled binary).
    artifact: Option<(&'a str, PathBuf)>,
    stdin: &'a [u8],
    limits: Limits,
    open_files: u64,
    collect: Option<String>,
    stream: Option<super::OutputSink>,
    /// The run's uid, held until every step's processes are gone.
    uid: Arc<UidLease>,
}

/// What a step left behind: its result, plus the path of a collected artifact.
struct StepOutcome {
    result: StepResult,
    collected: Option<PathBuf>,
    guard: StagingGuard,
}

/// Removes a step's staging directory and cgroup however the step ends (even if the future
/// running it is dropped).
struct StagingGuard {
    dir: Option<PathBuf>,
    cgroup: Option<Box<dyn RunCgroup>>,
    uid: Option<Arc<UidLease>>,
}

impl StagingGuard {
    /// Kill what is left, remove the cgroup and the staging dir, then let the uid go (its
    /// processes are gone). Idempotent.
    fn cleanup(&mut self) {
        if let Some(cg) = self.cgroup.take() {
            if let Err(e) = cg.destroy() {
                tracing::warn!(error = %e, "could not remove run cgroup");
            }
        }
        self.uid.take();
        if let Some(dir) = self.dir.take() {
            if let Err(e) = std::fs::remove_dir_all(&dir) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(dir = %dir.display(), error = %e, "could not remove staging dir");
                }
            }
        }
    }

    /// Clean up on the blocking pool (cgroup removal may sleep between retries), and only
    /// then let the run's answer go out.
    async fn finish(mut self) {
        let mut this = StagingGuard {
            dir: self.dir.take(),
            cgroup: self.cgroup.take(),
            uid: self.uid.take(),
        };
        let _ = tokio::task::spawn_blocking(move || this.cleanup()).await;
    }
}

impl Drop for StagingGuard {
    /// Only reached with work left when a run is cancelled or fails half-way.
    fn drop(&mut self) {
        self.cleanup();
    }
}

/// A one-shot run's steps, each in a sandbox of its own: the compile step's artifact is
/// collected into its staging dir and placed, executable, in the run step's /work.
struct RunSteps<'a> {
    exec: &'a LocalExecutor,
    job: &'a Job,
    /// The job's files and its source.
    files: Vec<JobFile>,
    uid: Arc<UidLease>,
}

impl Steps for RunSteps<'_> {
    /// The compile step, kept (its staging dir holds the artifact) until the run step has
    /// staged it.
    type Artifact = StepOutcome;

    fn compile(
        &self,
        argv: Vec<String>,
    ) -> BoxFuture<'_, Result<Compiled<StepOutcome>, ExecError>> {
        Box::pin(async move {
            let job = self.job;
            let o = self
                .exec
                .step(Step {
                    argv,
                    env: pipeline::compile_env(self.exec.base_env(), job),
                    files: &self.files,
                    artifact: None,
                    stdin: b"",
                    limits: job.compile_limits,
                    open_files: job.open_files.max(256),
                    collect: job.runtime.artifact.clone(),
                    stream: None,
                    uid: self.uid.clone(),
                })
                .await?;
            let result = o.result.clone();
            if result.status == Status::Ok && o.collected.is_some() {
                return Ok((result, Some(o)));
            }
            o.guard.finish().await;
            Ok((result, None))
        })
    }

    fn run(
        &self,
        argv: Vec<String>,
        compiled: Option<StepOutcome>,
    ) -> BoxFuture<'_, Result<StepResult, ExecError>> {
        Box::pin(async move {
            let job = self.job;
            let artifact = compiled.as_ref().and_then(|o| {
                let name = job.runtime.artifact.as_deref()?;
                Some((name, o.collected.clone()?))
            });
            let run = self
                .exec
                .step(Step {
                    argv,
                    env: pipeline::env(self.exec.base_env(), job),
                    // After a compile step the compiled program is the run step's only file.
                    files: if artifact.is_some() { &[] } else { &self.files },
                    artifact,
                    stdin: &job.stdin,
                    limits: job.limits,
                    open_files: job.open_files,
                    collect: None,
                    stream: job.stream.clone(),
                    uid: self.uid.clone(),
                })
                .await;
            if let Some(o) = compiled {
                o.guard.finish().await;
            }
            let run = run?;
            run.guard.finish().await;
            Ok(run.result)
        })
    }
}

/// How long a run waits for a uid when every one is held (runs finishing free theirs).
const UID_WAIT: Duration = Duration::from_secs(10);

enum Ended {
    Exited,
    Deadline,
    CpuLimit,
}

impl LocalExecutor {
    /// Detect what isolation the host gives, sweep what an earlier instance left behind, and
    /// refuse (unless degraded mode is allowed) when the promised isolation is not available.
    pub fn new(cfg: LocalConfig) -> Result<LocalExecutor, ExecError> {
        let unavailable = |m: String| ExecError::Unavailable("local".into(), m);
        if !cfg!(target_os = "linux") {
            return Err(unavailable(
                "the local executor needs Linux namespaces".into(),
            ));
        }
        let user_namespace = !nix::unistd::geteuid().is_root();
        seccomp::compile().map_err(unavailable)?;
        let (cgroups, degraded) = match cgroup::detect(&cfg.instance) {
            Ok(b) => (Some(Arc::<dyn CgroupBackend>::from(b)), None),
            Err(e) if cfg.allow_degraded => (None, Some(format!("no cgroup limits: {e}"))),
            Err(e) => {
                return Err(unavailable(format!(
                    "{e}. Without cgroups there is no memory, process or CPU accounting for runs; \
                     run as root or in a delegated cgroup, or set local.allow_degraded = true to accept a degraded sandbox"
                )))
            }
        };
        if let Some(cg) = &cgroups {
            match cg.sweep() {
                Ok(0) => {}
                Ok(n) => tracing::info!(
                    removed = n,
                    "removed run cgroups left by an earlier instance"
                ),
                Err(e) => return Err(unavailable(format!("cannot sweep leftover cgroups: {e}"))),
            }
        }
        if cfg.staging_root.exists() {
            std::fs::remove_dir_all(&cfg.staging_root).map_err(|e| {
                ExecError::Io(format!("removing {}", cfg.staging_root.display()), e)
            })?;
        }
        std::fs::create_dir_all(&cfg.staging_root)
            .map_err(|e| ExecError::Io(format!("creating {}", cfg.staging_root.display()), e))?;
        set_mode(&cfg.staging_root, 0o711)?;
        let table = cfg.runtimes.clone();
        let preparer = Preparer {
            helper: cfg.helper.clone(),
            staging_root: cfg.staging_root.clone(),
            cgroups: cgroups.clone(),
            boot: BootSpec {
                user_namespace,
                ro_paths: table.ro_paths(),
                path: table.sandbox.path.clone(),
                cgroup_procs: vec![],
                initial_disk_bytes: 64 << 20,
                hostname: "sandbox".into(),
                supervisor: None,
            },
        };
        let pool = WarmPool::new(preparer, cfg.warm);
        Ok(LocalExecutor {
            cfg,
            table,
            cgroups,
            pool,
            user_namespace,
            degraded,
            versions: RwLock::new(HashMap::new()),
        })
    }

    /// Run the version command of every runtime (or only `only`) in a real sandbox; keep
    /// those that work. One after another, to keep start-up load low on small hosts.
    pub async fn probe(&self, only: Option<&str>) -> Vec<(String, Result<String, String>)> {
        let limits = Limits {
            wall_time_ms: 20_000,
            cpu_time_ms: 20_000,
            memory_bytes: 512 << 20,
            pids: 32,
            output_bytes: 4096,
            disk_bytes: 1 << 20,
        };
        let mut results = Vec::new();
        for rt in self
            .table
            .runtimes
            .iter()
            .filter(|r| only.is_none_or(|o| o == r.language))
        {
            let uid = match self.cfg.uids.acquire(UID_WAIT).await {
                Ok(l) => Arc::new(l),
                Err(e) => {
                    results.push((rt.language.clone(), Err(e.to_string())));
                    continue;
                }
            };
            let step = Step {
                argv: rt.version.clone(),
                env: self.base_env(),
                files: &[],
                artifact: None,
                stdin: b"",
                limits,
                open_files: 64,
                collect: None,
                stream: None,
                uid,
            };
            let outcome = match self.step(step).await {
                Ok(o) => {
                    let r = o.result.clone();
                    o.guard.finish().await;
                    if r.status == Status::Ok {
                        let text = format!(
                            "{}\n{}",
                            String::from_utf8_lossy(&r.stdout),
                            String::from_utf8_lossy(&r.stderr)
                        );
                        Ok(text
                            .lines()
                            .map(str::trim)
                            .find(|l| !l.is_empty())
                            .unwrap_or("unknown")
                            .to_string())
                    } else {
                        Err(format!(
                            "{} ended with {}: {}",
                            rt.version.join(" "),
                            r.status.as_str(),
                            String::from_utf8_lossy(&r.stderr).trim()
                        ))
                    }
                }
                Err(e) => Err(e.to_string()),
            };
            if let Ok(v) = &outcome {
                self.versions
                    .write()
                    .unwrap()
                    .insert(rt.language.clone(), v.clone());
            }
            results.push((rt.language.clone(), outcome));
        }
        results
    }

    /// Start preparing sandboxes ahead of runs.
    pub fn warm_up(&self) {
        self.pool.refill();
    }

    /// Languages that passed the probe, with their versions.
    pub fn available(&self) -> HashMap<String, String> {
        self.versions.read().unwrap().clone()
    }

    /// Remove this instance's cgroup directory and staging root (graceful stop).
    pub fn shutdown(&self) {
        self.pool.close();
        if let Some(cg) = &self.cgroups {
            if let Err(e) = cg.remove_instance() {
                tracing::warn!(error = %e, "could not remove instance cgroup");
            }
        }
        let _ = std::fs::remove_dir_all(&self.cfg.staging_root);
    }

    /// The helper binary re-executed for every sandbox.
    pub fn helper(&self) -> &Path {
        &self.cfg.helper
    }

    pub fn cgroups(&self) -> Option<Arc<dyn CgroupBackend>> {
        self.cgroups.clone()
    }

    pub fn uids(&self) -> &Arc<Uids> {
        &self.cfg.uids
    }

    /// Whether sandboxes get a user namespace (the service is not root).
    pub fn user_namespace(&self) -> bool {
        self.user_namespace
    }

    /// The boot spec every sandbox starts from (a persistent one adds its supervisor part).
    pub fn boot_template(&self) -> BootSpec {
        BootSpec {
            user_namespace: self.user_namespace,
            ro_paths: self.table.ro_paths(),
            path: self.table.sandbox.path.clone(),
            cgroup_procs: vec![],
            initial_disk_bytes: 64 << 20,
            hostname: "sandbox".into(),
            supervisor: None,
        }
    }

    /// The environment every program starts from.
    pub fn base_env(&self) -> Vec<(String, String)> {
        vec![
            ("PATH".into(), self.table.sandbox.path.clone()),
            ("HOME".into(), "/work".into()),
            ("LANG".into(), "C.UTF-8".into()),
            ("TMPDIR".into(), "/tmp".into()),
        ]
    }

    async fn run_job(&self, job: &Job) -> Result<RunResult, ExecError> {
        let rt: &Runtime = &job.runtime;
        let version = self.available().get(&rt.language).cloned().ok_or_else(|| {
            ExecError::Unavailable(
                "local".into(),
                format!("runtime {} did not pass its start-up probe", rt.language),
            )
        })?;
        // One uid for the run's steps; each step's guard keeps it until that step's processes
        // are gone.
        let steps = RunSteps {
            exec: self,
            job,
            files: pipeline::files(job),
            uid: Arc::new(self.cfg.uids.acquire(UID_WAIT).await?),
        };
        compile_then_run(job, &steps, "local", version).await
    }

    /// Hand a prepared sandbox its run, wait (owning the deadline), collect.
    async fn step(&self, step: Step<'_>) -> Result<StepOutcome, ExecError> {
        // Not on the blocking pool: see `warm::WarmPool::refill` on PDEATHSIG and threads.
        let sb = self.pool.take()?;
        let dir = sb.dir.clone();
        let (uid, gid) = (step.uid.uid(), step.uid.uid());
        let guard = StagingGuard {
            dir: Some(sb.dir),
            cgroup: sb.cgroup,
            uid: Some(step.uid),
        };
        let (mut child, mut stdin_pipe) = (sb.child, sb.stdin);
        let io = |what: &str| {
            let what = format!("{what} in {}", dir.display());
            move |e| ExecError::Io(what, e)
        };
        let mut cpu_base = 0;
        if let Some(cg) = &guard.cgroup {
            cg.set_limits(&step.limits)
                .map_err(|e| ExecError::Setup(e.to_string()))?;
            cg.reset_peak();
            cpu_base = cg.cpu_time_ns();
        }
        std::fs::write(dir.join(spec::STDIN), step.stdin).map_err(io("writing stdin"))?;
        use base64::Engine;
        let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
        let mut files: Vec<StagedFile> = step
            .files
            .iter()
            .map(|f| StagedFile {
                path: f.path.clone(),
                content_b64: b64(&f.content),
                executable: false,
            })
            .collect();
        if let Some((name, src)) = &step.artifact {
            let bytes = std::fs::read(src).map_err(io("reading the compiled program"))?;
            files.push(StagedFile {
                path: name.to_string(),
                content_b64: b64(&bytes),
                executable: true,
            });
        }
        let run = RunSpec {
            uid,
            gid,
            argv: step.argv,
            env: step.env,
            files,
            disk_bytes: step.limits.disk_bytes,
            cpu_time_ms: step.limits.cpu_time_ms,
            open_files: step.open_files,
            collect: step.collect.clone(),
        };
        let run_json = serde_json::to_vec(&run).expect("run spec serializes");

        let started = Instant::now();
        let sink = |kind| step.stream.clone().map(|tx| (tx, kind));
        let stdout = tokio::spawn(output::drain(
            sb.stdout,
            step.limits.output_bytes,
            sink(super::StreamKind::Stdout),
        ));
        let stderr = tokio::spawn(output::drain(
            sb.stderr,
            step.limits.output_bytes,
            sink(super::StreamKind::Stderr),
        ));
        // The run spec goes in, and EOF tells PID 1 to start. A sandbox that died while it
        // waited shows up as a write error here and as a missing report below.
        let _ = stdin_pipe.write_all(&run_json).await;
        drop(stdin_pipe);

        let deadline = tokio::time::sleep(Duration::from_millis(step.limits.wall_time_ms));
        tokio::pin!(deadline);
        let mut poll = tokio::time::interval(Duration::from_millis(20));
        let cpu_limit_ns = step.limits.cpu_time_ms.saturating_mul(1_000_000);
        let ended = loop {
            tokio::select! {
                r = child.wait() => { r.map_err(|e| ExecError::Io("waiting for the sandbox helper".into(), e))?; break Ended::Exited; }
                _ = &mut deadline => break Ended::Deadline,
                _ = poll.tick() => {
                    if guard.cgroup.as_ref().is_some_and(|cg| cg.cpu_time_ns().saturating_sub(cpu_base) >= cpu_limit_ns) {
                        break Ended::CpuLimit;
                    }
                }
            }
        };
        if !matches!(ended, Ended::Exited) {
            // PID 1 dies with the helper (PDEATHSIG), and the kernel then kills the whole pid
            // namespace; kill_all covers anything that raced into the cgroup meanwhile.
            let _ = child.start_kill();
            if let Some(cg) = &guard.cgroup {
                cg.kill_all();
            }
            child
                .wait()
                .await
                .map_err(|e| ExecError::Io("reaping the sandbox helper".into(), e))?;
        }
        let wall = started.elapsed();
        let grace = Duration::from_secs(5);
        let stdout = tokio::time::timeout(grace, stdout)
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
        let stderr = tokio::time::timeout(grace, stderr)
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
        let cg_usage = guard
            .cgroup
            .as_ref()
            .map(|cg| cg.usage())
            .map(|u| cgroup::CgroupUsage {
                cpu_time_ns: u.cpu_time_ns.saturating_sub(cpu_base),
                ..u
            });
        let report: Option<SandboxReport> = std::fs::read(dir.join(spec::REPORT))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());

        if let Some(SandboxReport {
            setup_error: Some(e),
            ..
        }) = &report
        {
            return Err(ExecError::Setup(e.clone()));
        }
        let end = match (&ended, &report) {
            (Ended::Deadline, _) => StepEnd::Deadline,
            (Ended::CpuLimit, _) => StepEnd::CpuLimit,
            (Ended::Exited, None) => {
                return Err(ExecError::Setup(format!(
                    "the sandbox helper ended without a report: {}",
                    String::from_utf8_lossy(&stderr.bytes).trim()
                )))
            }
            (Ended::Exited, Some(r)) => StepEnd::Exited {
                exit_code: r.exit_code,
                signal: r.signal,
            },
        };
        let (exit_code, signal, status) = super::classify(
            end,
            cg_usage.is_some_and(|u| u.oom_kills > 0),
            cg_usage.is_some_and(|u| u.cpu_time_ns >= cpu_limit_ns),
        );
        let usage = Usage {
            wall_time_ms: report
                .as_ref()
                .filter(|_| matches!(ended, Ended::Exited))
                .map(|r| r.wall_time_ms)
                .unwrap_or(wall.as_millis() as u64),
            cpu_time_ms: cg_usage
                .map(|u| u.cpu_time_ns / 1_000_000)
                .or(report.as_ref().map(|r| r.cpu_time_ms))
                .unwrap_or(0),
            peak_memory_bytes: cg_usage
                .map(|u| u.peak_memory_bytes)
                .or(report.as_ref().map(|r| r.max_rss_bytes))
                .unwrap_or(0),
        };
        let collected = match (&step.collect, &report) {
            (Some(name), Some(r)) if r.collected => Some(dir.join(spec::OUT).join(name)),
            _ => None,
        };
        let result = StepResult {
            status,
            exit_code,
            signal: signal.map(super::signal_name),
            stdout: stdout.bytes,
            stderr: stderr.bytes,
            stdout_truncated: stdout.truncated,
            stderr_truncated: stderr.truncated,
            usage,
        };
        Ok(StepOutcome {
            result,
            collected,
            guard,
        })
    }
}

impl Executor for LocalExecutor {
    fn name(&self) -> &'static str {
        "local"
    }

    fn run<'a>(&'a self, job: &'a Job) -> BoxFuture<'a, Result<RunResult, ExecError>> {
        Box::pin(self.run_job(job))
    }

    fn runtimes(&self) -> HashMap<String, String> {
        self.available()
    }

    fn readiness(&self) -> Readiness {
        let versions = self.available();
        let mut namespaces = vec!["mount", "pid", "net", "ipc", "uts"];
        if self.user_namespace {
            namespaces.push("user");
        }
        let features = serde_json::json!({
            "namespaces": namespaces,
            "pivot_root": true,
            "seccomp": true,
            "no_new_privs": true,
            "unprivileged_uid": !self.user_namespace,
            "uid_per_run": !self.user_namespace,
            "uids_in_use": self.cfg.uids.in_use(),
            "network": "loopback only",
            "warm_sandboxes": self.pool.idle(),
            "cgroup": self.cgroups.as_ref().map(|c| serde_json::to_value(c.features()).unwrap_or_default()),
            "runtimes": versions.keys().collect::<Vec<_>>(),
        });
        let ready = !versions.is_empty();
        Readiness {
            ready,
            degraded: self.degraded.is_some(),
            detail: match (&self.degraded, ready) {
                (_, false) => "no runtime passed its start-up probe".into(),
                (Some(why), true) => format!("degraded: {why}"),
                (None, true) => "full isolation".into(),
            },
            features,
        }
    }
}

fn set_mode(path: &Path, mode: u32) -> Result<(), ExecError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| ExecError::Io(format!("chmod {}", path.display()), e))
}
