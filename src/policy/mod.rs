//! Named resource-limit policies: TOML files with defaults and maxima for every limit, validated
//! at start. A request's `limits` are resolved here, against exactly one policy.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// The policies shipped in `policies/`, embedded so `execbox serve` works with no files around it.
const EMBEDDED: &[(&str, &str)] = &[
    ("default", include_str!("../../policies/default.toml")),
    ("strict", include_str!("../../policies/strict.toml")),
    ("benchmark", include_str!("../../policies/benchmark.toml")),
    ("gvisor", include_str!("../../policies/gvisor.toml")),
];

/// Every limit a run is held to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    pub wall_time_ms: u64,
    pub cpu_time_ms: u64,
    pub memory_bytes: u64,
    pub pids: u64,
    pub output_bytes: u64,
    pub disk_bytes: u64,
}

/// A request's partial overrides of a policy's defaults.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitOverrides {
    pub wall_time_ms: Option<u64>,
    pub cpu_time_ms: Option<u64>,
    pub memory_bytes: Option<u64>,
    pub pids: Option<u64>,
    pub output_bytes: Option<u64>,
    pub disk_bytes: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum NetworkMode {
    /// No interface but a private loopback.
    None,
}

/// A named policy, as `GET /v1/policies` lists it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// From the file name (so absent in the file, always present in the API).
    #[serde(default)]
    #[schema(required = true)]
    pub name: String,
    pub description: String,
    pub executors: Vec<String>,
    pub network: NetworkMode,
    /// RLIMIT_NOFILE of the sandboxed program.
    pub open_files: u64,
    /// For the docker executor: an OCI runtime other than the engine's default (e.g. "runsc").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker_runtime: Option<String>,
    pub defaults: Limits,
    pub maxima: Limits,
    /// Limits of the compile step of compiled languages (not overridable by a request).
    pub compile: Limits,
}

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("policy file {file}: {message}")]
    Invalid { file: String, message: String },
    #[error("cannot read policy directory {dir}: {source}")]
    Read {
        dir: String,
        #[source]
        source: std::io::Error,
    },
    #[error("no policy named \"default\" in {0}; every policy set needs one")]
    NoDefault(String),
}

/// A limit above the policy's maximum: `field` and its `maximum`, for a 422.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverLimit {
    pub field: &'static str,
    pub requested: u64,
    pub maximum: u64,
}

impl Limits {
    fn fields(&self) -> [(&'static str, u64); 6] {
        [
            ("wall_time_ms", self.wall_time_ms),
            ("cpu_time_ms", self.cpu_time_ms),
            ("memory_bytes", self.memory_bytes),
            ("pids", self.pids),
            ("output_bytes", self.output_bytes),
            ("disk_bytes", self.disk_bytes),
        ]
    }

    /// The smallest values a sandbox can work with; anything below is an impossible policy.
    const FLOOR: Limits = Limits {
        wall_time_ms: 1,
        cpu_time_ms: 1,
        memory_bytes: 4 << 20,
        pids: 1,
        output_bytes: 0,
        disk_bytes: 64 << 10,
    };
}

impl Policy {
    fn parse(name: &str, file: &str, text: &str) -> Result<Policy, PolicyError> {
        let invalid = |message: String| PolicyError::Invalid { file: file.to_string(), message };
        let mut policy: Policy = toml::from_str(text).map_err(|e| invalid(e.to_string().trim().to_string()))?;
        policy.name = name.to_string();
        for (section, limits) in [("defaults", &policy.defaults), ("maxima", &policy.maxima), ("compile", &policy.compile)] {
            for ((key, value), (_, floor)) in limits.fields().into_iter().zip(Limits::FLOOR.fields()) {
                if value < floor {
                    return Err(invalid(format!("{section}.{key} = {value} is below the smallest workable value {floor}")));
                }
            }
        }
        for ((key, default), (_, max)) in policy.defaults.fields().into_iter().zip(policy.maxima.fields()) {
            if default > max {
                return Err(invalid(format!("defaults.{key} = {default} exceeds maxima.{key} = {max}")));
            }
        }
        if policy.executors.is_empty() {
            return Err(invalid("executors is empty; list at least one executor (e.g. [\"local\"])".into()));
        }
        for e in &policy.executors {
            if !crate::exec::request::KNOWN_EXECUTORS.contains(&e.as_str()) {
                return Err(invalid(format!(
                    "executors names unknown executor \"{e}\"; known: {}",
                    crate::exec::request::KNOWN_EXECUTORS.join(", ")
                )));
            }
        }
        if policy.open_files < 16 {
            return Err(invalid(format!("open_files = {} is below the smallest workable value 16", policy.open_files)));
        }
        Ok(policy)
    }

