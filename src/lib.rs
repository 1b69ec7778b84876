//! execbox: a sandboxed code-execution service. See ARCHITECTURE.md for the map.

pub mod admission;
pub mod agent;
pub mod agent_cli;
pub mod agent_eval;
pub mod api;
pub mod app;
pub mod compat;
pub mod config;
pub mod console;
pub mod eval;
pub mod exec;
pub mod mcp;
pub mod oneshot;
pub mod policy;
pub mod runs;
pub mod sandbox;
pub mod service;
pub mod store;
pub mod supervisor;
pub mod wire;

#[cfg(test)]
mod layering;
