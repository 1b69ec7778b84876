//! The Docker executor: one fresh, hardened container per run, taken from a warm pool, driven
//! through the engine's API (bollard; `DOCKER_HOST` must be this host's engine: containers
//! mount the service's binary and a directory of its data dir). Every container's entrypoint is
//! the supervisor; a step is one `Exec` request to it over its socket, the files and stdin
//! inside the request. The host owns the deadline and the CPU watch; the container is removed
//! after the run.

pub mod cgroup;
pub mod container;
pub mod gvisor;
pub(crate) mod oom;
pub mod pool;
mod seccomp_profile;
pub(crate) mod step;
pub mod supervised;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bollard::Docker;

use container::Shape;
use pool::Pool;

use super::call::CallCgroup;
use super::pipeline::{self, compile_then_run, Compiled, Steps};
use super::runtime::{Runtime, RuntimeTable};
use super::uids::{UidLease, Uids};
use super::{
    BoxFuture, ExecError, Executor, Job, JobFile, Readiness, RunResult, Status, StepResult, Usage,
};
use crate::policy::{Limits, PolicySet};

#[derive(Debug, Clone)]
pub struct DockerConfig {
    pub instance: String,
    /// Idle started containers kept per shape.
    pub pool_per_shape: usize,
    /// Idle started containers kept overall.
    pub pool_max_total: usize,
    /// CPUs each container may use.
    pub cpus: f64,
    /// The service's one uid allocator: every container holds its own uid until removed.
    pub uids: Arc<Uids>,
    /// The languages, with the image behind each (`runtimes.toml`, or the config's file).
    pub runtimes: Arc<RuntimeTable>,
    /// The service's own binary, mounted read-only into every container as its supervisor.
    pub binary: std::path::PathBuf,
    /// Where pool containers' run dirs live (`<data-dir>/docker/runs/<instance>`); emptied at start
    /// and at a graceful stop.
    pub run_root: std::path::PathBuf,
}

pub struct DockerExecutor {
    docker: Docker,
    cfg: DockerConfig,
    table: Arc<RuntimeTable>,
    images: HashMap<String, String>,
    pool: Arc<Pool>,
    ooms: Arc<oom::OomWatch>,
    reachable: Arc<AtomicBool>,
    problem: Arc<RwLock<Option<String>>>,
    /// Probed: language → version, for the languages whose image works.
    versions: RwLock<HashMap<String, String>>,
    /// Sandbox container id → the uid it holds for its life (reserved again at start from the
    /// container's label, before anything else can take it).
    sandbox_uids: std::sync::Mutex<HashMap<String, UidLease>>,
    /// Whether each policy's OCI runtime can take runs (see `gvisor.rs`).
    oci: gvisor::RuntimeChecks,
    /// One runtime check at a time.
    checking: tokio::sync::Mutex<()>,
}

