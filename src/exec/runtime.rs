//! Runtime definitions (`runtimes.toml`, embedded, or the file `runtimes` of the config): which
//! binary runs a language, its file names, its compile and run commands, its image, packages,
//! host paths, environment and least limits. Which of them work is probed at start by the
//! executors.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::policy::{LimitOverrides, Limits, MINIMUMS};

const EMBEDDED: &str = include_str!("../../runtimes.toml");

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Runtime {
    pub language: String,
    pub aliases: Vec<String>,
    /// Code-fence tags a model may write for it beyond its language and aliases (`shell`,
    /// `cxx`): the agent loop runs such blocks in it. Not names a request's `language` takes.
    #[serde(default)]
    pub tags: Vec<String>,
    pub source_file: String,
    pub run: Vec<String>,
    #[serde(default)]
    pub compile: Option<Vec<String>>,
    /// The file the compile step leaves in /work for the run step.
    #[serde(default)]
    pub artifact: Option<String>,
    pub version: Vec<String>,
    /// The docker executor's image; None: the language runs on the local executor only.
    #[serde(default)]
    pub image: Option<String>,
    /// The Debian packages that provide it (read by `.ci/run` and `images/build.sh`).
    #[serde(default)]
    pub packages: Vec<String>,
    /// Host paths the local sandbox binds read-only for it, beyond `[sandbox].ro_paths`.
    #[serde(default)]
    pub host_paths: Vec<String>,
    /// Set for its compile and run steps, under the request's own `env`.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// The least default of each limit of its run step (see [`LimitOverrides::raise`]).
    #[serde(default)]
    pub limits: LimitOverrides,
    /// The least of each limit of its compile step.
    #[serde(default)]
    pub compile_limits: LimitOverrides,
    /// Run once in every new docker pool container of the runtime's image before it takes a
    /// run: a fresh container's filesystem caches are cold, and the first interpreter start in
    /// it pays for that (about twice a warm start). Optional; its outcome is not judged.
    #[serde(default)]
    pub warm: Option<Vec<String>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SandboxPaths {
    pub ro_paths: Vec<String>,
    pub path: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeTable {
    pub sandbox: SandboxPaths,
    #[serde(rename = "runtime")]
    pub runtimes: Vec<Runtime>,
}

#[derive(Debug, thiserror::Error)]
pub enum RuntimesError {
    #[error("runtimes file {file}: {message}")]
    Invalid { file: String, message: String },
    #[error("cannot read runtimes file {file}: {source}")]
    Read {
        file: String,
        #[source]
        source: std::io::Error,
    },
}

impl Runtime {
    /// The environment of its steps: `base`, then its own `env`, then the request's `request`
    /// (each later one wins).
    pub fn env(
        &self,
        base: Vec<(String, String)>,
        request: &[(String, String)],
    ) -> Vec<(String, String)> {
        let mut env = base;
        let own = self.env.iter().map(|(k, v)| (k.clone(), v.clone()));
        for (k, v) in own.chain(request.iter().cloned()) {
            env.retain(|(ek, _)| *ek != k);
            env.push((k, v));
        }
        env
    }

    fn check(&self) -> Result<(), String> {
        let lang = &self.language;
        if self.compile.is_some() != self.artifact.is_some() {
            return Err(format!(
                "runtime {lang}: compile and artifact go together (both or neither)"
            ));
        }
        for (what, argv) in [
            ("run", Some(&self.run)),
            ("version", Some(&self.version)),
            ("compile", self.compile.as_ref()),
            ("warm", self.warm.as_ref()),
        ] {
            if argv.is_some_and(|a| a.is_empty() || a.iter().any(|s| s.contains('\0'))) {
                return Err(format!(
                    "runtime {lang}: {what} must be a non-empty argv without NUL bytes"
                ));
            }
        }
        for (what, p) in std::iter::once(("source_file", &self.source_file))
            .chain(self.artifact.iter().map(|a| ("artifact", a)))
        {
            super::path::check(p).map_err(|e| format!("runtime {lang}: {what} \"{p}\": {e}"))?;
        }
        for p in &self.host_paths {
            if !p.starts_with('/') {
                return Err(format!(
                    "runtime {lang}: host_paths entry \"{p}\" is not an absolute path"
                ));
            }
        }
        for k in self.env.keys() {
            if !super::request::valid_env_name(k) {
                return Err(format!(
                    "runtime {lang}: env name \"{k}\" is not a valid variable name"
                ));
            }
        }
        for (what, o) in [
            ("limits", &self.limits),
            ("compile_limits", &self.compile_limits),
        ] {
            for (field, value, floor) in o.set_fields(&MINIMUMS) {
                if value < floor {
                    return Err(format!("runtime {lang}: {what}.{field} = {value} is below the minimum {floor} a run needs on every executor"));
                }
            }
        }
        Ok(())
    }
}

impl RuntimeTable {
    pub fn embedded() -> RuntimeTable {
        RuntimeTable::parse(EMBEDDED, "runtimes.toml (embedded)")
            .expect("the embedded runtimes.toml is valid")
    }

    /// The file `path` instead of the embedded table.
    pub fn load(path: &Path) -> Result<RuntimeTable, RuntimesError> {
        let text = std::fs::read_to_string(path).map_err(|source| RuntimesError::Read {
            file: path.display().to_string(),
            source,
        })?;
        RuntimeTable::parse(&text, &path.display().to_string())
    }

    pub fn parse(text: &str, file: &str) -> Result<RuntimeTable, RuntimesError> {
        let invalid = |message: String| RuntimesError::Invalid {
            file: file.to_string(),
            message,
        };
        let table: RuntimeTable =
            toml::from_str(text).map_err(|e| invalid(e.to_string().trim().to_string()))?;
        if table.runtimes.is_empty() {
            return Err(invalid("no [[runtime]]: list at least one language".into()));
        }
        let mut seen = std::collections::HashSet::new();
        for r in &table.runtimes {
            r.check().map_err(invalid)?;
            for name in std::iter::once(&r.language).chain(&r.aliases) {
                if name.is_empty() || !seen.insert(name.to_ascii_lowercase()) {
                    return Err(invalid(format!(
                        "runtime {}: the name \"{name}\" is empty or taken by another runtime",
                        r.language
                    )));
                }
            }
        }
        // Fence tags go by case, as models write them; after every name, so a tag never
        // shadows another runtime's language or alias.
        for r in &table.runtimes {
            for tag in &r.tags {
                if tag.is_empty() || !seen.insert(tag.to_ascii_lowercase()) {
                    return Err(invalid(format!(
                        "runtime {}: the tag \"{tag}\" is empty or taken by another runtime's name or tag",
                        r.language
                    )));
                }
            }
        }
        Ok(table)
    }

    /// Resolve a language name or alias, exactly as listed (the API description lists them as
    /// an enum; the CLI lowercases its flag itself).
    pub fn find(&self, name: &str) -> Option<&Runtime> {
        self.runtimes
            .iter()
            .find(|r| r.language == name || r.aliases.iter().any(|a| a == name))
    }

    /// Every name `find` accepts: each language, then its aliases.
    pub fn names(&self) -> Vec<&str> {
        self.runtimes
            .iter()
            .flat_map(|r| {
                std::iter::once(r.language.as_str()).chain(r.aliases.iter().map(String::as_str))
            })
            .collect()
    }

    /// What the local sandbox binds read-only: `[sandbox].ro_paths`, then every runtime's
    /// `host_paths` (a sandbox is built before it knows its run's language).
    pub fn ro_paths(&self) -> Vec<String> {
        let mut paths = self.sandbox.ro_paths.clone();
        for p in self.runtimes.iter().flat_map(|r| &r.host_paths) {
            if !paths.contains(p) {
                paths.push(p.clone());
            }
        }
        paths
    }

    /// The image behind each language that has one.
    pub fn images(&self) -> std::collections::HashMap<String, String> {
        self.runtimes
            .iter()
            .filter_map(|r| Some((r.language.clone(), r.image.clone()?)))
            .collect()
    }
}

impl LimitOverrides {
    /// `limits` with each field this sets raised to at least its value, but never above
    /// `ceiling` (a policy's maximum) by the raise, and not where `keep` (a request's own
    /// limits) sets the field.
    pub fn raise(&self, limits: Limits, ceiling: &Limits, keep: &LimitOverrides) -> Limits {
        let mut out = limits;
        let kept = keep.as_array();
        let floors = self.as_array();
        let caps = ceiling.as_array();
        let values = out.as_array_mut();
        for i in 0..values.len() {
            if let (Some(floor), None) = (floors[i], kept[i]) {
                *values[i] = (*values[i]).max(floor.min(caps[i]));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_alias_of_the_contract_resolves() {
        let t = RuntimeTable::embedded();
        for (alias, lang) in [
            ("py", "python"),
            ("python3", "python"),
            ("python", "python"),
            ("sh", "bash"),
            ("bash", "bash"),
            ("js", "javascript"),
            ("javascript", "javascript"),
            ("node", "javascript"),
            ("c", "c"),
            ("cpp", "cpp"),
            ("c++", "cpp"),
            ("ts", "typescript"),
            ("rs", "rust"),
            ("golang", "go"),
            ("java", "java"),
            ("rb", "ruby"),
            ("php", "php"),
            ("pl", "perl"),
            ("lua5.4", "lua"),
        ] {
            assert_eq!(
                t.find(alias).map(|r| r.language.as_str()),
                Some(lang),
                "{alias}"
            );
        }
        for other in ["cobol", "Python", " python", "PY"] {
            assert!(t.find(other).is_none(), "{other:?}");
        }
    }

    #[test]
    fn every_embedded_runtime_has_an_image_and_packages() {
        for r in RuntimeTable::embedded().runtimes {
            assert!(r.image.is_some(), "{}", r.language);
            assert!(!r.packages.is_empty(), "{}", r.language);
        }
    }

    #[test]
    fn a_bad_table_names_the_file_and_the_runtime() {
        let base = "[sandbox]\nro_paths = []\npath = \"/usr/bin\"\n";
        let one = |extra: &str| {
            format!("{base}[[runtime]]\nlanguage = \"x\"\naliases = []\nsource_file = \"main.x\"\nrun = [\"x\"]\nversion = [\"x\"]\n{extra}")
        };
        for (text, expect) in [
            (one("artifact = \"a\""), "runtime x: compile and artifact go together"),
            (one("env = { \"1A\" = \"b\" }"), "runtime x: env name \"1A\""),
            (one("host_paths = [\"etc\"]"), "runtime x: host_paths entry \"etc\""),
            (one("limits = { pids = 2 }"), "runtime x: limits.pids = 2 is below the minimum 8"),
            (one("colour = 1"), "unknown field `colour`"),
            (
                format!("{}[[runtime]]\nlanguage = \"y\"\naliases = [\"x\"]\nsource_file = \"m\"\nrun = [\"y\"]\nversion = [\"y\"]\n", one("")),
                "runtime y: the name \"x\" is empty or taken",
            ),
            (
                format!("{}[[runtime]]\nlanguage = \"y\"\naliases = []\ntags = [\"X\"]\nsource_file = \"m\"\nrun = [\"y\"]\nversion = [\"y\"]\n", one("")),
                "runtime y: the tag \"X\" is empty or taken by another runtime's name or tag",
            ),
            (one("tags = [\"\"]"), "runtime x: the tag \"\" is empty"),
            (base.to_string(), "missing field `runtime`"),
        ] {
            let err = RuntimeTable::parse(&text, "my.toml").unwrap_err().to_string();
            assert!(err.starts_with("runtimes file my.toml: "), "{err}");
            assert!(err.contains(expect), "{err}");
        }
    }

    #[test]
    fn a_runtime_raises_defaults_up_to_the_maximum_but_not_a_request_s_own_limit() {
        let policy = crate::policy::PolicySet::embedded().unwrap();
        let strict = policy.get("strict").unwrap();
        let floor = LimitOverrides {
            memory_bytes: Some(512 << 20),
            pids: Some(20),
            ..Default::default()
        };
        let raised = floor.raise(strict.defaults, &strict.maxima, &LimitOverrides::default());
        assert_eq!(raised.memory_bytes, strict.maxima.memory_bytes, "capped");
        assert_eq!(raised.pids, 20);
        assert_eq!(raised.wall_time_ms, strict.defaults.wall_time_ms);
        let asked = LimitOverrides {
            pids: Some(9),
            ..Default::default()
        };
        assert_eq!(
            floor.raise(strict.defaults, &strict.maxima, &asked).pids,
            strict.defaults.pids
        );
    }

    #[test]
    fn runtime_env_sits_between_the_base_and_the_request() {
        let t = RuntimeTable::embedded();
        let go = t.find("go").unwrap();
        let env = go.env(
            vec![
                ("HOME".into(), "/work".into()),
                ("GOMAXPROCS".into(), "9".into()),
            ],
            &[("GOCACHE".into(), "/tmp/mine".into())],
        );
        let get = |k: &str| env.iter().find(|(ek, _)| ek == k).map(|(_, v)| v.as_str());
        assert_eq!(get("HOME"), Some("/work"));
        assert_eq!(get("GOMAXPROCS"), Some("2"));
        assert_eq!(get("GOCACHE"), Some("/tmp/mine"));
        assert_eq!(env.iter().filter(|(k, _)| k == "GOCACHE").count(), 1);
    }
}
