//! PLACEHOLDER until the local-host engineer's supervised backend lands on main (then main's
//! file replaces this one): the two traits as the brief fixes them.

use std::os::fd::OwnedFd;

use super::{Sandbox, SandboxError};
use crate::exec::BoxFuture;
use crate::policy::Limits;
use crate::supervisor::client::Supervisor;

pub trait SandboxHost: Send + Sync {
    fn name(&self) -> &'static str;
    fn create<'a>(&'a self, sb: &'a Sandbox) -> BoxFuture<'a, Result<(), SandboxError>>;
    /// The running supervisor's client, (re)starting it if it is not running (after a restart).
    fn supervisor<'a>(&'a self, sb: &'a Sandbox)
        -> BoxFuture<'a, Result<Supervisor, SandboxError>>;
    /// A cgroup for one call under the sandbox's, limits set; None where there is none (gVisor).
    fn call_cgroup<'a>(
        &'a self,
        sb: &'a Sandbox,
        limits: &'a Limits,
    ) -> BoxFuture<'a, Result<Option<Box<dyn CallCgroup>>, SandboxError>>;
    /// The version of a language's runtime this host serves (for the result).
    fn runtime_version(&self, sb: &Sandbox, language: &str) -> Option<String>;
    fn destroy<'a>(&'a self, sb: &'a Sandbox) -> BoxFuture<'a, Result<(), SandboxError>>;
    fn reconcile<'a>(&'a self, known: &'a [Sandbox]) -> BoxFuture<'a, Vec<String>>;
    fn shutdown(&self) -> BoxFuture<'_, ()>;
    /// The environment every program starts from (a call's own env wins).
    fn base_env(&self, _sb: &Sandbox) -> Vec<(String, String)> {
        vec![
            ("PATH".into(), "/usr/local/bin:/usr/bin:/bin".into()),
            ("HOME".into(), "/work".into()),
            ("LANG".into(), "C.UTF-8".into()),
            ("TMPDIR".into(), "/tmp".into()),
        ]
    }
}

/// Dropping it kills what is left and removes it.
pub trait CallCgroup: Send + Sync {
    /// cgroup.procs of each hierarchy, O_WRONLY.
    fn procs_fds(&self) -> std::io::Result<Vec<OwnedFd>>;
    fn cpu_time_ns(&self) -> u64;
    fn usage(&self) -> crate::exec::local::cgroup::CgroupUsage;
}
