//! The loop itself: the coder replies, its blocks run, the report goes back (a critic may
//! speak after each round), until a termination condition fires. It knows nothing of HTTP or
//! of where runs are kept: code runs through a [`CodeRunner`], and everything said goes to an
//! [`Observer`].

use std::sync::Mutex;
use std::time::Instant;

use super::blocks::{self, Kind};
use super::messages::{Body, CODER, CRITIC, EXECUTOR, USER};
use super::model::{ChatMessage, ClientEvent, ModelClient, Role, TokenUsage};
use super::prompt::{self, Outcome};
use super::termination::{Progress, Termination};
use crate::exec::{BoxFuture, RunResult, Status};

/// Runs one block in the run's sandbox. `Err` means the service could not run it (the run
/// then fails); a program that fails is an `Ok` result with its status.
pub trait CodeRunner: Send + Sync {
    fn run<'a>(
        &'a self,
        language: &'a str,
        code: &'a str,
    ) -> BoxFuture<'a, Result<RunResult, String>>;
}

/// A reviewer's answer to an approval request.
#[derive(Debug, Clone)]
pub struct Decision {
    pub approved: bool,
    pub comment: Option<String>,
}

/// Where a run's messages go as they happen.
pub trait Observer: Send + Sync {
    fn message(&self, source: &str, body: Body);
    /// The run's tokens, turns and executions after they changed (the loop keeps them).
    fn progress(&self, totals: Totals);
    /// A streamed piece of a model's reply (not kept; the whole reply follows as a message).
    fn delta(&self, source: &str, text: &str);
    /// Hold until a reviewer decides on the block just announced by an approval request.
    fn approve(&self) -> BoxFuture<'_, Decision>;
}

pub struct LoopConfig {
    pub task: String,
    pub coder_system: String,
    /// A critic's system prompt, when the run has one.
    pub critic_system: Option<String>,
    pub termination: Termination,
    /// The language of untagged blocks, a name of the runtime table.
    pub default_language: String,
    /// Which fence tags run in which language.
    pub tags: blocks::Tags,
    /// Characters of each output stream the model reads per block.
    pub max_output_chars: usize,
    pub require_approval: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub usage: TokenUsage,
    pub turns: u32,
    pub executions: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// A termination condition fired; its reason.
    Finished(String),
    /// The model endpoint or the service failed.
    Failed(String),
}

/// Drive the conversation to its end. A wall time in the conditions is also a deadline: a
/// model call or a run still in flight then is dropped (which kills the run).
pub async fn drive(
    cfg: &LoopConfig,
    model: &ModelClient,
    runner: &dyn CodeRunner,
    obs: &dyn Observer,
) -> Ending {
    let started = Instant::now();
    let totals = Mutex::new(Totals::default());
    let body = rounds(cfg, model, runner, obs, started, &totals);
    match cfg.termination.deadline() {
        Some(d) => match tokio::time::timeout(d, body).await {
            Ok(e) => e,
            Err(_) => Ending::Finished(format!("wall_time: {} s", d.as_secs())),
        },
        None => body.await,
    }
}

