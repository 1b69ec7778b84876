//! Per-run latency of python `pass` through `POST /v1/execute` against spawning the bare
//! interpreter, interleaved in one process so both see the same (noisy, shared) machine; then
//! throughput at concurrency 2, 8 and 32; then, when a Docker engine answers, the docker
//! executor against `docker run --rm`, interleaved, and the docker executor back to back.
//! Run with `cargo bench --bench latency`.
//!
//! Environment: BENCH_N (latency iterations, default 200), BENCH_THROUGHPUT_N (requests per
//! concurrency level, default 200), BENCH_DOCKER_N (docker iterations, default 40). 0 skips a part.

mod support;

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::{docker_unusable, env_usize, ms, percentile, Server};

const PYTHON: &str = "/usr/bin/python3";
const TARGET_RATIO: f64 = 1.5;
const WARMUP: usize = 10;
/// The docker executor's target: its median at most this fraction of `docker run`'s.
const DOCKER_TARGET_RATIO: f64 = 0.5;
const DOCKER_WARMUP: usize = 3;
const DOCKER_IMAGE: &str = "execbox/python:bookworm";

fn bare_python() -> Duration {
    let t = Instant::now();
    let status = Command::new(PYTHON)
        .args(["-c", "pass"])
        .status()
        .expect("spawning python3");
    assert!(status.success(), "bare python3 failed: {status}");
    t.elapsed()
}

/// One run through the API; returns the HTTP status and the time to the full answer.
async fn api_python(client: &reqwest::Client, url: &str) -> (u16, Duration) {
    api_run(
        client,
        url,
        serde_json::json!({"language": "python", "code": "pass", "policy": "benchmark"}),
    )
    .await
}

async fn api_run(client: &reqwest::Client, url: &str, body: serde_json::Value) -> (u16, Duration) {
    let (status, elapsed, _) = api_run_answer(client, url, body).await;
    (status, elapsed)
}

async fn api_run_answer(
    client: &reqwest::Client,
    url: &str,
    body: serde_json::Value,
) -> (u16, Duration, serde_json::Value) {
    let t = Instant::now();
    let resp = match client.post(url).json(&body).send().await {
        Ok(r) => r,
        Err(e) => panic!("POST /v1/execute failed: {e} (the server may have exited)"),
    };
    let status = resp.status().as_u16();
    let answer: serde_json::Value = resp.json().await.expect("a JSON answer");
    let elapsed = t.elapsed();
    if status == 200 {
        assert_eq!(answer["status"], "ok", "run did not succeed: {answer}");
    }
    (status, elapsed, answer)
}

fn latency(rt: &tokio::runtime::Runtime, client: &reqwest::Client, url: &str, n: usize) {
    let (mut bare, mut api) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for i in 0..WARMUP + n {
        // Alternate which goes first, so neither always runs right after the other.
        let (b, a) = if i % 2 == 0 {
            let b = bare_python();
            (b, rt.block_on(api_python(client, url)))
        } else {
            let a = rt.block_on(api_python(client, url));
            (bare_python(), a)
        };
        assert_eq!(a.0, 200, "POST /v1/execute answered {}", a.0);
        if i >= WARMUP {
            bare.push(b);
            api.push(a.1);
        }
    }
    let (bare_med, bare_p90) = (percentile(&mut bare, 50.0), percentile(&mut bare, 90.0));
    let (api_med, api_p90) = (percentile(&mut api, 50.0), percentile(&mut api, 90.0));
    println!("latency of python `pass`, {n} interleaved iterations after {WARMUP} warm-up:");
    println!(
        "  bare {PYTHON} -c pass   median {:7.2} ms   p90 {:7.2} ms",
        ms(bare_med),
        ms(bare_p90)
    );
    println!(
        "  POST /v1/execute (local)      median {:7.2} ms   p90 {:7.2} ms",
        ms(api_med),
        ms(api_p90)
    );
    let ratio = api_med.as_secs_f64() / bare_med.as_secs_f64();
    let verdict = if ratio <= TARGET_RATIO {
        "met"
    } else {
        "NOT met"
    };
    println!("  ratio of medians (API / bare): {ratio:.2}   target <= {TARGET_RATIO}: {verdict}");
}

fn throughput(
    rt: &tokio::runtime::Runtime,
    client: &reqwest::Client,
    url: &str,
    concurrency: usize,
    total: usize,
) {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let samples: Vec<(u16, Duration)> = rt.block_on(async {
        let workers: Vec<_> = (0..concurrency)
            .map(|_| {
                let (client, url, next) = (client.clone(), url.to_string(), next.clone());
                tokio::spawn(async move {
                    let mut mine = Vec::new();
                    while next.fetch_add(1, Ordering::SeqCst) < total {
                        mine.push(api_python(&client, &url).await);
                    }
                    mine
                })
            })
            .collect();
        let mut all = Vec::with_capacity(total);
        for w in workers {
            all.extend(w.await.expect("client task"));
        }
        all
    });
    let elapsed = started.elapsed();
    let mut ok: Vec<Duration> = samples
        .iter()
        .filter(|(s, _)| *s == 200)
        .map(|(_, d)| *d)
        .collect();
    let rejected = samples.iter().filter(|(s, _)| *s == 429).count();
    let other = samples.len() - ok.len() - rejected;
    let (med, p99) = if ok.is_empty() {
        (Duration::ZERO, Duration::ZERO)
    } else {
        (percentile(&mut ok, 50.0), percentile(&mut ok, 99.0))
    };
    println!(
        "  concurrency {concurrency:>2}: {total} runs in {:6.2} s = {:6.1} runs/s   median {:7.2} ms   p99 {:7.2} ms   429: {rejected}   other non-200: {other}",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64(),
        ms(med),
        ms(p99),
    );
}

