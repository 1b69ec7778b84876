//! Agent runs in flight: each one's state and messages, its event stream, its approval
//! channel and its cancellation. A run is saved to the store when it starts and when it ends;
//! once ended it is served from there. A run holds one of the service's agent slots only while
//! it works: never while it waits for a person's approval, and one team holds at most its share.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, oneshot, watch, Notify};

use crate::agent::conversation::{
    drive, CodeRunner, Decision, Ending, LoopConfig, Observer, Totals,
};
use crate::agent::messages::{Body, Message};
use crate::agent::model::{ModelClient, Provider, TokenUsage};
use crate::exec::BoxFuture;
use crate::store::{rfc3339, Store, StoreError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Queued,
    Running,
    Finished,
    Failed,
    Cancelled,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Queued => "queued",
            State::Running => "running",
            State::Finished => "finished",
            State::Failed => "failed",
            State::Cancelled => "cancelled",
        }
    }

    pub fn ended(self) -> bool {
        matches!(self, State::Finished | State::Failed | State::Cancelled)
    }
}

/// Which model a run talks to, as shown (never the key).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ModelView {
    pub provider: Provider,
    pub model: String,
    pub base_url: String,
}

/// What a run is, fixed when it starts.
#[derive(Debug, Clone)]
pub struct RunInfo {
    pub model: ModelView,
    pub executor: String,
    pub policy: String,
    pub sandbox_id: String,
}

/// Tokens and work of a run so far.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RunUsage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub total_tokens: u64,
    /// True when an endpoint reported no usage and its tokens are estimated (characters / 4).
    pub estimated: bool,
    pub turns: u32,
    pub executions: u32,
}

impl From<Totals> for RunUsage {
    fn from(t: Totals) -> RunUsage {
        let u: TokenUsage = t.usage;
        RunUsage {
            input_tokens: u.input_tokens,
            output_tokens: u.output_tokens,
            total_tokens: u.total(),
            estimated: u.estimated,
            turns: t.turns,
            executions: t.executions,
        }
    }
}

/// A run without its messages (`GET /v1/agent/runs` lists these).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RunSummary {
    pub id: String,
    pub state: State,
    /// Which termination condition ended a `finished` run (`cancelled` for a cancelled one).
    #[schema(required = true)]
    pub stop_reason: Option<String>,
    /// Why a `failed` run failed.
    #[schema(required = true)]
    pub error: Option<String>,
    pub usage: RunUsage,
    pub model: ModelView,
    pub executor: String,
    pub policy: String,
    pub sandbox_id: String,
    /// True while a block waits for `POST /v1/agent/runs/{id}/approval`.
    pub awaiting_approval: bool,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime, required = true)]
    pub ended_at: Option<String>,
}

/// A run and every message so far (`GET /v1/agent/runs/{id}`); what the store keeps of it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RunView {
    #[serde(flatten)]
    pub run: RunSummary,
    pub messages: Vec<Message>,
}

/// The last event of a run's stream.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct EndEvent {
    pub id: String,
    pub state: State,
    #[schema(required = true)]
    pub stop_reason: Option<String>,
    #[schema(required = true)]
    pub error: Option<String>,
    pub usage: RunUsage,
}

impl From<&RunSummary> for EndEvent {
    fn from(r: &RunSummary) -> EndEvent {
        EndEvent {
            id: r.id.clone(),
            state: r.state,
            stop_reason: r.stop_reason.clone(),
            error: r.error.clone(),
            usage: r.usage,
        }
    }
}

/// What a run's subscribers receive.
#[derive(Debug, Clone)]
pub enum Event {
    Message(Box<Message>),
    Delta { source: String, text: String },
    End(EndEvent),
}

struct Shared {
    state: State,
    stop_reason: Option<String>,
    error: Option<String>,
    totals: Totals,
    messages: Vec<Message>,
    ended_at: Option<i64>,
    approval: Option<oneshot::Sender<Decision>>,
    abort: Option<tokio::task::AbortHandle>,
    cancel_requested: bool,
    /// The agent slot while the run works; given back while it waits for approval.
    slot: Option<Slot>,
}

