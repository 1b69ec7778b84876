//! Wiring: `Application::build(config)` binds the listener first, then builds and probes the
//! executors; `run_until_stopped()` serves until SIGTERM/SIGINT, lets in-flight runs finish,
//! cleans up.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context};

use crate::admission::Admission;
use crate::api;
use crate::config::{AuthMode, Config};
use crate::exec::docker::{DockerConfig, DockerExecutor};
use crate::exec::local::{LocalConfig, LocalExecutor};
use crate::exec::runtime::RuntimeTable;
use crate::exec::uids::{UidRange, Uids};
use crate::exec::Executor;
use crate::policy::PolicySet;
use crate::sandbox::docker::DockerSandboxes;
use crate::sandbox::local::LocalHost;
use crate::sandbox::manager::Manager;
use crate::sandbox::supervised::Supervised;
use crate::sandbox::SandboxBackend;
use crate::service::auth::Auth;
use crate::service::{self, AppState};
use crate::store::{Quotas, Store, DEFAULT_TEAM};

pub struct Application {
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    max_body_bytes: usize,
    limits: api::serve::Limits,
    _lock: nix::fcntl::Flock<std::fs::File>,
}

/// The one uid allocator both executors draw from. Host-wide locks only when root: a non-root
/// service runs everything as its own uid inside a user namespace.
pub fn sandbox_uids(cfg: &Config) -> anyhow::Result<Arc<Uids>> {
    let range = UidRange {
        first: cfg.sandbox_uids.first,
        count: cfg.sandbox_uids.count,
    };
    let lock_dir = nix::unistd::geteuid()
        .is_root()
        .then(|| cfg.sandbox_uids.lock_dir.clone());
    Uids::new(range, lock_dir).map_err(anyhow::Error::msg)
}

/// The executor settings shared by `serve` and `run`.
pub fn local_config(
    cfg: &Config,
    instance: &str,
    uids: Arc<Uids>,
    runtimes: &Arc<RuntimeTable>,
) -> anyhow::Result<LocalConfig> {
    let helper = match &cfg.local.helper {
        Some(h) => h.clone(),
        None => {
            std::env::current_exe().context("locating our own executable for the sandbox helper")?
        }
    };
    Ok(LocalConfig {
        helper,
        staging_root: cfg.data_dir.join("runs").join(instance),
        instance: instance.to_string(),
        uids,
        runtimes: runtimes.clone(),
        allow_degraded: cfg.local.allow_degraded,
        warm: cfg.local.warm_sandboxes,
    })
}

/// The docker executor, connected and probed; not ready (never fatal) when the engine is away.
/// `only` probes one language (a one-shot CLI run), None all of them.
pub async fn build_docker(
    cfg: &Config,
    instance: &str,
    only: Option<&str>,
    uids: Arc<Uids>,
    runtimes: &Arc<RuntimeTable>,
) -> Result<DockerExecutor, String> {
    let binary = std::env::current_exe()
        .map_err(|e| format!("cannot find execbox's own binary to mount as the supervisor: {e}"))?;
    let d = DockerExecutor::new(DockerConfig {
        instance: instance.to_string(),
        uids,
        runtimes: runtimes.clone(),
        pool_per_shape: cfg.docker.pool_per_shape,
        pool_max_total: cfg.docker.pool_max_total,
        cpus: cfg.docker.cpus,
        binary,
        run_root: cfg.data_dir.join("docker").join("runs").join(instance),
    })
    .await?;
    for (lang, outcome) in d.probe(only).await {
        match outcome {
            Ok(v) => {
                tracing::info!(executor = "docker", language = %lang, version = %v, "runtime available")
            }
            Err(e) => {
                tracing::warn!(executor = "docker", language = %lang, error = %e, "runtime not available")
            }
        }
    }
    Ok(d)
}

/// Sandboxes: a backend per executor, reconciled with the store (what survived a restart is
/// reattached, the rest removed), and the reaper started.
async fn build_sandboxes(
    cfg: &Config,
    store: &Store,
    policies: &PolicySet,
    local: &Arc<LocalExecutor>,
    docker: Option<&Arc<DockerExecutor>>,
    quotas: &Arc<Quotas>,
) -> anyhow::Result<Arc<Manager>> {
    let mut backends: HashMap<&'static str, Arc<dyn SandboxBackend>> = HashMap::new();
    backends.insert(
        "local",
        Arc::new(Supervised::new(Arc::new(LocalHost::new(
            local.clone(),
            cfg.data_dir.join("sandboxes"),
        )))),
    );
    if let Some(d) = docker {
        backends.insert(
            "docker",
            Arc::new(Supervised::new(Arc::new(DockerSandboxes::new(
                d.clone(),
                policies,
                cfg.data_dir.join("docker").join("sandboxes"),
            )))),
        );
    }
    let manager = Arc::new(Manager::new(
        store.clone(),
        policies.clone(),
        backends,
        quotas.clone(),
        cfg.sandboxes.max_ttl_seconds,
    ));
    manager
        .reconcile()
        .await
        .context("reconciling sandboxes with the store")?;
    manager.reap().await;
    manager.spawn_reaper(std::time::Duration::from_secs(
        cfg.sandboxes.reap_interval_seconds.max(1),
    ));
    Ok(manager)
}