impl DockerExecutor {
    /// Connect (DOCKER_HOST or the local socket) and sweep containers an earlier instance left.
    /// An engine that does not answer gives an executor that is not ready (and is pinged again
    /// every 10 s); an address that cannot even be dialled is an error for the caller to report.
    pub async fn new(cfg: DockerConfig) -> Result<DockerExecutor, String> {
        // This build speaks plain HTTP or a unix socket to the engine; TLS asked for must not be
        // silently dropped.
        if std::env::var("DOCKER_TLS_VERIFY").is_ok_and(|v| !v.is_empty()) {
            return Err("DOCKER_TLS_VERIFY is set, but this build cannot speak TLS to the Docker engine; forward the remote socket over SSH to a local unix socket and set DOCKER_HOST=unix://... instead".into());
        }
        let docker = Docker::connect_with_defaults()
            .map_err(|e| format!("cannot connect to the Docker engine: {e}"))?;
        let docker = match docker.clone().negotiate_version().await {
            Ok(d) => d,
            Err(_) => docker,
        };
        let table = cfg.runtimes.clone();
        let images = table.images();
        let mut warm_up = pool::WarmUp {
            env: base_env(&table),
            ..Default::default()
        };
        for rt in &table.runtimes {
            if let (Some(image), Some(argv)) = (images.get(&rt.language), &rt.warm) {
                warm_up
                    .commands
                    .entry(image.clone())
                    .or_default()
                    .push(argv.clone());
            }
        }
        let pool = Pool::new(
            docker.clone(),
            cfg.instance.clone(),
            cfg.pool_per_shape,
            cfg.pool_max_total,
            cfg.uids.clone(),
            pool::PoolMounts {
                binary: cfg.binary.clone(),
                run_root: cfg.run_root.clone(),
                path: table.sandbox.path.clone(),
            },
            warm_up,
        );
        let ooms = oom::OomWatch::start(docker.clone(), &cfg.instance);
        let exec = DockerExecutor {
            docker,
            cfg,
            table,
            images,
            pool,
            ooms,
            reachable: Arc::new(AtomicBool::new(false)),
            problem: Arc::new(RwLock::new(None)),
            versions: RwLock::new(HashMap::new()),
            sandbox_uids: Default::default(),
            oci: gvisor::RuntimeChecks::default(),
            checking: tokio::sync::Mutex::new(()),
        };
        match tokio::time::timeout(Duration::from_secs(5), exec.docker.ping()).await {
            Ok(Ok(_)) => {
                exec.reachable.store(true, Ordering::SeqCst);
                match container::sweep(&exec.docker, &exec.cfg.instance).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(
                        removed = n,
                        "removed containers left by an earlier instance"
                    ),
                    Err(e) => tracing::warn!(error = %e, "could not sweep leftover containers"),
                }
                exec.remove_run_dirs();
                exec.reserve_sandbox_uids().await;
            }
            Ok(Err(e)) => exec.set_problem(format!("the Docker engine is unreachable: {e}")),
            Err(_) => exec.set_problem(
                "the Docker engine is unreachable: no answer to a ping within 5 s".into(),
            ),
        }
        exec.watch_engine();
        Ok(exec)
    }

    /// Keep `reachable` current, so runs answer 503 while the engine is away and work again
    /// when it is back.
    fn watch_engine(&self) {
        let (docker, reachable, problem) = (
            self.docker.clone(),
            self.reachable.clone(),
            self.problem.clone(),
        );
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(10)).await;
                let ok = matches!(
                    tokio::time::timeout(Duration::from_secs(5), docker.ping()).await,
                    Ok(Ok(_))
                );
                if ok != reachable.swap(ok, Ordering::SeqCst) {
                    tracing::warn!(reachable = ok, "the Docker engine's reachability changed");
                }
                *problem.write().unwrap() = (!ok).then(|| {
                    "the Docker engine is unreachable: it stopped answering pings".to_string()
                });
            }
        });
    }

    /// Hold the uids of this instance's surviving sandbox containers again, so no run (nor the
    /// pool, which starts filling right after) is given one while its sandbox lives.
    async fn reserve_sandbox_uids(&self) {
        let found = match container::list_sandboxes(&self.docker, &self.cfg.instance).await {
            Ok(f) => f,
            Err(e) => {
                return tracing::warn!(error = %e, "could not list sandbox containers to reserve their uids")
            }
        };
        for c in found {
            let Some(uid) = c
                .labels
                .get(container::LABEL_UID)
                .and_then(|u| u.parse::<u32>().ok())
            else {
                continue;
            };
            match self.cfg.uids.reserve(uid) {
                Ok(Some(lease)) => self.hold_sandbox_uid(&c.id, lease),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(container = %c.id, error = %e, "a sandbox container's uid could not be reserved")
                }
            }
        }
    }

    /// A uid for a new sandbox's container (waiting a while when all are held).
    pub(crate) async fn sandbox_uid(&self) -> Result<UidLease, ExecError> {
        self.cfg.uids.acquire(Duration::from_secs(10)).await
    }

    /// Keep `lease` for as long as the sandbox container `id` lives.
    pub(crate) fn hold_sandbox_uid(&self, id: &str, lease: UidLease) {
        self.sandbox_uids
            .lock()
            .unwrap()
            .insert(id.to_string(), lease);
    }

    /// The sandbox container `id` is gone: its uid is free again.
    pub(crate) fn release_sandbox_uid(&self, id: &str) {
        self.sandbox_uids.lock().unwrap().remove(id);
    }

    /// The run dirs of pool containers (after their containers are gone).
    fn remove_run_dirs(&self) {
        match std::fs::remove_dir_all(&self.cfg.run_root) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(dir = %self.cfg.run_root.display(), error = %e, "could not remove pool run dirs")
            }
        }
    }

    /// The service's binary, which supervised containers mount.
    pub(crate) fn binary(&self) -> &std::path::Path {
        &self.cfg.binary
    }

    /// The PATH a program's argv[0] is resolved in.
    pub(crate) fn sandbox_path(&self) -> &str {
        &self.table.sandbox.path
    }

    /// The engine client, for the sandbox backend's own containers.
    pub(crate) fn engine(&self) -> &Docker {
        &self.docker
    }

    /// The instance name every container of this service is labelled with.
    pub(crate) fn instance(&self) -> &str {
        &self.cfg.instance
    }

    /// Forget a removed container's OOM record.
    pub(crate) fn forget_container(&self, id: &str) {
        self.ooms.forget(id);
    }

    fn set_problem(&self, p: String) {
        tracing::warn!(problem = %p, "docker executor not ready");
        *self.problem.write().unwrap() = Some(p);
    }

    pub(crate) fn unavailable(&self) -> Option<ExecError> {
        if self.reachable.load(Ordering::SeqCst) {
            return None;
        }
        let why = self
            .problem
            .read()
            .unwrap()
            .clone()
            .unwrap_or_else(|| "the Docker engine is unreachable".into());
        Some(ExecError::Unavailable("docker".into(), why))
    }

    pub fn image_of(&self, language: &str) -> Option<&str> {
        self.images.get(language).map(String::as_str)
    }

    pub fn available(&self) -> HashMap<String, String> {
        self.versions.read().unwrap().clone()
    }

    pub(crate) fn shape(
        &self,
        image: &str,
        limits: Limits,
        open_files: u64,
        runtime: Option<String>,
    ) -> Shape {
        Shape {
            image: image.to_string(),
            limits,
            open_files,
            runtime,
            nano_cpus: (self.cfg.cpus * 1e9) as i64,
        }
    }

    /// Run each language's version command in its image; keep those that work.
    pub async fn probe(&self, only: Option<&str>) -> Vec<(String, Result<String, String>)> {
        let mut results = Vec::new();
        if self.unavailable().is_some() {
            return results;
        }
        let limits = Limits {
            wall_time_ms: 30_000,
            cpu_time_ms: 30_000,
            memory_bytes: 512 << 20,
            pids: 32,
            output_bytes: 4096,
            disk_bytes: 1 << 20,
        };
        for rt in self
            .table
            .runtimes
            .iter()
            .filter(|r| only.is_none_or(|o| o == r.language))
        {
            let Some(image) = self.image_of(&rt.language) else {
                continue;
            };
            let outcome = match self.docker.inspect_image(image).await {
                Err(e) => Err(format!(
                    "image {image} is not available ({e}); build it with images/build.sh"
                )),
                Ok(_) => {
                    let shape = self.shape(image, limits, 64, None);
                    let input = StepInput {
                        argv: rt.version.clone(),
                        env: vec![],
                        files: &[],
                        executable: None,
                        stdin: b"",
                        stream: None,
                    };
                    match self.step(&shape, input, None).await {
                        Ok((r, _)) if r.status == Status::Ok => {
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
                        }
                        Ok((r, _)) => Err(format!(
                            "{} ended with {}: {}",
                            rt.version.join(" "),
                            r.status.as_str(),
                            String::from_utf8_lossy(&r.stderr).trim()
                        )),
                        Err(e) => Err(e.to_string()),
                    }
                }
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

    /// Check the OCI runtime of every policy that names one (after `probe`): a runtime that
    /// fails makes its policies' runs answer 503 (and `/readyz` say why), never the executor.
    pub async fn check_runtimes(&self, policies: &PolicySet) {
        self.oci.add_policies(policies);
        for rt in self.oci.runtimes() {
            let problem = self.check_runtime(&rt).await;
            self.oci.record(&rt, problem);
        }
    }

    /// Registered with the engine, and a container of it runs a program: under its seccomp filter,
    /// or, for gVisor, under gVisor's kernel (whose exec'd programs get no OCI seccomp filter; see
    /// `gvisor.rs`). None when all hold.
    async fn check_runtime(&self, rt: &str) -> Option<String> {
        if self.unavailable().is_some() {
            return Some("the Docker engine is unreachable".into());
        }
        let registered = match self.docker.info().await {
            Ok(info) => info.runtimes.unwrap_or_default().contains_key(rt),
            Err(e) => {
                return Some(format!(
                    "cannot ask the Docker engine for its runtimes: {e}"
                ))
            }
        };
        if !registered {
            return Some(format!(
                "the Docker engine has no OCI runtime named \"{rt}\"; register it in the engine's daemon.json and send dockerd SIGHUP (README: gVisor; .ci/gvisor.sh does it for runsc)"
            ));
        }
        let available = self.available();
        let mut langs: Vec<&String> = available.keys().collect();
        langs.sort_by_key(|l| (l.as_str() != "python", l.as_str()));
        let Some(image) = langs.first().and_then(|l| self.image_of(l)) else {
            return Some(
                "no runtime image passed its start-up probe; build them with images/build.sh"
                    .into(),
            );
        };
        let limits = Limits {
            wall_time_ms: 30_000,
            cpu_time_ms: 30_000,
            memory_bytes: 512 << 20,
            pids: 32,
            output_bytes: 4096,
            disk_bytes: 1 << 20,
        };
        let shape = self.shape(image, limits, 64, Some(rt.to_string()));
        let input = StepInput {
            argv: vec![
                "cat".into(),
                "/proc/self/status".into(),
                "/proc/version".into(),
            ],
            env: vec![],
            files: &[],
            executable: None,
            stdin: b"",
            stream: None,
        };
        match self.step(&shape, input, None).await {
            Ok((r, _)) if r.status == Status::Ok => {
                let stdout = String::from_utf8_lossy(&r.stdout);
                let seccomp = stdout
                    .lines()
                    .find_map(|l| l.strip_prefix("Seccomp:"))
                    .map(str::trim)
                    .unwrap_or("absent");
                let host_kernel = std::fs::read_to_string("/proc/version")
                    .ok()
                    .filter(|v| !v.trim().is_empty());
                if gvisor::is_gvisor(Some(rt)) {
                    // gVisor's own kernel, not the host's, must answer.
                    host_kernel.filter(|v| stdout.contains(v.trim())).map(|_| format!("the OCI runtime \"{rt}\" runs programs on the host's kernel, not gVisor's"))
                } else {
                    (seccomp != "2").then(|| format!("containers of the OCI runtime \"{rt}\" run without their seccomp filter (Seccomp: {seccomp} inside)"))
                }
            }
            Ok((r, _)) => Some(format!(
                "a container of the OCI runtime \"{rt}\" could not run a program: {} {}",
                r.status.as_str(),
                String::from_utf8_lossy(&r.stderr).trim()
            )),
            Err(e) => Some(format!(
                "a container of the OCI runtime \"{rt}\" could not run a program: {e}"
            )),
        }
    }

    /// Refuse a run whose OCI runtime failed its check (checked again at most every 10 s, so a
    /// runtime registered later is taken up without a restart).
    pub(crate) async fn ensure_runtime(
        &self,
        rt: Option<&str>,
        policy: &str,
    ) -> Result<(), ExecError> {
        let Some(rt) = rt else { return Ok(()) };
        let refuse = |p: String| {
            ExecError::Unavailable(
                "docker".into(),
                format!(
                    "policy {policy} runs on the OCI runtime \"{rt}\", which cannot take runs: {p}"
                ),
            )
        };
        match self.oci.problem(rt) {
            None => Ok(()),
            Some((p, false)) => Err(refuse(p)),
            Some((_, true)) => {
                let _one = self.checking.lock().await;
                if let Some((_, true)) = self.oci.problem(rt) {
                    let problem = self.check_runtime(rt).await;
                    self.oci.record(rt, problem);
                }
                match self.oci.problem(rt) {
                    None => Ok(()),
                    Some((p, _)) => Err(refuse(p)),
                }
            }
        }
    }

    /// Keep the default shape of each policy that allows docker warm, for the python image
    /// (the most common first run); other shapes are kept warm once they are asked for.
    pub fn prewarm(&self, policies: &PolicySet) {
        for p in policies
            .policies
            .values()
            .filter(|p| p.executors.iter().any(|e| e == "docker"))
        {
            if p.docker_runtime
                .as_deref()
                .is_some_and(|rt| self.oci.problem(rt).is_some())
            {
                continue;
            }
            if let Some(image) = self
                .image_of("python")
                .filter(|_| self.available().contains_key("python"))
            {
                self.pool.prewarm(self.shape(
                    image,
                    p.defaults,
                    p.open_files,
                    p.docker_runtime.clone(),
                ));
            }
        }
    }

    /// Remove the pool and every container of this instance (graceful stop).
    pub async fn shutdown(&self) {
        self.pool.close().await;
        if self.reachable.load(Ordering::SeqCst) {
            if let Err(e) = container::sweep(&self.docker, &self.cfg.instance).await {
                tracing::warn!(error = %e, "could not remove containers at shutdown");
            }
        }
        self.remove_run_dirs();
    }

    pub(crate) fn base_env(&self) -> Vec<(String, String)> {
        base_env(&self.table)
    }

    async fn run_job(&self, job: &Job) -> Result<RunResult, ExecError> {
        self.ensure_runtime(job.docker_runtime.as_deref(), &job.policy)
            .await?;
        if let Some(e) = self.unavailable() {
            return Err(e);
        }
        let rt: &Runtime = &job.runtime;
        let version = self.available().get(&rt.language).cloned().ok_or_else(|| {
            ExecError::Unavailable(
                "docker".into(),
                format!(
                    "the image for {} did not pass its start-up probe",
                    rt.language
                ),
            )
        })?;
        let image = self
            .image_of(&rt.language)
            .expect("probed languages have an image")
            .to_string();
        let steps = RunSteps {
            exec: self,
            job,
            image,
        };
        compile_then_run(job, &steps, "docker", version).await
    }

    /// One process in a fresh container of `shape`: run it (one request to the container's
    /// supervisor, in a cgroup of its own below the container's), collect the artifact, remove
    /// the container. Returns the collected artifact's bytes when `collect` names a file of /work.
    async fn step(
        &self,
        shape: &Shape,
        input: StepInput<'_>,
        collect: Option<&str>,
    ) -> Result<(StepResult, Option<Vec<u8>>), ExecError> {
        let gvisor = gvisor::is_gvisor(shape.runtime.as_deref());
        let warm = self.pool.take(shape).await.map_err(|e| match (gvisor, e) {
            (true, ExecError::Unavailable(_, why)) => gvisor::start_failed(shape, why),
            (_, e) => e,
        })?;
        let pool::Warm {
            id,
            uid,
            run_dir,
            sup,
        } = warm;
        let _remove = RemoveOnDrop {
            docker: self.docker.clone(),
            id: id.clone(),
            ooms: self.ooms.clone(),
            uid: Some(uid),
            run_dir: Some(run_dir),
        };
        // Under gVisor the container's cgroup holds gVisor's kernel, not the program: the
        // container's own figures count, from what it spent before this step on (its kernel's
        // boot). So they do where the call's cgroup is not on this host.
        let own = if gvisor {
            None
        } else {
            cgroup::call_cgroup(&id, &shape.limits)
                .map_err(|e| ExecError::Setup(format!("creating the call's cgroup: {e}")))?
        };
        let share = own
            .is_none()
            .then(|| cgroup::ContainerShare::start(&id))
            .flatten();
        let target = step::Target {
            id: &id,
            sup: &sup,
            cgroup: match (&own, &share) {
                (Some(c), _) => Some(c as &dyn CallCgroup),
                (None, Some(s)) => Some(s as &dyn CallCgroup),
                (None, None) => None,
            },
            own_cgroup: own.is_some(),
            ooms: &self.ooms,
        };
        let ran = target
            .run(&shape.limits, shape.open_files, input, collect)
            .await;
        // The call's cgroup goes (whatever is left in it killed) before its container.
        drop(own);
        ran
    }
}

/// The environment every program in a container starts from.
fn base_env(table: &RuntimeTable) -> Vec<(String, String)> {
    vec![
        ("PATH".into(), table.sandbox.path.clone()),
        ("HOME".into(), "/work".into()),
        ("LANG".into(), "C.UTF-8".into()),
        ("TMPDIR".into(), "/tmp".into()),
    ]
}

/// With the engine on this host (the common case), the container's cgroup is readable directly
/// under the engine's usual layouts (cgroupfs or systemd driver, v1 or v2): no exec needed.
pub(super) fn host_cgroup_usage(id: &str) -> Option<Usage> {
    let read = |p: String| {
        std::fs::read_to_string(p)
            .ok()
            .and_then(|t| t.trim().parse::<u64>().ok())
    };
    let root = "/sys/fs/cgroup";
    for dir in [
        format!("docker/{id}"),
        format!("system.slice/docker-{id}.scope"),
    ] {
        if let (Some(cpu), Some(peak)) = (
            read(format!("{root}/cpuacct/{dir}/cpuacct.usage")),
            read(format!("{root}/memory/{dir}/memory.max_usage_in_bytes")),
        ) {
            return Some(Usage {
                wall_time_ms: 0,
                cpu_time_ms: cpu / 1_000_000,
                peak_memory_bytes: peak,
            });
        }
        let stat = std::fs::read_to_string(format!("{root}/{dir}/cpu.stat")).ok();
        if let (Some(stat), Some(peak)) = (
            stat,
            read(format!("{root}/{dir}/memory.peak"))
                .or_else(|| read(format!("{root}/{dir}/memory.current"))),
        ) {
            let text = stat
                .lines()
                .find_map(|l| l.strip_prefix("usage_usec "))
                .map(|v| format!("cpu_us {v}\npeak {peak}"))?;
            return Some(parse_cgroup_usage(&text));
        }
    }
    None
}

fn parse_cgroup_usage(text: &str) -> Usage {
    let mut u = Usage::default();
    for line in text.lines() {
        let Some((key, value)) = line.split_once(' ') else {
            continue;
        };
        let Ok(n) = value.trim().parse::<u64>() else {
            continue;
        };
        match key {
            "cpu_ns" => u.cpu_time_ms = n / 1_000_000,
            "cpu_us" => u.cpu_time_ms = n / 1_000,
            "peak" => u.peak_memory_bytes = n,
            _ => {}
        }
    }
    u
}

/// One process to run in a container.
pub(crate) struct StepInput<'a> {
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub files: &'a [JobFile],
    /// A file written executable before the program starts (a compiled program).
    pub executable: Option<&'a JobFile>,
    pub stdin: &'a [u8],
    pub stream: Option<super::OutputSink>,
}

/// Containers are never reused: whatever happened, the run's container goes, and only then its
/// uid (no process of it is left) and its run dir.
struct RemoveOnDrop {
    docker: Docker,
    id: String,
    ooms: Arc<oom::OomWatch>,
    uid: Option<UidLease>,
    run_dir: Option<supervised::RunDir>,
}

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let (docker, id, ooms, uid, run_dir) = (
            self.docker.clone(),
            self.id.clone(),
            self.ooms.clone(),
            self.uid.take(),
            self.run_dir.take(),
        );
        tokio::spawn(async move {
            container::remove(&docker, &id).await;
            ooms.forget(&id);
            drop(uid);
            drop(run_dir);
        });
    }
}

