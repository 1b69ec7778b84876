//! OpenAI-compatible chat completions: `POST {base_url}/chat/completions`, where base_url holds
//! the `/v1` (the OpenAI SDK's convention). Also Azure OpenAI (`api-key` header, a query string)
//! and the local servers that copy the API (vLLM, Ollama, llama.cpp).

use reqwest::header::{HeaderMap, HeaderName, AUTHORIZATION};
use serde_json::{json, Value};

use super::sse::SseEvent;
use super::wire::{error_object, join_path, secret_header, Decoder, Reply, WireError};
use super::{ChatMessage, ModelError, ResolvedModel};

pub fn endpoint(base_url: &str) -> String {
    join_path(base_url, |path| {
        if path.ends_with("/chat/completions") {
            path.to_string()
        } else {
            format!("{path}/chat/completions")
        }
    })
}

pub fn headers(endpoint: &str, key: Option<&str>) -> Result<HeaderMap, ModelError> {
    let mut headers = HeaderMap::new();
    let Some(key) = key else { return Ok(headers) };
    headers.insert(AUTHORIZATION, secret_header(&format!("Bearer {key}"))?);
    let host = reqwest::Url::parse(endpoint)
        .ok()
        .and_then(|u| u.host_str().map(str::to_ascii_lowercase));
    if host.is_some_and(|h| h.ends_with(".azure.com")) {
        headers.insert(HeaderName::from_static("api-key"), secret_header(key)?);
    }
    Ok(headers)
}

pub fn body(model: &ResolvedModel, system: &str, messages: &[ChatMessage]) -> Value {
    let mut wire_messages = Vec::with_capacity(messages.len() + 1);
    if !system.is_empty() {
        wire_messages.push(json!({"role": "system", "content": system}));
    }
    wire_messages.extend(
        messages
            .iter()
            .map(|m| json!({"role": m.role.as_str(), "content": m.content})),
    );
    let mut body = json!({"model": model.model, "messages": wire_messages, "stream": model.stream});
    if model.stream {
        body["stream_options"] = json!({"include_usage": true});
    }
    if let Some(n) = model.max_tokens {
        body["max_tokens"] = json!(n);
    }
    if let Some(t) = model.temperature {
        body["temperature"] = json!(t);
    }
    body
}

/// A non-stream answer: `choices[0].message.content` and `usage`.
pub fn reply(v: &Value) -> Result<Reply, WireError> {
    if let Some(err) = error_object(v) {
        return Err(err);
    }
    let message = v
        .pointer("/choices/0/message")
        .ok_or_else(|| WireError::Protocol("no choices[0].message in the answer".into()))?;
    let (input_tokens, output_tokens) = usage(v);
    Ok(Reply {
        text: content_text(message.get("content")),
        input_tokens,
        output_tokens,
    })
}

fn usage(v: &Value) -> (Option<u64>, Option<u64>) {
    let field = |name: &str| {
        v.get("usage")
            .and_then(|u| u.get(name))
            .and_then(Value::as_u64)
    };
    (field("prompt_tokens"), field("completion_tokens"))
}

/// A string, null (empty), or the array of text parts that some servers send.
fn content_text(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect(),
        _ => String::new(),
    }
}

#[derive(Default)]
pub struct StreamDecoder {
    done: bool,
    finished: bool,
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
}

impl Decoder for StreamDecoder {
    fn event(&mut self, event: &SseEvent) -> Result<Option<String>, WireError> {
        let data = event.data.trim();
        if data == "[DONE]" {
            self.done = true;
            return Ok(None);
        }
        let chunk: Value = serde_json::from_str(data)
            .map_err(|e| WireError::Protocol(format!("a stream chunk is not JSON: {e}")))?;
        if let Some(err) = error_object(&chunk) {
            return Err(err);
        }
        let (input, output) = usage(&chunk);
        self.input_tokens = input.or(self.input_tokens);
        self.output_tokens = output.or(self.output_tokens);
        let Some(choice) = chunk.pointer("/choices/0") else {
            return Ok(None);
        };
        if choice.get("finish_reason").is_some_and(|r| !r.is_null()) {
            self.finished = true;
        }
        let piece = content_text(choice.pointer("/delta/content"));
        Ok((!piece.is_empty()).then_some(piece))
    }

    fn done(&self) -> bool {
        self.done
    }

    fn complete(&self) -> bool {
        self.done || self.finished
    }

    fn usage(&self) -> (Option<u64>, Option<u64>) {
        (self.input_tokens, self.output_tokens)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_path_is_appended_once_and_before_a_query() {
        assert_eq!(
            endpoint("http://localhost:11434/v1"),
            "http://localhost:11434/v1/chat/completions"
        );
        assert_eq!(
            endpoint("http://h/v1/chat/completions/"),
            "http://h/v1/chat/completions"
        );
        assert_eq!(
            endpoint("https://r.openai.azure.com/openai/v1?api-version=preview"),
            "https://r.openai.azure.com/openai/v1/chat/completions?api-version=preview"
        );
    }

    #[test]
    fn azure_hosts_also_get_an_api_key_header() {
        let h = headers(
            "https://r.openai.azure.com/openai/v1/chat/completions",
            Some("k1"),
        )
        .unwrap();
        assert_eq!(
            (
                h["authorization"].to_str().unwrap(),
                h["api-key"].to_str().unwrap()
            ),
            ("Bearer k1", "k1")
        );
        let h = headers("https://api.openai.com/v1/chat/completions", Some("k1")).unwrap();
        assert!(h.get("api-key").is_none());
        assert!(headers("http://localhost/v1/chat/completions", None)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn null_content_is_an_empty_reply_and_an_error_object_is_an_error() {
        let r =
            reply(&json!({"choices":[{"message":{"role":"assistant","content":null}}]})).unwrap();
        assert_eq!((r.text.as_str(), r.input_tokens), ("", None));
        assert!(matches!(
            reply(&json!({"error":{"message":"x"}})),
            Err(WireError::Endpoint { .. })
        ));
        assert!(matches!(
            reply(&json!({"id":"x"})),
            Err(WireError::Protocol(_))
        ));
    }
}
