//! `execbox run`: one sandboxed run without a server, for people and scripts.

use std::io::{Read, Write};
use std::path::Path;

use anyhow::{bail, Context};

use crate::app::{build_docker, load_policies, load_runtimes, local_config, lock_instance};
use crate::config::Config;
use crate::exec::local::LocalExecutor;
use crate::exec::request::{Encoding, ExecuteRequest};
use crate::exec::runtime::RuntimeTable;
use crate::exec::{ExecError, Executor, Status};

pub struct RunArgs {
    pub language: Option<String>,
    pub executor: Option<String>,
    pub policy: Option<String>,
    pub stdin: Option<std::path::PathBuf>,
    pub file: String,
    pub args: Vec<String>,
}

/// Guess the language from a file extension: a runtime whose source file has it, else a name
/// of the table, else a few other common ones.
fn language_of(runtimes: &RuntimeTable, file: &str) -> Option<String> {
    let ext = Path::new(file).extension()?.to_str()?;
    let by_source = runtimes
        .runtimes
        .iter()
        .find(|r| Path::new(&r.source_file).extension() == Some(ext.as_ref()));
    let found = by_source.or_else(|| runtimes.find(ext));
    if let Some(r) = found {
        return Some(r.language.clone());
    }
    Some(
        match ext {
            "mjs" | "cjs" => "javascript",
            "cc" | "cxx" => "cpp",
            _ => return None,
        }
        .to_string(),
    )
}

/// Run and return the process exit code to use.
pub async fn run(cfg: Config, a: RunArgs) -> anyhow::Result<i32> {
    let code = if a.file == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("reading the program from stdin")?;
        s
    } else {
        std::fs::read_to_string(&a.file).with_context(|| format!("reading {}", a.file))?
    };
    let runtimes = load_runtimes(&cfg)?;
    let language = match a
        .language
        .clone()
        .or_else(|| language_of(&runtimes, &a.file))
    {
        // The API takes names exactly as listed; the command line is forgiving.
        Some(l) => l.trim().to_ascii_lowercase(),
        None => bail!("cannot tell the language of {}; pass --language", a.file),
    };
    let stdin = match &a.stdin {
        Some(p) => {
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?
        }
        None => String::new(),
    };
    let req = ExecuteRequest {
        language,
        code,
        files: vec![],
        stdin,
        args: a.args,
        env: Default::default(),
        executor: a.executor,
        policy: a.policy,
        limits: Default::default(),
        // The program's bytes reach the terminal exactly.
        output_encoding: Encoding::Base64,
    };
    let policies = load_policies(&cfg)?;
    let id = uuid::Uuid::new_v4().to_string();
    let (job, executor) = req
        .into_job(id, &policies, &runtimes)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let instance = format!("cli-{}", std::process::id());
    let lock = lock_instance(&cfg.data_dir, &instance)?;
    // Its own allocator, but the same host-wide uid locks as a running service.
    let uids = crate::app::sandbox_uids(&cfg)?;
    let result = match executor.as_str() {
        "docker" => {
            let docker = build_docker(
                &cfg,
                &instance,
                Some(&job.runtime.language),
                uids,
                &runtimes,
            )
            .await
            .map_err(anyhow::Error::msg)?;
            let r = docker.run(&job).await;
            docker.shutdown().await;
            r
        }
        _ => {
            // One run: nothing to prepare ahead of.
            let local = LocalExecutor::new(crate::exec::local::LocalConfig {
                warm: 0,
                ..local_config(&cfg, &instance, uids, &runtimes)?
            })?;
            let probe = local.probe(Some(&job.runtime.language)).await;
            let r = match probe.into_iter().next() {
                Some((lang, Err(e))) => Err(ExecError::Unavailable(
                    "local".into(),
                    format!("{lang} does not work in the sandbox here: {e}"),
                )),
                _ => local.run(&job).await,
            };
            local.shutdown();
            r
        }
    };
    // This instance name is ours alone: its lock file has no one left to protect.
    let _ = std::fs::remove_file(cfg.data_dir.join(format!("{instance}.lock")));
    drop(lock);
    let r = result?;
    use base64::Engine;
    let bytes = |b64: &str| {
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .context("decoding the run's output")
    };
    if let Some(c) = &r.compile {
        if r.status == Status::CompileError {
            std::io::stderr().write_all(&bytes(&c.stdout)?)?;
            std::io::stderr().write_all(&bytes(&c.stderr)?)?;
            eprintln!("execbox: compile step failed ({})", c.status.as_str());
            return Ok(1);
        }
    }
    std::io::stdout().write_all(&bytes(&r.stdout)?)?;
    std::io::stderr().write_all(&bytes(&r.stderr)?)?;
    let l = &job.limits;
    Ok(match r.status {
        Status::Ok | Status::Error => r.exit_code.unwrap_or(1),
        Status::Timeout => {
            eprintln!("execbox: timed out after {} ms (wall-time limit); the whole process tree was killed", l.wall_time_ms);
            124
        }
        Status::CpuLimit => {
            eprintln!(
                "execbox: CPU time limit of {} ms reached; killed",
                l.cpu_time_ms
            );
            152
        }
        Status::MemoryLimit => {
            eprintln!(
                "execbox: memory limit of {} bytes reached; killed",
                l.memory_bytes
            );
            137
        }
        Status::Killed => {
            eprintln!(
                "execbox: killed by {}",
                r.signal.as_deref().unwrap_or("a signal")
            );
            128 + r
                .signal
                .as_deref()
                .and_then(|s| s.parse::<nix::sys::signal::Signal>().ok())
                .map(|s| s as i32)
                .unwrap_or(9)
        }
        Status::CompileError => 1,
    })
}