/// The runtimes file of the config, else the embedded `runtimes.toml`.
pub fn load_runtimes(cfg: &Config) -> anyhow::Result<Arc<RuntimeTable>> {
    Ok(Arc::new(match &cfg.runtimes {
        Some(file) => RuntimeTable::load(file)?,
        None => RuntimeTable::embedded(),
    }))
}

pub fn load_policies(cfg: &Config) -> anyhow::Result<PolicySet> {
    Ok(match &cfg.policies {
        Some(dir) => PolicySet::load_dir(dir)?,
        None => PolicySet::embedded()?,
    })
}

/// Hold `<data-dir>/<instance>.lock` so two services never sweep each other's sandboxes.
pub fn lock_instance(
    data_dir: &std::path::Path,
    instance: &str,
) -> anyhow::Result<nix::fcntl::Flock<std::fs::File>> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating data dir {}", data_dir.display()))?;
    // The store holds sandboxes' env and the audit log; sandboxes' files live here too.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(data_dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("restricting data dir {} to its owner", data_dir.display()))?;
    let path: PathBuf = data_dir.join(format!("{instance}.lock"));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock).map_err(|(_, e)| {
        anyhow::anyhow!("{} is locked ({e}): another execbox with instance \"{instance}\" uses this data dir; stop it or set a different instance", path.display())
    })
}

