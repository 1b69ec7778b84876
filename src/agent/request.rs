//! The wire form of `POST /v1/agent/runs` and its validation into a loop's configuration.

use serde::Deserialize;

use super::blocks;
use super::conversation::LoopConfig;
use super::model::ModelSpec;
use super::prompt;
use super::termination::Termination;
use crate::config::AgentSettings;
use crate::exec::runtime::RuntimeTable;

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentRequest {
    /// What the coder is asked to do.
    pub task: String,
    pub model: ModelSpec,
    /// The executor of the run's fresh sandbox (`local` by default); not with `sandbox_id`.
    #[serde(default)]
    pub executor: Option<String>,
    /// The policy of the run's fresh sandbox (`default` by default); not with `sandbox_id`.
    #[serde(default)]
    pub policy: Option<String>,
    /// Run the code in this existing sandbox of the team instead of a fresh one (kept afterwards).
    #[serde(default)]
    pub sandbox_id: Option<String>,
    /// Coder replies before the run stops (default `agent.default_max_turns`); always applies.
    #[serde(default, deserialize_with = "crate::wire::whole::option")]
    pub max_turns: Option<u32>,
    /// The coder's system prompt, replacing the default.
    #[serde(default)]
    pub system_message: Option<String>,
    /// A critic that reviews each round and may end the run with the termination text.
    #[serde(default)]
    pub critic: Option<CriticSpec>,
    /// When the run ends (default `{"text_mention": "TERMINATE"}`); `max_turns` and the
    /// service's wall-time cap are added to it with "or".
    #[serde(default)]
    pub termination: Option<Termination>,
    /// The language of untagged blocks without a `#!` line (default `python`).
    #[serde(default)]
    pub default_language: Option<String>,
    /// Characters of each output stream the model reads per block (default 4000).
    #[serde(default, deserialize_with = "crate::wire::whole::option")]
    pub max_output_chars: Option<usize>,
    /// Hold every block until `POST /v1/agent/runs/{id}/approval` approves or rejects it.
    #[serde(default)]
    pub require_approval: bool,
    /// Run the Python blocks in one stateful context of the sandbox (as AutoGen's Jupyter
    /// executor does): variables, imports and definitions carry from block to block, and a
    /// trailing expression's value and an exception's traceback are part of the output.
    #[serde(default)]
    pub stateful: bool,
}

#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CriticSpec {
    /// The critic's system prompt, replacing the default.
    #[serde(default)]
    pub system_message: Option<String>,
}

pub const DEFAULT_MAX_OUTPUT_CHARS: usize = 4000;

impl AgentRequest {
    /// The loop this request asks for, within the service's limits; its blocks' languages are
    /// those of `runtimes`.
    pub fn loop_config(
        &self,
        limits: &AgentSettings,
        runtimes: &RuntimeTable,
    ) -> Result<LoopConfig, String> {
        if self.task.trim().is_empty() {
            return Err("task is empty: say what the coder should do".into());
        }
        let max_turns = self.max_turns.unwrap_or(limits.default_max_turns);
        if max_turns == 0 || max_turns > limits.max_turns {
            return Err(format!(
                "max_turns must be 1..={} (agent.max_turns)",
                limits.max_turns
            ));
        }
        let tags = blocks::Tags::of(runtimes);
        let default_language = match &self.default_language {
            None => "python".to_string(),
            Some(l) => tags.language(l).map(str::to_string).ok_or_else(|| {
                format!(
                    "default_language \"{l}\" is not one of {}",
                    tags.languages().join(", ")
                )
            })?,
        };
        let max_output_chars = self.max_output_chars.unwrap_or(DEFAULT_MAX_OUTPUT_CHARS);
        if !(100..=1_000_000).contains(&max_output_chars) {
            return Err("max_output_chars must be 100..=1000000".into());
        }
        let asked = self
            .termination
            .clone()
            .unwrap_or_else(|| Termination::TextMention("TERMINATE".into()));
        asked.validate().map_err(|e| format!("termination: {e}"))?;
        let termination = Termination::Any(vec![
            asked,
            Termination::MaxTurns(max_turns),
            Termination::WallTimeSeconds(limits.max_wall_time_seconds),
        ]);
        Ok(LoopConfig {
            task: self.task.clone(),
            coder_system: self
                .system_message
                .clone()
                .unwrap_or_else(|| prompt::CODER_SYSTEM.into()),
            critic_system: self.critic.as_ref().map(|c| {
                c.system_message
                    .clone()
                    .unwrap_or_else(|| prompt::CRITIC_SYSTEM.into())
            }),
            termination,
            default_language,
            tags,
            max_output_chars,
            require_approval: self.require_approval,
        })
    }
}