/// The service's agent slots: `max` in all, at most `per_team` held by one team.
pub struct Slots {
    max: usize,
    per_team: usize,
    held: Mutex<HashMap<i64, usize>>,
    freed: Notify,
}

/// One held slot; dropping it gives it back.
pub struct Slot {
    slots: Arc<Slots>,
    team_id: i64,
}

impl Slots {
    /// `per_team` 0 means every slot (one team only, as without auth).
    pub fn new(max: usize, per_team: usize) -> Arc<Slots> {
        let max = max.max(1);
        let per_team = if per_team == 0 {
            max
        } else {
            per_team.min(max)
        };
        Arc::new(Slots {
            max,
            per_team,
            held: Mutex::new(HashMap::new()),
            freed: Notify::new(),
        })
    }

    /// Wait until a slot is free and the team is under its share, then take it.
    pub async fn acquire(self: &Arc<Self>, team_id: i64) -> Slot {
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            // Registered before looking, so a slot freed in between still wakes us.
            freed.as_mut().enable();
            if let Some(slot) = self.try_acquire(team_id) {
                return slot;
            }
            freed.await;
        }
    }

    fn try_acquire(self: &Arc<Self>, team_id: i64) -> Option<Slot> {
        let mut held = self.held.lock().unwrap();
        let total: usize = held.values().sum();
        let team = held.entry(team_id).or_insert(0);
        if total >= self.max || *team >= self.per_team {
            return None;
        }
        *team += 1;
        Some(Slot {
            slots: self.clone(),
            team_id,
        })
    }

    /// The most slots one team may hold at once.
    pub fn per_team(&self) -> usize {
        self.per_team
    }

    /// Slots held now, in all and by `team_id`.
    pub fn held(&self, team_id: i64) -> (usize, usize) {
        let held = self.held.lock().unwrap();
        (
            held.values().sum(),
            held.get(&team_id).copied().unwrap_or(0),
        )
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        {
            let mut held = self.slots.held.lock().unwrap();
            if let Some(n) = held.get_mut(&self.team_id) {
                *n -= 1;
                if *n == 0 {
                    held.remove(&self.team_id);
                }
            }
        }
        self.slots.freed.notify_waiters();
    }
}

/// Gives the run's slot back when its work ends, however it ends (an abort included).
struct GiveBack(Arc<Run>);

impl Drop for GiveBack {
    fn drop(&mut self) {
        self.0.shared.lock().unwrap().slot = None;
    }
}

/// One run in flight.
pub struct Run {
    pub id: String,
    pub team_id: i64,
    pub info: RunInfo,
    created_at: i64,
    shared: Mutex<Shared>,
    events: broadcast::Sender<Event>,
    /// Flips to true when the run has ended and been saved.
    done: watch::Sender<bool>,
    slots: Arc<Slots>,
}

impl Run {
    pub fn view(&self) -> RunView {
        let s = self.shared.lock().unwrap();
        RunView {
            run: self.summary_of(&s),
            messages: s.messages.clone(),
        }
    }

    /// The run as it is now, without its messages.
    pub fn summary(&self) -> RunSummary {
        self.summary_of(&self.shared.lock().unwrap())
    }

    fn summary_of(&self, s: &Shared) -> RunSummary {
        RunSummary {
            id: self.id.clone(),
            state: s.state,
            stop_reason: s.stop_reason.clone(),
            error: s.error.clone(),
            usage: s.totals.into(),
            model: self.info.model.clone(),
            executor: self.info.executor.clone(),
            policy: self.info.policy.clone(),
            sandbox_id: self.info.sandbox_id.clone(),
            awaiting_approval: s.approval.is_some(),
            created_at: rfc3339(self.created_at),
            ended_at: s.ended_at.map(rfc3339),
        }
    }

    /// The messages so far and a receiver of everything after them, taken together so
    /// nothing is missed or seen twice.
    pub fn subscribe(&self) -> (Vec<Message>, Option<EndEvent>, broadcast::Receiver<Event>) {
        let s = self.shared.lock().unwrap();
        let end = s.state.ended().then(|| self.end_event(&s));
        (s.messages.clone(), end, self.events.subscribe())
    }

