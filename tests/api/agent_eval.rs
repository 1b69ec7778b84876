//! `execbox agent-eval` on the project's HumanEval-format fixtures, with a scripted model over
//! real loopback HTTP: the hidden tests never reach the model, the first and the final
//! completions are scored separately, cheats fail, and a failing endpoint fails its run only.

use crate::helpers::needs_root;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::helpers::require_root;
use crate::scripted_model::{Recorded, Reply, ScriptedModel};

const PROBLEMS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/eval/problems.jsonl"
);

struct Outcome {
    code: Option<i32>,
    stderr: String,
    /// The last line of stdout, parsed.
    summary: Value,
    results: Vec<Value>,
}

/// Copy the fixture problems to a temp dir, run `execbox agent-eval` on them against the model
/// at `base_url` and read the results file (the default one, beside the problems).
fn agent_eval(model: &str, base_url: &str, extra: &[&str], env: &[(&str, &str)]) -> Outcome {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let problems = dir.path().join("problems.jsonl");
    std::fs::copy(PROBLEMS, &problems).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_execbox"))
        .arg("agent-eval")
        .arg("--problems")
        .arg(&problems)
        .args(["--model", model, "--base-url", base_url, "--max-turns", "3"])
        .args(extra)
        .env_remove("OPENAI_API_KEY")
        .env_remove("ANTHROPIC_API_KEY")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let results_path = PathBuf::from(format!("{}_agent_results.jsonl", problems.display()));
    let results = std::fs::read_to_string(&results_path).unwrap_or_default();
    let summary = stdout
        .lines()
        .last()
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or(Value::Null);
    Outcome {
        code: out.status.code(),
        stderr: format!("stdout:\n{stdout}\nstderr:\n{stderr}"),
        summary,
        results: results
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect(),
    }
}

fn fixture_problems() -> Vec<Value> {
    let text = std::fs::read_to_string(Path::new(PROBLEMS)).unwrap();
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The entry point of the problem a request is about, from the task (the first user message).
fn entry_point_of(r: &Recorded) -> String {
    let task = r
        .messages()
        .into_iter()
        .find(|(role, _)| role == "user")
        .map(|(_, c)| c)
        .unwrap_or_default();
    for p in fixture_problems() {
        let entry = p["entry_point"].as_str().unwrap();
        if task.contains(&format!("def {entry}(")) {
            return entry.to_string();
        }
    }
    panic!("a task naming no fixture problem: {task}")
}

/// Coder replies so far in this request's conversation.
fn turn(r: &Recorded) -> usize {
    r.messages()
        .iter()
        .filter(|(role, _)| role == "assistant")
        .count()
}

fn py(code: &str) -> String {
    format!("```python\n{code}```\n")
}

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} is not a string in {v}"))
}

