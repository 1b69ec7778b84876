//! Issue 10's speed targets for sandboxes, each a ratio of medians measured side by side in one
//! run (interleaved wherever two things are compared, so both see the same noisy machine):
//!
//! 1. a local sandbox call of `print(1)` against a one-shot local run (target <= 1.1);
//! 2. a call in a sandbox holding 40 MB in 3,000 files against the same call in an empty one,
//!    on local and on docker (<= 1.1 each);
//! 3. a docker sandbox call against one block of AutoGen's `DockerCommandLineCodeExecutor`
//!    (autogen-ext 0.7.5 in a venv this bench makes, its container reused) (<= 0.5);
//! 4. a docker one-shot run through the API against `docker run --rm` of the same image (<= 0.15);
//! 5. a context call of `pass` against a one-shot local run of `pass` (<= 0.3).
//!
//! Run with `cargo bench --bench sandbox`. A part that cannot run here (no docker engine, no
//! contexts API in this build, no PyPI for AutoGen) says SKIPPED and why; a part that fails
//! says FAILED, and the bench then exits non-zero after printing the summary.
//!
//! Environment: BENCH_SANDBOX_N (local iterations, default 40), BENCH_SANDBOX_DOCKER_N (docker
//! iterations, default 20), BENCH_SANDBOX_WARMUP (warm-up iterations of each, default 3),
//! BENCH_PYTHON (the interpreter that makes AutoGen's venv, default python3). 0 skips a part.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{docker_unusable, env_usize, ms, percentile, Server};

const DOCKER_IMAGE: &str = "execbox/python:bookworm";
/// AutoGen runs `python <file>`; the offline image has only `python3`.
const AUTOGEN_IMAGE: &str = "execbox/bench-autogen-python:bookworm";
const AUTOGEN_DOCKERFILE: &str =
    "FROM execbox/python:bookworm\nRUN ln -s /usr/bin/python3 /usr/local/bin/python\n";
/// The label on AUTOGEN_IMAGE naming the base image it was built from, to rebuild it when the
/// offline image changes.
const BASE_LABEL: &str = "execbox.bench.base";
const AUTOGEN_PACKAGE: &str = "autogen-ext[docker]==0.7.5";
const AUTOGEN_VERSION: &str = "0.7.5";
/// The workspace of part 2: FILES files of FILE_BYTES random bytes, 100 to a directory.
const FILES: usize = 3_000;
const FILE_BYTES: usize = 13_334;
/// A python run of `code`, with `extra` fields. Every run here has these limits, both sides of
/// a comparison alike, so that a slow run (a loaded machine, a sandbox that copies its
/// workspace per call) is a figure, not a timeout.
fn python(code: &str, extra: Value) -> Value {
    let limits = json!({"wall_time_ms": 60_000, "cpu_time_ms": 60_000});
    let mut body = json!({"language": "python", "code": code, "limits": limits});
    if let Value::Object(extra) = extra {
        body.as_object_mut().expect("an object").extend(extra);
    }
    body
}

/// What a part came to.
enum Outcome {
    Ratio(f64),
    Skipped(String),
    Failed(String),
}

struct Line {
    what: String,
    target: f64,
    outcome: Outcome,
}

/// The service's API, driven from this (synchronous) bench through one runtime.
struct Api {
    rt: tokio::runtime::Runtime,
    client: reqwest::Client,
    base: String,
}

