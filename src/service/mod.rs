//! The service: the run path and its state, below every door. `api/` (HTTP), `mcp/`, the
//! CLIs and any later door are thin adapters over these functions: they parse what they were
//! given, call in here with the caller's [`Team`](crate::store::Team), and present the answer
//! or the [`ServiceError`]. Nothing here knows HTTP.
//!
//! The surface, by room (each function takes the [`AppState`] and, where it acts for someone,
//! the caller's team):
//!
//! - [`auth`]: [`auth::Auth`] (how callers are tied to a team) and [`auth::team_for`], a
//!   bearer key (or none) to its team.
//! - [`run`]: one run, the path every run takes: [`run::prepare`] validates an
//!   `ExecuteRequest` into a [`run::Prepared`] (job and ready executor);
//!   [`run::Prepared::stream`] asks for its output as it arrives; [`run::Prepared::start`] takes
//!   the team's run quota, admits it (or refuses with [`ServiceError::OverCapacity`]) and runs it
//!   in a task of its own that writes the audit log and the metrics; the [`run::RunTask`] gives
//!   the result ([`run::RunTask::outcome`]: the run goes on if the caller goes away;
//!   [`run::RunTask::outcome_or_kill`]: it is killed). [`run::execute`] is all of it at once.
//! - [`batch`]: [`batch::start`] runs a `BatchRequest`'s items behind the batch's own
//!   concurrency and output budget; [`batch::Batch::next`] yields them in order.
//! - [`sandboxes`]: create, list, get, delete, keepalive; [`sandboxes::prepare_call`] makes a
//!   call in a sandbox (plain, or in a context) a [`run::Prepared`] that holds the sandbox's
//!   lock until the call is over.
//! - [`files`]: read, write and list a sandbox's files (paths in the files API's encoding,
//!   checked by the one path rule), and its work dir as a tar out and in.
//! - [`contexts`]: stateful interpreters: create, list, delete.
//! - [`processes`]: background processes: start, list, kill, logs (collected or followed).
//! - [`agent`]: agent runs: [`agent::start_run`], get, list, cancel, approve, and the live run
//!   to follow.
//! - [`runs`]: a run of the team by id, live (queued, running) or its kept end.
//! - [`team`]: the caller's team and its use of each quota.
//! - [`info`]: the runtimes that passed their probes, the policies, readiness, metrics.

pub mod agent;
pub mod auth;
pub mod batch;
pub mod contexts;
mod error;
pub mod files;
pub mod info;
pub mod metrics;
pub mod processes;
pub mod run;
pub mod runs;
pub mod sandboxes;
pub mod team;

use std::collections::HashMap;
use std::sync::Arc;

pub use error::ServiceError;

use crate::admission::Admission;
use crate::exec::docker::DockerExecutor;
use crate::exec::local::LocalExecutor;
use crate::exec::runtime::RuntimeTable;
use crate::exec::Executor;
use crate::policy::PolicySet;
use crate::store::{Quotas, Store};

/// Everything the service holds: executors, policies, runtimes, admission, quotas, the store,
/// sandboxes, agent runs, metrics. Built once by `app::build_state`, shared by every door.
pub struct AppState {
    pub policies: PolicySet,
    pub runtimes: Arc<RuntimeTable>,
    pub local: Arc<LocalExecutor>,
    pub docker: Option<Arc<DockerExecutor>>,
    pub executors: HashMap<&'static str, Arc<dyn Executor>>,
    pub admission: Arc<Admission>,
    pub metrics: Arc<metrics::Metrics>,
    pub store: Store,
    pub auth: auth::Auth,
    pub quotas: Arc<Quotas>,
    pub sandboxes: Option<Arc<crate::sandbox::manager::Manager>>,
    pub agent: Arc<agent::runs::Runs>,
    pub agent_settings: crate::config::AgentSettings,
    /// `sandboxes.max_ttl_seconds`: an agent run's own sandbox lives at most this long.
    pub max_sandbox_ttl_seconds: u64,
    /// `max_batch_output_bytes`: the output one batch's unwritten results may hold at once.
    pub max_batch_output_bytes: u64,
    /// The Judge0- and Piston-compatible doors' settings (checked against the policies at
    /// start by `compat::check`).
    pub compat: crate::config::CompatSettings,
    /// Live runs and kept results, for `GET /v1/runs/{id}`.
    pub runs: Arc<crate::runs::RunTracker>,
}

/// Runs a task's abort handle when dropped: a run, or a stream producer, that must not outlive
/// whoever holds this.
pub struct AbortOnDrop(pub tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
