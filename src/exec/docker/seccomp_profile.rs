//! The docker executor's seccomp profile, generated from the same rules as the local sandbox
//! (`local/seccomp.json`), so both executors refuse exactly the same system calls. Only the
//! host's native architecture is listed: libseccomp then kills calls from any other ABI (x32).
//!
//! Two differences between the engines are translated here. The engine (runc) turns a rule with
//! several comparisons of one argument into one rule per comparison, which would make "family
//! is none of 1, 2, 10" match everything; such a rule becomes the masked comparisons that cover
//! exactly the values outside the set. And libseccomp compares all 64 bits while the kernel reads
//! an `int` argument from the low 32 only, so a 32-bit (`dword`) equality is a masked comparison
//! of the low half: a program setting the upper bits cannot slip a value past it.

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

#[derive(Deserialize, Clone, Copy)]
struct Cond {
    index: u32,
    #[serde(rename = "type")]
    len: Len,
    op: Op,
    val: u64,
}

#[derive(Deserialize, Clone, Copy, PartialEq)]
#[serde(rename_all = "snake_case")]
enum Len {
    Dword,
    Qword,
}

#[derive(Deserialize, Clone, Copy, PartialEq)]
#[serde(rename_all = "snake_case")]
enum Op {
    Eq,
    Ne,
    MaskedEq(u64),
}

const LOW32: u64 = 0xffff_ffff;

/// One comparison as the engine's profile writes it.
fn arg(index: u32, c: Cond) -> Value {
    match (c.op, c.len) {
        (Op::Eq, Len::Dword) => {
            json!({"index": index, "value": LOW32, "valueTwo": c.val & LOW32, "op": "SCMP_CMP_MASKED_EQ"})
        }
        (Op::Eq, Len::Qword) => json!({"index": index, "value": c.val, "op": "SCMP_CMP_EQ"}),
        // A 64-bit "differs" also matches a value whose low half is equal but whose upper half
        // is not: in a deny rule that refuses more, never less.
        (Op::Ne, _) => json!({"index": index, "value": c.val, "op": "SCMP_CMP_NE"}),
        (Op::MaskedEq(mask), Len::Dword) => {
            json!({"index": index, "value": mask & LOW32, "valueTwo": c.val & LOW32, "op": "SCMP_CMP_MASKED_EQ"})
        }
        (Op::MaskedEq(mask), Len::Qword) => {
            json!({"index": index, "value": mask, "valueTwo": c.val, "op": "SCMP_CMP_MASKED_EQ"})
        }
    }
}

/// (mask, value) pairs over 32 bits whose matches are exactly the values not in `set`: prefix
/// patterns, split on the next bit wherever a member of the set lies below.
fn complement_cover(set: &[u32]) -> Vec<(u32, u32)> {
    fn walk(set: &[u32], prefix: u32, depth: u32, out: &mut Vec<(u32, u32)>) {
        let mask = if depth == 0 { 0 } else { !0u32 << (32 - depth) };
        let inside: Vec<u32> = set.iter().copied().filter(|v| v & mask == prefix).collect();
        if inside.is_empty() {
            out.push((mask, prefix));
        } else if depth < 32 {
            walk(&inside, prefix, depth + 1, out);
            walk(&inside, prefix | 1 << (31 - depth), depth + 1, out);
        }
    }
    let mut out = Vec::new();
    walk(set, 0, 0, &mut out);
    out
}

/// A rule's comparisons as one or more profile rules (OR'd by the engine): comparisons of one
/// argument that all say "differs" become the cover of the values they leave out.
fn expand(rule: &Rule) -> Vec<Vec<Value>> {
    let mut by_index: std::collections::BTreeMap<u32, Vec<Cond>> = Default::default();
    for c in &rule.args {
        by_index.entry(c.index).or_default().push(*c);
    }
    let mut single = Vec::new();
    let mut set_arg = None;
    for (index, conds) in by_index {
        if conds.len() == 1 {
            single.push(arg(index, conds[0]));
            continue;
        }
        assert!(
            set_arg.is_none() && conds.iter().all(|c| c.op == Op::Ne && c.len == Len::Dword),
            "{}: several comparisons of one argument must all be dword \"ne\", on one argument only",
            rule.syscall
        );
        set_arg = Some((
            index,
            conds.iter().map(|c| c.val as u32).collect::<Vec<u32>>(),
        ));
    }
    match set_arg {
        None => vec![single],
        Some((index, set)) => complement_cover(&set)
            .into_iter()
            .map(|(mask, val)| {
                let mut args = single.clone();
                args.push(json!({"index": index, "value": mask as u64, "valueTwo": val as u64, "op": "SCMP_CMP_MASKED_EQ"}));
                args
            })
            .collect(),
    }
}