#[test]
fn the_hidden_tests_never_reach_the_model_and_the_prompts_imports_are_lent() {
    needs_root!();
    // The model answers with the canonical function only, leaving out the prompt's imports
    // (`from typing import List`, `import math`): the scored program brings them.
    let model = ScriptedModel::start_with(|r| {
        let entry = entry_point_of(r);
        let p = fixture_problems()
            .into_iter()
            .find(|p| p["entry_point"] == entry.as_str())
            .unwrap();
        let prompt = s(&p, "prompt");
        let function = &prompt[prompt.find(&format!("def {entry}(")).unwrap()..];
        Reply::text(format!(
            "Here it is:\n{}TERMINATE",
            py(&format!("{function}{}", s(&p, "canonical_solution")))
        ))
    });
    let o = agent_eval(
        "anthropic:scripted",
        &model.base_url_anthropic,
        &["--no-stream", "--concurrency", "3"],
        &[],
    );
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    let problems = fixture_problems();
    assert_eq!(o.results.len(), problems.len());
    for (got, p) in o.results.iter().zip(&problems) {
        assert_eq!(got["task_id"], p["task_id"], "file order");
        assert_eq!(
            (
                s(got, "state"),
                s(got, "stop_reason"),
                got["turns"].as_u64()
            ),
            ("finished", "text_mention: TERMINATE", Some(1)),
            "{got}"
        );
        assert_eq!(
            (s(got, "first_result"), s(got, "final_result")),
            ("passed", "passed"),
            "{got}"
        );
        assert_eq!(
            (got["first_passed"].as_bool(), got["final_passed"].as_bool()),
            (Some(true), Some(true))
        );
        assert_eq!(got["first_completion"], got["final_completion"]);
        assert!(!s(got, "first_completion").contains("import"), "{got}");
        assert!(got["total_tokens"].as_u64().unwrap() > 0, "{got}");
    }
    assert_eq!(o.summary["problems"], 5);
    assert_eq!(o.summary["pass@1_first"], 1.0);
    assert_eq!(o.summary["solved_within_3_turns"], 1.0);
    assert_eq!(o.summary["failed_runs"], 0);

    let requests = model.requests();
    assert_eq!(requests.len(), problems.len(), "one reply per problem");
    // Every line of every check function, and the names of the test's own machinery.
    let secret: Vec<&str> = problems
        .iter()
        .flat_map(|p| {
            s(p, "test")
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
        })
        .chain(["def check", "candidate", "METADATA"])
        .collect();
    assert!(secret.contains(&"assert candidate(30) == 832040"));
    for r in &requests {
        let text = r.all_text();
        for line in &secret {
            assert!(!text.contains(line), "the model saw {line:?}:\n{text}");
        }
        let entry = entry_point_of(r);
        let p = problems
            .iter()
            .find(|p| p["entry_point"] == entry.as_str())
            .unwrap();
        assert!(
            text.contains(s(p, "prompt")),
            "the prompt of {entry} is not in:\n{text}"
        );
    }
}

#[test]
fn the_first_and_the_final_completion_are_scored_separately() {
    needs_root!();
    let model = ScriptedModel::start_with(|r| {
        let right_add = "def add(a, b):\n    return a + b\n\nprint(add(2, 3))\n";
        Reply::text(match (entry_point_of(r).as_str(), turn(r)) {
            // Wrong, then fixed after reading its own output, then done.
            ("add", 0) => format!(
                "First try:\n{}",
                py("def add(a, b):\n    return a - b\n\nprint(add(2, 3))\n")
            ),
            ("add", 1) => format!("It printed -1; fixed:\n{}", py(right_add)),
            ("add", _) => "It prints 5. TERMINATE".into(),
            // Right the first time.
            ("is_palindrome", _) => format!(
                "{}TERMINATE",
                py("def is_palindrome(s):\n    return s == s[::-1]\n")
            ),
            // Always wrong, until the turns run out.
            ("fib", n) => format!("Attempt {n}:\n{}", py("def fib(n):\n    return n\n")),
            (other, _) => panic!("--limit 3 should not reach {other}"),
        })
    });
    let o = agent_eval(
        "openai:scripted",
        &model.base_url_openai,
        &["--limit", "3"],
        &[],
    );
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    let ids: Vec<&str> = o.results.iter().map(|r| s(r, "task_id")).collect();
    assert_eq!(
        ids,
        ["Execbox/0", "Execbox/1", "Execbox/2"],
        "the first 3 in file order"
    );

    let [add, palindrome, fib] = &o.results[..] else {
        unreachable!()
    };
    assert_eq!(
        (
            s(add, "stop_reason"),
            add["turns"].as_u64(),
            add["executions"].as_u64()
        ),
        ("text_mention: TERMINATE", Some(3), Some(2)),
        "{add}"
    );
    assert_eq!(
        (s(add, "first_result"), add["first_passed"].as_bool()),
        ("failed: AssertionError", Some(false)),
        "{add}"
    );
    assert_eq!(
        (s(add, "final_result"), add["final_passed"].as_bool()),
        ("passed", Some(true)),
        "{add}"
    );
    assert!(
        s(add, "first_completion").contains("a - b")
            && s(add, "final_completion").contains("a + b"),
        "{add}"
    );

    assert_eq!(
        (
            palindrome["turns"].as_u64(),
            palindrome["first_passed"].as_bool(),
            palindrome["final_passed"].as_bool()
        ),
        (Some(1), Some(true), Some(true)),
        "{palindrome}"
    );

    assert_eq!(
        (
            s(fib, "state"),
            s(fib, "stop_reason"),
            fib["turns"].as_u64()
        ),
        ("finished", "max_turns: 3", Some(3)),
        "{fib}"
    );
    assert_eq!(
        (s(fib, "first_result"), s(fib, "final_result")),
        ("failed: AssertionError", "failed: AssertionError"),
        "{fib}"
    );

    assert_eq!(o.summary["problems"], 3, "{}", o.stderr);
    assert_eq!(o.summary["pass@1_first"], 1.0 / 3.0);
    assert_eq!(o.summary["solved_within_3_turns"], 2.0 / 3.0);
    assert_eq!(o.summary["max_turns"], 3);
    assert_eq!(o.summary["failed_runs"], 0);

    // The model read its own wrong output before fixing it.
    let requests = model.requests();
    let second = requests
        .iter()
        .find(|r| entry_point_of(r) == "add" && turn(r) == 1)
        .expect("add's second turn");
    assert!(
        second.last_user_text().contains("-1"),
        "{}",
        second.last_user_text()
    );
    assert_eq!(requests.len(), 3 + 1 + 3);
}

