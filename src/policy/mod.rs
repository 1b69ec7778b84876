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

/// Executors this build knows about.
pub const KNOWN_EXECUTORS: &[&str] = &["local", "docker"];

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

/// The least of each limit a run works with on every executor, measured: local needs 3 pids (the
/// helper, PID 1 and the program), but docker's `runc exec` starts its Go `runc init` inside
/// the container's pids cgroup, and below 8 it fails now and then (`read init-p: connection
/// reset by peer`, answered as the program's output); the engine refuses a container under
/// 6 MiB and Python runs in 8 MiB on both; /work needs room for a small program. The one table: a request below
/// it is refused (`limit_below_minimum`), a policy below it does not load, and `GET /v1/policies`
/// serves it. The `minimum`s of [`LimitOverrides`]' schema repeat it (a test holds them equal).
pub const MINIMUMS: Limits = Limits {
    wall_time_ms: 1,
    cpu_time_ms: 1,
    memory_bytes: 8 << 20,
    pids: 8,
    output_bytes: 0,
    disk_bytes: 64 << 10,
};

/// A request's partial overrides of a policy's defaults: each at least `GET /v1/policies`'
/// `minimums` and at most the policy's maximum.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitOverrides {
    #[serde(default, deserialize_with = "crate::wire::whole::option")]
    #[schema(minimum = 1)]
    pub wall_time_ms: Option<u64>,
    #[serde(default, deserialize_with = "crate::wire::whole::option")]
    #[schema(minimum = 1)]
    pub cpu_time_ms: Option<u64>,
    #[serde(default, deserialize_with = "crate::wire::whole::option")]
    #[schema(minimum = 8388608)]
    pub memory_bytes: Option<u64>,
    #[serde(default, deserialize_with = "crate::wire::whole::option")]
    #[schema(minimum = 8)]
    pub pids: Option<u64>,
    #[serde(default, deserialize_with = "crate::wire::whole::option")]
    #[schema(minimum = 0)]
    pub output_bytes: Option<u64>,
    #[serde(default, deserialize_with = "crate::wire::whole::option")]
    #[schema(minimum = 65536)]
    pub disk_bytes: Option<u64>,
}

impl LimitOverrides {
    /// In [`Limits`]' field order.
    pub(crate) fn as_array(&self) -> [Option<u64>; 6] {
        [
            self.wall_time_ms,
            self.cpu_time_ms,
            self.memory_bytes,
            self.pids,
            self.output_bytes,
            self.disk_bytes,
        ]
    }

    /// The fields this sets: name, value, and the same field of `other`.
    pub(crate) fn set_fields(&self, other: &Limits) -> Vec<(&'static str, u64, u64)> {
        self.as_array()
            .into_iter()
            .zip(other.fields())
            .filter_map(|(v, (name, o))| Some((name, v?, o)))
            .collect()
    }
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

/// A requested limit out of range: above the policy's maximum or below [`MINIMUMS`], for a 422.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LimitError {
    Above {
        field: &'static str,
        requested: u64,
        maximum: u64,
    },
    Below {
        field: &'static str,
        requested: u64,
        minimum: u64,
    },
}

impl Limits {
    pub(crate) fn as_array(&self) -> [u64; 6] {
        self.fields().map(|(_, v)| v)
    }

    pub(crate) fn as_array_mut(&mut self) -> [&mut u64; 6] {
        [
            &mut self.wall_time_ms,
            &mut self.cpu_time_ms,
            &mut self.memory_bytes,
            &mut self.pids,
            &mut self.output_bytes,
            &mut self.disk_bytes,
        ]
    }

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
}

