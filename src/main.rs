//! The `execbox` command line: parse, build the config, call into the library.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use execbox::config::{Config, FlagOverrides};

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
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// A TOML config file; EXECBOX_* environment variables and flags override it.
        #[arg(long, env = "EXECBOX_CONFIG")]
        config: Option<PathBuf>,
        /// A directory of policy TOML files (default: the embedded policies/).
        #[arg(long)]
        policies: Option<PathBuf>,
    },
    /// Run one program in a sandbox, print its output, exit with its exit code.
    Run {
        #[arg(long, short)]
        language: Option<String>,
        #[arg(long)]
        executor: Option<String>,
        #[arg(long)]
        policy: Option<String>,
        /// A file whose content becomes the program's stdin.
        #[arg(long)]
        stdin: Option<PathBuf>,
        #[arg(long, env = "EXECBOX_CONFIG")]
        config: Option<PathBuf>,
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// The program's source file, or - to read it from stdin.
        file: String,
        /// Arguments passed to the program (after --).
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Internal: the single-threaded sandbox helper, re-executed per run.
    #[command(name = "__sandbox", hide = true)]
    Sandbox { staging: PathBuf },
}

fn main() {
    let cli = Cli::parse();
    // The helper must stay single-threaded: it branches off before any runtime exists.
    if let Command::Sandbox { staging } = &cli.command {
        execbox::exec::local::helper::main(staging);
    }
    // `run` prints the program's output: its own logs stay quiet unless asked for.
    let default_level = if matches!(cli.command, Command::Run { .. }) { "warn" } else { "info" };
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("EXECBOX_LOG").unwrap_or_else(|_| default_level.into()))
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
        Command::Serve { listen, data_dir, config, policies } => {
            let cfg = Config::load(config.as_deref(), FlagOverrides { listen, data_dir, policies }).map_err(anyhow::Error::msg)?;
            let app = execbox::app::Application::build(cfg).await?;
            // The one line scripts and tests wait for.
            println!("execbox listening on http://{}", app.local_addr());
            app.run_until_stopped().await?;
            Ok(0)
        }
        Command::Run { language, executor, policy, stdin, config, data_dir, file, args } => {
            let cfg = Config::load(config.as_deref(), FlagOverrides { data_dir, ..Default::default() }).map_err(anyhow::Error::msg)?;
            execbox::oneshot::run(cfg, execbox::oneshot::RunArgs { language, executor, policy, stdin, file, args }).await
        }
        Command::Sandbox { .. } => unreachable!("handled before the runtime starts"),
    }
}
