//! One typed configuration: built-in defaults, then a TOML config file, then `EXECBOX_*`
//! environment variables (`EXECBOX_LISTEN`, `EXECBOX_LOCAL__ALLOW_DEGRADED`, ...), then flags.

use std::net::SocketAddr;
use std::path::PathBuf;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// A directory of policy TOML files; the embedded `policies/` when unset.
    pub policies: Option<PathBuf>,
    /// A runtimes TOML file (the languages, as `runtimes.toml`); the embedded one when unset.
    pub runtimes: Option<PathBuf>,
    /// Names this service's cgroups, containers and staging dirs, so a restart can sweep what
    /// it left. Derived from the data dir when unset, so two services on two data dirs never
    /// sweep each other's runs.
    pub instance: Option<String>,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// The output (stdout and stderr bytes, as the programs wrote them) that the results of one
    /// batch not yet written to its client may hold at once; items wait for room, and an item
    /// whose output caps alone exceed it runs with its caps lowered to fit.
    pub max_batch_output_bytes: u64,
    /// Runs executing at once; 0 means the number of CPUs.
    pub max_concurrent_runs: usize,
    /// Runs waiting for a slot; beyond it requests are answered 429.
    pub max_queued_runs: usize,
    pub local: LocalSettings,
    pub docker: DockerSettings,
    /// Who may call `/v1`: `none` (loopback listeners only) or `api-key`.
    pub auth: AuthMode,
    pub quotas: QuotaSettings,
    pub audit: AuditSettings,
    pub runs: RunSettings,
    pub sandboxes: SandboxSettings,
    pub agent: AgentSettings,
    pub sandbox_uids: SandboxUidSettings,
    pub server: ServerSettings,
    pub compat: CompatSettings,
}

/// The Judge0- and Piston-compatible APIs (`/judge0`, `/piston`): where their runs go and how
/// long a Judge0 submission can be read back.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompatSettings {
    /// The executor their runs use: `local` or `docker`.
    pub executor: String,
    /// The policy their runs are held to; the peers' limits are checked against its maxima.
    pub policy: String,
    /// A Judge0 submission can be read by its token for this long after it was created; then
    /// it is gone (answered 404) and swept from the store.
    pub judge0_retention_seconds: u64,
}

/// The uids runs and sandboxes run as (gid = uid), one per live run or sandbox, shared by both
/// executors: per-uid kernel limits (inotify instances, message queues, pipe pages, pending
/// signals) then belong to one run. Pick a range no account on the host uses.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SandboxUidSettings {
    pub first: u32,
    /// At least `max_concurrent_runs` + `docker.pool_max_total` (idle containers hold one each),
    /// plus the docker sandboxes wanted, which hold one for their life.
    pub count: u32,
    /// Host-wide locks (`<lock_dir>/<uid>`), so services and `execbox run` on one host with
    /// overlapping ranges never hand out the same uid at once.
    pub lock_dir: PathBuf,
}

/// How the HTTP server treats connections, so one caller cannot hold them all.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    /// A client must send a whole request head within this long of the server waiting for
    /// one, or the connection is closed; it is also how long a kept-alive connection may sit
    /// idle between requests.
    pub header_read_timeout_seconds: u64,
    /// A request body the client sends nothing of, or a response it reads nothing of, for this
    /// long ends the connection. Event streams send a keepalive every 15 s, so they are not cut.
    pub idle_timeout_seconds: u64,
    /// Connections open at once; 0: half the process's file-descriptor limit (its soft limit
    /// is raised to the hard one at start), leaving the rest to runs. At the bound a new
    /// connection closes the one idle the longest; when none is idle, accepting waits.
    pub max_connections: usize,
}