impl Executor for DockerExecutor {
    fn name(&self) -> &'static str {
        "docker"
    }

    fn run<'a>(&'a self, job: &'a Job) -> BoxFuture<'a, Result<RunResult, ExecError>> {
        Box::pin(self.run_job(job))
    }

    fn runtimes(&self) -> HashMap<String, String> {
        self.available()
    }

    fn image(&self, language: &str) -> Option<String> {
        self.image_of(language).map(String::from)
    }

    fn readiness(&self) -> Readiness {
        let versions = self.available();
        let problem = self.problem.read().unwrap().clone();
        let ready = self.reachable.load(Ordering::SeqCst) && !versions.is_empty();
        Readiness {
            ready,
            degraded: false,
            detail: match (problem, ready) {
                (Some(p), _) => p,
                (None, false) => {
                    "no runtime image passed its start-up probe; build them with images/build.sh"
                        .into()
                }
                (None, true) => "engine reachable".into(),
            },
            features: serde_json::json!({
                "network": "none",
                "read_only_rootfs": true,
                "cap_drop": "ALL",
                "no_new_privileges": true,
                "user": "one uid per container, from sandbox_uids",
                "uids_in_use": self.cfg.uids.in_use(),
                "socket_memory": container::socket_memory_mode(),
                "init": true,
                "warm_containers": self.pool.idle(),
                "images": self.images,
                "runtimes": versions.keys().collect::<Vec<_>>(),
                "oci_runtimes": self.oci.report(),
            }),
        }
    }
}

