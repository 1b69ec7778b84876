//! What the two wire formats share: the reply they read, the errors they find in it, the
//! stream decoder each provides, and the dispatch on the provider.

use reqwest::header::{HeaderMap, HeaderValue};
use serde_json::Value;

use super::sse::SseEvent;
use super::{anthropic, openai, ChatMessage, ModelError, Provider, ResolvedModel, TokenUsage};

/// A reply as read off the wire; missing usage is estimated by the client.
#[derive(Debug, Default)]
pub struct Reply {
    pub text: String,
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
}

impl Reply {
    /// The endpoint's usage; what it left out is estimated (and marked so).
    pub fn usage(&self, input_chars: usize) -> TokenUsage {
        TokenUsage {
            input_tokens: self
                .input_tokens
                .unwrap_or_else(|| estimate_tokens(input_chars)),
            output_tokens: self
                .output_tokens
                .unwrap_or_else(|| estimate_tokens(self.text.chars().count())),
            estimated: self.input_tokens.is_none() || self.output_tokens.is_none(),
        }
    }
}

/// What a wire format found wrong in a reply; the client adds the URL and the attempts.
#[derive(Debug)]
pub enum WireError {
    /// The endpoint reported an error (an `error` object in a 200 body or a stream event).
    Endpoint { message: String, retryable: bool },
    /// The reply is not in the shape the format promises.
    Protocol(String),
}

/// Reads a stream's events one at a time.
pub trait Decoder: Send {
    /// One SSE event; returns the piece of text it carried, if any.
    fn event(&mut self, event: &SseEvent) -> Result<Option<String>, WireError>;
    /// The stream said it is over (`[DONE]`, `message_stop`): stop reading.
    fn done(&self) -> bool;
    /// The reply is complete (a finish or stop reason came) even if the end marker never does.
    fn complete(&self) -> bool;
    fn usage(&self) -> (Option<u64>, Option<u64>);
}

/// Consecutive messages of one role merged, joined with a blank line.
pub fn merge(messages: &[ChatMessage]) -> Vec<ChatMessage> {
    let mut merged: Vec<ChatMessage> = Vec::with_capacity(messages.len());
    for m in messages {
        match merged.last_mut() {
            Some(last) if last.role == m.role => {
                last.content.push_str("\n\n");
                last.content.push_str(&m.content);
            }
            _ => merged.push(m.clone()),
        }
    }
    merged
}

/// A token per 4 characters, rounded up.
pub fn estimate_tokens(chars: usize) -> u64 {
    chars.div_ceil(4) as u64
}

/// The endpoint's error object (`{"error": {...}}`, or Anthropic's `{"type":"error",...}`), if
/// any, as a message and whether trying again may help.
pub fn error_object(v: &Value) -> Option<WireError> {
    let err = v.get("error").filter(|e| !e.is_null())?;
    let message = match err {
        Value::String(s) => s.clone(),
        _ => err
            .get("message")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| err.to_string()),
    };
    let kind = |field: &str| {
        err.get(field)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let retryable = [kind("type"), kind("code")].iter().any(|k| {
        matches!(
            k.as_str(),
            "overloaded_error"
                | "api_error"
                | "rate_limit_error"
                | "server_error"
                | "overloaded"
                | "rate_limit_exceeded"
                | "service_unavailable"
        )
    }) || err
        .get("code")
        .and_then(Value::as_u64)
        .is_some_and(|c| c == 429 || c >= 500);
    let message = if kind("type").is_empty() {
        message
    } else {
        format!("{} ({})", message, kind("type"))
    };
    Some(WireError::Endpoint { message, retryable })
}

/// The message in an error answer's body: its `error.message` (or `detail`, FastAPI's) when
/// JSON, else the text, clipped to 300 characters.
pub fn error_body_message(body: &str) -> String {
    let parsed: Option<Value> = serde_json::from_str(body).ok();
    let message = parsed
        .as_ref()
        .and_then(|v| match error_object(v) {
            Some(WireError::Endpoint { message, .. }) => Some(message),
            _ => v
                .get("detail")
                .or_else(|| v.get("message"))
                .map(|d| match d {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                }),
        })
        .unwrap_or_else(|| body.trim().to_string());
    let message = message.split_whitespace().collect::<Vec<_>>().join(" ");
    if message.is_empty() {
        return "(empty body)".to_string();
    }
    clip(&message, 300)
}

pub fn clip(s: &str, max_chars: usize) -> String {
    match s.char_indices().nth(max_chars) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_string(),
    }
}

/// The provider's wire format, chosen once per client.
pub struct Wire(pub Provider);

impl Wire {
    pub fn endpoint(&self, base_url: &str) -> String {
        match self.0 {
            Provider::Openai => openai::endpoint(base_url),
            Provider::Anthropic => anthropic::endpoint(base_url),
        }
    }

    pub fn headers(&self, endpoint: &str, key: Option<&str>) -> Result<HeaderMap, ModelError> {
        match self.0 {
            Provider::Openai => openai::headers(endpoint, key),
            Provider::Anthropic => anthropic::headers(endpoint, key),
        }
    }