    fn end_event(&self, s: &Shared) -> EndEvent {
        EndEvent::from(&self.summary_of(s))
    }

    /// Answer the pending approval request; false when none is pending.
    pub fn decide(&self, d: Decision) -> bool {
        match self.shared.lock().unwrap().approval.take() {
            Some(tx) => tx.send(d).is_ok(),
            None => false,
        }
    }

    /// Wait until the run has ended and been saved.
    pub async fn ended(&self) {
        let mut rx = self.done.subscribe();
        let _ = rx.wait_for(|d| *d).await;
    }
}

impl Observer for Run {
    fn message(&self, source: &str, body: Body) {
        let mut s = self.shared.lock().unwrap();
        let m = Message {
            index: s.messages.len(),
            source: source.to_string(),
            at: rfc3339(crate::store::now()),
            body,
        };
        s.messages.push(m.clone());
        let _ = self.events.send(Event::Message(Box::new(m)));
    }

    fn progress(&self, totals: Totals) {
        self.shared.lock().unwrap().totals = totals;
    }

    fn delta(&self, source: &str, text: &str) {
        let _ = self.events.send(Event::Delta {
            source: source.to_string(),
            text: text.to_string(),
        });
    }

    /// Waiting for a person gives the slot back (a run nobody approves must not keep other
    /// runs, of any team, waiting); the run takes one again once the decision is in.
    fn approve(&self) -> BoxFuture<'_, Decision> {
        let (tx, rx) = oneshot::channel();
        let slot = {
            let mut s = self.shared.lock().unwrap();
            s.approval = Some(tx);
            s.slot.take()
        };
        drop(slot);
        Box::pin(async move {
            let decision = rx.await.unwrap_or(Decision {
                approved: false,
                comment: Some("the approval channel closed".into()),
            });
            let slot = match self.slots.try_acquire(self.team_id) {
                Some(slot) => slot,
                None => {
                    self.shared.lock().unwrap().state = State::Queued;
                    self.slots.acquire(self.team_id).await
                }
            };
            let mut s = self.shared.lock().unwrap();
            s.slot = Some(slot);
            s.state = State::Running;
            decision
        })
    }
}

/// A run as the store kept it; one that does not read back (a store another version wrote) is
/// logged and left out.
fn saved_view(id: &str, v: serde_json::Value) -> Option<RunView> {
    serde_json::from_value(v)
        .map_err(|e| tracing::error!(run = %id, error = %e, "a saved agent run does not read back"))
        .ok()
}

/// What a run needs to start: its loop, its model, where its code runs, and what to release
/// when it ends (the sandbox made for it).
pub struct Prepared {
    pub config: LoopConfig,
    pub client: ModelClient,
    pub runner: Arc<dyn CodeRunner>,
    pub info: RunInfo,
    pub release: Option<BoxFuture<'static, ()>>,
}

/// Told of every run that ends (the service counts them in its metrics).
pub type OnEnd = Box<dyn Fn(&EndEvent) + Send + Sync>;

pub struct Runs {
    live: Mutex<HashMap<String, Arc<Run>>>,
    store: Store,
    slots: Arc<Slots>,
    on_end: OnEnd,
}

impl Runs {
    /// `max_concurrent` runs work at once, at most `per_team` of one team (0: no per-team
    /// limit); the rest wait as `queued`.
    pub fn new(store: Store, max_concurrent: usize, per_team: usize, on_end: OnEnd) -> Runs {
        Runs {
            live: Mutex::new(HashMap::new()),
            store,
            slots: Slots::new(max_concurrent, per_team),
            on_end,
        }
    }

    pub fn slots(&self) -> &Arc<Slots> {
        &self.slots
    }