/// The docker executor when its engine cannot even be dialled (e.g. DOCKER_HOST names a socket
/// that does not exist): never ready, and every run on it is answered 503 with the reason.
pub struct Unreachable {
    pub reason: String,
}

impl Executor for Unreachable {
    fn name(&self) -> &'static str {
        "docker"
    }

    fn run<'a>(&'a self, _job: &'a Job) -> BoxFuture<'a, Result<RunResult, ExecError>> {
        Box::pin(async move { Err(ExecError::Unavailable("docker".into(), self.reason.clone())) })
    }

    fn readiness(&self) -> Readiness {
        Readiness {
            ready: false,
            degraded: false,
            detail: self.reason.clone(),
            features: serde_json::json!({}),
        }
    }

    fn runtimes(&self) -> HashMap<String, String> {
        HashMap::new()
    }
}

/// A one-shot run's steps, each in a fresh container of its own shape: the compile step's
/// artifact is read back from its container and written, executable, into the run step's.
struct RunSteps<'a> {
    exec: &'a DockerExecutor,
    job: &'a Job,
    image: String,
}

impl Steps for RunSteps<'_> {
    type Artifact = JobFile;

    fn compile(&self, argv: Vec<String>) -> BoxFuture<'_, Result<Compiled<JobFile>, ExecError>> {
        Box::pin(async move {
            let job = self.job;
            let name = job
                .runtime
                .artifact
                .clone()
                .expect("a compiled runtime names its artifact");
            let shape = self.exec.shape(
                &self.image,
                job.compile_limits,
                job.open_files.max(256),
                job.docker_runtime.clone(),
            );
            let files = pipeline::files(job);
            let input = StepInput {
                argv,
                env: pipeline::compile_env(self.exec.base_env(), job),
                files: &files,
                executable: None,
                stdin: b"",
                stream: None,
            };
            let (r, artifact) = self.exec.step(&shape, input, Some(&name)).await?;
            let artifact = artifact.map(|content| JobFile {
                path: name,
                content,
            });
            Ok((r, artifact))
        })
    }

    fn run(
        &self,
        argv: Vec<String>,
        executable: Option<JobFile>,
    ) -> BoxFuture<'_, Result<StepResult, ExecError>> {
        Box::pin(async move {
            let job = self.job;
            // After a compile step the compiled program is the run step's only file.
            let files = match executable {
                Some(_) => Vec::new(),
                None => pipeline::files(job),
            };
            let shape = self.exec.shape(
                &self.image,
                job.limits,
                job.open_files,
                job.docker_runtime.clone(),
            );
            let input = StepInput {
                argv,
                env: pipeline::env(self.exec.base_env(), job),
                files: &files,
                executable: executable.as_ref(),
                stdin: &job.stdin,
                stream: job.stream.clone(),
            };
            Ok(self.exec.step(&shape, input, None).await?.0)
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn cgroup_usage_of_both_versions_parses() {
        let v1 = super::parse_cgroup_usage("cpu_ns 27289493\npeak 4345856\n");
        assert_eq!((v1.cpu_time_ms, v1.peak_memory_bytes), (27, 4_345_856));
        let v2 = super::parse_cgroup_usage("cpu_us 41000\npeak 9000\n");
        assert_eq!((v2.cpu_time_ms, v2.peak_memory_bytes), (41, 9000));
        assert_eq!(
            super::parse_cgroup_usage("cpu_ns \npeak x\n").cpu_time_ms,
            0
        );
    }
}