/// The agent loop's limits and its model clients' settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentSettings {
    /// Agent runs working at once; more wait as `queued`. A run waiting for approval holds
    /// no slot.
    pub max_concurrent_runs: usize,
    /// Slots one team may hold at once. 0: half of `max_concurrent_runs`, rounded up, with
    /// `auth = "api-key"` (no team can take every slot); every slot without auth (one team).
    pub max_concurrent_runs_per_team: usize,
    /// The most coder replies a run may ask for.
    pub max_turns: u32,
    /// Coder replies of a run that does not say.
    pub default_max_turns: u32,
    /// Every run ends after this long (`wall_time`), whatever it asked for.
    pub max_wall_time_seconds: u64,
    /// A model request (non-streamed), or the wait for each streamed piece, times out after this.
    pub model_timeout_seconds: u64,
    /// Retries of a model request on 429, 5xx, timeouts and connection errors.
    pub model_max_retries: u32,
    /// The first retry's delay; it doubles each time (a Retry-After header wins).
    pub model_backoff_ms: u64,
    /// Environment variables of the service a run may name as `api_key_env`, each with the
    /// base URLs its key may be sent to.
    pub api_key_envs: std::collections::BTreeMap<String, Vec<String>>,
    /// When not empty, the only base URLs runs may name (each one exactly, trailing `/` aside):
    /// on a shared service, keeps callers from pointing the service at internal addresses.
    pub allowed_base_urls: Vec<String>,
    /// With `auth = "api-key"`, runs may not call private, loopback or link-local addresses
    /// unless this is true (or the URL is in `allowed_base_urls`). Without auth there is one
    /// team on a loopback listener, and local model servers are the common case.
    pub allow_private_base_urls: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SandboxSettings {
    /// The longest `ttl_seconds` a sandbox may ask for (and be kept alive to at once).
    pub max_ttl_seconds: u64,
    /// How often expired and idle sandboxes are looked for.
    pub reap_interval_seconds: u64,
}

/// `none`: every request is the built-in team `default`, allowed only on a loopback listener.
/// `api-key`: `/v1` routes need `Authorization: Bearer KEY` (keys from `execbox keys create`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuthMode {
    None,
    ApiKey,
}

impl std::str::FromStr for AuthMode {
    type Err = String;
    fn from_str(s: &str) -> Result<AuthMode, String> {
        match s {
            "none" => Ok(AuthMode::None),
            "api-key" => Ok(AuthMode::ApiKey),
            other => Err(format!(
                "auth must be \"none\" or \"api-key\", not \"{other}\""
            )),
        }
    }
}

