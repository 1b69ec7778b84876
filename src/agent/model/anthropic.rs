//! The Anthropic Messages API: `POST {base_url}/v1/messages`, where base_url has no `/v1` (the
//! Anthropic SDK's convention; one that has it is taken as well).

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{json, Value};

use super::sse::SseEvent;
use super::wire::{error_object, join_path, secret_header, Decoder, Reply, WireError};
use super::{ChatMessage, ModelError, ResolvedModel};

/// Anthropic requires max_tokens; this is used when the caller gives none.
pub const DEFAULT_MAX_TOKENS: u32 = 4096;

pub fn endpoint(base_url: &str) -> String {
    join_path(base_url, |path| {
        if path.ends_with("/v1/messages") {
            path.to_string()
        } else if path.ends_with("/v1") {
            format!("{path}/messages")
        } else {
            format!("{path}/v1/messages")
        }
    })
}

pub fn headers(_endpoint: &str, key: Option<&str>) -> Result<HeaderMap, ModelError> {
    let mut headers = HeaderMap::new();
    headers.insert(
        HeaderName::from_static("anthropic-version"),
        HeaderValue::from_static("2023-06-01"),
    );
    if let Some(key) = key {
        headers.insert(HeaderName::from_static("x-api-key"), secret_header(key)?);
    }
    Ok(headers)
}

pub fn body(model: &ResolvedModel, system: &str, messages: &[ChatMessage]) -> Value {
    let wire_messages: Vec<Value> = messages
        .iter()
        .map(|m| json!({"role": m.role.as_str(), "content": m.content}))
        .collect();
    let mut body = json!({
        "model": model.model,
        "max_tokens": model.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS),
        "messages": wire_messages,
        "stream": model.stream,
    });
    if !system.is_empty() {
        body["system"] = json!(system);
    }
    if let Some(t) = model.temperature {
        body["temperature"] = json!(t);
    }
    body
}

/// A non-stream answer: the text items of `content[]` and `usage`.
pub fn reply(v: &Value) -> Result<Reply, WireError> {
    if let Some(err) = error_object(v) {
        return Err(err);
    }
    let content = v
        .get("content")
        .and_then(Value::as_array)
        .ok_or_else(|| WireError::Protocol("no content[] in the answer".into()))?;
    let text = content
        .iter()
        .filter(|item| item.get("type").and_then(Value::as_str) == Some("text"))
        .filter_map(|item| item.get("text").and_then(Value::as_str))
        .collect();
    let field = |name: &str| v.pointer(&format!("/usage/{name}")).and_then(Value::as_u64);
    Ok(Reply {
        text,
        input_tokens: field("input_tokens"),
        output_tokens: field("output_tokens"),
    })
}

#[derive(Default)]
pub struct StreamDecoder {
    done: bool,
    stopped: bool,
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
}

impl Decoder for StreamDecoder {
    fn event(&mut self, event: &SseEvent) -> Result<Option<String>, WireError> {
        let v: Value = serde_json::from_str(&event.data)
            .map_err(|e| WireError::Protocol(format!("a stream event is not JSON: {e}")))?;
        let kind = v
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or(&event.event);
        match kind {
            "message_start" => {
                let usage = |name: &str| {
                    v.pointer(&format!("/message/usage/{name}"))
                        .and_then(Value::as_u64)
                };
                self.input_tokens = usage("input_tokens").or(self.input_tokens);
                self.output_tokens = usage("output_tokens").or(self.output_tokens);
            }
            "content_block_delta"
                if v.pointer("/delta/type").and_then(Value::as_str) == Some("text_delta") =>
            {
                let text = v
                    .pointer("/delta/text")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                return Ok((!text.is_empty()).then(|| text.to_string()));
            }
            "message_delta" => {
                // Cumulative: the last one holds the reply's whole output.
                if let Some(n) = v.pointer("/usage/output_tokens").and_then(Value::as_u64) {
                    self.output_tokens = Some(n);
                }
                if v.pointer("/delta/stop_reason")
                    .is_some_and(|r| !r.is_null())
                {
                    self.stopped = true;
                }
            }
            "message_stop" => self.done = true,
            "error" => {
                return Err(error_object(&v).unwrap_or(WireError::Endpoint {
                    message: "an error event without a message".into(),
                    retryable: true,
                }))
            }
            _ => {} // ping, content_block_start/stop, thinking and tool deltas
        }
        Ok(None)
    }

    fn done(&self) -> bool {
        self.done
    }

    fn complete(&self) -> bool {
        self.done || self.stopped
    }

    fn usage(&self) -> (Option<u64>, Option<u64>) {
        (self.input_tokens, self.output_tokens)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_path_follows_the_sdk_convention_and_tolerates_v1() {
        assert_eq!(
            endpoint("https://api.anthropic.com"),
            "https://api.anthropic.com/v1/messages"
        );
        assert_eq!(
            endpoint("https://proxy.example/v1/"),
            "https://proxy.example/v1/messages"
        );
        assert_eq!(
            endpoint("https://proxy.example/v1/messages"),
            "https://proxy.example/v1/messages"
        );
    }

    #[test]
    fn only_text_items_make_the_reply() {
        let r = reply(&json!({
            "content": [{"type":"thinking","thinking":"hm"},{"type":"text","text":"a"},{"type":"text","text":"b"}],
            "usage": {"input_tokens": 7, "output_tokens": 3}
        }))
        .unwrap();
        assert_eq!(
            (r.text.as_str(), r.input_tokens, r.output_tokens),
            ("ab", Some(7), Some(3))
        );
    }

    #[test]
    fn an_overloaded_event_mid_stream_is_a_retryable_error() {
        let mut d = StreamDecoder::default();
        let ev = SseEvent {
            event: "error".into(),
            data: r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#
                .into(),
        };
        match d.event(&ev) {
            Err(WireError::Endpoint { message, retryable }) => {
                assert_eq!(
                    (message.as_str(), retryable),
                    ("Overloaded (overloaded_error)", true)
                )
            }
            other => panic!("{other:?}"),
        }
    }
}
