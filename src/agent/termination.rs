//! Termination conditions as data, composable with `any` (or) and `all` (and), checked after
//! every round (a model reply and the runs of its code blocks, or a critic's reply).
//!
//! ```json
//! {"any": [{"text_mention": "TERMINATE"}, {"max_turns": 10},
//!          {"all": [{"execution_succeeded": true}, {"max_executions": 3}]}]}
//! ```

use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Termination {
    /// The latest model reply contains this text.
    TextMention(String),
    /// This many model replies.
    MaxTurns(u32),
    /// This many code blocks run.
    MaxExecutions(u32),
    /// Input plus output tokens of every model call reach this.
    TokenBudget(u64),
    /// The run has lasted this long (also enforced while a model call or a run is in flight).
    WallTimeSeconds(u64),
    /// The latest round ran at least one block, and every block it ran exited 0 (`true`).
    ExecutionSucceeded(bool),
    /// Fires when any of these fires.
    #[schema(no_recursion)]
    Any(Vec<Termination>),
    /// Fires when all of these hold at the same check.
    #[schema(no_recursion)]
    All(Vec<Termination>),
}

/// What the conditions are checked against.
#[derive(Debug, Clone, Default)]
pub struct Progress<'a> {
    pub turns: u32,
    pub executions: u32,
    pub tokens: u64,
    pub elapsed: Duration,
    /// The reply of this round.
    pub last_reply: Option<&'a str>,
    /// Whether every block of this round exited 0; `None` when the round ran none.
    pub last_execution_ok: Option<bool>,
}

impl Termination {
    /// The stop reason when the condition fires: e.g. `text_mention: TERMINATE`, `max_turns: 10`.
    pub fn check(&self, p: &Progress) -> Option<String> {
        match self {
            Termination::TextMention(t) => p
                .last_reply
                .filter(|r| r.contains(t.as_str()))
                .map(|_| format!("text_mention: {t}")),
            Termination::MaxTurns(n) => (p.turns >= *n).then(|| format!("max_turns: {n}")),
            Termination::MaxExecutions(n) => {
                (p.executions >= *n).then(|| format!("max_executions: {n}"))
            }
            Termination::TokenBudget(n) => {
                (p.tokens >= *n).then(|| format!("token_budget: {} of {n} tokens used", p.tokens))
            }
            Termination::WallTimeSeconds(s) => {
                (p.elapsed >= Duration::from_secs(*s)).then(|| format!("wall_time: {s} s"))
            }
            Termination::ExecutionSucceeded(want) => {
                (p.last_execution_ok == Some(*want)).then(|| format!("execution_succeeded: {want}"))
            }
            Termination::Any(cs) => cs.iter().find_map(|c| c.check(p)),
            Termination::All(cs) => {
                let reasons: Option<Vec<String>> = cs.iter().map(|c| c.check(p)).collect();
                reasons.filter(|r| !r.is_empty()).map(|r| r.join(" and "))
            }
        }
    }

    /// The shortest wall time anywhere in the condition that can end the run by itself
    /// (not inside an `all`), enforced as a deadline around model calls and runs.
    pub fn deadline(&self) -> Option<Duration> {
        match self {
            Termination::WallTimeSeconds(s) => Some(Duration::from_secs(*s)),
            Termination::Any(cs) => cs.iter().filter_map(Termination::deadline).min(),
            Termination::All(cs) if cs.len() == 1 => cs[0].deadline(),
            _ => None,
        }
    }

    /// A condition that can never fire would run the loop forever: refuse it.
    pub fn validate(&self) -> Result<(), String> {
        match self {
            Termination::TextMention(t) if t.is_empty() => Err("text_mention needs a non-empty text".into()),
            Termination::MaxTurns(0) | Termination::MaxExecutions(0) | Termination::TokenBudget(0) | Termination::WallTimeSeconds(0) => {
                Err("a max_turns, max_executions, token_budget or wall_time_seconds of 0 would stop before the first turn; use at least 1".into())
            }
            Termination::Any(cs) | Termination::All(cs) if cs.is_empty() => Err("any and all need at least one condition".into()),
            Termination::Any(cs) | Termination::All(cs) => cs.iter().try_for_each(Termination::validate),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Termination {
        serde_json::from_str(s).unwrap()
    }

    #[test]
    fn each_condition_fires_with_its_reason() {
        let p = Progress {
            turns: 3,
            executions: 2,
            tokens: 500,
            elapsed: Duration::from_secs(7),
            last_reply: Some("done. TERMINATE"),
            last_execution_ok: Some(true),
        };
        assert_eq!(
            parse(r#"{"text_mention":"TERMINATE"}"#)
                .check(&p)
                .as_deref(),
            Some("text_mention: TERMINATE")
        );
        assert_eq!(parse(r#"{"text_mention":"DONE!"}"#).check(&p), None);
        assert_eq!(
            parse(r#"{"max_turns":3}"#).check(&p).as_deref(),
            Some("max_turns: 3")
        );
        assert_eq!(parse(r#"{"max_turns":4}"#).check(&p), None);
        assert_eq!(
            parse(r#"{"max_executions":2}"#).check(&p).as_deref(),
            Some("max_executions: 2")
        );
        assert_eq!(
            parse(r#"{"token_budget":400}"#).check(&p).as_deref(),
            Some("token_budget: 500 of 400 tokens used")
        );
        assert_eq!(
            parse(r#"{"wall_time_seconds":7}"#).check(&p).as_deref(),
            Some("wall_time: 7 s")
        );
        assert_eq!(
            parse(r#"{"execution_succeeded":true}"#)
                .check(&p)
                .as_deref(),
            Some("execution_succeeded: true")
        );
        let none_ran = Progress {
            last_execution_ok: None,
            ..p.clone()
        };
        assert_eq!(
            parse(r#"{"execution_succeeded":true}"#).check(&none_ran),
            None
        );
    }

    #[test]
    fn any_and_all_compose() {
        let p = Progress {
            turns: 1,
            last_execution_ok: Some(true),
            ..Default::default()
        };
        let all = parse(r#"{"all":[{"execution_succeeded":true},{"max_turns":1}]}"#);
        assert_eq!(
            all.check(&p).as_deref(),
            Some("execution_succeeded: true and max_turns: 1")
        );
        assert_eq!(
            all.check(&Progress {
                last_execution_ok: Some(false),
                ..p.clone()
            }),
            None
        );
        let any = parse(
            r#"{"any":[{"max_turns":5},{"all":[{"execution_succeeded":true},{"max_turns":1}]}]}"#,
        );
        assert_eq!(
            any.check(&p).as_deref(),
            Some("execution_succeeded: true and max_turns: 1")
        );
        assert_eq!(any.deadline(), None);
        assert_eq!(
            parse(r#"{"any":[{"wall_time_seconds":9},{"wall_time_seconds":4}]}"#).deadline(),
            Some(Duration::from_secs(4))
        );
    }

    #[test]
    fn conditions_that_cannot_fire_usefully_are_refused() {
        assert!(parse(r#"{"max_turns":0}"#).validate().is_err());
        assert!(parse(r#"{"any":[]}"#).validate().is_err());
        assert!(parse(r#"{"any":[{"text_mention":""}]}"#)
            .validate()
            .is_err());
        assert!(parse(r#"{"any":[{"text_mention":"X"},{"max_turns":2}]}"#)
            .validate()
            .is_ok());
        assert!(serde_json::from_str::<Termination>(r#"{"max_turn":2}"#).is_err());
    }
}