/// Per-team limits; 0 means unlimited.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaSettings {
    /// Runs of one team executing or queued at once (default 0, unlimited: without auth every
    /// caller is the one built-in team, and admission control already bounds the service; set
    /// it when several teams share a service so one cannot take every slot and the queue).
    pub max_concurrent_runs_per_team: usize,
    /// Sandboxes one team may hold at once.
    pub max_sandboxes_per_team: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditSettings {
    /// Keep each run's source code in the audit log (off: code may hold secrets).
    pub keep_code: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunSettings {
    /// How long a finished run's result is kept for `GET /v1/runs/{id}`, in seconds; 0 keeps
    /// none (the audit log's row stays either way).
    pub result_retention_seconds: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DockerSettings {
    /// Offer the docker executor (it is reported not ready when the engine is unreachable).
    pub enabled: bool,
    /// Started containers kept waiting per (image, limits) shape.
    pub pool_per_shape: usize,
    /// Started containers kept waiting overall.
    pub pool_max_total: usize,
    /// CPUs each sandbox container may use (CPU quota).
    pub cpus: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalSettings {
    /// Start even when cgroups are unusable (runs then have no memory/pids/CPU accounting).
    pub allow_degraded: bool,
    /// The binary re-executed as the sandbox helper; our own executable when unset.
    pub helper: Option<PathBuf>,
    /// Sandboxes prepared ahead of runs (namespaces, root and cgroup ready); 0 prepares each
    /// sandbox when its run arrives.
    pub warm_sandboxes: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:8080".parse().expect("valid address"),
            data_dir: default_data_dir(),
            policies: None,
            runtimes: None,
            instance: None,
            max_body_bytes: 10 << 20,
            max_batch_output_bytes: 64 << 20,
            max_concurrent_runs: 0,
            max_queued_runs: 64,
            local: LocalSettings {
                allow_degraded: false,
                helper: None,
                warm_sandboxes: 2,
            },
            docker: DockerSettings {
                enabled: true,
                pool_per_shape: 2,
                pool_max_total: 8,
                cpus: 1.0,
            },
            sandboxes: SandboxSettings {
                max_ttl_seconds: 86_400,
                reap_interval_seconds: 5,
            },
            auth: AuthMode::None,
            quotas: QuotaSettings {
                max_concurrent_runs_per_team: 0,
                max_sandboxes_per_team: 20,
            },
            audit: AuditSettings { keep_code: false },
            runs: RunSettings {
                result_retention_seconds: 3_600,
            },
            server: ServerSettings {
                header_read_timeout_seconds: 10,
                idle_timeout_seconds: 60,
                max_connections: 0,
            },
            agent: AgentSettings {
                max_concurrent_runs: 4,
                max_concurrent_runs_per_team: 0,
                max_turns: 50,
                default_max_turns: 10,
                max_wall_time_seconds: 1800,
                model_timeout_seconds: 120,
                model_max_retries: 3,
                model_backoff_ms: 500,
                api_key_envs: [
                    ("OPENAI_API_KEY", "https://api.openai.com/v1"),
                    ("ANTHROPIC_API_KEY", "https://api.anthropic.com"),
                ]
                .into_iter()
                .map(|(k, v)| (k.to_string(), vec![v.to_string()]))
                .collect(),
                allowed_base_urls: Vec::new(),
                allow_private_base_urls: false,
            },
            sandbox_uids: SandboxUidSettings {
                first: 60_000,
                count: 1_000,
                lock_dir: PathBuf::from("/run/execbox/uids"),
            },
            compat: CompatSettings {
                executor: "local".into(),
                policy: "default".into(),
                judge0_retention_seconds: 86_400,
            },
        }
    }
}

/// Overrides from the command line (only the flags that were given).
#[derive(Debug, Default, Serialize)]
pub struct FlagOverrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policies: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runtimes: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth: Option<AuthMode>,
}

impl Config {
    pub fn load(file: Option<&std::path::Path>, flags: FlagOverrides) -> Result<Config, String> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        if let Some(f) = file {
            if !f.exists() {
                return Err(format!("config file {} does not exist", f.display()));
            }
            fig = fig.merge(Toml::file(f));
        }
        fig = fig
            .merge(
                Env::prefixed("EXECBOX_")
                    .ignore(&["CONFIG", "LOG"])
                    .split("__"),
            )
            .merge(Serialized::defaults(flags));
        let mut cfg: Config = fig
            .extract()
            .map_err(|e| format!("invalid configuration: {e}"))?;
        if cfg.instance.is_none() {
            let dir = std::path::absolute(&cfg.data_dir).unwrap_or_else(|_| cfg.data_dir.clone());
            cfg.instance = Some(format!(
                "d{:08x}",
                fnv1a(dir.to_string_lossy().as_bytes()) as u32
            ));
        }
        if let Some(bad) = cfg.instance.as_deref().filter(|i| {
            i.is_empty()
                || !i
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        }) {
            return Err(format!(
                "instance \"{bad}\" must be non-empty letters, digits, - or _"
            ));
        }
        if cfg.max_concurrent_runs == 0 {
            cfg.max_concurrent_runs = std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1);
        }
        let uids = crate::exec::uids::UidRange {
            first: cfg.sandbox_uids.first,
            count: cfg.sandbox_uids.count,
        };
        uids.check()?;
        let needed = cfg.max_concurrent_runs
            + if cfg.docker.enabled {
                cfg.docker.pool_max_total
            } else {
                0
            };
        if (uids.count as usize) < needed {
            return Err(format!(
                "sandbox_uids.count {} is below max_concurrent_runs + docker.pool_max_total = {needed}: runs would wait for uids, not slots; raise it",
                uids.count
            ));
        }
        Ok(cfg)
    }

    pub fn instance(&self) -> &str {
        self.instance.as_deref().expect("set by Config::load")
    }

    pub fn max_concurrent(&self) -> usize {
        self.max_concurrent_runs.max(1)
    }

    /// Agent slots one team may hold (`agent.max_concurrent_runs_per_team`, or its default).
    pub fn agent_slots_per_team(&self) -> usize {
        match (self.agent.max_concurrent_runs_per_team, self.auth) {
            // Teams share the service: half the slots, rounded up, so that no team can hold
            // every slot (unless there is only one).
            (0, AuthMode::ApiKey) => self.agent.max_concurrent_runs.max(1).div_ceil(2),
            (0, AuthMode::None) => self.agent.max_concurrent_runs.max(1),
            (n, _) => n,
        }
    }
}