impl Policy {
    fn parse(name: &str, file: &str, text: &str) -> Result<Policy, PolicyError> {
        let invalid = |message: String| PolicyError::Invalid {
            file: file.to_string(),
            message,
        };
        let mut policy: Policy =
            toml::from_str(text).map_err(|e| invalid(e.to_string().trim().to_string()))?;
        policy.name = name.to_string();
        for (section, limits) in [
            ("defaults", &policy.defaults),
            ("maxima", &policy.maxima),
            ("compile", &policy.compile),
        ] {
            for ((key, value), (_, floor)) in limits.fields().into_iter().zip(MINIMUMS.fields()) {
                if value < floor {
                    return Err(invalid(format!("{section}.{key} = {value} is below the minimum {floor} a run needs on every executor")));
                }
                // The executors hand limits to the kernel and the engine as signed 64-bit numbers.
                if value > i64::MAX as u64 / 2 {
                    return Err(invalid(format!(
                        "{section}.{key} = {value} is larger than any executor can hold"
                    )));
                }
            }
        }
        for ((key, default), (_, max)) in policy
            .defaults
            .fields()
            .into_iter()
            .zip(policy.maxima.fields())
        {
            if default > max {
                return Err(invalid(format!(
                    "defaults.{key} = {default} exceeds maxima.{key} = {max}"
                )));
            }
        }
        if policy.executors.is_empty() {
            return Err(invalid(
                "executors is empty; list at least one executor (e.g. [\"local\"])".into(),
            ));
        }
        for e in &policy.executors {
            if !KNOWN_EXECUTORS.contains(&e.as_str()) {
                return Err(invalid(format!(
                    "executors names unknown executor \"{e}\"; known: {}",
                    KNOWN_EXECUTORS.join(", ")
                )));
            }
        }
        if policy.open_files < 16 {
            return Err(invalid(format!(
                "open_files = {} is below the smallest workable value 16",
                policy.open_files
            )));
        }
        Ok(policy)
    }