/// The programs' profile as the JSON text the engine takes in `security_opt: ["seccomp=..."]`
/// (what the supervisor stacks on each program is `local/seccomp.json` itself; this is the
/// reference the supervisor's profile is checked against).
#[cfg(test)]
pub fn profile() -> String {
    generate(|_| false)
}

/// What a supervisor needs beyond a program: a pid namespace (and a mount namespace with its
/// own /proc) for each call. Programs never get these: the supervisor stacks execbox's own
/// filter (`local/seccomp.json`, whole) on each program before it execs, and a program has no
/// capability to use them anyway.
const SUPERVISOR_NEEDS: &[&str] = &["mount", "umount2", "unshare"];
const SUPERVISOR_CLONE_FLAGS: &[u64] = &[libc::CLONE_NEWPID as u64, libc::CLONE_NEWNS as u64];

/// The profile of a supervised container: [`profile`] without the rules that refuse what the
/// supervisor itself needs (see [`SUPERVISOR_NEEDS`]).
pub fn supervisor_profile() -> String {
    generate(|r| {
        SUPERVISOR_NEEDS.contains(&r.syscall.as_str())
            || (r.syscall == "clone"
                && r.args.len() == 1
                && SUPERVISOR_CLONE_FLAGS.contains(&r.args[0].val))
    })
}

