//! `execbox agent`: one agent run without a server. The service's own state is built in a
//! throwaway data dir, the run goes through the same path as `POST /v1/agent/runs`, and its
//! events are printed as a readable conversation.

use std::io::Write;
use std::sync::Arc;

use anyhow::{bail, Context};

use crate::agent::conversation::Decision;
use crate::agent::messages::{Body, Message};
use crate::agent::model::{ModelSpec, Provider};
use crate::agent::request::{AgentRequest, CriticSpec};
use crate::app::{build_state, stop_state};
use crate::config::Config;
use crate::exec::Status;
use crate::service::agent::runs::{EndEvent, Event, Run, State};
use crate::service::AppState;

pub struct AgentArgs {
    /// `openai:MODEL` or `anthropic:MODEL`.
    pub model: String,
    pub base_url: Option<String>,
    /// The variable holding the key (default OPENAI_API_KEY or ANTHROPIC_API_KEY).
    pub api_key_env: Option<String>,
    pub executor: Option<String>,
    pub policy: Option<String>,
    pub max_turns: Option<u32>,
    pub critic: bool,
    pub approve: bool,
    pub no_stream: bool,
    pub task: String,
}

/// Split `provider:model`.
pub fn parse_model(s: &str) -> anyhow::Result<(Provider, String)> {
    let Some((p, m)) = s.split_once(':') else {
        bail!("--model must be provider:model, e.g. openai:gpt-4o-mini or anthropic:claude-sonnet-4-5")
    };
    let provider = match p {
        "openai" => Provider::Openai,
        "anthropic" => Provider::Anthropic,
        other => bail!("unknown provider \"{other}\" in --model; use openai (any OpenAI-compatible server) or anthropic"),
    };
    if m.is_empty() {
        bail!("--model names no model after \"{p}:\"");
    }
    Ok((provider, m.to_string()))
}

/// The model spec of the command line. The key is read here, from the user's own
/// environment, and passed as the run's key: the service's env allow-list is for services.
pub fn model_spec(
    model: &str,
    base_url: Option<String>,
    api_key_env: Option<&str>,
    stream: bool,
) -> anyhow::Result<ModelSpec> {
    let (provider, model) = parse_model(model)?;
    let var = api_key_env.unwrap_or(match provider {
        Provider::Openai => "OPENAI_API_KEY",
        Provider::Anthropic => "ANTHROPIC_API_KEY",
    });
    let api_key = std::env::var(var).ok().filter(|k| !k.is_empty());
    if api_key.is_none() && api_key_env.is_some() {
        bail!("--api-key-env {var}: the variable is not set");
    }
    Ok(ModelSpec {
        provider,
        model,
        base_url,
        api_key,
        api_key_env: None,
        stream: Some(stream),
        max_tokens: None,
        temperature: None,
    })
}

/// Run the service's state in a temporary data dir for one command, then release it.
pub async fn with_state<T>(
    cfg: Config,
    docker: bool,
    f: impl AsyncFnOnce(&Arc<AppState>) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let dir = tempfile::Builder::new()
        .prefix("execbox-agent-")
        .tempdir()
        .context("creating a temporary data dir")?;
    let mut cfg = cfg;
    cfg.data_dir = dir.path().to_path_buf();
    cfg.instance = Some(format!("agent-{}", std::process::id()));
    cfg.docker.enabled = docker;
    cfg.local.warm_sandboxes = 0;
    let (state, _lock) = build_state(&cfg, false).await?;
    let out = f(&state).await;
    stop_state(&state).await;
    out
}

/// Run the agent and return the process exit code: 0 finished, 1 failed, 130 cancelled.
pub async fn run(cfg: Config, a: AgentArgs) -> anyhow::Result<i32> {
    let req = AgentRequest {
        task: a.task.clone(),
        model: model_spec(
            &a.model,
            a.base_url.clone(),
            a.api_key_env.as_deref(),
            !a.no_stream,
        )?,
        executor: a.executor.clone(),
        policy: a.policy.clone(),
        sandbox_id: None,
        max_turns: a.max_turns,
        system_message: None,
        critic: a.critic.then(CriticSpec::default),
        termination: None,
        default_language: None,
        max_output_chars: None,
        require_approval: a.approve,
        stateful: false,
    };
    let docker = a.executor.as_deref() == Some("docker");
    with_state(cfg, docker, async |state| {
        let team = state.store.ensure_team(crate::store::DEFAULT_TEAM)?;
        let run = crate::service::agent::start_run(state, &team, req).await?;
        let end = tokio::select! {
            end = follow(&run, a.approve) => end?,
            _ = tokio::signal::ctrl_c() => {
                eprintln!("\nexecbox: cancelling the run");
                state.agent.cancel(team.id, &run.id).await;
                return Ok(130);
            }
        };
        Ok(match end.state {
            State::Finished => 0,
            State::Cancelled => 130,
            _ => 1,
        })
    })
    .await
}