    /// The policy's defaults with a request's overrides applied; each at least its minimum and
    /// at most the policy's maximum. Nothing is raised or lowered silently.
    pub fn resolve(&self, o: &LimitOverrides) -> Result<Limits, LimitError> {
        let pick = |(field, v): (&'static str, Option<u64>),
                    (_, default): (&str, u64),
                    (_, maximum): (&str, u64),
                    (_, minimum): (&str, u64)| match v {
            Some(requested) if requested > maximum => Err(LimitError::Above {
                field,
                requested,
                maximum,
            }),
            Some(requested) if requested < minimum => Err(LimitError::Below {
                field,
                requested,
                minimum,
            }),
            Some(v) => Ok(v),
            None => Ok(default),
        };
        let asked = [
            ("wall_time_ms", o.wall_time_ms),
            ("cpu_time_ms", o.cpu_time_ms),
            ("memory_bytes", o.memory_bytes),
            ("pids", o.pids),
            ("output_bytes", o.output_bytes),
            ("disk_bytes", o.disk_bytes),
        ];
        let bounds = self
            .defaults
            .fields()
            .into_iter()
            .zip(self.maxima.fields())
            .zip(MINIMUMS.fields());
        let mut v = [0u64; 6];
        for (slot, (asked, ((default, maximum), minimum))) in
            v.iter_mut().zip(asked.into_iter().zip(bounds))
        {
            *slot = pick(asked, default, maximum, minimum)?;
        }
        Ok(Limits {
            wall_time_ms: v[0],
            cpu_time_ms: v[1],
            memory_bytes: v[2],
            pids: v[3],
            output_bytes: v[4],
            disk_bytes: v[5],
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
        let read_err = |source| PolicyError::Read {
            dir: dir.display().to_string(),
            source,
        };
        let mut policies = BTreeMap::new();
        for entry in std::fs::read_dir(dir).map_err(read_err)? {
            let path = entry.map_err(read_err)?.path();
            if path.extension().and_then(|e| e.to_str()) != Some("toml") {
                continue;
            }
            let Some(name) = path.file_stem().and_then(|s| s.to_str()) else {
                continue;
            };
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
        assert_eq!(
            set.policies.keys().collect::<Vec<_>>(),
            vec!["benchmark", "default", "gvisor", "strict"]
        );
    }

    /// The gvisor policy is the default's limits, on docker under runsc.
    #[test]
    fn the_gvisor_policy_is_the_default_under_runsc() {
        let set = PolicySet::embedded().unwrap();
        let (d, g) = (set.get("default").unwrap(), set.get("gvisor").unwrap());
        assert_eq!(
            (g.defaults, g.maxima, g.compile, g.open_files),
            (d.defaults, d.maxima, d.compile, d.open_files)
        );
        assert_eq!(
            (g.executors.clone(), g.docker_runtime.as_deref()),
            (vec!["docker".to_string()], Some("runsc"))
        );
    }

    #[test]
    fn unknown_key_names_file_and_key() {
        let text = include_str!("../../policies/default.toml").replace("open_files", "open_filez");
        let err = Policy::parse("x", "policies/x.toml", &text)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("policies/x.toml") && err.contains("open_filez"),
            "{err}"
        );
    }

    #[test]
    fn default_above_maximum_is_refused() {
        let text =
            include_str!("../../policies/strict.toml").replacen("pids = ", "pids = 999999 #", 1);
        let err = Policy::parse("strict", "policies/strict.toml", &text)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("defaults.pids = 999999 exceeds maxima.pids"),
            "{err}"
        );
    }

    #[test]
    fn resolve_rejects_over_maximum_and_under_minimum_and_fills_defaults() {
        let set = PolicySet::embedded().unwrap();
        let p = set.get("default").unwrap();
        let over = LimitOverrides {
            memory_bytes: Some(p.maxima.memory_bytes + 1),
            ..Default::default()
        };
        assert_eq!(
            p.resolve(&over).unwrap_err(),
            LimitError::Above {
                field: "memory_bytes",
                requested: p.maxima.memory_bytes + 1,
                maximum: p.maxima.memory_bytes
            }
        );
        for (o, field, requested, minimum) in [
            (
                LimitOverrides {
                    pids: Some(2),
                    ..Default::default()
                },
                "pids",
                2,
                MINIMUMS.pids,
            ),
            (
                LimitOverrides {
                    memory_bytes: Some(1),
                    ..Default::default()
                },
                "memory_bytes",
                1,
                MINIMUMS.memory_bytes,
            ),
            (
                LimitOverrides {
                    disk_bytes: Some(0),
                    ..Default::default()
                },
                "disk_bytes",
                0,
                MINIMUMS.disk_bytes,
            ),
            (
                LimitOverrides {
                    wall_time_ms: Some(0),
                    ..Default::default()
                },
                "wall_time_ms",
                0,
                1,
            ),
            (
                LimitOverrides {
                    cpu_time_ms: Some(0),
                    ..Default::default()
                },
                "cpu_time_ms",
                0,
                1,
            ),
        ] {
            assert_eq!(
                p.resolve(&o).unwrap_err(),
                LimitError::Below {
                    field,
                    requested,
                    minimum
                }
            );
        }
        let at_minimum = LimitOverrides {
            wall_time_ms: Some(MINIMUMS.wall_time_ms),
            cpu_time_ms: Some(MINIMUMS.cpu_time_ms),
            memory_bytes: Some(MINIMUMS.memory_bytes),
            pids: Some(MINIMUMS.pids),
            output_bytes: Some(MINIMUMS.output_bytes),
            disk_bytes: Some(MINIMUMS.disk_bytes),
        };
        assert_eq!(
            p.resolve(&at_minimum).unwrap(),
            MINIMUMS,
            "the minimums themselves are accepted as asked"
        );
        let l = p
            .resolve(&LimitOverrides {
                pids: Some(9),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(l.pids, 9);
        assert_eq!(l.wall_time_ms, p.defaults.wall_time_ms);
    }

    #[test]
    fn a_policy_below_a_minimum_or_beyond_any_executor_does_not_load() {
        let text = include_str!("../../policies/strict.toml");
        let low = text.replacen("pids = ", "pids = 7 #", 1);
        let err = Policy::parse("strict", "policies/strict.toml", &low)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("defaults.pids = 7 is below the minimum 8"),
            "{err}"
        );
        let huge = text.replace("memory_bytes = ", "memory_bytes = 9223372036854775807 #");
        let err = Policy::parse("strict", "policies/strict.toml", &huge)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("memory_bytes = 9223372036854775807 is larger than any executor can hold"),
            "{err}"
        );
    }

    #[test]
    fn the_request_schema_states_the_minimums() {
        use utoipa::PartialSchema;
        let schema = serde_json::to_value(LimitOverrides::schema()).unwrap();
        for (field, minimum) in MINIMUMS.fields() {
            assert_eq!(
                schema["properties"][field]["minimum"],
                serde_json::json!(minimum),
                "{field}: {schema}"
            );
        }
    }
}
