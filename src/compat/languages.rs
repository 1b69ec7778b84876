//! The compat APIs' names for execbox's runtimes (`languages.toml`, embedded): Judge0 ids and
//! names, Piston names and aliases. What a door offers is the rows whose runtime passed its
//! start-up probe on the compat executor, so a runtime added to `runtimes.toml` appears on both
//! doors as soon as its row names it.

use std::sync::LazyLock;

use serde::Deserialize;

use crate::exec::runtime::{Runtime, RuntimeTable};
use crate::exec::Executor;

const EMBEDDED: &str = include_str!("languages.toml");

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Language {
    /// The execbox language this row names.
    pub runtime: String,
    pub judge0_id: u32,
    #[serde(default)]
    pub judge0_also: Vec<u32>,
    /// With `{version}` for the probed version.
    pub judge0_name: String,
    pub piston: String,
    pub piston_aliases: Vec<String>,
    #[serde(default)]
    pub piston_runtime: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Table {
    language: Vec<Language>,
}

/// Every row of the table.
pub fn table() -> &'static [Language] {
    static TABLE: LazyLock<Vec<Language>> = LazyLock::new(|| {
        let t: Table = toml::from_str(EMBEDDED).expect("embedded languages.toml is valid");
        t.language
    });
    &TABLE
}

/// A row whose runtime this service can run now.
#[derive(Debug, Clone)]
pub struct Offered {
    pub row: &'static Language,
    pub runtime: Runtime,
    /// As the version command printed it, e.g. `Python 3.11.2`.
    pub probed: String,
    /// Its dotted number, e.g. `3.11.2`.
    pub version: String,
}

impl Offered {
    pub fn judge0_name(&self) -> String {
        self.row.judge0_name.replace("{version}", &self.version)
    }

    /// Whether `id` names this language on the Judge0 door.
    pub fn has_judge0_id(&self, id: u32) -> bool {
        self.row.judge0_id == id || self.row.judge0_also.contains(&id)
    }

    /// Whether `name` names this language on the Piston door.
    pub fn has_piston_name(&self, name: &str) -> bool {
        self.row.piston == name || self.row.piston_aliases.iter().any(|a| a == name)
    }
}

/// The rows whose runtime passed its start-up probe on `executor`, in the table's order.
pub fn offered(runtimes: &RuntimeTable, executor: &dyn Executor) -> Vec<Offered> {
    let probed = executor.runtimes();
    table()
        .iter()
        .filter_map(|row| {
            let runtime = runtimes
                .runtimes
                .iter()
                .find(|r| r.language == row.runtime)?;
            let printed = probed.get(&row.runtime)?;
            Some(Offered {
                row,
                runtime: runtime.clone(),
                version: dotted(printed),
                probed: printed.clone(),
            })
        })
        .collect()
}

/// The first dotted number in a version command's output (`Python 3.11.2` → `3.11.2`,
/// `5.2.15(1)-release` → `5.2.15`, `v20.19.2` → `20.19.2`); the whole text when it has none.
pub fn dotted(printed: &str) -> String {
    let start = printed.find(|c: char| c.is_ascii_digit());
    let Some(start) = start else {
        return printed.trim().to_string();
    };
    let rest = &printed[start..];
    let mut end = 0;
    let bytes = rest.as_bytes();
    while end < bytes.len() {
        let c = bytes[end];
        let digit_after_dot = c == b'.' && bytes.get(end + 1).is_some_and(u8::is_ascii_digit);
        if c.is_ascii_digit() || digit_after_dot {
            end += 1;
        } else {
            break;
        }
    }
    rest[..end].to_string()
}

/// Piston's version selector against a runtime's version: `*`, the exact version, or a
/// partial one with `x`/`X`/`*` for any component (`3`, `3.11`, `3.x`, `3.11.*`), as npm's
/// X-ranges match. Comparators (`^`, `~`, `>=`) are not taken.
pub fn version_matches(selector: &str, version: &str) -> bool {
    let selector = selector.trim();
    if selector.is_empty() {
        return false;
    }
    let have: Vec<&str> = version.split('.').collect();
    for (i, want) in selector.split('.').enumerate() {
        if matches!(want, "*" | "x" | "X") {
            continue;
        }
        if want.is_empty() || !want.bytes().all(|b| b.is_ascii_digit()) {
            return false;
        }
        match have.get(i) {
            Some(h) if h.parse::<u64>().ok() == want.parse::<u64>().ok() => {}
            _ => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_loads_and_no_id_or_name_is_taken_twice() {
        let rows = table();
        let mut ids: Vec<u32> = rows
            .iter()
            .flat_map(|r| std::iter::once(r.judge0_id).chain(r.judge0_also.iter().copied()))
            .collect();
        let n = ids.len();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), n, "a Judge0 id names two rows");
        let mut names: Vec<&str> = rows
            .iter()
            .flat_map(|r| {
                std::iter::once(r.piston.as_str())
                    .chain(r.piston_aliases.iter().map(String::as_str))
            })
            .collect();
        let n = names.len();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), n, "a Piston name names two rows");
        for r in rows {
            assert!(r.judge0_name.contains("{version}"), "{}", r.judge0_name);
        }
    }

    #[test]
    fn the_judge0_sdk_ids_of_1_13_1_name_todays_runtimes() {
        // judge0 0.0.8's LANGUAGE_TO_LANGUAGE_ID["1.13.1"] for the languages execbox has.
        let runtimes = RuntimeTable::embedded();
        for (language, id) in [
            ("python", 71),
            ("c", 50),
            ("cpp", 52),
            ("javascript", 63),
            ("bash", 46),
        ] {
            let row = table().iter().find(|r| r.runtime == language).unwrap();
            assert_eq!(row.judge0_id, id, "{language}");
            assert!(runtimes.find(language).is_some(), "{language}");
        }
    }

    #[test]
    fn dotted_takes_the_version_number_out_of_what_a_runtime_prints() {
        assert_eq!(dotted("Python 3.11.2"), "3.11.2");
        assert_eq!(dotted("5.2.15(1)-release"), "5.2.15");
        assert_eq!(dotted("v20.19.2"), "20.19.2");
        assert_eq!(dotted("12.2.0"), "12.2.0");
        assert_eq!(dotted("go version go1.19.8 linux/amd64"), "1.19.8");
        assert_eq!(dotted("1."), "1");
        assert_eq!(dotted("none"), "none");
    }

    #[test]
    fn version_selectors_match_as_piston_x_ranges_do() {
        for (sel, ok) in [
            ("*", true),
            ("3.11.2", true),
            ("3.11", true),
            ("3", true),
            ("3.x", true),
            ("3.11.*", true),
            ("x", true),
            ("3.11.3", false),
            ("3.10", false),
            ("2", false),
            ("^3.11.2", false),
            (">=3", false),
            ("", false),
            ("3.11.2.1", false),
        ] {
            assert_eq!(version_matches(sel, "3.11.2"), ok, "{sel}");
        }
    }
}