/// Print the run as it happens; return its end.
async fn follow(run: &Arc<Run>, approve: bool) -> anyhow::Result<EndEvent> {
    let (messages, end, mut sub) = run.subscribe();
    let mut out = Printer::default();
    let mut next = 0;
    for m in messages {
        next = m.index + 1;
        out.message(&m);
    }
    if let Some(end) = end {
        out.end(&end);
        return Ok(end);
    }
    loop {
        match sub.recv().await {
            Ok(Event::Message(m)) if m.index >= next => {
                next = m.index + 1;
                out.message(&m);
                if approve && matches!(m.body, Body::ApprovalRequest { .. }) {
                    let d = ask_approval().await?;
                    run.decide(d);
                }
            }
            Ok(Event::Message(_)) => {}
            Ok(Event::Delta { source, text }) => out.delta(&source, &text),
            Ok(Event::End(end)) => {
                out.end(&end);
                return Ok(end);
            }
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                for m in run.view().messages.into_iter().skip(next) {
                    next = m.index + 1;
                    out.message(&m);
                }
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                bail!("the run's event stream closed before it ended")
            }
        }
    }
}

async fn ask_approval() -> anyhow::Result<Decision> {
    eprint!("run this block? [y/N, or a reason to reject] ");
    let _ = std::io::stderr().flush();
    let line = tokio::task::spawn_blocking(|| {
        let mut s = String::new();
        std::io::stdin().read_line(&mut s).map(|_| s)
    })
    .await??;
    let answer = line.trim();
    Ok(match answer {
        "y" | "Y" | "yes" => Decision {
            approved: true,
            comment: None,
        },
        "" | "n" | "N" | "no" => Decision {
            approved: false,
            comment: None,
        },
        reason => Decision {
            approved: false,
            comment: Some(reason.to_string()),
        },
    })
}

/// The conversation as text: a header per speaker, the code and the results.
#[derive(Default)]
struct Printer {
    /// Who is streaming a reply right now.
    streaming: Option<String>,
    /// Blocks of the current round were shown: the executor's report would repeat them.
    blocks_shown: bool,
}

impl Printer {
    fn delta(&mut self, source: &str, text: &str) {
        if self.streaming.as_deref() != Some(source) {
            println!("\n── {source} ──");
            self.streaming = Some(source.to_string());
        }
        print!("{text}");
        let _ = std::io::stdout().flush();
    }

    fn message(&mut self, m: &Message) {
        let streamed = self.streaming.take();
        match &m.body {
            Body::Task { content } => println!("── task ──\n{content}"),
            // The report the model reads repeats the blocks' outcomes shown just above.
            Body::Text { .. }
                if m.source == crate::agent::messages::EXECUTOR && self.blocks_shown =>
            {
                self.blocks_shown = false
            }
            Body::Text { content, usage } => {
                self.blocks_shown = false;
                if streamed.as_deref() == Some(m.source.as_str()) {
                    println!();
                } else {
                    println!("\n── {} ──\n{}", m.source, content.trim_end());
                }
                if let Some(u) = usage {
                    println!(
                        "   [{} tokens in, {} out{}]",
                        u.input_tokens,
                        u.output_tokens,
                        if u.estimated { ", estimated" } else { "" }
                    );
                }
            }
            Body::CodeExecution {
                language, result, ..
            } => {
                self.blocks_shown = true;
                let how = match result.status {
                    Status::Ok | Status::Error => {
                        format!("exit code {}", result.exit_code.unwrap_or(-1))
                    }
                    other => other.as_str().to_string(),
                };
                println!(
                    "\n── executor: {language} → {how} ({} ms) ──",
                    result.usage.wall_time_ms
                );
                if let Some(c) = result
                    .compile
                    .as_ref()
                    .filter(|_| result.status == Status::CompileError)
                {
                    print!("{}{}", c.stdout, c.stderr);
                }
                for (name, text) in [("stdout", &result.stdout), ("stderr", &result.stderr)] {
                    if !text.is_empty() {
                        println!("{name}:\n{}", text.trim_end());
                    }
                }
            }
            Body::CodeNotRun {
                language, reason, ..
            } => {
                self.blocks_shown = true;
                println!(
                    "\n── executor: {} ── {reason}",
                    if language.is_empty() {
                        "untagged"
                    } else {
                        language
                    }
                )
            }
            Body::ModelRetry {
                attempt,
                max_attempts,
                delay_ms,
                reason,
            } => {
                println!(
                    "\n   [{}: {reason}; attempt {attempt} of {max_attempts} in {delay_ms} ms]",
                    m.source
                )
            }
            Body::ApprovalRequest { language, code } => println!(
                "\n── approval needed: {language} block ──\n{}",
                code.trim_end()
            ),
            Body::ApprovalDecision { approved, comment } => {
                println!(
                    "   [{}{}]",
                    if *approved { "approved" } else { "rejected" },
                    comment
                        .as_deref()
                        .map(|c| format!(": {c}"))
                        .unwrap_or_default()
                )
            }
        }
    }

    fn end(&mut self, e: &EndEvent) {
        let why = e
            .stop_reason
            .as_deref()
            .or(e.error.as_deref())
            .unwrap_or("");
        println!(
            "\n── {} ({why}) · {} turns · {} executions · {} tokens{} ──",
            e.state.as_str(),
            e.usage.turns,
            e.usage.executions,
            e.usage.total_tokens,
            if e.usage.estimated {
                " (estimated)"
            } else {
                ""
            }
        );
        if e.state == State::Failed {
            eprintln!("execbox: the agent run failed: {why}");
        }
    }
}