impl Api {
    /// One request; the answer's status, JSON body (null when none) and the time to all of it.
    fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Value, Duration), String> {
        let url = format!("{}{path}", self.base);
        self.rt.block_on(async {
            let t = Instant::now();
            let mut req = self.client.request(method.clone(), &url);
            if let Some(body) = body {
                req = req.json(body);
            }
            let resp = req
                .send()
                .await
                .map_err(|e| format!("{method} {path}: {e} (has the server exited?)"))?;
            let status = resp.status().as_u16();
            let bytes = resp
                .bytes()
                .await
                .map_err(|e| format!("{method} {path}: reading the answer: {e}"))?;
            let elapsed = t.elapsed();
            let value = if bytes.is_empty() {
                Value::Null
            } else {
                serde_json::from_slice(&bytes).map_err(|e| {
                    format!(
                        "{method} {path} answered {status} with a body that is not JSON ({e}): {}",
                        String::from_utf8_lossy(&bytes)
                    )
                })?
            };
            Ok((status, value, elapsed))
        })
    }

    /// A run (one-shot or a sandbox call) that must end `ok` with this stdout; its time.
    fn run(&self, path: &str, body: &Value, stdout: &str) -> Result<Duration, String> {
        let (status, answer, elapsed) = self.request(reqwest::Method::POST, path, Some(body))?;
        if status != 200 || answer["status"] != "ok" || answer["stdout"] != stdout {
            return Err(format!(
                "POST {path} {body} answered {status}, not an ok run printing {stdout:?}: {answer}"
            ));
        }
        Ok(elapsed)
    }
}

/// A sandbox of the service, deleted when dropped (a graceful stop of the service keeps its
/// sandboxes, and a docker one's container would outlive the bench).
struct Sandbox<'a> {
    api: &'a Api,
    id: String,
}

impl<'a> Sandbox<'a> {
    fn create(api: &'a Api, executor: &str) -> Result<Sandbox<'a>, String> {
        let body = json!({"ttl_seconds": 3600, "executor": executor});
        let (status, answer, _) =
            api.request(reqwest::Method::POST, "/v1/sandboxes", Some(&body))?;
        match answer["id"].as_str() {
            Some(id) if status == 201 => Ok(Sandbox {
                api,
                id: id.to_string(),
            }),
            _ => Err(format!(
                "creating a {executor} sandbox answered {status}: {answer}"
            )),
        }
    }

    fn path(&self, rest: &str) -> String {
        format!("/v1/sandboxes/{}{rest}", self.id)
    }

    fn execute(&self, body: &Value, stdout: &str) -> Result<Duration, String> {
        self.api.run(&self.path("/execute"), body, stdout)
    }

    /// Fill the work dir with FILES files, FILE_BYTES each, by a call; check a later call sees
    /// them all.
    fn fill(&self) -> Result<(), String> {
        let total = FILES * FILE_BYTES;
        let write = format!(
            "import os\n\
             for i in range({FILES}):\n\
             \x20   d = f'data/d{{i // 100:02}}'\n\
             \x20   os.makedirs(d, exist_ok=True)\n\
             \x20   with open(f'{{d}}/f{{i:04}}.bin', 'wb') as f:\n\
             \x20       f.write(os.urandom({FILE_BYTES}))\n\
             print('written')\n"
        );
        let body = python(&write, Value::Null);
        self.execute(&body, "written\n")?;
        let count = "import os\n\
                     files = [os.path.join(r, f) for r, _, fs in os.walk('data') for f in fs]\n\
                     print(len(files), sum(os.path.getsize(f) for f in files))\n";
        self.execute(&python(count, Value::Null), &format!("{FILES} {total}\n"))
            .map(|_| ())
    }
}

impl Drop for Sandbox<'_> {
    fn drop(&mut self) {
        let path = self.path("");
        match self.api.request(reqwest::Method::DELETE, &path, None) {
            Ok((204, _, _)) => {}
            Ok((status, answer, _)) => eprintln!("DELETE {path} answered {status}: {answer}"),
            Err(e) => eprintln!("{e}"),
        }
    }
}

/// `warmup + n` rounds of `a` and `b`, alternating which goes first; the samples after the
/// warm-up of each.
type Samples = (Vec<Duration>, Vec<Duration>);
fn interleaved(
    warmup: usize,
    n: usize,
    mut a: impl FnMut() -> Result<Duration, String>,
    mut b: impl FnMut() -> Result<Duration, String>,
) -> Result<Samples, String> {
    let (mut xs, mut ys) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for i in 0..warmup + n {
        let (x, y) = if i % 2 == 0 {
            let x = a()?;
            (x, b()?)
        } else {
            let y = b()?;
            (a()?, y)
        };
        if i >= warmup {
            xs.push(x);
            ys.push(y);
        }
    }
    Ok((xs, ys))
}

