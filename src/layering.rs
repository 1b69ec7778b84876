//! Architecture invariants that a test can hold (rust-analyzer's tidy tests): which room may
//! import which. The doors (`api/`, `mcp/`, `compat/`, `console/`, the CLIs) sit on `service/`;
//! `service/` knows no door; the rooms below it know neither. See ARCHITECTURE.md, "Architecture invariants".

use std::path::{Path, PathBuf};

/// Every `.rs` file below `dir` (or `dir` itself when it is a file).
fn sources(dir: &Path) -> Vec<PathBuf> {
    if dir.is_file() {
        return vec![dir.to_path_buf()];
    }
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(sources(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out
}

/// The files of `rooms` (paths below `src/`) that mention any of `forbidden`, with the line.
fn offenders(rooms: &[&str], forbidden: &[&str]) -> Vec<String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut found = Vec::new();
    for room in rooms {
        for file in sources(&src.join(room)) {
            let text = std::fs::read_to_string(&file).unwrap();
            for (n, line) in text.lines().enumerate() {
                let code = line.split("//").next().unwrap_or_default();
                if let Some(f) = forbidden.iter().find(|f| code.contains(*f)) {
                    found.push(format!("{}:{}: {f}", file.display(), n + 1));
                }
            }
        }
    }
    found
}

/// What naming a door looks like (or HTTP's server side).
const DOORS: &[&str] = &[
    "axum",
    "hyper::",
    "crate::api",
    "crate::mcp",
    "crate::compat",
    "crate::console",
];

/// The rooms below the service: the run contract and executors, sandboxes, the store,
/// policies, the agent loop, the supervisor, the scorers, run tracking, and what they share.
const BELOW_SERVICE: &[&str] = &[
    "exec",
    "sandbox",
    "store",
    "policy",
    "agent",
    "supervisor",
    "eval",
    "admission.rs",
    "runs.rs",
    "config.rs",
    "wire.rs",
];

#[test]
fn the_service_knows_no_door() {
    let found = offenders(&["service"], DOORS);
    assert!(
        found.is_empty(),
        "service/ reaches up:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_rooms_below_the_service_know_neither_it_nor_a_door() {
    let mut forbidden = DOORS.to_vec();
    forbidden.push("crate::service");
    let found = offenders(BELOW_SERVICE, &forbidden);
    assert!(
        found.is_empty(),
        "a room below service/ reaches up:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_command_line_goes_through_the_service_not_the_http_layer() {
    let found = offenders(
        &["main.rs", "oneshot.rs", "agent_cli.rs", "agent_eval.rs"],
        &["api::"],
    );
    assert!(
        found.is_empty(),
        "a CLI imports the HTTP layer:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_agent_loop_does_not_know_the_store() {
    let found = offenders(&["agent"], &["crate::store"]);
    assert!(
        found.is_empty(),
        "agent/ reaches the store:\n{}",
        found.join("\n")
    );
}

#[test]
fn policies_do_not_import_the_run_contract() {
    let found = offenders(&["policy"], &["crate::exec"]);
    assert!(
        found.is_empty(),
        "policy/ imports exec/:\n{}",
        found.join("\n")
    );
}