/// Who said what, in order: the material each role's view of the conversation is built from.
struct History(Vec<(&'static str, String)>);

impl History {
    /// The conversation as `me` sees it: its own words as the assistant, everyone else's as
    /// the user (labelled when more than one other party speaks).
    fn view(&self, me: &str, labelled: bool) -> Vec<ChatMessage> {
        self.0
            .iter()
            .map(|(who, text)| {
                if *who == me {
                    return ChatMessage {
                        role: Role::Assistant,
                        content: text.clone(),
                    };
                }
                let content = match (*who, labelled) {
                    (_, false) => text.clone(),
                    (USER, true) => format!("Task:\n{text}"),
                    (CODER, true) => format!("Coder:\n{text}"),
                    (CRITIC, true) => format!("Reviewer:\n{text}"),
                    (_, true) => format!("Execution results:\n{text}"),
                };
                ChatMessage {
                    role: Role::User,
                    content,
                }
            })
            .collect()
    }
}

async fn rounds(
    cfg: &LoopConfig,
    model: &ModelClient,
    runner: &dyn CodeRunner,
    obs: &dyn Observer,
    started: Instant,
    totals: &Mutex<Totals>,
) -> Ending {
    let mut history = History(vec![(USER, cfg.task.clone())]);
    obs.message(
        USER,
        Body::Task {
            content: cfg.task.clone(),
        },
    );
    let progress = |reply: Option<&str>, ok: Option<bool>, t: &Totals| -> Option<String> {
        let p = Progress {
            turns: t.turns,
            executions: t.executions,
            tokens: t.usage.total(),
            elapsed: started.elapsed(),
            last_reply: reply,
            last_execution_ok: ok,
        };
        cfg.termination.check(&p)
    };
    loop {
        let reply = match ask(
            model,
            &cfg.coder_system,
            &history.view(CODER, cfg.critic_system.is_some()),
            CODER,
            obs,
            totals,
            true,
        )
        .await
        {
            Ok(r) => r,
            Err(e) => return Ending::Failed(e),
        };
        history.0.push((CODER, reply.clone()));
        let (outcomes, ok) = match run_blocks(cfg, &reply, runner, obs, totals).await {
            Ok(x) => x,
            Err(e) => return Ending::Failed(e),
        };
        let report = {
            let view: Vec<(String, Outcome)> = outcomes
                .iter()
                .map(|(l, o)| (l.clone(), o.as_outcome()))
                .collect();
            prompt::report(&view, cfg.max_output_chars)
        };
        let t = *totals.lock().unwrap();
        if let Some(reason) = progress(Some(&reply), ok, &t) {
            if !outcomes.is_empty() {
                obs.message(
                    EXECUTOR,
                    Body::Text {
                        content: report,
                        usage: None,
                    },
                );
            }
            return Ending::Finished(reason);
        }
        obs.message(
            EXECUTOR,
            Body::Text {
                content: report.clone(),
                usage: None,
            },
        );
        history.0.push((EXECUTOR, report));
        if let Some(system) = &cfg.critic_system {
            let critique = match ask(
                model,
                system,
                &history.view(CRITIC, true),
                CRITIC,
                obs,
                totals,
                false,
            )
            .await
            {
                Ok(r) => r,
                Err(e) => return Ending::Failed(e),
            };
            history.0.push((CRITIC, critique.clone()));
            let t = *totals.lock().unwrap();
            if let Some(reason) = progress(Some(&critique), None, &t) {
                return Ending::Finished(reason);
            }
        }
    }
}

/// One model call, streamed to the observer; its usage is added to the totals.
async fn ask(
    model: &ModelClient,
    system: &str,
    view: &[ChatMessage],
    who: &'static str,
    obs: &dyn Observer,
    totals: &Mutex<Totals>,
    is_turn: bool,
) -> Result<String, String> {
    let mut on_event = |e: ClientEvent<'_>| match e {
        ClientEvent::Text(t) => obs.delta(who, t),
        ClientEvent::Retry {
            attempt,
            max_attempts,
            delay,
            reason,
        } => obs.message(
            who,
            Body::ModelRetry {
                attempt,
                max_attempts,
                delay_ms: delay.as_millis() as u64,
                reason: reason.to_string(),
            },
        ),
    };
    let c = model
        .complete(system, view, &mut on_event)
        .await
        .map_err(|e| e.to_string())?;
    let t = {
        let mut t = totals.lock().unwrap();
        t.usage.add(c.usage);
        if is_turn {
            t.turns += 1;
        }
        *t
    };
    obs.progress(t);
    obs.message(
        who,
        Body::Text {
            content: c.text.clone(),
            usage: Some(c.usage),
        },
    );
    Ok(c.text)
}

enum Owned {
    Ran(Box<RunResult>),
    NotRun(String),
}

impl Owned {
    fn as_outcome(&self) -> Outcome<'_> {
        match self {
            Owned::Ran(r) => Outcome::Ran(r),
            Owned::NotRun(s) => Outcome::NotRun(s),
        }
    }
}

/// Run the reply's blocks in order, stopping at the first that fails. Returns each block's
/// outcome and whether every block that ran exited 0 (`None` when none ran).
async fn run_blocks(
    cfg: &LoopConfig,
    reply: &str,
    runner: &dyn CodeRunner,
    obs: &dyn Observer,
    totals: &Mutex<Totals>,
) -> Result<(Vec<(String, Owned)>, Option<bool>), String> {
    let mut outcomes = Vec::new();
    let mut all_ok: Option<bool> = None;
    for block in blocks::extract(reply, &cfg.tags, &cfg.default_language) {
        let language = match &block.kind {
            Kind::Run(l) => l.to_string(),
            Kind::NotRun(_) => block.tag.clone(),
        };
        let not_run = match &block.kind {
            Kind::NotRun(reason) => Some(reason.clone()),
            Kind::Run(_) if all_ok == Some(false) => {
                Some("not run: an earlier block in this reply failed".to_string())
            }
            Kind::Run(_) if cfg.require_approval => {
                obs.message(
                    EXECUTOR,
                    Body::ApprovalRequest {
                        language: language.clone(),
                        code: block.code.clone(),
                    },
                );
                let d = obs.approve().await;
                obs.message(
                    USER,
                    Body::ApprovalDecision {
                        approved: d.approved,
                        comment: d.comment.clone(),
                    },
                );
                (!d.approved).then(|| match d.comment {
                    Some(c) if !c.trim().is_empty() => {
                        format!("not run: rejected by the reviewer: {c}")
                    }
                    _ => "not run: rejected by the reviewer".to_string(),
                })
            }
            Kind::Run(_) => None,
        };
        if let Some(reason) = not_run {
            obs.message(
                EXECUTOR,
                Body::CodeNotRun {
                    language: language.clone(),
                    code: block.code.clone(),
                    reason: reason.clone(),
                },
            );
            outcomes.push((language, Owned::NotRun(reason)));
            continue;
        }
        let result = runner.run(&language, &block.code).await?;
        let t = {
            let mut t = totals.lock().unwrap();
            t.executions += 1;
            *t
        };
        obs.progress(t);
        let ok = result.status == Status::Ok;
        all_ok = Some(all_ok.unwrap_or(true) && ok);
        let result = Box::new(result);
        obs.message(
            EXECUTOR,
            Body::CodeExecution {
                language: language.clone(),
                code: block.code.clone(),
                result: result.clone(),
            },
        );
        outcomes.push((language, Owned::Ran(result)));
    }
    Ok((outcomes, all_ok))
}
