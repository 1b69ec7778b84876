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
    /// Names this service's cgroups and staging dirs, so a restart can sweep what it left.
    pub instance: String,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Runs executing at once; 0 means the number of CPUs.
    pub max_concurrent_runs: usize,
    /// Runs waiting for a slot; beyond it requests are answered 429.
    pub max_queued_runs: usize,
    pub local: LocalSettings,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalSettings {
    /// uid/gid programs run as when the service is root.
    pub sandbox_uid: u32,
    pub sandbox_gid: u32,
    /// Start even when cgroups are unusable (runs then have no memory/pids/CPU accounting).
    pub allow_degraded: bool,
    /// The binary re-executed as the sandbox helper; our own executable when unset.
    pub helper: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:8080".parse().expect("valid address"),
            data_dir: default_data_dir(),
            policies: None,
            instance: "default".into(),
            max_body_bytes: 10 << 20,
            max_concurrent_runs: 0,
            max_queued_runs: 64,
            local: LocalSettings { sandbox_uid: 65534, sandbox_gid: 65534, allow_degraded: false, helper: None },
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
        fig = fig.merge(Env::prefixed("EXECBOX_").ignore(&["CONFIG", "LOG"]).split("__")).merge(Serialized::defaults(flags));
        let mut cfg: Config = fig.extract().map_err(|e| format!("invalid configuration: {e}"))?;
        if cfg.max_concurrent_runs == 0 {
            cfg.max_concurrent_runs = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        }
        Ok(cfg)
    }

    pub fn max_concurrent(&self) -> usize {
        self.max_concurrent_runs.max(1)
    }
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
        std::fs::write(&f, "listen = \"127.0.0.1:9999\"\nmax_queued_runs = 3\n[local]\nallow_degraded = true\n").unwrap();
        let cfg = Config::load(Some(&f), FlagOverrides { data_dir: Some("/x".into()), ..Default::default() }).unwrap();
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
}