    /// The policy's defaults with a request's overrides applied; each at most the maximum.
    pub fn resolve(&self, o: &LimitOverrides) -> Result<Limits, OverLimit> {
        let d = &self.defaults;
        let pick = |field: &'static str, v: Option<u64>, default: u64, max: u64| match v {
            Some(v) if v > max => Err(OverLimit { field, requested: v, maximum: max }),
            Some(v) => Ok(v),
            None => Ok(default),
        };
        let m = &self.maxima;
        Ok(Limits {
            wall_time_ms: pick("wall_time_ms", o.wall_time_ms, d.wall_time_ms, m.wall_time_ms)?.max(1),
            cpu_time_ms: pick("cpu_time_ms", o.cpu_time_ms, d.cpu_time_ms, m.cpu_time_ms)?.max(1),
            memory_bytes: pick("memory_bytes", o.memory_bytes, d.memory_bytes, m.memory_bytes)?.max(Limits::FLOOR.memory_bytes),
            pids: pick("pids", o.pids, d.pids, m.pids)?.max(1),
            output_bytes: pick("output_bytes", o.output_bytes, d.output_bytes, m.output_bytes)?,
            disk_bytes: pick("disk_bytes", o.disk_bytes, d.disk_bytes, m.disk_bytes)?.max(Limits::FLOOR.disk_bytes),
        })
    }
}

/// All policies by name.
#[derive(Debug, Clone)]
pub struct PolicySet {
    pub policies: BTreeMap<String, Policy>,
}

impl PolicySet {
    pub fn embedded() -> Result<PolicySet, PolicyError> {
        let mut policies = BTreeMap::new();
        for (name, text) in EMBEDDED {
            let p = Policy::parse(name, &format!("policies/{name}.toml (embedded)"), text)?;
            policies.insert(name.to_string(), p);
        }
        Ok(PolicySet { policies })
    }

    /// Every `*.toml` in `dir`, named by file stem.
    pub fn load_dir(dir: &Path) -> Result<PolicySet, PolicyError> {
        let read_err = |source| PolicyError::Read { dir: dir.display().to_string(), source };
        let mut policies = BTreeMap::new();
        for entry in std::fs::read_dir(dir).map_err(read_err)? {
            let path = entry.map_err(read_err)?.path();
            if path.extension().and_then(|e| e.to_str()) != Some("toml") {
                continue;
            }
            let Some(name) = path.file_stem().and_then(|s| s.to_str()) else { continue };
            let text = std::fs::read_to_string(&path).map_err(read_err)?;
            let p = Policy::parse(name, &path.display().to_string(), &text)?;
            policies.insert(name.to_string(), p);
        }
        if !policies.contains_key("default") {
            return Err(PolicyError::NoDefault(dir.display().to_string()));
        }
        Ok(PolicySet { policies })
    }

    pub fn get(&self, name: &str) -> Option<&Policy> {
        self.policies.get(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_policies_are_valid() {
        let set = PolicySet::embedded().unwrap();
        assert_eq!(set.policies.keys().collect::<Vec<_>>(), vec!["benchmark", "default", "gvisor", "strict"]);
    }

    /// The gvisor policy is the default's limits, on docker under runsc.
    #[test]
    fn the_gvisor_policy_is_the_default_under_runsc() {
        let set = PolicySet::embedded().unwrap();
        let (d, g) = (set.get("default").unwrap(), set.get("gvisor").unwrap());
        assert_eq!((g.defaults, g.maxima, g.compile, g.open_files), (d.defaults, d.maxima, d.compile, d.open_files));
        assert_eq!((g.executors.clone(), g.docker_runtime.as_deref()), (vec!["docker".to_string()], Some("runsc")));
    }

    #[test]
    fn unknown_key_names_file_and_key() {
        let text = include_str!("../../policies/default.toml").replace("open_files", "open_filez");
        let err = Policy::parse("x", "policies/x.toml", &text).unwrap_err().to_string();
        assert!(err.contains("policies/x.toml") && err.contains("open_filez"), "{err}");
    }

    #[test]
    fn default_above_maximum_is_refused() {
        let text = include_str!("../../policies/strict.toml").replacen("pids = ", "pids = 999999 #", 1);
        let err = Policy::parse("strict", "policies/strict.toml", &text).unwrap_err().to_string();
        assert!(err.contains("defaults.pids = 999999 exceeds maxima.pids"), "{err}");
    }

    #[test]
    fn resolve_rejects_over_maximum_and_fills_defaults() {
        let set = PolicySet::embedded().unwrap();
        let p = set.get("default").unwrap();
        let over = LimitOverrides { memory_bytes: Some(p.maxima.memory_bytes + 1), ..Default::default() };
        assert_eq!(
            p.resolve(&over).unwrap_err(),
            OverLimit { field: "memory_bytes", requested: p.maxima.memory_bytes + 1, maximum: p.maxima.memory_bytes }
        );
        let l = p.resolve(&LimitOverrides { pids: Some(7), ..Default::default() }).unwrap();
        assert_eq!(l.pids, 7);
        assert_eq!(l.wall_time_ms, p.defaults.wall_time_ms);
    }
}