#[test]
fn completions_that_cheat_the_harness_fail() {
    needs_root!();
    let model = ScriptedModel::start_with(|r| {
        Reply::text(match entry_point_of(r).as_str() {
            // Exits 0 as soon as the tests call it.
            "add" => format!("{}TERMINATE", py("def add(a, b):\n    import os\n    os._exit(0)\n")),
            // Prints success and exits 0 before the tests run.
            _ => format!("{}TERMINATE", py("import sys\n\ndef is_palindrome(s):\n    return True\n\nprint('passed')\nsys.exit(0)\n")),
        })
    });
    let o = agent_eval(
        "openai:scripted",
        &model.base_url_openai,
        &["--limit", "2"],
        &[],
    );
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    assert_eq!(o.results.len(), 2);
    for r in &o.results {
        assert_eq!(s(r, "state"), "finished", "{r}");
        for key in ["first_result", "final_result"] {
            assert_eq!(
                s(r, key),
                "failed: exited before the tests completed",
                "{r}"
            );
        }
    }
    assert_eq!(
        (
            o.summary["pass@1_first"].as_f64(),
            o.summary["solved_within_3_turns"].as_f64()
        ),
        (Some(0.0), Some(0.0))
    );
}

#[test]
fn a_failing_model_endpoint_fails_its_run_only_and_the_exit_code_says_so() {
    needs_root!();
    let model = ScriptedModel::start_with(|r| match entry_point_of(r).as_str() {
        "add" => Reply::text(format!(
            "{}TERMINATE",
            py("def add(a, b):\n    return a + b\n")
        )),
        _ => Reply::Status(500, r#"{"error":{"message":"scripted outage"}}"#.into()),
    });
    let env = [
        ("EXECBOX_AGENT__MODEL_BACKOFF_MS", "10"),
        ("EXECBOX_AGENT__MODEL_MAX_RETRIES", "1"),
    ];
    let o = agent_eval(
        "openai:scripted",
        &model.base_url_openai,
        &["--limit", "2"],
        &env,
    );
    assert_eq!(o.code, Some(1), "{}", o.stderr);
    assert!(
        o.stderr.contains("1 of 2 agent runs did not finish"),
        "{}",
        o.stderr
    );
    let [add, palindrome] = &o.results[..] else {
        panic!("{}", o.stderr)
    };
    assert_eq!(
        (s(add, "state"), s(add, "final_result")),
        ("finished", "passed"),
        "{add}"
    );
    assert_eq!(s(palindrome, "state"), "failed", "{palindrome}");
    let error = s(palindrome, "error");
    assert!(
        error.contains("500") && error.contains("scripted outage"),
        "{error}"
    );
    assert_eq!(
        (
            palindrome["turns"].as_u64(),
            &palindrome["first_completion"]
        ),
        (Some(0), &Value::Null)
    );
    assert_eq!(
        (s(palindrome, "first_result"), s(palindrome, "final_result")),
        ("failed: no completion", "failed: no completion")
    );
    assert_eq!(o.summary["failed_runs"], 1);
    assert_eq!(o.summary["pass@1_first"], 0.5);
    let asked = model
        .requests()
        .iter()
        .filter(|r| entry_point_of(r) == "is_palindrome")
        .count();
    assert_eq!(asked, 2, "one try and one retry");
}
