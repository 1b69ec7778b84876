//! The MCP door: execbox's runs, sandboxes and files as MCP tools (rmcp, the official Rust
//! SDK), over streamable HTTP at `/mcp` on the service's listener (`http.rs`) and over stdio
//! as `execbox mcp` (`stdio.rs`). Tool calls take the run path the HTTP API takes
//! (`service.rs`).

mod answer;
mod args;
pub mod http;
mod server;
mod service;
pub mod stdio;
mod tools;