/// Print the median and p90 of each side and give the ratio of the medians (`a` over `b`).
fn compare(a_name: &str, a: &mut [Duration], b_name: &str, b: &mut [Duration]) -> f64 {
    let width = a_name.len().max(b_name.len());
    for (name, s) in [(a_name, &mut *a), (b_name, &mut *b)] {
        println!(
            "  {name:<width$}   median {:8.2} ms   p90 {:8.2} ms",
            ms(percentile(s, 50.0)),
            ms(percentile(s, 90.0))
        );
    }
    percentile(a, 50.0).as_secs_f64() / percentile(b, 50.0).as_secs_f64()
}

fn print1() -> Value {
    python("print(1)", Value::Null)
}

/// Part 1: a local sandbox call of `print(1)` against a one-shot local run of it.
fn local_call(api: &Api, warmup: usize, n: usize) -> Result<f64, String> {
    let sandbox = Sandbox::create(api, "local")?;
    let body = print1();
    let (mut call, mut oneshot) = interleaved(
        warmup,
        n,
        || sandbox.execute(&body, "1\n"),
        || api.run("/v1/execute", &body, "1\n"),
    )?;
    println!(
        "local sandbox call of `print(1)`, {n} interleaved iterations after {warmup} warm-up:"
    );
    Ok(compare(
        "POST /v1/sandboxes/{id}/execute (local)",
        &mut call,
        "POST /v1/execute (local, one-shot)",
        &mut oneshot,
    ))
}

/// Part 2: a call of `print(1)` in a sandbox holding FILES files against one in an empty sandbox.
fn full_workspace(api: &Api, executor: &str, warmup: usize, n: usize) -> Result<f64, String> {
    let empty = Sandbox::create(api, executor)?;
    let full = Sandbox::create(api, executor)?;
    let t = Instant::now();
    full.fill()?;
    let mb = (FILES * FILE_BYTES) as f64 / 1e6;
    println!(
        "{executor} sandbox holding {mb:.1} MB in {FILES} files (written by a call and counted by another in {:.2} s) against an empty one, `print(1)`, {n} interleaved iterations after {warmup} warm-up:",
        t.elapsed().as_secs_f64()
    );
    let body = print1();
    let (mut f, mut e) = interleaved(
        warmup,
        n,
        || full.execute(&body, "1\n"),
        || empty.execute(&body, "1\n"),
    )?;
    Ok(compare(
        &format!("call in the full {executor} sandbox"),
        &mut f,
        &format!("call in the empty {executor} sandbox"),
        &mut e,
    ))
}

/// Part 5: a context call of `pass` against a one-shot local run of `pass`. Skipped (Ok(None)) when
/// this build has no contexts API.
fn context_call(api: &Api, warmup: usize, n: usize) -> Result<Option<f64>, String> {
    let sandbox = Sandbox::create(api, "local")?;
    let path = sandbox.path("/contexts");
    let (status, answer, _) = api.request(
        reqwest::Method::POST,
        &path,
        Some(&json!({"language": "python"})),
    )?;
    if status == 404 || status == 405 {
        println!("context call: SKIPPED: the contexts API is not in this build (POST {path} answered {status})");
        return Ok(None);
    }
    let ctx = match answer["id"].as_str() {
        Some(id) if status == 201 => id.to_string(),
        _ => return Err(format!("POST {path} answered {status}: {answer}")),
    };
    let in_ctx = python("pass", json!({"context": ctx}));
    let oneshot = python("pass", Value::Null);
    let (mut c, mut o) = interleaved(
        warmup,
        n,
        || sandbox.execute(&in_ctx, ""),
        || api.run("/v1/execute", &oneshot, ""),
    )?;
    println!("context call of `pass`, {n} interleaved iterations after {warmup} warm-up:");
    Ok(Some(compare(
        "POST /v1/sandboxes/{id}/execute with \"context\"",
        &mut c,
        "POST /v1/execute (local, one-shot)",
        &mut o,
    )))
}