    pub fn body(&self, model: &ResolvedModel, system: &str, messages: &[ChatMessage]) -> Value {
        match self.0 {
            Provider::Openai => openai::body(model, system, messages),
            Provider::Anthropic => anthropic::body(model, system, messages),
        }
    }

    pub fn reply(&self, v: &Value) -> Result<Reply, WireError> {
        match self.0 {
            Provider::Openai => openai::reply(v),
            Provider::Anthropic => anthropic::reply(v),
        }
    }

    pub fn decoder(&self) -> Box<dyn Decoder> {
        match self.0 {
            Provider::Openai => Box::<openai::StreamDecoder>::default(),
            Provider::Anthropic => Box::<anthropic::StreamDecoder>::default(),
        }
    }
}

/// A header value holding the key: marked sensitive so that no Debug output shows it.
pub fn secret_header(value: &str) -> Result<HeaderValue, ModelError> {
    let mut v = HeaderValue::from_str(value).map_err(|_| ModelError::Setup {
        reason: "the api key holds characters an HTTP header cannot carry; check it for spaces or line breaks".into(),
    })?;
    v.set_sensitive(true);
    Ok(v)
}

/// The endpoint's query string kept last: `base?q` + `/path` = `base/path?q`.
pub fn join_path(base_url: &str, path_for: impl Fn(&str) -> String) -> String {
    let (path, query) = match base_url.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (base_url, None),
    };
    let path = path_for(path.trim_end_matches('/'));
    match query {
        Some(q) => format!("{path}?{q}"),
        None => path,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::model::Role;

    #[test]
    fn consecutive_messages_of_one_role_are_merged() {
        let m = |role, content: &str| ChatMessage {
            role,
            content: content.into(),
        };
        let merged = merge(&[
            m(Role::User, "a"),
            m(Role::User, "b"),
            m(Role::Assistant, "c"),
            m(Role::User, "d"),
        ]);
        let got: Vec<(Role, &str)> = merged
            .iter()
            .map(|m| (m.role, m.content.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                (Role::User, "a\n\nb"),
                (Role::Assistant, "c"),
                (Role::User, "d")
            ]
        );
    }

    #[test]
    fn error_bodies_give_their_message_clipped() {
        assert_eq!(
            error_body_message(r#"{"error":{"message":"bad  model\nname"}}"#),
            "bad model name"
        );
        assert_eq!(
            error_body_message(
                r#"{"type":"error","error":{"type":"invalid_request_error","message":"x"}}"#
            ),
            "x (invalid_request_error)"
        );
        assert_eq!(error_body_message(r#"{"detail":"Not Found"}"#), "Not Found");
        assert_eq!(
            error_body_message("<html>Bad gateway</html>"),
            "<html>Bad gateway</html>"
        );
        assert_eq!(error_body_message(""), "(empty body)");
        let long = "é".repeat(400);
        assert_eq!(error_body_message(&long), format!("{}...", "é".repeat(300)));
    }

    #[test]
    fn overloaded_and_server_errors_are_retryable_invalid_requests_are_not() {
        let retryable = |body: &str| match error_object(&serde_json::from_str(body).unwrap()) {
            Some(WireError::Endpoint { retryable, .. }) => retryable,
            other => panic!("{other:?}"),
        };
        assert!(retryable(
            r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#
        ));
        assert!(retryable(
            r#"{"error":{"message":"boom","type":"server_error"}}"#
        ));
        assert!(retryable(r#"{"error":{"message":"busy","code":503}}"#));
        assert!(!retryable(
            r#"{"error":{"message":"no","type":"invalid_request_error"}}"#
        ));
        assert!(error_object(&serde_json::json!({"error": null})).is_none());
    }

    #[test]
    fn a_query_string_stays_last() {
        let add = |p: &str| format!("{p}/chat/completions");
        assert_eq!(
            join_path("https://x/v1/", add),
            "https://x/v1/chat/completions"
        );
        assert_eq!(
            join_path("https://r.openai.azure.com/openai/deployments/d?api-version=2024-10-21", add),
            "https://r.openai.azure.com/openai/deployments/d/chat/completions?api-version=2024-10-21"
        );
    }

    #[test]
    fn missing_usage_is_estimated_from_the_characters() {
        let reply = |i, o| Reply {
            text: "12345".into(),
            input_tokens: i,
            output_tokens: o,
        };
        let usage = |i, o, estimated| TokenUsage {
            input_tokens: i,
            output_tokens: o,
            estimated,
        };
        assert_eq!(reply(None, None).usage(9), usage(3, 2, true));
        assert_eq!(reply(Some(10), None).usage(9), usage(10, 2, true));
        assert_eq!(reply(Some(10), Some(1)).usage(9), usage(10, 1, false));
    }

    #[test]
    fn estimates_round_up() {
        assert_eq!(
            (
                estimate_tokens(0),
                estimate_tokens(1),
                estimate_tokens(8),
                estimate_tokens(9)
            ),
            (0, 1, 2, 3)
        );
    }
}
