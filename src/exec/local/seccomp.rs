//! The sandbox's seccomp filters. The rules are data (`seccomp.json`, seccompiler's format, in
//! firecracker's style); this module compiles them for the running architecture and installs
//! them, plus a hand-written guard that kills a process making x32 system calls on x86_64
//! (seccompiler matches syscall numbers only, and x32 numbers would otherwise slip past every
//! rule; libseccomp, behind the docker executor's profile, kills foreign ABIs the same way).

use seccompiler::{BpfProgram, TargetArch};

const RULES: &str = include_str!("seccomp.json");

/// Filters in installation order. All are installed; the kernel applies the strictest answer.
pub fn compile() -> Result<Vec<BpfProgram>, String> {
    let arch = TargetArch::try_from(std::env::consts::ARCH).map_err(|e| format!("seccomp: {e}"))?;
    let mut map = seccompiler::compile_from_json(RULES.as_bytes(), arch)
        .map_err(|e| format!("seccomp rules: {e}"))?;
    let mut filters = Vec::new();
    for name in ["deny", "enosys"] {
        filters.push(
            map.remove(name)
                .ok_or_else(|| format!("seccomp rules: no filter named {name}"))?,
        );
    }
    if let Some(guard) = x32_guard() {
        filters.push(guard);
    }
    Ok(filters)
}

/// Install every filter on the calling thread. `no_new_privs` must already be set.
pub fn install(filters: &[BpfProgram]) -> Result<(), String> {
    for f in filters {
        seccompiler::apply_filter(f).map_err(|e| format!("seccomp install: {e}"))?;
    }
    Ok(())
}

#[cfg(target_arch = "x86_64")]
fn x32_guard() -> Option<BpfProgram> {
    use seccompiler::sock_filter;
    const AUDIT_ARCH_X86_64: u32 = 0xC000_003E;
    const X32_SYSCALL_BIT: u32 = 0x4000_0000;
    const RET_ALLOW: u32 = 0x7fff_0000;
    const RET_KILL_PROCESS: u32 = 0x8000_0000;
    let ld = |k| sock_filter {
        code: (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16,
        jt: 0,
        jf: 0,
        k,
    };
    let jeq = |k, jt, jf| sock_filter {
        code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
        jt,
        jf,
        k,
    };
    let jge = |k, jt, jf| sock_filter {
        code: (libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K) as u16,
        jt,
        jf,
        k,
    };
    let ret = |k| sock_filter {
        code: (libc::BPF_RET | libc::BPF_K) as u16,
        jt: 0,
        jf: 0,
        k,
    };
    Some(vec![
        ld(4),                        // seccomp_data.arch
        jeq(AUDIT_ARCH_X86_64, 0, 3), // other arches: allow (the deny filter kills them)
        ld(0),                        // seccomp_data.nr
        jge(X32_SYSCALL_BIT, 0, 1),
        ret(RET_KILL_PROCESS),
        ret(RET_ALLOW),
    ])
}

#[cfg(not(target_arch = "x86_64"))]
fn x32_guard() -> Option<BpfProgram> {
    None
}

#[cfg(test)]
mod tests {
    #[test]
    fn rules_compile_for_this_arch() {
        let filters = super::compile().unwrap();
        assert!(filters.len() >= 2);
        assert!(filters.iter().all(|f| !f.is_empty()));
    }
}