fn docker_run_print1() -> Result<Duration, String> {
    let t = Instant::now();
    let out = Command::new("docker")
        .args(["run", "--rm", "--network", "none", DOCKER_IMAGE])
        .args(["python3", "-c", "print(1)"])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("spawning docker run: {e}"))?;
    let elapsed = t.elapsed();
    if !out.status.success() || out.stdout != b"1\n" {
        return Err(format!(
            "docker run failed: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(elapsed)
}

/// Part 4: a docker one-shot run through the API against `docker run --rm` of the same image.
fn docker_oneshot(api: &Api, warmup: usize, n: usize) -> Result<f64, String> {
    let body = python("print(1)", json!({"executor": "docker"}));
    let (mut a, mut d) = interleaved(
        warmup,
        n,
        || api.run("/v1/execute", &body, "1\n"),
        docker_run_print1,
    )?;
    println!(
        "docker one-shot run of `print(1)`, {n} interleaved iterations after {warmup} warm-up:"
    );
    let ratio = compare(
        "POST /v1/execute (docker)",
        &mut a,
        &format!("docker run --rm --network none {DOCKER_IMAGE} python3 -c 'print(1)'"),
        &mut d,
    );
    println!(
        "  note: each API run follows a `docker run`, which gives the warm pool time to refill"
    );
    Ok(ratio)
}

fn run_cmd(cmd: &mut Command, what: &str) -> Result<String, String> {
    let out = cmd.output().map_err(|e| format!("{what}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{what} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The venv's python with autogen-ext AUTOGEN_VERSION installed, made on first use.
fn autogen_venv() -> Result<PathBuf, String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-autogen-venv");
    let python = dir.join("bin/python");
    let version = |python: &Path| {
        Command::new(python)
            .args([
                "-c",
                "import importlib.metadata as m, docker; print(m.version('autogen-ext'))",
            ])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    if version(&python).as_deref() != Some(AUTOGEN_VERSION) {
        println!(
            "making AutoGen's venv at {} ({AUTOGEN_PACKAGE} from PyPI)",
            dir.display()
        );
        let base = std::env::var("BENCH_PYTHON").unwrap_or_else(|_| "python3".into());
        run_cmd(
            Command::new(&base).args(["-m", "venv"]).arg(&dir),
            "making the venv",
        )?;
        run_cmd(
            Command::new(&python).args(["-m", "pip", "install", "-q", AUTOGEN_PACKAGE]),
            &format!("pip install {AUTOGEN_PACKAGE}"),
        )?;
    }
    Ok(python)
}

/// AUTOGEN_IMAGE, built from the offline image when missing or built from an older one.
fn autogen_image() -> Result<(), String> {
    let label = |image: &str, format: &str| {
        run_cmd(
            Command::new("docker").args(["image", "inspect", "-f", format, image]),
            &format!("docker image inspect {image}"),
        )
        .map(|s| s.trim().to_string())
    };
    let base = label(DOCKER_IMAGE, "{{.Id}}")?;
    let format = format!("{{{{index .Config.Labels \"{BASE_LABEL}\"}}}}");
    if label(AUTOGEN_IMAGE, &format).ok().as_deref() == Some(base.as_str()) {
        return Ok(());
    }
    println!("building {AUTOGEN_IMAGE} from {DOCKER_IMAGE} (a `python` symlink)");
    let mut child = Command::new("docker")
        .args(["build", "-q", "-t", AUTOGEN_IMAGE, "--label"])
        .arg(format!("{BASE_LABEL}={base}"))
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawning docker build: {e}"))?;
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(AUTOGEN_DOCKERFILE.as_bytes())
        .map_err(|e| format!("writing the Dockerfile to docker build: {e}"))?;
    let out = child
        .wait_with_output()
        .map_err(|e| format!("docker build: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "docker build of {AUTOGEN_IMAGE} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}

/// benches/autogen_docker.py in --serve mode: one block per line asked.
struct AutoGen {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl AutoGen {
    fn start(python: &Path) -> Result<AutoGen, String> {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/autogen_docker.py");
        let mut child = Command::new(python)
            .arg(&script)
            .args(["--image", AUTOGEN_IMAGE, "--serve"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("starting {}: {e}", script.display()))?;
        let mut autogen = AutoGen {
            stdin: child.stdin.take(),
            stdout: BufReader::new(child.stdout.take().expect("piped")),
            child,
        };
        match autogen.line()?.as_str() {
            "ready" => Ok(autogen),
            other => Err(format!("autogen_docker.py said {other:?}, not ready")),
        }
    }

    fn line(&mut self) -> Result<String, String> {
        let mut line = String::new();
        match self.stdout.read_line(&mut line) {
            Ok(0) => Err("autogen_docker.py exited (its error is above)".into()),
            Ok(_) => Ok(line.trim().to_string()),
            Err(e) => Err(format!("reading autogen_docker.py's output: {e}")),
        }
    }

    /// One block, timed by the script around `execute_code_blocks`.
    fn block(&mut self, warm: bool) -> Result<Duration, String> {
        let stdin = self.stdin.as_mut().expect("open until finish");
        writeln!(stdin, "{}", if warm { "warm" } else { "run" })
            .map_err(|e| format!("asking autogen_docker.py for a block: {e}"))?;
        let line = self.line()?;
        line.strip_prefix("ms ")
            .and_then(|v| v.parse::<f64>().ok())
            .map(|v| Duration::from_secs_f64(v / 1000.0))
            .ok_or_else(|| format!("autogen_docker.py said {line:?}"))
    }

    /// Close its input; its own median of the blocks that were not warm-up.
    fn finish(mut self) -> Result<String, String> {
        drop(self.stdin.take());
        let line = self.line()?;
        let _ = self.child.wait();
        Ok(line)
    }
}

impl Drop for AutoGen {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}

/// Part 3: a docker sandbox call of `print(1)` against one block of AutoGen's docker executor.
/// Skipped (Ok(None)) when AutoGen cannot be installed.
fn against_autogen(api: &Api, warmup: usize, n: usize) -> Result<Option<f64>, String> {
    let python = match autogen_venv() {
        Ok(p) => p,
        Err(e) => {
            println!("docker sandbox call against AutoGen: SKIPPED: {e}");
            return Ok(None);
        }
    };
    autogen_image()?;
    let sandbox = Sandbox::create(api, "docker")?;
    let mut autogen = AutoGen::start(&python)?;
    let body = print1();
    let mut round = 0;
    let (mut e, mut a) = interleaved(
        warmup,
        n,
        || sandbox.execute(&body, "1\n"),
        || {
            round += 1;
            autogen.block(round <= warmup)
        },
    )?;
    let own = autogen.finish()?;
    println!("docker sandbox call of `print(1)` against AutoGen's DockerCommandLineCodeExecutor ({AUTOGEN_PACKAGE}, {AUTOGEN_IMAGE}, container reused), {n} interleaved iterations after {warmup} warm-up:");
    let ratio = compare(
        "POST /v1/sandboxes/{id}/execute (docker)",
        &mut e,
        "AutoGen execute_code_blocks, one block",
        &mut a,
    );
    println!("  (autogen_docker.py's own figure: {own} ms)");
    Ok(Some(ratio))
}

fn main() {
    let n = env_usize("BENCH_SANDBOX_N", 40);
    let docker_n = env_usize("BENCH_SANDBOX_DOCKER_N", 20);
    let warmup = env_usize("BENCH_SANDBOX_WARMUP", 3);
    let mut server = Server::start();
    println!("execbox sandbox bench: server {}", server.base);
    let api = Api {
        rt: tokio::runtime::Runtime::new().expect("tokio runtime"),
        client: reqwest::Client::new(),
        base: server.base.clone(),
    };
    let mut lines = Vec::new();
    let mut line = |what: &str, target: f64, outcome: Outcome| {
        if let Outcome::Ratio(r) = outcome {
            println!("  ratio of medians: {r:.2}   target <= {target}");
        }
        if let Outcome::Failed(why) = &outcome {
            println!("{what}: FAILED: {why}");
        }
        lines.push(Line {
            what: what.to_string(),
            target,
            outcome,
        });
    };
    let measured = |r: Result<f64, String>| match r {
        Ok(r) => Outcome::Ratio(r),
        Err(e) => Outcome::Failed(e),
    };
    let optional = |r: Result<Option<f64>, String>, why: &str| match r {
        Ok(Some(r)) => Outcome::Ratio(r),
        Ok(None) => Outcome::Skipped(why.to_string()),
        Err(e) => Outcome::Failed(e),
    };
    let skipped = |knob: &str| Outcome::Skipped(format!("{knob}=0"));

    let w1 = "1. local sandbox call / one-shot local run";
    let w2l = "2. call in a 40 MB, 3,000-file sandbox / in an empty one (local)";
    let w5 = "5. context call of `pass` / one-shot local run";
    if n > 0 {
        line(w1, 1.1, measured(local_call(&api, warmup, n)));
        server.check_alive();
        line(w2l, 1.1, measured(full_workspace(&api, "local", warmup, n)));
        server.check_alive();
        let ctx = context_call(&api, warmup, n);
        line(
            w5,
            0.3,
            optional(ctx, "the contexts API is not in this build"),
        );
    } else {
        for (w, t) in [(w1, 1.1), (w2l, 1.1), (w5, 0.3)] {
            line(w, t, skipped("BENCH_SANDBOX_N"));
        }
    }

    let w2d = "2. call in a 40 MB, 3,000-file sandbox / in an empty one (docker)";
    let w3 = "3. docker sandbox call / AutoGen DockerCommandLineCodeExecutor block";
    let w4 = "4. docker one-shot run through the API / docker run --rm";
    let docker_skip = if docker_n == 0 {
        Some("BENCH_SANDBOX_DOCKER_N=0".to_string())
    } else {
        docker_unusable(&api.rt, &api.client, &api.base)
    };
    match docker_skip {
        Some(why) => {
            println!("docker: SKIPPED: {why}");
            for (w, t) in [(w2d, 1.1), (w3, 0.5), (w4, 0.15)] {
                line(w, t, Outcome::Skipped(why.clone()));
            }
        }
        None => {
            server.check_alive();
            line(
                w2d,
                1.1,
                measured(full_workspace(&api, "docker", warmup, docker_n)),
            );
            server.check_alive();
            let autogen = against_autogen(&api, warmup, docker_n);
            line(w3, 0.5, optional(autogen, "AutoGen could not be installed"));
            server.check_alive();
            line(w4, 0.15, measured(docker_oneshot(&api, warmup, docker_n)));
        }
    }

    // In the order; the parts ran local first, then docker.
    lines.sort_by_key(|l| l.what.chars().next());
    println!();
    println!("summary (ratio of medians, target, verdict):");
    let mut failed = false;
    for l in &lines {
        let verdict = match &l.outcome {
            Outcome::Ratio(r) if *r <= l.target => format!("{r:5.2}   <= {:<4}   PASS", l.target),
            Outcome::Ratio(r) => format!("{r:5.2}   <= {:<4}   MISS", l.target),
            Outcome::Skipped(why) => format!("  -     <= {:<4}   SKIPPED ({why})", l.target),
            Outcome::Failed(_) => {
                failed = true;
                format!("  -     <= {:<4}   FAILED (above)", l.target)
            }
        };
        println!("  {:<70} {verdict}", l.what);
    }
    drop(api);
    drop(server);
    if failed {
        std::process::exit(1);
    }
}
