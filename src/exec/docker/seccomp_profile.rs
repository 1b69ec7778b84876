//! The docker executor's seccomp profile, generated from the same rules as the local sandbox
//! (`local/seccomp.json`), so both executors refuse exactly the same system calls. Only the
//! host's native architecture is listed: libseccomp then kills calls from any other ABI (x32).

use serde::Deserialize;
use serde_json::{json, Value};

const RULES: &str = include_str!("../local/seccomp.json");

#[derive(Deserialize)]
struct Filter {
    match_action: Action,
    filter: Vec<Rule>,
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum Action {
    Errno(u32),
}

#[derive(Deserialize)]
struct Rule {
    syscall: String,
    #[serde(default)]
    args: Vec<Cond>,
}

#[derive(Deserialize)]
struct Cond {
    index: u32,
    op: Op,
    val: u64,
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum Op {
    Eq,
    Ne,
    MaskedEq(u64),
}

/// The profile as the JSON text the engine takes in `security_opt: ["seccomp=..."]`.
pub fn profile() -> String {
    let filters: std::collections::BTreeMap<String, Filter> = serde_json::from_str(RULES).expect("seccomp.json is valid");
    let mut syscalls = Vec::new();
    for f in filters.values() {
        let Action::Errno(errno) = f.match_action;
        for r in &f.filter {
            let args: Vec<Value> = r
                .args
                .iter()
                .map(|c| match c.op {
                    Op::Eq => json!({"index": c.index, "value": c.val, "op": "SCMP_CMP_EQ"}),
                    Op::Ne => json!({"index": c.index, "value": c.val, "op": "SCMP_CMP_NE"}),
                    Op::MaskedEq(mask) => json!({"index": c.index, "value": mask, "valueTwo": c.val, "op": "SCMP_CMP_MASKED_EQ"}),
                })
                .collect();
            syscalls.push(json!({"names": [r.syscall], "action": "SCMP_ACT_ERRNO", "errnoRet": errno, "args": args}));
        }
    }
    let arch = match std::env::consts::ARCH {
        "x86_64" => "SCMP_ARCH_X86_64",
        "aarch64" => "SCMP_ARCH_AARCH64",
        "riscv64" => "SCMP_ARCH_RISCV64",
        other => panic!("no seccomp architecture for {other}"),
    };
    json!({"defaultAction": "SCMP_ACT_ALLOW", "architectures": [arch], "syscalls": syscalls}).to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_rule_becomes_a_profile_entry() {
        let p: serde_json::Value = serde_json::from_str(&super::profile()).unwrap();
        let names: Vec<&str> = p["syscalls"].as_array().unwrap().iter().map(|s| s["names"][0].as_str().unwrap()).collect();
        for needed in ["mount", "unshare", "clone", "clone3", "keyctl", "bpf", "ptrace", "io_uring_setup", "ioctl"] {
            assert!(names.contains(&needed), "{needed} missing");
        }
        let clone3 = p["syscalls"].as_array().unwrap().iter().find(|s| s["names"][0] == "clone3").unwrap();
        assert_eq!(clone3["errnoRet"], 38);
    }
}
