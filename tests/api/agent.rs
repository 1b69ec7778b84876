//! `/v1/agent/runs` against scripted model servers over real loopback HTTP: the loop fixes its
//! own bug and stops, every block is run or answered, each termination condition, approval,
//! cancellation that kills the run in flight, and model endpoints that fail.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::*;
use crate::scripted_model::{Recorded, Reply, ScriptedModel};

fn model(m: &ScriptedModel, provider: &str, stream: bool) -> Value {
    let base = if provider == "openai" {
        &m.base_url_openai
    } else {
        &m.base_url_anthropic
    };
    json!({"provider": provider, "model": "scripted-model", "base_url": base, "stream": stream})
}

async fn post(app: &TestApp, path: &str, body: Value) -> (u16, Value) {
    let r = client()
        .post(app.url(path))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

/// Start a run and insist on 202 `queued`/`running`.
async fn start(app: &TestApp, body: Value) -> String {
    let (status, v) = post(app, "/v1/agent/runs", body).await;
    assert_eq!(status, 202, "{v}");
    assert!(v["state"] == "queued" || v["state"] == "running", "{v}");
    s(&v, "id")
}

/// Poll until the run has ended; its view.
async fn ended(app: &TestApp, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let (status, v) = app.get(&format!("/v1/agent/runs/{id}")).await;
        assert_eq!(status, 200, "{v}");
        if ["finished", "failed", "cancelled"].contains(&v["state"].as_str().unwrap()) {
            return v;
        }
        assert!(Instant::now() < deadline, "run did not end: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Each message as `type/source`.
fn kinds(v: &Value) -> Vec<String> {
    v["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| format!("{}/{}", s(m, "type"), s(m, "source")))
        .collect()
}

fn of_type<'a>(v: &'a Value, t: &str) -> Vec<&'a Value> {
    v["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["type"] == t)
        .collect()
}

fn py(code: &str) -> String {
    format!("```python\n{code}\n```")
}

/// The issue's first scenario, on each API shape: buggy code, the failure read back, fixed
/// code, then the model stops on its own.
async fn buggy_then_fixed_then_stops(provider: &str, stream: bool) {
    let app = agent_app();
    let m = ScriptedModel::start(vec![
        Reply::TextWithUsage(
            format!("I'll sum 1..10.\n{}", py("print(sum(range(1, 10)) / 0)")),
            11,
            5,
        ),
        Reply::TextWithUsage(
            format!(
                "Division by zero; fixed:\n{}",
                py("print(sum(range(1, 11)))")
            ),
            23,
            7,
        ),
        Reply::TextWithUsage("The sum is 55. TERMINATE".into(), 31, 3),
    ]);
    let id = start(
        app,
        json!({"task": "Print the sum of 1..10", "model": model(&m, provider, stream)}),
    )
    .await;
    let v = ended(app, &id).await;
    assert_eq!(
        (v["state"].as_str(), v["stop_reason"].as_str()),
        (Some("finished"), Some("text_mention: TERMINATE")),
        "{v}"
    );
    assert_eq!(
        kinds(&v),
        [
            "task/user",
            "text/coder",
            "code_execution/executor",
            "text/executor",
            "text/coder",
            "code_execution/executor",
            "text/executor",
            "text/coder"
        ]
    );
    let runs = of_type(&v, "code_execution");
    assert_eq!(
        (
            runs[0]["language"].as_str(),
            runs[0]["result"]["exit_code"].as_i64()
        ),
        (Some("python"), Some(1))
    );
    assert!(
        s(&runs[0]["result"], "stderr").contains("ZeroDivisionError"),
        "{}",
        runs[0]
    );
    assert_eq!(runs[0]["code"], "print(sum(range(1, 10)) / 0)\n");
    assert_eq!(
        (
            runs[1]["result"]["status"].as_str(),
            runs[1]["result"]["stdout"].as_str()
        ),
        (Some("ok"), Some("55\n"))
    );
    assert_eq!(
        v["usage"],
        json!({"input_tokens": 65, "output_tokens": 15, "total_tokens": 80, "estimated": false, "turns": 3, "executions": 2})
    );

    let reqs = m.requests();
    assert_eq!(reqs.len(), 3);
    for r in &reqs {
        assert_eq!(r.streamed(), stream);
        assert_eq!(r.model(), "scripted-model");
        assert!(
            r.system().contains("TERMINATE"),
            "the coder's system prompt: {}",
            r.system()
        );
    }
    assert_eq!(reqs[0].last_user_text(), "Print the sum of 1..10");
    let fed_back = reqs[1].last_user_text();
    assert!(
        fed_back.starts_with("Block 1 (python): exit code 1\n"),
        "{fed_back}"
    );
    assert!(fed_back.contains("ZeroDivisionError"), "{fed_back}");
    assert!(
        reqs[2].last_user_text().contains("stdout:\n55\n"),
        "{}",
        reqs[2].last_user_text()
    );
    // The conversation alternates: task, reply, report, reply, report.
    let roles: Vec<String> = reqs[2]
        .messages()
        .into_iter()
        .map(|(r, _)| r)
        .filter(|r| r != "system")
        .collect();
    assert_eq!(roles, ["user", "assistant", "user", "assistant", "user"]);
}

#[tokio::test]
async fn openai_streamed_fixes_its_bug_and_stops() {
    needs_root!();
    buggy_then_fixed_then_stops("openai", true).await;
}

#[tokio::test]
async fn openai_unstreamed_fixes_its_bug_and_stops() {
    needs_root!();
    buggy_then_fixed_then_stops("openai", false).await;
}

#[tokio::test]
async fn anthropic_streamed_fixes_its_bug_and_stops() {
    needs_root!();
    buggy_then_fixed_then_stops("anthropic", true).await;
}

#[tokio::test]
async fn anthropic_unstreamed_fixes_its_bug_and_stops() {
    needs_root!();
    buggy_then_fixed_then_stops("anthropic", false).await;
}

#[tokio::test]
async fn every_block_is_run_or_answered_never_dropped() {
    needs_root!();
    let app = agent_app();
    let reply = "Several:\n```cobol\nDISPLAY 'HI'.\n```\n```bash\necho from-bash\n```\n```\nprint('untagged runs as python')\n```\n\
                 ```js\nconsole.log(6 * 7)\n```\n```RB\nputs 6 * 7\n```\n```python\nimport sys; sys.exit(3)\n```\n```python\nprint('after a failure')\n```\n";
    let m = ScriptedModel::start(vec![Reply::text(reply), Reply::text("TERMINATE")]);
    let v = ended(
        app,
        &start(
            app,
            json!({"task": "t", "model": model(&m, "openai", false)}),
        )
        .await,
    )
    .await;
    assert_eq!(v["state"], "finished", "{v}");
    let blocks: Vec<(String, String)> = v["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| match m["type"].as_str() {
            Some("code_execution") => Some((
                s(m, "language"),
                format!("exit {}", m["result"]["exit_code"]),
            )),
            Some("code_not_run") => Some((s(m, "language"), s(m, "reason"))),
            _ => None,
        })
        .collect();
    let b = |l: &str, r: &str| (l.to_string(), r.to_string());
    assert_eq!(
        blocks,
        [
            b("cobol", "not run: unknown language cobol"),
            b("bash", "exit 0"),
            b("python", "exit 0"),
            b("javascript", "exit 0"),
            b("ruby", "exit 0"),
            b("python", "exit 3"),
            b("python", "not run: an earlier block in this reply failed"),
        ]
    );
    let outs: Vec<String> = of_type(&v, "code_execution")
        .iter()
        .map(|m| s(&m["result"], "stdout"))
        .collect();
    assert_eq!(
        outs,
        [
            "from-bash\n",
            "untagged runs as python\n",
            "42\n",
            "42\n",
            ""
        ]
    );
    let report = m.requests()[1].last_user_text();
    for line in [
        "Block 1 (cobol): not run: unknown language cobol",
        "Block 2 (bash): exit code 0",
        "Block 5 (ruby): exit code 0",
        "Block 6 (python): exit code 3",
        "Block 7 (python): not run: an earlier block in this reply failed",
    ] {
        assert!(report.contains(line), "{line:?} not in {report}");
    }
}

#[tokio::test]
async fn a_reply_without_code_is_told_so_and_long_output_is_cut_for_the_model_only() {
    needs_root!();
    let app = agent_app();
    let m = ScriptedModel::start(vec![
        Reply::text("Let me think first."),
        Reply::text(py("for i in range(3000): print('line', i)")),
        Reply::text("TERMINATE"),
    ]);
    let v = ended(
        app,
        &start(
            app,
            json!({"task": "t", "model": model(&m, "openai", true), "max_output_chars": 1000}),
        )
        .await,
    )
    .await;
    assert_eq!(v["stop_reason"], "text_mention: TERMINATE", "{v}");
    let reqs = m.requests();
    assert!(
        reqs[1]
            .last_user_text()
            .starts_with("No code block was found in your reply"),
        "{}",
        reqs[1].last_user_text()
    );
    let report = reqs[2].last_user_text();
    assert!(
        report.contains("line 0\n") && report.contains("line 2999\n"),
        "head and tail are kept"
    );
    assert!(!report.contains("line 1500\n"));
    assert!(
        report.contains("characters cut here for the model"),
        "{report}"
    );
    // The run's own record keeps the whole output.
    let full = s(&of_type(&v, "code_execution")[0]["result"], "stdout");
    assert_eq!(full.lines().count(), 3000);
}

/// Replies with one always-succeeding block, forever.
fn forever(reply: &str) -> ScriptedModel {
    let reply = reply.to_string();
    ScriptedModel::start_with(move |_| Reply::TextWithUsage(reply.clone(), 40, 20))
}

#[tokio::test]
async fn each_termination_condition_stops_the_run_with_its_reason() {
    needs_root!();
    let app = agent_app();
    let one = py("print(1)");
    let two = format!("{}\n{}", py("print(1)"), py("print(2)"));
    let cases: Vec<(Value, ScriptedModel, &str, u64)> = vec![
        (json!({"max_turns": 2}), forever(&one), "max_turns: 2", 2),
        (
            json!({"termination": {"max_executions": 3}}),
            forever(&two),
            "max_executions: 3",
            2,
        ),
        (
            json!({"termination": {"token_budget": 100}}),
            forever(&one),
            "token_budget: 120 of 100 tokens used",
            2,
        ),
        (
            json!({"termination": {"text_mention": "ALL DONE"}}),
            ScriptedModel::start(vec![Reply::text("TERMINATE"), Reply::text("ALL DONE")]),
            "text_mention: ALL DONE",
            2,
        ),
        (
            json!({"termination": {"execution_succeeded": true}}),
            ScriptedModel::start(vec![
                Reply::text(py("raise SystemExit(1)")),
                Reply::text(py("print('ok')")),
            ]),
            "execution_succeeded: true",
            2,
        ),
        (
            json!({"termination": {"all": [{"execution_succeeded": true}, {"text_mention": "SHIP IT"}]}}),
            ScriptedModel::start(vec![
                Reply::text(py("print('ok')")),
                Reply::text(format!("SHIP IT\n{}", py("raise SystemExit(1)"))),
                Reply::text(format!("SHIP IT\n{}", py("print('ok')"))),
            ]),
            "execution_succeeded: true and text_mention: SHIP IT",
            3,
        ),
        (
            json!({"max_turns": 4, "termination": {"any": [{"text_mention": "NEVER"}, {"max_executions": 2}]}}),
            forever(&one),
            "max_executions: 2",
            2,
        ),
    ];
    let mut runs = Vec::new();
    for (extra, m, _, _) in &cases {
        let mut body = json!({"task": "t", "model": model(m, "openai", false)});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        runs.push(start(app, body).await);
    }
    for ((_, m, reason, turns), id) in cases.iter().zip(&runs) {
        let v = ended(app, id).await;
        assert_eq!(
            (v["state"].as_str(), v["stop_reason"].as_str()),
            (Some("finished"), Some(*reason)),
            "{v}"
        );
        assert_eq!(v["usage"]["turns"], *turns, "{reason}: {v}");
        assert_eq!(m.requests().len() as u64, *turns, "{reason}");
    }
}

#[tokio::test]
async fn wall_time_ends_the_run_and_kills_the_program_in_flight() {
    needs_root!();
    let app = agent_app();
    let tok = token();
    let m = ScriptedModel::start(vec![Reply::text(format!(
        "```bash\nexec -a sleep-{tok} sleep 60\n```"
    ))]);
    let started = Instant::now();
    let id = start(app, json!({"task": "t", "model": model(&m, "openai", false), "termination": {"wall_time_seconds": 2}})).await;
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut seen = false;
    while !seen && Instant::now() < deadline {
        seen = !host_processes_with(&tok).is_empty();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(seen, "the block never started");
    let v = ended(app, &id).await;
    assert_eq!(
        (v["state"].as_str(), v["stop_reason"].as_str()),
        (Some("finished"), Some("wall_time: 2 s")),
        "{v}"
    );
    assert!(started.elapsed() >= Duration::from_secs(2));
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the deadline did not cut the run: {:?}",
        started.elapsed()
    );
    assert!(
        host_processes_with(&tok).is_empty(),
        "the program outlived its run"
    );
    // The run's own sandbox is gone with it.
    let (status, _) = app
        .get(&format!("/v1/sandboxes/{}", s(&v, "sandbox_id")))
        .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn cancelling_kills_the_execution_in_flight_and_deletes_the_sandbox() {
    needs_root!();
    let app = agent_app();
    let tok = token();
    let m = ScriptedModel::start(vec![Reply::text(format!(
        "```bash\necho started; exec -a sleep-{tok} sleep 120\n```"
    ))]);
    let id = start(
        app,
        json!({"task": "t", "model": model(&m, "anthropic", true)}),
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while host_processes_with(&tok).is_empty() {
        assert!(Instant::now() < deadline, "the block never started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let t = Instant::now();
    let r = client()
        .delete(app.url(&format!("/v1/agent/runs/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "cancel took {:?}",
        t.elapsed()
    );
    assert_eq!(
        (v["state"].as_str(), v["stop_reason"].as_str()),
        (Some("cancelled"), Some("cancelled")),
        "{v}"
    );
    assert!(
        of_type(&v, "code_execution").is_empty(),
        "the killed block has no result"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while !host_processes_with(&tok).is_empty() {
        assert!(
            Instant::now() < deadline,
            "the block survived its run's cancellation"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        app.get(&format!("/v1/sandboxes/{}", s(&v, "sandbox_id")))
            .await
            .0,
        404
    );
    // Stays cancelled, and a second cancel answers the same.
    let again: Value = client()
        .delete(app.url(&format!("/v1/agent/runs/{id}")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(again["state"], "cancelled");
}

#[tokio::test]
async fn model_endpoint_errors_are_retried_then_the_run_fails() {
    needs_root!();
    let app = agent_app();
    let flaky = ScriptedModel::start(vec![
        Reply::Status(503, r#"{"error":{"message":"busy"}}"#.into()),
        Reply::StatusRetryAfter(429, 1),
        Reply::text("TERMINATE"),
    ]);
    let down = ScriptedModel::start_with(|_| {
        Reply::Status(
            500,
            r#"{"error":{"message":"the model server is broken"}}"#.into(),
        )
    });
    let refused = ScriptedModel::start_with(|_| {
        Reply::Status(401, r#"{"error":{"message":"invalid api key"}}"#.into())
    });
    let hangs = ScriptedModel::start_with(|_| Reply::Hang(Duration::from_secs(30)));
    let ids = [
        start(
            app,
            json!({"task": "t", "model": model(&flaky, "openai", true)}),
        )
        .await,
        start(
            app,
            json!({"task": "t", "model": model(&down, "openai", false)}),
        )
        .await,
        start(
            app,
            json!({"task": "t", "model": model(&refused, "anthropic", false)}),
        )
        .await,
        start(
            app,
            json!({"task": "t", "model": model(&hangs, "openai", false)}),
        )
        .await,
    ];
    let v = ended(app, &ids[0]).await;
    assert_eq!(v["state"], "finished", "{v}");
    let retries = of_type(&v, "model_retry");
    assert_eq!(retries.len(), 2, "{v}");
    assert!(s(retries[0], "reason").contains("503"), "{}", retries[0]);
    assert!(
        retries[1]["delay_ms"].as_u64().unwrap() >= 1000,
        "Retry-After is honoured: {}",
        retries[1]
    );
    assert_eq!(flaky.requests().len(), 3);

    // max_retries = 2 in these tests: three attempts, then failed.
    let v = ended(app, &ids[1]).await;
    assert_eq!(
        (v["state"].as_str(), v["stop_reason"].as_str()),
        (Some("failed"), None),
        "{v}"
    );
    let err = s(&v, "error");
    assert!(
        err.contains("500")
            && err.contains("the model server is broken")
            && err.contains("3 attempts"),
        "{err}"
    );
    assert_eq!(down.requests().len(), 3);

    let v = ended(app, &ids[2]).await;
    assert_eq!(v["state"], "failed");
    assert!(
        s(&v, "error").contains("401") && s(&v, "error").contains("invalid api key"),
        "{v}"
    );
    assert_eq!(refused.requests().len(), 1, "a 401 is not retried");

    let v = ended(app, &ids[3]).await;
    assert_eq!(v["state"], "failed");
    assert!(s(&v, "error").contains("timed out"), "{v}");
    assert_eq!(hangs.requests().len(), 3);
}

#[tokio::test]
async fn blocks_wait_for_approval_and_a_rejection_reaches_the_model() {
    needs_root!();
    let app = agent_app();
    let tok = token();
    let m = ScriptedModel::start(vec![
        Reply::text(format!("```bash\necho {tok}-first\n```")),
        Reply::text(format!("```bash\necho {tok}-second\n```")),
        Reply::text("TERMINATE"),
    ]);
    let id = start(
        app,
        json!({"task": "t", "model": model(&m, "openai", false), "require_approval": true}),
    )
    .await;
    let (status, v) = post(
        app,
        &format!("/v1/agent/runs/{id}/approval"),
        json!({"approved": true}),
    )
    .await;
    // Possibly too early: then nothing is pending yet.
    assert!(status == 409 || status == 200, "{v}");
    if status == 409 {
        assert_eq!(v["error"]["code"], "no_pending_approval");
    }
    let wait_pending = || async {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (_, v) = app.get(&format!("/v1/agent/runs/{id}")).await;
            if v["awaiting_approval"] == true {
                return v;
            }
            assert!(Instant::now() < deadline, "never asked for approval: {v}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let mut v = wait_pending().await;
    if status == 200 {
        // The early approval went to the first block; the second is pending now.
        assert_eq!(of_type(&v, "code_execution").len(), 1);
    } else {
        assert!(
            of_type(&v, "code_execution").is_empty(),
            "nothing runs before it is approved"
        );
        assert_eq!(of_type(&v, "approval_request").len(), 1);
        let (st, _) = post(
            app,
            &format!("/v1/agent/runs/{id}/approval"),
            json!({"approved": true}),
        )
        .await;
        assert_eq!(st, 200);
        v = wait_pending().await;
    }
    assert_eq!(of_type(&v, "approval_request").len(), 2);
    let (st, _) = post(
        app,
        &format!("/v1/agent/runs/{id}/approval"),
        json!({"approved": false, "comment": "no echoing today"}),
    )
    .await;
    assert_eq!(st, 200);
    let v = ended(app, &id).await;
    assert_eq!(v["state"], "finished", "{v}");
    let ran = of_type(&v, "code_execution");
    assert_eq!(ran.len(), 1);
    assert_eq!(s(&ran[0]["result"], "stdout"), format!("{tok}-first\n"));
    let rejected = of_type(&v, "code_not_run");
    assert_eq!(
        s(rejected[0], "reason"),
        "not run: rejected by the reviewer: no echoing today"
    );
    assert!(m.requests()[2]
        .last_user_text()
        .contains("not run: rejected by the reviewer: no echoing today"));
    let (st, e) = post(
        app,
        &format!("/v1/agent/runs/{id}/approval"),
        json!({"approved": true}),
    )
    .await;
    assert_eq!(
        (st, e["error"]["code"].as_str()),
        (409, Some("no_pending_approval"))
    );
}

#[tokio::test]
async fn a_critic_reviews_and_may_end_the_run() {
    needs_root!();
    let app = agent_app();
    let m = ScriptedModel::start_with(|r: &Recorded| {
        if r.system().contains("review") {
            if r.all_text().contains("stdout:\n4\n") {
                Reply::text("Correct. TERMINATE")
            } else {
                Reply::text("The output is wrong: 2+2 is 4.")
            }
        } else if r.all_text().contains("2+2 is 4") {
            Reply::text(py("print(2 + 2)"))
        } else {
            Reply::text(py("print(2 + 3)"))
        }
    });
    let v = ended(
        app,
        &start(
            app,
            json!({"task": "print 2+2", "model": model(&m, "anthropic", false), "critic": {}}),
        )
        .await,
    )
    .await;
    assert_eq!(
        (v["state"].as_str(), v["stop_reason"].as_str()),
        (Some("finished"), Some("text_mention: TERMINATE")),
        "{v}"
    );
    let speakers: Vec<String> = of_type(&v, "text").iter().map(|m| s(m, "source")).collect();
    assert_eq!(
        speakers,
        ["coder", "executor", "critic", "coder", "executor", "critic"]
    );
    assert_eq!(v["usage"]["turns"], 2, "turns count the coder's replies");
    let metrics = client()
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let finished = metrics
        .lines()
        .find(|l| l.starts_with("execbox_agent_runs_total{state=\"finished\"}"))
        .expect("agent runs are counted");
    assert!(
        finished.rsplit(' ').next().unwrap().parse::<u64>().unwrap() >= 1,
        "{finished}"
    );
    assert!(
        metrics.contains("execbox_agent_tokens_total{kind=\"output\"}"),
        "{metrics}"
    );
}

#[tokio::test]
async fn events_stream_the_messages_as_they_happen_then_the_end() {
    needs_root!();
    let app = agent_app();
    let m = ScriptedModel::start(vec![
        Reply::text(format!(
            "Slow one:\n{}",
            py("import time; time.sleep(1); print('done')")
        )),
        Reply::text("All good. TERMINATE"),
    ]);
    let id = start(
        app,
        json!({"task": "t", "model": model(&m, "openai", true)}),
    )
    .await;
    let r = client()
        .get(app.url(&format!("/v1/agent/runs/{id}/events")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let events: Vec<(String, Value)> = read_events(r, |_| false)
        .await
        .into_iter()
        .map(|e| (e.event, e.data))
        .collect();
    let (last, end) = events.last().unwrap();
    assert_eq!(last, "end");
    assert_eq!(
        (end["state"].as_str(), end["stop_reason"].as_str()),
        (Some("finished"), Some("text_mention: TERMINATE"))
    );
    // Pieces of the second reply, which starts a second after the stream was opened.
    let after_run = events
        .iter()
        .position(|(e, d)| e == "message" && d["type"] == "code_execution")
        .unwrap();
    let deltas: String = events[after_run..]
        .iter()
        .filter(|(e, d)| e == "delta" && d["source"] == "coder")
        .map(|(_, d)| s(d, "text"))
        .collect();
    assert_eq!(deltas, "All good. TERMINATE");
    assert!(
        events[after_run..]
            .iter()
            .filter(|(e, _)| e == "delta")
            .count()
            > 1,
        "streamed in pieces"
    );
    let streamed: Vec<Value> = events
        .iter()
        .filter(|(e, _)| e == "message")
        .map(|(_, d)| d.clone())
        .collect();
    let v = ended(app, &id).await;
    assert_eq!(
        streamed,
        v["messages"].as_array().unwrap().clone(),
        "the stream carries exactly the run's messages"
    );
    let indexes: Vec<u64> = streamed
        .iter()
        .map(|m| m["index"].as_u64().unwrap())
        .collect();
    assert_eq!(indexes, (0..streamed.len() as u64).collect::<Vec<_>>());
    // After the end, the stream replays the saved run.
    let replay = client()
        .get(app.url(&format!("/v1/agent/runs/{id}/events")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(replay.matches("event: message").count(), streamed.len());
    assert!(replay.contains("event: end"));
}

#[tokio::test]
async fn a_given_sandbox_is_used_and_kept() {
    needs_root!();
    let app = agent_app();
    let (st, sb) = post(app, "/v1/sandboxes", json!({"ttl_seconds": 600})).await;
    assert_eq!(st, 201, "{sb}");
    let sid = s(&sb, "id");
    let put = client()
        .put(app.url(&format!("/v1/sandboxes/{sid}/files/data.txt")))
        .body("21\n")
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 200);
    let m = ScriptedModel::start(vec![
        Reply::text(py("n = int(open('data.txt').read())\nopen('answer.txt', 'w').write(str(n * 2))\nprint(n * 2)")),
        Reply::text("TERMINATE"),
    ]);
    let v = ended(
        app,
        &start(
            app,
            json!({"task": "double it", "model": model(&m, "openai", false), "sandbox_id": sid}),
        )
        .await,
    )
    .await;
    assert_eq!(v["state"], "finished", "{v}");
    assert_eq!(v["sandbox_id"], sid);
    let (_, list) = app.get("/v1/agent/runs?limit=1000").await;
    let mine = list["runs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == v["id"])
        .expect("the run is listed");
    assert_eq!(
        (mine["state"].as_str(), mine["sandbox_id"].as_str()),
        (Some("finished"), Some(sid.as_str()))
    );
    assert!(
        mine.get("messages").is_none(),
        "the list leaves messages out"
    );
    assert_eq!(
        s(&of_type(&v, "code_execution")[0]["result"], "stdout"),
        "42\n"
    );
    let r = client()
        .get(app.url(&format!("/v1/sandboxes/{sid}/files/answer.txt")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "the sandbox outlives the run");
    assert_eq!(r.text().await.unwrap(), "42");
    assert_eq!(
        client()
            .delete(app.url(&format!("/v1/sandboxes/{sid}")))
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
}

#[tokio::test]
async fn bad_requests_get_clear_errors() {
    needs_root!();
    let app = agent_app();
    let m = ScriptedModel::start(vec![]);
    let ok_model = model(&m, "openai", false);
    let cases = [
        (
            json!({"task": "", "model": ok_model}),
            422,
            "invalid_agent_run",
            "task",
        ),
        (
            json!({"task": "t", "model": ok_model, "max_turns": 0}),
            422,
            "invalid_agent_run",
            "max_turns",
        ),
        (
            json!({"task": "t", "model": ok_model, "max_turns": 51}),
            422,
            "invalid_agent_run",
            "max_turns",
        ),
        (
            json!({"task": "t", "model": ok_model, "termination": {"any": []}}),
            422,
            "invalid_agent_run",
            "termination",
        ),
        (
            json!({"task": "t", "model": ok_model, "termination": {"max_turnz": 2}}),
            400,
            "invalid_request",
            "max_turnz",
        ),
        (
            json!({"task": "t", "model": ok_model, "default_language": "cobol"}),
            422,
            "invalid_agent_run",
            "cobol",
        ),
        (
            json!({"task": "t", "model": {"provider": "gemini", "model": "x"}}),
            400,
            "invalid_request",
            "gemini",
        ),
        (
            json!({"task": "t", "model": {"provider": "openai", "model": "x", "base_url": "ftp://x/v1"}}),
            422,
            "invalid_model",
            "base_url",
        ),
        (
            json!({"task": "t", "model": {"provider": "openai", "model": "x", "api_key": "k", "api_key_env": "OPENAI_API_KEY"}}),
            422,
            "invalid_model",
            "api_key",
        ),
        (
            json!({"task": "t", "model": {"provider": "openai", "model": "x", "api_key_env": "SECRET_TOKEN"}}),
            422,
            "invalid_model",
            "SECRET_TOKEN",
        ),
        (
            json!({"task": "t", "model": ok_model, "executor": "local", "sandbox_id": "sb_x"}),
            400,
            "invalid_request",
            "sandbox_id",
        ),
        (
            json!({"task": "t", "model": ok_model, "sandbox_id": "sb_nope"}),
            404,
            "sandbox_not_found",
            "sb_nope",
        ),
        (
            json!({"task": "t", "model": ok_model, "policy": "nope"}),
            422,
            "invalid_sandbox",
            "nope",
        ),
    ];
    for (body, status, code, mentions) in cases {
        let (st, v) = post(app, "/v1/agent/runs", body.clone()).await;
        assert_eq!(
            (st, v["error"]["code"].as_str()),
            (status, Some(code)),
            "{body} -> {v}"
        );
        assert!(
            v["error"]["message"].as_str().unwrap().contains(mentions),
            "{body} -> {v}"
        );
    }
    assert!(m.requests().is_empty(), "no bad request reached the model");
    let (st, v) = app.get("/v1/agent/runs?limit=0").await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (400, Some("invalid_request"))
    );
    let (st, v) = app.get("/v1/agent/runs?state=x").await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (400, Some("invalid_request"))
    );
    let (st, v) = app.get("/v1/agent/runs/ar_nope").await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (404, Some("agent_run_not_found"))
    );
    let r = client()
        .delete(app.url("/v1/agent/runs/ar_nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

/// A service secret named by `api_key_env` reaches only the base URLs the operator listed for
/// it, and is never shown back.
#[tokio::test]
async fn a_service_key_goes_only_where_the_operator_allowed() {
    needs_root!();
    let allowed = ScriptedModel::start(vec![Reply::text("TERMINATE")]);
    let other = ScriptedModel::start(vec![Reply::text("TERMINATE")]);
    let internal = ScriptedModel::start(vec![Reply::text("TERMINATE")]);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("execbox.toml");
    std::fs::write(
        &config,
        format!(
            "[agent]\nallowed_base_urls = [\"{}\", \"{}\"]\n[agent.api_key_envs]\nAGENT_TEST_MODEL_KEY = [\"{}/\"]\n",
            allowed.base_url_openai, other.base_url_openai, allowed.base_url_openai
        ),
    )
    .unwrap();
    let key = "sk-service-key-7f3a";
    let app = TestApp::start(
        &format!("agentkey-{}", std::process::id()),
        &[
            ("EXECBOX_CONFIG", config.to_str().unwrap()),
            ("AGENT_TEST_MODEL_KEY", key),
        ],
    );
    let spec = |m: &ScriptedModel| json!({"provider": "openai", "model": "m", "base_url": m.base_url_openai, "api_key_env": "AGENT_TEST_MODEL_KEY"});
    let v = ended(
        &app,
        &start(&app, json!({"task": "t", "model": spec(&allowed)})).await,
    )
    .await;
    assert_eq!(v["state"], "finished", "{v}");
    assert_eq!(
        allowed.requests()[0].header("authorization"),
        Some(format!("Bearer {key}").as_str())
    );
    assert!(!v.to_string().contains(key), "the key is never shown: {v}");
    let (st, e) = post(
        &app,
        "/v1/agent/runs",
        json!({"task": "t", "model": spec(&other)}),
    )
    .await;
    assert_eq!(
        (st, e["error"]["code"].as_str()),
        (422, Some("invalid_model")),
        "{e}"
    );
    assert!(
        other.requests().is_empty(),
        "the key went to a base URL nobody allowed"
    );
    // A key in the request itself may go anywhere its owner sends it, and is not kept either.
    let own = "sk-callers-own-key";
    let v = ended(&app, &start(&app, json!({"task": "t", "model": {"provider": "openai", "model": "m", "base_url": other.base_url_openai, "api_key": own}})).await).await;
    assert_eq!(
        other.requests()[0].header("authorization"),
        Some(format!("Bearer {own}").as_str())
    );
    assert!(!v.to_string().contains(own));
    // With agent.allowed_base_urls set, nothing else is called, whatever the key.
    let (st, e) = post(&app, "/v1/agent/runs", json!({"task": "t", "model": {"provider": "openai", "model": "m", "base_url": internal.base_url_openai}})).await;
    assert_eq!(
        (st, e["error"]["code"].as_str()),
        (422, Some("invalid_model")),
        "{e}"
    );
    assert!(
        s(&e["error"], "message").contains("agent.allowed_base_urls"),
        "{e}"
    );
    assert!(internal.requests().is_empty());
}

#[tokio::test]
async fn a_run_in_flight_when_the_service_dies_reads_failed_after_restart() {
    needs_root!();
    let dir = tempfile::tempdir().unwrap();
    let instance = format!("agentrestart-{}", std::process::id());
    let m = ScriptedModel::start_with(|_| Reply::Hang(Duration::from_secs(60)));
    let mut app = TestApp::start_in(&instance, dir.path(), AGENT_ENV);
    let id = start(
        &app,
        json!({"task": "t", "model": model(&m, "openai", false)}),
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while m.requests().is_empty() {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    app.kill9();
    drop(app);
    let app = TestApp::start_in(&instance, dir.path(), AGENT_ENV);
    let (st, v) = app.get(&format!("/v1/agent/runs/{id}")).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["state"], "failed", "{v}");
    assert_eq!(
        v["error"],
        "the service stopped while the run was in progress"
    );
}

#[tokio::test]
async fn the_cli_shows_the_conversation_and_its_exit_code_says_how_it_ended() {
    needs_root!();
    require_root();
    let m = ScriptedModel::start(vec![
        Reply::text(format!("First try:\n{}", py("print(1 / 0)"))),
        Reply::text(format!("Fixed:\n{}", py("print(7 * 6)"))),
        Reply::text("It prints 42. TERMINATE"),
    ]);
    let base = m.base_url_openai.clone();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_execbox"))
            .args([
                "agent",
                "--model",
                "openai:scripted",
                "--base-url",
                &base,
                "print 6*7",
            ])
            .env_remove("OPENAI_API_KEY")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for part in [
        "── task ──\nprint 6*7",
        "── coder ──\nFirst try:",
        "── executor: python → exit code 1",
        "ZeroDivisionError",
        "── executor: python → exit code 0",
        "stdout:\n42",
        "── finished (text_mention: TERMINATE) · 3 turns · 2 executions",
    ] {
        assert!(stdout.contains(part), "{part:?} not in:\n{stdout}");
    }
    let down =
        ScriptedModel::start_with(|_| Reply::Status(500, r#"{"error":{"message":"down"}}"#.into()));
    let base = down.base_url_anthropic.clone();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_execbox"))
            .args([
                "agent",
                "--model",
                "anthropic:scripted",
                "--base-url",
                &base,
                "--no-stream",
                "anything",
            ])
            .env("EXECBOX_AGENT__MODEL_BACKOFF_MS", "10")
            .env("EXECBOX_AGENT__MODEL_MAX_RETRIES", "1")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("the agent run failed") && stderr.contains("500"),
        "{stderr}"
    );
    assert_eq!(down.requests().len(), 2);
}

/// The same loop on the docker executor: the run's sandbox is a container.
#[tokio::test]
async fn the_loop_runs_on_the_docker_executor_too() {
    needs_root!();
    let Some(_) = app_for("docker").await else {
        return;
    };
    let app = agent_app();
    let m = ScriptedModel::start(vec![
        Reply::text(py("print(1 / 0)")),
        Reply::text(py("print('fixed')")),
        Reply::text("TERMINATE"),
    ]);
    let v = ended(
        app,
        &start(
            app,
            json!({"task": "t", "model": model(&m, "openai", true), "executor": "docker"}),
        )
        .await,
    )
    .await;
    assert_eq!(
        (v["state"].as_str(), v["executor"].as_str()),
        (Some("finished"), Some("docker")),
        "{v}"
    );
    let runs = of_type(&v, "code_execution");
    assert_eq!(runs[0]["result"]["executor"], "docker");
    assert_eq!(runs[0]["result"]["exit_code"], 1);
    assert!(s(&runs[0]["result"], "stderr").contains("ZeroDivisionError"));
    assert_eq!(s(&runs[1]["result"], "stdout"), "fixed\n");
    assert_eq!(
        app.get(&format!("/v1/sandboxes/{}", s(&v, "sandbox_id")))
            .await
            .0,
        404,
        "its container is gone with it"
    );
}

/// `"stateful": true` runs the Python blocks in one context of the run's sandbox: a name a block
/// defines is there for the next reply's block, a trailing expression's value and an uncaught
/// exception reach the model as a notebook shows them, and shell blocks still run as programs.
/// The same script without it fails on the undefined name, so the state came from the context.
#[tokio::test]
async fn a_stateful_run_keeps_python_state_between_blocks() {
    needs_root!();
    let app = agent_app();
    let script = || {
        ScriptedModel::start(vec![
            Reply::text(format!(
                "{}\n{}",
                py("import math\nx = 41"),
                "```sh\necho shell-ran\n```"
            )),
            Reply::text(py("print(math.pi > 3)\nx + 1")),
            Reply::text(py("raise ValueError('boom')")),
            Reply::text("TERMINATE"),
        ])
    };
    let m = script();
    let v = ended(
        app,
        &start(
            app,
            json!({"task": "keep x", "model": model(&m, "openai", false), "stateful": true}),
        )
        .await,
    )
    .await;
    assert_eq!(v["state"], "finished", "{v}");
    let runs = of_type(&v, "code_execution");
    let got: Vec<(String, i64, String)> = runs
        .iter()
        .map(|r| {
            (
                s(r, "language"),
                r["result"]["exit_code"].as_i64().unwrap(),
                s(&r["result"], "stdout"),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("python".to_string(), 0, String::new()),
            ("bash".to_string(), 0, "shell-ran\n".to_string()),
            ("python".to_string(), 0, "True\n42\n".to_string()),
            ("python".to_string(), 1, String::new()),
        ],
        "{v}"
    );
    let traceback = s(&runs[3]["result"], "stderr");
    assert!(traceback.contains("ValueError: boom"), "{traceback}");
    // The model read the value back as the block's output.
    assert!(
        m.requests()[2].last_user_text().contains("True\n42\n"),
        "{}",
        m.requests()[2].last_user_text()
    );

    let m = script();
    let v = ended(
        app,
        &start(
            app,
            json!({"task": "keep x", "model": model(&m, "openai", false)}),
        )
        .await,
    )
    .await;
    let runs = of_type(&v, "code_execution");
    assert_eq!(runs[2]["result"]["exit_code"], 1, "{v}");
    let stderr = s(&runs[2]["result"], "stderr");
    assert!(stderr.contains("NameError"), "without a context: {stderr}");
}