/// A hash that stays the same across Rust releases (the instance name must survive upgrades).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ *b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

/// `/var/lib/execbox` for root, `$XDG_STATE_HOME/execbox` (or `~/.local/state/execbox`) otherwise.
fn default_data_dir() -> PathBuf {
    if nix::unistd::geteuid().is_root() {
        return PathBuf::from("/var/lib/execbox");
    }
    if let Some(x) = std::env::var_os("XDG_STATE_HOME") {
        return PathBuf::from(x).join("execbox");
    }
    match std::env::var_os("HOME") {
        Some(h) => PathBuf::from(h).join(".local/state/execbox"),
        None => std::env::temp_dir().join("execbox"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_then_flags_override_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(
            &f,
            "listen = \"127.0.0.1:9999\"\nmax_queued_runs = 3\n[local]\nallow_degraded = true\n",
        )
        .unwrap();
        let cfg = Config::load(
            Some(&f),
            FlagOverrides {
                data_dir: Some("/x".into()),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(cfg.listen.port(), 9999);
        assert_eq!(cfg.max_queued_runs, 3);
        assert!(cfg.local.allow_degraded);
        assert_eq!(cfg.data_dir, PathBuf::from("/x"));
    }

    #[test]
    fn unknown_key_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(&f, "lisen = \"127.0.0.1:1\"\n").unwrap();
        let err = Config::load(Some(&f), FlagOverrides::default()).unwrap_err();
        assert!(err.contains("lisen"), "{err}");
    }

    #[test]
    fn auth_and_quotas_come_from_the_file_and_flags() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(
            &f,
            "auth = \"none\"\n[quotas]\nmax_sandboxes_per_team = 3\n",
        )
        .unwrap();
        let cfg = Config::load(
            Some(&f),
            FlagOverrides {
                auth: Some(AuthMode::ApiKey),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(cfg.auth, AuthMode::ApiKey);
        assert_eq!(
            (
                cfg.quotas.max_sandboxes_per_team,
                cfg.quotas.max_concurrent_runs_per_team
            ),
            (3, 0)
        );
        std::fs::write(&f, "auth = \"apikey\"\n").unwrap();
        assert!(Config::load(Some(&f), FlagOverrides::default()).is_err());
    }

    #[test]
    fn a_uid_range_too_small_or_holding_reserved_uids_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(&f, "max_concurrent_runs = 4\n[docker]\npool_max_total = 8\n[sandbox_uids]\nfirst = 70000\ncount = 11\n").unwrap();
        let err = Config::load(Some(&f), FlagOverrides::default()).unwrap_err();
        assert!(err.contains("= 12"), "{err}");
        std::fs::write(&f, "[sandbox_uids]\nfirst = 65000\ncount = 1000\n").unwrap();
        assert!(Config::load(Some(&f), FlagOverrides::default())
            .unwrap_err()
            .contains("65533"));
        std::fs::write(&f, "[local]\nsandbox_uid = 1000\n").unwrap();
        assert!(
            Config::load(Some(&f), FlagOverrides::default())
                .unwrap_err()
                .contains("sandbox_uid"),
            "the single uid is gone"
        );
    }
}