    /// Start a run for `team_id`; it is `queued` until a slot is free.
    pub async fn start(self: &Arc<Self>, team_id: i64, p: Prepared) -> Arc<Run> {
        let id = format!("ar_{}", uuid::Uuid::new_v4().simple());
        let run = Arc::new(Run {
            id: id.clone(),
            team_id,
            info: p.info,
            created_at: crate::store::now(),
            shared: Mutex::new(Shared {
                state: State::Queued,
                stop_reason: None,
                error: None,
                totals: Totals::default(),
                messages: Vec::new(),
                ended_at: None,
                approval: None,
                abort: None,
                cancel_requested: false,
                slot: None,
            }),
            events: broadcast::channel(1024).0,
            done: watch::channel(false).0,
            slots: self.slots.clone(),
        });
        self.live.lock().unwrap().insert(id, run.clone());
        self.save(&run).await;
        let (runs, r) = (self.clone(), run.clone());
        let (config, client, runner, release) = (p.config, p.client, p.runner, p.release);
        let slots = self.slots.clone();
        let work = tokio::spawn({
            let r = run.clone();
            let runs = self.clone();
            async move {
                let slot = slots.acquire(team_id).await;
                let _give_back = GiveBack(r.clone());
                {
                    let mut s = r.shared.lock().unwrap();
                    s.slot = Some(slot);
                    s.state = State::Running;
                }
                runs.save(&r).await;
                drive(&config, &client, runner.as_ref(), r.as_ref()).await
            }
        });
        {
            let mut s = run.shared.lock().unwrap();
            s.abort = Some(work.abort_handle());
            if s.cancel_requested {
                work.abort();
            }
        }
        tokio::spawn(async move {
            let outcome = work.await;
            if let Some(release) = release {
                release.await;
            }
            runs.finish(&r, outcome).await;
        });
        run
    }

    async fn finish(&self, run: &Arc<Run>, outcome: Result<Ending, tokio::task::JoinError>) {
        {
            let mut s = run.shared.lock().unwrap();
            s.approval = None;
            s.abort = None;
            s.slot = None;
            match outcome {
                Ok(Ending::Finished(reason)) => {
                    s.state = State::Finished;
                    s.stop_reason = Some(reason);
                }
                Ok(Ending::Failed(error)) => {
                    s.state = State::Failed;
                    s.error = Some(error);
                }
                Err(e) if e.is_cancelled() => {
                    s.state = State::Cancelled;
                    s.stop_reason = Some("cancelled".into());
                }
                Err(e) => {
                    tracing::error!(run = %run.id, error = %e, "agent run task panicked");
                    s.state = State::Failed;
                    s.error = Some("the run failed inside the service; it has been logged".into());
                }
            }
            s.ended_at = Some(crate::store::now());
            let end = run.end_event(&s);
            (self.on_end)(&end);
            let _ = run.events.send(Event::End(end));
        }
        self.save(run).await;
        self.live.lock().unwrap().remove(&run.id);
        let _ = run.done.send(true);
    }

    async fn save(&self, run: &Arc<Run>) {
        let view = run.view();
        let json = serde_json::to_value(&view).expect("a run view serializes");
        let (id, team, state, created) = (
            run.id.clone(),
            run.team_id,
            view.run.state.as_str(),
            run.created_at,
        );
        if let Err(e) = self
            .store
            .blocking(move |s| s.save_agent_run(&id, team, state, &json, created))
            .await
        {
            tracing::error!(run = %run.id, error = %e, "could not save an agent run");
        }
    }

    /// A live run of the team.
    pub fn live(&self, team_id: i64, id: &str) -> Option<Arc<Run>> {
        self.live
            .lock()
            .unwrap()
            .get(id)
            .filter(|r| r.team_id == team_id)
            .cloned()
    }

    /// A run of the team: live, or as saved.
    pub async fn view(&self, team_id: i64, id: &str) -> Result<Option<RunView>, StoreError> {
        if let Some(r) = self.live(team_id, id) {
            return Ok(Some(r.view()));
        }
        let key = id.to_string();
        let saved = self
            .store
            .blocking(move |s| s.agent_run(team_id, &key))
            .await?;
        Ok(saved.and_then(|v| saved_view(id, v)))
    }

    /// A team's runs, newest first, without their messages: live ones as they are now.
    pub async fn list(&self, team_id: i64, limit: usize) -> Result<Vec<RunSummary>, StoreError> {
        let saved = self
            .store
            .blocking(move |s| s.agent_runs(team_id, limit))
            .await?;
        Ok(saved
            .into_iter()
            .filter_map(|v| {
                let id = v["id"].as_str().unwrap_or_default().to_string();
                match self.live(team_id, &id) {
                    Some(r) => Some(r.summary()),
                    None => saved_view(&id, v).map(|v| v.run),
                }
            })
            .collect())
    }

