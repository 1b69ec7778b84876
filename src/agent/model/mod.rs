//! Model clients for the agent loop: one `ModelClient` that speaks OpenAI-compatible chat
//! completions or the Anthropic Messages API, streamed or not, with retries and timeouts. The
//! key is sent only where `spec.rs` allowed it and never appears in errors, logs or Debug.

mod anthropic;
mod client;
mod error;
pub mod guard;
mod openai;
mod retry;
mod spec;
mod sse;
mod wire;

use std::time::Duration;

pub use client::ModelClient;
pub use error::{ModelError, TimeoutPhase};
pub use spec::{normalize_url, KeyPolicy, ModelSpec, Provider, ResolvedModel};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    User,
    Assistant,
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

#[derive(Debug, Clone)]
pub struct ChatMessage {
    pub role: Role,
    pub content: String,
}

#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize,
    utoipa::ToSchema,
)]
pub struct TokenUsage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// True when the endpoint reported none and these are estimates (a token per 4 characters).
    pub estimated: bool,
}

impl TokenUsage {
    pub fn total(&self) -> u64 {
        self.input_tokens + self.output_tokens
    }

    pub fn add(&mut self, other: TokenUsage) {
        self.input_tokens += other.input_tokens;
        self.output_tokens += other.output_tokens;
        self.estimated = self.estimated || other.estimated;
    }
}

#[derive(Debug, Clone)]
pub struct Completion {
    pub text: String,
    pub usage: TokenUsage,
    /// 1 when the first request answered; 1 + the retries spent otherwise.
    pub attempts: u32,
}

/// What the client reports while it works.
#[derive(Debug, Clone, Copy)]
pub enum ClientEvent<'a> {
    /// A piece of the reply as it arrives (the whole reply in one piece when not streamed).
    /// After a `Retry` the pieces start over: drop what came before it.
    Text(&'a str),
    /// About to wait `delay` and then make attempt number `attempt` (2 ..= `max_attempts`).
    Retry {
        attempt: u32,
        max_attempts: u32,
        delay: Duration,
        reason: &'a str,
    },
}

#[derive(Debug, Clone)]
pub struct ClientSettings {
    /// Non-stream: the whole request. Stream: time to the response headers, and the longest
    /// wait between two chunks; a stream's total is capped at 10 times this.
    pub timeout: Duration,
    /// Attempts = 1 + max_retries.
    pub max_retries: u32,
    /// The first retry's delay (before jitter); doubles with each retry.
    pub backoff: Duration,
    /// No delay is longer, a `Retry-After` included.
    pub max_backoff: Duration,
    /// Connect only to public addresses (`guard.rs`), and not through a proxy: for a service
    /// shared by teams, so a base URL cannot reach its internal network.
    pub public_only: bool,
}

impl Default for ClientSettings {
    fn default() -> ClientSettings {
        ClientSettings {
            timeout: Duration::from_secs(120),
            max_retries: 3,
            backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(20),
            public_only: false,
        }
    }
}
