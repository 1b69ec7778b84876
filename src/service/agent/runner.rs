//! How an agent run's blocks run: each as a call in the run's sandbox, through the run path
//! like any call (admission, the team's quota, metrics, the audit log). Dropping a call's
//! future kills the call.

use std::sync::Arc;
use std::time::Duration;

use crate::agent::conversation::CodeRunner;
use crate::exec::request::SandboxCallRequest;
use crate::exec::{BoxFuture, RunResult};
use crate::service::{contexts, sandboxes, AppState, ServiceError};
use crate::store::Team;

/// How many times a block waits for a full service (or the team's full quota) before it fails.
const MAX_WAITS: u32 = 300;

pub(super) struct SandboxRunner {
    state: Arc<AppState>,
    team: Team,
    sandbox_id: String,
    /// With `"stateful": true`: the context its Python blocks run in, started by the first.
    context: Option<tokio::sync::Mutex<Option<String>>>,
}

impl SandboxRunner {
    pub(super) fn new(
        state: Arc<AppState>,
        team: Team,
        sandbox_id: String,
        stateful: bool,
    ) -> SandboxRunner {
        SandboxRunner {
            state,
            team,
            sandbox_id,
            context: stateful.then(Default::default),
        }
    }
}

impl CodeRunner for SandboxRunner {
    fn run<'a>(
        &'a self,
        language: &'a str,
        code: &'a str,
    ) -> BoxFuture<'a, Result<RunResult, String>> {
        Box::pin(async move {
            // A full service is a reason to wait, not to fail the run.
            let mut waits = 0;
            loop {
                match self.call(language, code).await {
                    Ok(r) => return Ok(r),
                    Err(e @ (ServiceError::OverCapacity { .. } | ServiceError::Quota(_)))
                        if waits < MAX_WAITS =>
                    {
                        waits += 1;
                        let wait = e.retry_after().unwrap_or(1).clamp(1, 5);
                        tokio::time::sleep(Duration::from_secs(wait)).await;
                    }
                    Err(e) if e.is_internal() => {
                        tracing::error!(error = %e, "an agent run's block failed inside the service");
                        return Err("the sandbox could not run a block: the service failed; it has been logged".into());
                    }
                    Err(e) => return Err(format!("the sandbox could not run a block: {e}")),
                }
            }
        })
    }
}

impl SandboxRunner {
    async fn call(&self, language: &str, code: &str) -> Result<RunResult, ServiceError> {
        let mut req = SandboxCallRequest {
            language: language.to_string(),
            code: code.to_string(),
            files: vec![],
            stdin: String::new(),
            args: vec![],
            env: Default::default(),
            limits: Default::default(),
            context: None,
            output_encoding: Default::default(),
        };
        let (state, team, id) = (&self.state, &self.team, self.sandbox_id.as_str());
        let stateful = self
            .context
            .as_ref()
            .filter(|_| contexts::speaks(state, language));
        let Some(slot) = stateful else {
            let call = sandboxes::prepare_call(state, team, id, req).await?;
            return call.start(state).await?.outcome_or_kill().await;
        };
        // One block at a time in the context (blocks of a reply run in order anyway).
        let mut ctx = slot.lock().await;
        let ctx_id = match &*ctx {
            Some(c) => c.clone(),
            None => {
                let c = contexts::create(state, team, id, language).await?.id;
                *ctx = Some(c.clone());
                c
            }
        };
        req.context = Some(ctx_id);
        let call = sandboxes::prepare_call(state, team, id, req).await?;
        match call.start(state).await?.outcome_or_kill().await {
            Ok(r) => Ok(as_output(r)),
            Err(e) => {
                if e.context_gone() {
                    // The next block starts a fresh interpreter.
                    *ctx = None;
                }
                Err(e)
            }
        }
    }
}

/// A context call's display results and error, folded into its output the way a notebook
/// shows them, for the model to read: each result's text after stdout, the traceback after
/// stderr.
fn as_output(mut r: RunResult) -> RunResult {
    for bundle in r.results.iter().flatten() {
        let text = match bundle.get("text/plain").and_then(|v| v.as_str()) {
            Some(t) => t.to_string(),
            None => "<a display result without text>".to_string(),
        };
        if !r.stdout.is_empty() && !r.stdout.ends_with('\n') {
            r.stdout.push('\n');
        }
        r.stdout.push_str(&text);
        r.stdout.push('\n');
        if bundle.contains_key("image/png") {
            r.stdout.push_str("[an image/png figure was displayed]\n");
        }
    }
    if let Some(Some(e)) = &r.error {
        if !r.stderr.is_empty() && !r.stderr.ends_with('\n') {
            r.stderr.push('\n');
        }
        r.stderr.push_str(&e.traceback);
    }
    r
}