fn generate(exempt: impl Fn(&Rule) -> bool) -> String {
    let filters: std::collections::BTreeMap<String, Filter> =
        serde_json::from_str(RULES).expect("seccomp.json is valid");
    let mut syscalls = Vec::new();
    for f in filters.values() {
        let Action::Errno(errno) = f.match_action;
        for r in f.filter.iter().filter(|r| !exempt(r)) {
            for args in expand(r) {
                syscalls.push(json!({"names": [r.syscall], "action": "SCMP_ACT_ERRNO", "errnoRet": errno, "args": args}));
            }
        }
    }
    let arch = match std::env::consts::ARCH {
        "x86_64" => "SCMP_ARCH_X86_64",
        "aarch64" => "SCMP_ARCH_AARCH64",
        "riscv64" => "SCMP_ARCH_RISCV64",
        other => panic!("no seccomp architecture for {other}"),
    };
    json!({"defaultAction": "SCMP_ACT_ALLOW", "architectures": [arch], "syscalls": syscalls})
        .to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_rule_becomes_a_profile_entry() {
        let p: serde_json::Value = serde_json::from_str(&super::profile()).unwrap();
        let names: Vec<&str> = p["syscalls"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["names"][0].as_str().unwrap())
            .collect();
        for needed in [
            "mount",
            "unshare",
            "clone",
            "clone3",
            "keyctl",
            "bpf",
            "ptrace",
            "io_uring_setup",
            "ioctl",
        ] {
            assert!(names.contains(&needed), "{needed} missing");
        }
        let clone3 = p["syscalls"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["names"][0] == "clone3")
            .unwrap();
        assert_eq!(clone3["errnoRet"], 38);
    }

    /// Whether the profile refuses `name` with these arguments, reading its rules as libseccomp
    /// does: a rule matches when all its comparisons do (64-bit), the rules of a call are OR'd.
    fn refused(p: &serde_json::Value, name: &str, args: [u64; 3]) -> bool {
        p["syscalls"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["names"][0] == name)
            .any(|s| {
                s["args"].as_array().unwrap().iter().all(|a| {
                    let (v, v2) = (
                        a["value"].as_u64().unwrap(),
                        a["valueTwo"].as_u64().unwrap_or(0),
                    );
                    let x = args[a["index"].as_u64().unwrap() as usize];
                    match a["op"].as_str().unwrap() {
                        "SCMP_CMP_EQ" => x == v,
                        "SCMP_CMP_NE" => x != v,
                        "SCMP_CMP_MASKED_EQ" => x & v == v2,
                        op => panic!("{op}"),
                    }
                })
            })
    }

    /// The engine's profile refuses exactly what the local filter refuses, with the kernel's
    /// reading of an `int` argument (the low 32 bits).
    #[test]
    fn socket_families_and_personality_translate_exactly() {
        let p: serde_json::Value = serde_json::from_str(&super::profile()).unwrap();
        let allowed_family = |f: u64| matches!(f & 0xffff_ffff, 1 | 2 | 10 | 16);
        for family in [
            0u64,
            1,
            2,
            3,
            9,
            10,
            11,
            15,
            16,
            17,
            31,
            32,
            40,
            44,
            0x8000_0000,
            0xffff_ffff,
            1 << 32 | 40,
            1 << 32 | 2,
            0xffff_ffff_0000_0010,
        ] {
            for protocol in [0u64, 9, 15, 1 << 32] {
                let kernel_protocol = protocol & 0xffff_ffff;
                let expect =
                    !allowed_family(family) || (family & 0xffff_ffff == 16 && kernel_protocol != 0);
                for call in ["socket", "socketpair"] {
                    let got = refused(&p, call, [family, 1, protocol]);
                    // A protocol whose upper half is set is refused by the 64-bit "differs";
                    // that only ever refuses more.
                    if protocol >> 32 != 0 && family & 0xffff_ffff == 16 {
                        assert!(got, "{call}({family:#x}, _, {protocol:#x})");
                    } else {
                        assert_eq!(got, expect, "{call}({family:#x}, _, {protocol:#x})");
                    }
                }
            }
        }
        for persona in [
            0u64,
            0xffff_ffff,
            0x0040_0000,
            0x0004_0000,
            8,
            1 << 32 | 0x0004_0000,
        ] {
            let expect = !matches!(persona & 0xffff_ffff, 0 | 0xffff_ffff);
            assert_eq!(
                refused(&p, "personality", [persona, 0, 0]),
                expect,
                "personality({persona:#x})"
            );
        }
    }

    /// The supervisor's profile lets it make pid and mount namespaces and mount its /proc, and
    /// refuses everything else the programs' profile refuses.
    #[test]
    fn the_supervisor_profile_allows_only_its_namespaces_and_mounts() {
        let sup: serde_json::Value = serde_json::from_str(&super::supervisor_profile()).unwrap();
        let prog: serde_json::Value = serde_json::from_str(&super::profile()).unwrap();
        let (newpid, newns, newnet, newuser) = (
            libc::CLONE_NEWPID as u64,
            libc::CLONE_NEWNS as u64,
            libc::CLONE_NEWNET as u64,
            libc::CLONE_NEWUSER as u64,
        );
        for (call, args) in [
            ("clone", [newpid | newns | libc::SIGCHLD as u64, 0, 0]),
            ("mount", [0, 0, 0]),
            ("unshare", [newns, 0, 0]),
        ] {
            assert!(!refused(&sup, call, args), "{call} {args:?}");
            assert!(refused(&prog, call, args), "{call} {args:?}");
        }
        for (call, args) in [
            ("clone", [newpid | newnet, 0, 0]),
            ("clone", [newuser, 0, 0]),
            ("keyctl", [0, 0, 0]),
            ("bpf", [0, 0, 0]),
            ("ptrace", [0, 0, 0]),
            ("setns", [0, 0, 0]),
            ("socket", [40, 0, 0]),
        ] {
            assert!(refused(&sup, call, args), "{call} {args:?}");
        }
        let n = |p: &serde_json::Value| p["syscalls"].as_array().unwrap().len();
        assert_eq!(n(&prog) - n(&sup), 5);
    }

    #[test]
    fn the_complement_cover_matches_exactly_the_values_outside_the_set() {
        let set = [1u32, 2, 10, 16];
        let cover = super::complement_cover(&set);
        for v in (0u32..300).chain([0x7fff_ffff, 0x8000_0000, 0xffff_fff0, u32::MAX]) {
            let hits = cover.iter().filter(|(m, val)| v & m == *val).count();
            assert_eq!(hits, usize::from(!set.contains(&v)), "{v:#x}");
        }
    }
}
