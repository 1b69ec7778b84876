//! Runtime definitions (`runtimes.toml`): which binary runs a language, its file name, its
//! compile and run commands. Which of them actually work is probed at start by the executors.

use serde::{Deserialize, Serialize};

const EMBEDDED: &str = include_str!("runtimes.toml");

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Runtime {
    pub language: String,
    pub aliases: Vec<String>,
    pub source_file: String,
    pub run: Vec<String>,
    #[serde(default)]
    pub compile: Option<Vec<String>>,
    /// The file the compile step leaves in /work for the run step.
    #[serde(default)]
    pub artifact: Option<String>,
    pub version: Vec<String>,
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

impl RuntimeTable {
    pub fn embedded() -> RuntimeTable {
        let table: RuntimeTable =
            toml::from_str(EMBEDDED).expect("embedded runtimes.toml is valid");
        for r in &table.runtimes {
            assert_eq!(
                r.compile.is_some(),
                r.artifact.is_some(),
                "runtime {}: compile and artifact go together",
                r.language
            );
        }
        table
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
}
