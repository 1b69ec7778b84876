//! The one compile-then-run sequence of every executor path (local one-shot runs, docker
//! one-shot runs, sandbox calls): the compile step of a compiled language, whose failure ends
//! the run as `compile_error` with that step's result, then the program with its arguments.
//! How a step runs, and how a compiled program reaches the run step, is each path's own
//! ([`Steps`]); what a run is made of (its files, its environment) is decided here.

use super::{BoxFuture, CompileResult, ExecError, Job, JobFile, RunResult, Status, StepResult};

/// A compile step's result, and what it hands the run step (None: nothing to run).
pub type Compiled<A> = (StepResult, Option<A>);

/// How one executor path runs the steps of a job.
pub trait Steps: Sync {
    /// What a compile step hands the run step (the compiled program, or nothing where it stays
    /// in the work dir); None when there is nothing to run.
    type Artifact: Send;

    /// Run the compile command `argv`.
    fn compile(
        &self,
        argv: Vec<String>,
    ) -> BoxFuture<'_, Result<Compiled<Self::Artifact>, ExecError>>;

    /// Run the program `argv`, with what its compile step left.
    fn run(
        &self,
        argv: Vec<String>,
        artifact: Option<Self::Artifact>,
    ) -> BoxFuture<'_, Result<StepResult, ExecError>>;
}

/// Run `job` through `steps` on `executor`, whose `version` of the job's runtime is reported.
pub async fn compile_then_run<S: Steps>(
    job: &Job,
    steps: &S,
    executor: &str,
    version: String,
) -> Result<RunResult, ExecError> {
    let rt = &job.runtime;
    let mut compile = None;
    let mut artifact = None;
    if let Some(cmd) = &rt.compile {
        let (r, a) = steps.compile(cmd.clone()).await?;
        compile = Some(CompileResult::of(&r, job.output_encoding));
        match a {
            Some(a) if r.status == Status::Ok => artifact = Some(a),
            _ => {
                let failed = StepResult::compile_failed();
                return Ok(RunResult::from_step(
                    job, executor, version, compile, failed,
                ));
            }
        }
    }
    let mut argv = rt.run.clone();
    argv.extend(job.args.iter().cloned());
    let r = steps.run(argv, artifact).await?;
    Ok(RunResult::from_step(job, executor, version, compile, r))
}

/// The files a job's first step finds in its work dir: the request's, and the source.
pub fn files(job: &Job) -> Vec<JobFile> {
    let mut files = job.files.clone();
    files.push(JobFile {
        path: job.runtime.source_file.clone(),
        content: job.code.as_bytes().to_vec(),
    });
    files
}

/// The program's environment: `base` (the sandbox's fixed one), then the runtime's own, the
/// job's `env` winning.
pub fn env(base: Vec<(String, String)>, job: &Job) -> Vec<(String, String)> {
    job.runtime.env(base, &job.env)
}

/// The compile step's environment: `base`, then the runtime's own (not the request's).
pub fn compile_env(base: Vec<(String, String)>, job: &Job) -> Vec<(String, String)> {
    job.runtime.env(base, &[])
}

impl StepResult {
    /// The run step of a run whose compile step failed: it never ran.
    pub fn compile_failed() -> StepResult {
        StepResult {
            status: Status::CompileError,
            exit_code: None,
            signal: None,
            stdout: Vec::new(),
            stderr: Vec::new(),
            stdout_truncated: false,
            stderr_truncated: false,
            usage: Default::default(),
        }
    }
}