    /// Cancel a live run: its task is dropped, which kills a run in flight; returns once it
    /// has ended and been saved. False when the run is not live.
    pub async fn cancel(&self, team_id: i64, id: &str) -> bool {
        let Some(run) = self.live(team_id, id) else {
            return false;
        };
        {
            let mut s = run.shared.lock().unwrap();
            s.cancel_requested = true;
            if let Some(a) = &s.abort {
                a.abort();
            }
        }
        run.ended().await;
        true
    }

    /// Graceful stop: cancel every live run (their sandboxes are released) and wait for them.
    pub async fn shutdown(&self) {
        let runs: Vec<Arc<Run>> = self.live.lock().unwrap().values().cloned().collect();
        for r in runs {
            let _ = self.cancel(r.team_id, &r.id).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::RunView;

    /// What the store keeps is served again as it was: every kind of message, a context
    /// call's `error: null` (not the same as no `error` at all) and a plain run's absent one.
    #[test]
    fn a_saved_view_reads_back_to_the_same_json() {
        let result = |extra: serde_json::Value| {
            let mut r = serde_json::json!({
                "id": "r1", "status": "ok", "exit_code": 0, "signal": null,
                "stdout": "4\n", "stderr": "", "stdout_truncated": false, "stderr_truncated": false,
                "usage": {"wall_time_ms": 12, "cpu_time_ms": 8, "peak_memory_bytes": 4096},
                "compile": null, "executor": "local", "policy": "default", "language": "python",
                "runtime_version": "3.11.2"
            });
            r.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            r
        };
        let saved = serde_json::json!({
            "id": "ar_1", "state": "finished", "stop_reason": "text_mention", "error": null,
            "usage": {"input_tokens": 10, "output_tokens": 5, "total_tokens": 15, "estimated": false, "turns": 1, "executions": 2},
            "model": {"provider": "openai", "model": "m", "base_url": "http://127.0.0.1:1/v1"},
            "executor": "local", "policy": "default", "sandbox_id": "sb_1",
            "awaiting_approval": false, "created_at": "2025-01-01T00:00:00Z", "ended_at": "2025-01-01T00:00:09Z",
            "messages": [
                {"index": 0, "source": "user", "at": "2025-01-01T00:00:00Z", "type": "task", "content": "t"},
                {"index": 1, "source": "coder", "at": "2025-01-01T00:00:01Z", "type": "text", "content": "c",
                 "usage": {"input_tokens": 10, "output_tokens": 5, "estimated": false}},
                {"index": 2, "source": "user", "at": "2025-01-01T00:00:02Z", "type": "approval_request", "language": "python", "code": "1"},
                {"index": 3, "source": "user", "at": "2025-01-01T00:00:03Z", "type": "approval_decision", "approved": true},
                {"index": 4, "source": "executor", "at": "2025-01-01T00:00:04Z", "type": "code_execution", "language": "python", "code": "2+2",
                 "result": result(serde_json::json!({"results": [{"text/plain": "4"}], "error": null}))},
                {"index": 5, "source": "executor", "at": "2025-01-01T00:00:05Z", "type": "code_execution", "language": "python", "code": "print(4)",
                 "result": result(serde_json::json!({}))},
                {"index": 6, "source": "executor", "at": "2025-01-01T00:00:06Z", "type": "code_not_run", "language": "cobol", "code": "x", "reason": "unknown"},
                {"index": 7, "source": "coder", "at": "2025-01-01T00:00:07Z", "type": "model_retry", "attempt": 2, "max_attempts": 3, "delay_ms": 100, "reason": "503"},
                {"index": 8, "source": "coder", "at": "2025-01-01T00:00:08Z", "type": "text", "content": "done"}
            ]
        });
        let view: RunView = serde_json::from_value(saved.clone()).expect("a saved view reads");
        assert_eq!(serde_json::to_value(&view).unwrap(), saved);
    }
}
