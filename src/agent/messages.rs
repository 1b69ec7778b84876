//! What an agent run says, as typed messages: the run's record, its event stream and the
//! conversation the models see are all built from these.

use serde::{Deserialize, Serialize};

use super::model::TokenUsage;
use crate::exec::RunResult;

/// One message of a run; `type` and `source` on every one.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Message {
    /// Its position in the run, from 0.
    pub index: usize,
    /// Who said it: `user`, `coder`, `critic` or `executor`.
    pub source: String,
    #[schema(format = DateTime)]
    pub at: String,
    #[serde(flatten)]
    pub body: Body,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Body {
    /// The task as given (source `user`).
    Task { content: String },
    /// A model's reply, or the executor's report of a round as the model read it (with the
    /// truncation markers the model saw).
    Text {
        content: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        usage: Option<TokenUsage>,
    },
    /// A code block that ran; `result` is the execute endpoint's result object.
    CodeExecution {
        language: String,
        code: String,
        result: Box<RunResult>,
    },
    /// A code block that did not run, and why (unknown language, rejected, an earlier block failed).
    CodeNotRun {
        language: String,
        code: String,
        reason: String,
    },
    /// The model endpoint failed and is being asked again: `attempt` is the one about to be
    /// made (2 for the first retry) of `max_attempts`, after `delay_ms`.
    ModelRetry {
        attempt: u32,
        max_attempts: u32,
        delay_ms: u64,
        reason: String,
    },
    /// A block waits for `POST /v1/agent/runs/{id}/approval`.
    ApprovalRequest { language: String, code: String },
    /// The answer to an approval request (source `user`).
    ApprovalDecision {
        approved: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        comment: Option<String>,
    },
}

pub const USER: &str = "user";
pub const CODER: &str = "coder";
pub const CRITIC: &str = "critic";
pub const EXECUTOR: &str = "executor";