impl Application {
    pub async fn build(cfg: Config) -> anyhow::Result<Application> {
        if cfg.auth == AuthMode::None && !cfg.listen.ip().is_loopback() {
            bail!(
                "refusing to listen on {} without authentication: anyone who reaches it could run code here; \
                 start with --auth api-key (keys from `execbox keys create --team NAME`) or listen on 127.0.0.1",
                cfg.listen
            );
        }
        // First, so a taken address fails before anything is probed, pooled or locked.
        let listener = api::serve::listen(cfg.listen).with_context(|| {
            format!(
                "cannot listen on {}; is another service using it? choose another --listen address",
                cfg.listen
            )
        })?;
        let (state, lock) = build_state(&cfg, true).await?;
        let s = &cfg.server;
        let limits = api::serve::Limits {
            header_read_timeout: std::time::Duration::from_secs(
                s.header_read_timeout_seconds.max(1),
            ),
            idle_timeout: std::time::Duration::from_secs(s.idle_timeout_seconds.max(1)),
            max_connections: match s.max_connections {
                0 => api::serve::default_max_connections(),
                n => n,
            },
        };
        tracing::info!(
            max_connections = limits.max_connections,
            header_read_timeout_s = limits.header_read_timeout.as_secs(),
            idle_timeout_s = limits.idle_timeout.as_secs(),
            "connection limits"
        );
        Ok(Application {
            listener,
            state,
            max_body_bytes: cfg.max_body_bytes,
            limits,
            _lock: lock,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("bound listener has an address")
    }

    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let app = api::router(self.state.clone(), self.max_body_bytes);
        // Agent runs may last long and hold event streams open: cancel them once the stop is
        // asked for, so their streams end and the drain below can finish.
        let agent = self.state.agent.clone();
        api::serve::serve(self.listener, app, self.limits, async move {
            shutdown_signal().await;
            agent.shutdown().await;
        })
        .await?;
        // Connections are drained, so every run has returned and cleaned up after itself.
        stop_state(&self.state).await;
        tracing::info!("stopped");
        Ok(())
    }
}

/// Everything the handlers share, built and probed, with the instance lock held. The service
/// builds it once (`prewarm`: fill the docker pool ahead); `execbox agent` builds its own.
pub async fn build_state(
    cfg: &Config,
    prewarm: bool,
) -> anyhow::Result<(Arc<AppState>, nix::fcntl::Flock<std::fs::File>)> {
    let cfg = cfg.clone();
    let policies = load_policies(&cfg)?;
    let runtimes = load_runtimes(&cfg)?;
    let lock = lock_instance(&cfg.data_dir, cfg.instance())?;
    let store = Store::open_in(&cfg.data_dir)?.keep_code(cfg.audit.keep_code);
    let auth = match cfg.auth {
        AuthMode::None => Auth::None {
            team: store.ensure_team(DEFAULT_TEAM)?,
        },
        AuthMode::ApiKey => {
            if store.list_keys()?.iter().all(|k| k.revoked_at.is_some()) {
                tracing::warn!(store = %store.path().display(), "auth is api-key but no usable key exists; create one with `execbox keys create --team NAME`");
            }
            Auth::ApiKey
        }
    };
    let uids = sandbox_uids(&cfg)?;
    let local = Arc::new(
        LocalExecutor::new(local_config(&cfg, cfg.instance(), uids.clone(), &runtimes)?)
            .context("starting the local executor")?,
    );
    for (lang, outcome) in local.probe(None).await {
        match outcome {
            Ok(v) => tracing::info!(language = %lang, version = %v, "runtime available"),
            Err(e) => tracing::warn!(language = %lang, error = %e, "runtime not available"),
        }
    }
    if local.available().is_empty() {
        bail!("no runtime works in the local sandbox; see the warnings above");
    }
    local.warm_up();
    let mut executors: HashMap<&'static str, Arc<dyn Executor>> = HashMap::new();
    executors.insert("local", local.clone());
    let mut docker = None;
    if cfg.docker.enabled {
        match build_docker(&cfg, cfg.instance(), None, uids, &runtimes).await {
            Ok(d) => {
                d.check_runtimes(&policies).await;
                if prewarm {
                    d.prewarm(&policies);
                }
                let d = Arc::new(d);
                executors.insert("docker", d.clone());
                docker = Some(d);
            }
            Err(reason) => {
                tracing::warn!(%reason, "docker executor not ready");
                executors.insert(
                    "docker",
                    Arc::new(crate::exec::docker::Unreachable { reason }),
                );
            }
        }
    }
    let quotas = Quotas::new(
        cfg.quotas.max_concurrent_runs_per_team,
        cfg.quotas.max_sandboxes_per_team,
    );
    let sandboxes =
        build_sandboxes(&cfg, &store, &policies, &local, docker.as_ref(), &quotas).await?;
    let interrupted =
        store.fail_interrupted_agent_runs("the service stopped while the run was in progress")?;
    if interrupted > 0 {
        tracing::warn!(
            runs = interrupted,
            "agent runs left running by an earlier service were marked failed"
        );
    }
    let runs = crate::runs::RunTracker::new(store.clone(), cfg.runs.result_retention_seconds);
    spawn_result_purge(runs.clone());
    let metrics = Arc::new(service::metrics::Metrics::new());
    let counted = metrics.clone();
    let on_end = Box::new(move |e: &service::agent::runs::EndEvent| {
        counted.agent_run_ended(
            e.state.as_str(),
            e.usage.input_tokens,
            e.usage.output_tokens,
        )
    });
    let agent = Arc::new(service::agent::runs::Runs::new(
        store.clone(),
        cfg.agent.max_concurrent_runs,
        cfg.agent_slots_per_team(),
        on_end,
    ));
    crate::compat::check(&cfg.compat, &policies).map_err(|e| anyhow::anyhow!(e))?;
    let state = Arc::new(AppState {
        policies,
        runtimes,
        local,
        docker,
        executors,
        admission: Arc::new(Admission::new(cfg.max_concurrent(), cfg.max_queued_runs)),
        metrics,
        store,
        auth,
        quotas,
        sandboxes: Some(sandboxes),
        agent,
        agent_settings: cfg.agent.clone(),
        max_sandbox_ttl_seconds: cfg.sandboxes.max_ttl_seconds,
        max_batch_output_bytes: cfg.max_batch_output_bytes,
        compat: cfg.compat.clone(),
        runs,
    });
    crate::compat::start(&state).await?;
    Ok((state, lock))
}

/// Remove kept run results past their retention, once a minute (or sooner for a short one).
fn spawn_result_purge(runs: Arc<crate::runs::RunTracker>) {
    let every = std::time::Duration::from_secs(runs.retention_seconds().clamp(1, 60));
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            match runs.purge().await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(removed = n, "removed expired run results"),
                Err(e) => tracing::warn!(error = %e, "could not remove expired run results"),
            }
        }
    });
}

/// Release what the state holds: cancel agent runs, stop sandboxes' calls, executors' pools.
pub async fn stop_state(state: &AppState) {
    state.agent.shutdown().await;
    if let Some(m) = &state.sandboxes {
        m.shutdown().await;
    }
    state.local.shutdown();
    if let Some(d) = &state.docker {
        d.shutdown().await;
    }
}

pub(crate) async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("installing SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {},
        _ = tokio::signal::ctrl_c() => {},
    }
    tracing::info!("shutting down: finishing in-flight runs");
}