fn docker_run_python() -> Duration {
    let t = Instant::now();
    let out = Command::new("docker")
        .args([
            "run",
            "--rm",
            "--network",
            "none",
            DOCKER_IMAGE,
            "python3",
            "-c",
            "pass",
        ])
        .stdin(Stdio::null())
        .output()
        .expect("spawning docker run");
    assert!(
        out.status.success(),
        "docker run failed: {}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    t.elapsed()
}

fn docker(rt: &tokio::runtime::Runtime, client: &reqwest::Client, server: &mut Server, n: usize) {
    let base = server.base.clone();
    let base = base.as_str();
    let server = std::cell::RefCell::new(server);
    if n == 0 {
        println!("docker: skipped (BENCH_DOCKER_N=0)");
        return;
    }
    if let Some(why) = docker_unusable(rt, client, base) {
        println!("docker: SKIPPED: {why}");
        return;
    }
    let url = format!("{base}/v1/execute");
    let body = serde_json::json!({"language": "python", "code": "pass", "executor": "docker"});
    // The answer's own `usage.wall_time_ms` (the program's exec in the container) is kept too,
    // so the output separates the program's time from the service's overhead around it.
    let walls = std::cell::RefCell::new(Vec::new());
    let api = |body: &serde_json::Value| {
        server.borrow_mut().check_alive();
        let (status, d, answer) = rt.block_on(api_run_answer(client, &url, body.clone()));
        assert_eq!(
            status, 200,
            "POST /v1/execute (docker) answered {status}: {answer}"
        );
        walls.borrow_mut().push(Duration::from_millis(
            answer["usage"]["wall_time_ms"].as_u64().unwrap_or(0),
        ));
        d
    };
    let wall_median = |from: usize| {
        let mut w: Vec<Duration> = walls.borrow()[from..].to_vec();
        percentile(&mut w, 50.0)
    };

    let (mut cli, mut pooled) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for i in 0..DOCKER_WARMUP + n {
        let (c, a) = if i % 2 == 0 {
            let c = docker_run_python();
            (c, api(&body))
        } else {
            let a = api(&body);
            (docker_run_python(), a)
        };
        if i >= DOCKER_WARMUP {
            cli.push(c);
            pooled.push(a);
        }
    }
    let interleaved_wall = wall_median(DOCKER_WARMUP);
    let (cli_med, cli_p90) = (percentile(&mut cli, 50.0), percentile(&mut cli, 90.0));
    let (api_med, api_p90) = (percentile(&mut pooled, 50.0), percentile(&mut pooled, 90.0));
    println!("docker: python `pass`, {n} interleaved iterations after {DOCKER_WARMUP} warm-up (policy default):");
    println!("  docker run --rm --network none {DOCKER_IMAGE} python3 -c pass   median {:7.2} ms   p90 {:7.2} ms", ms(cli_med), ms(cli_p90));
    println!("  POST /v1/execute (docker)                                      median {:7.2} ms   p90 {:7.2} ms", ms(api_med), ms(api_p90));
    let ratio = api_med.as_secs_f64() / cli_med.as_secs_f64();
    let verdict = if ratio <= DOCKER_TARGET_RATIO {
        "met"
    } else {
        "NOT met"
    };
    println!(
        "  of which the program's exec (the answer's usage.wall_time_ms), median {:7.2} ms",
        ms(interleaved_wall)
    );
    println!("  ratio of medians (API / docker run): {ratio:.2}   target <= {DOCKER_TARGET_RATIO}: {verdict}");
    println!("  note: each API run here follows a `docker run`, which gives the warm pool time to refill,");
    println!("  so nearly every run takes an already started container; see back to back below");

    // No pause between runs: the pool (docker.pool_per_shape, default 2) refills in the
    // background and may not keep up, so some runs create and start their container.
    let before = walls.borrow().len();
    let mut b2b: Vec<Duration> = (0..n).map(|_| api(&body)).collect();
    let b2b_wall = wall_median(before);
    let (med, p90) = (percentile(&mut b2b, 50.0), percentile(&mut b2b, 90.0));
    let max = *b2b.last().expect("n > 0");
    println!("docker: {n} back-to-back POST /v1/execute (docker), no pause:");
    println!(
        "  median {:7.2} ms   p90 {:7.2} ms   max {:7.2} ms   program's exec median {:7.2} ms",
        ms(med),
        ms(p90),
        ms(max),
        ms(b2b_wall)
    );
    println!(
        "  ratio of medians to docker run above: {:.2}",
        med.as_secs_f64() / cli_med.as_secs_f64()
    );
}

fn main() {
    let n = env_usize("BENCH_N", 200);
    let throughput_n = env_usize("BENCH_THROUGHPUT_N", 200);
    let docker_n = env_usize("BENCH_DOCKER_N", 40);
    let cpus = std::thread::available_parallelism()
        .map(|c| c.get())
        .unwrap_or(1);
    let mut server = Server::start();
    let url = format!("{}/v1/execute", server.base);
    println!("execbox bench: server {} on {cpus} CPUs", server.base);
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    let client = reqwest::Client::new();

    if n > 0 {
        latency(&rt, &client, &url, n);
    }
    if throughput_n > 0 {
        println!(
            "throughput of python `pass`, {throughput_n} requests per level (policy benchmark):"
        );
        for concurrency in [2, 8, 32] {
            throughput(&rt, &client, &url, concurrency, throughput_n);
        }
    }
    docker(&rt, &client, &mut server, docker_n);
    drop(server);
}
