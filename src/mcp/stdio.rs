//! `execbox mcp`: the MCP server on stdin and stdout, for clients that start their tools as a
//! subprocess. A service of its own: the state `serve` builds, over its own data dir, without a
//! listener; every run is the built-in team's. Logs go to stderr: stdout carries the protocol
//! only.

use anyhow::Context;

use super::server::Server;
use crate::app::{build_state, shutdown_signal, stop_state};
use crate::config::Config;
use crate::store::DEFAULT_TEAM;

/// Serve until the client closes stdin (or SIGTERM/SIGINT), then stop what the state holds.
/// Runs go to `executor` unless a call names another.
pub async fn run(cfg: Config, executor: &str) -> anyhow::Result<()> {
    let (state, _lock) = build_state(&cfg, executor == "docker").await?;
    let team = state.store.ensure_team(DEFAULT_TEAM)?;
    let server = Server::new(state.clone(), Some(team), executor);
    let served = async {
        let running = rmcp::serve_server(server, rmcp::transport::io::stdio())
            .await
            .context("the MCP handshake on stdio failed")?;
        running.waiting().await.context("serving MCP on stdio")?;
        anyhow::Ok(())
    };
    let outcome = tokio::select! {
        outcome = served => outcome,
        _ = shutdown_signal() => Ok(()),
    };
    stop_state(&state).await;
    outcome
}
