//! A scripted model endpoint for tests: a real HTTP server on a loopback port that speaks both
//! OpenAI chat completions (`POST /v1/chat/completions`) and the Anthropic Messages API
//! (`POST /v1/messages`), answering each request with the next `Reply` of a script (or of a
//! function of the request), and recording every request it received.
//!
//! ```ignore
//! let model = ScriptedModel::start(vec![Reply::text("print(1)"), Reply::Status(503, "{}".into())]);
//! // point a client at model.base_url_openai (".../v1") or model.base_url_anthropic
//! assert_eq!(model.requests()[0].last_user_text(), "...");
//! ```
//!
//! The answer's format follows the request: OpenAI or Anthropic by the path, Server-Sent Events
//! when the body has `"stream": true` (the text cut into pieces of 3 characters), JSON otherwise.
//! The server runs on a thread and runtime of its own, so one instance may outlive the runtime
//! of the `#[tokio::test]` that started it (e.g. one kept in a `OnceLock`); it stops on drop.

#![allow(dead_code)] // a toolkit: each test uses a part of it

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use serde_json::{json, Value};

/// How the server answers one request.
#[derive(Debug, Clone)]
pub enum Reply {
    /// The reply, with usage: input = ceil(chars/4) of the request's `all_text()`, output =
    /// ceil(chars/4) of the reply.
    Text(String),
    /// The reply with this usage: (text, input_tokens, output_tokens).
    TextWithUsage(String, u64, u64),
    /// The reply with no usage anywhere, as some local servers answer.
    TextNoUsage(String),
    /// An error status with this body, sent as JSON (give e.g. `{"error":{"message":"..."}}`).
    Status(u16, String),
    /// An error status with a `Retry-After` header of this many seconds.
    StatusRetryAfter(u16, u64),
    /// Sleep this long, then answer 500.
    Hang(Duration),
    /// Streamed: send the text, go silent this long, then finish the stream. Not streamed:
    /// sleep this long, then answer the text.
    Stall(String, Duration),
    /// (text, error type) Streamed: send the text, then an error event of this type (e.g.
    /// `overloaded_error`, `server_error`, `invalid_request_error`) and close. Not streamed: a
    /// 200 whose body is the error object.
    ErrorEvent(String, String),
}

impl Reply {
    pub fn text(text: impl Into<String>) -> Reply {
        Reply::Text(text.into())
    }
}

/// One request as the server received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// `/v1/chat/completions` or `/v1/messages`.
    pub path: String,
    /// The query string, "" when none.
    pub query: String,
    /// Names lowercased.
    pub headers: Vec<(String, String)>,
    /// The JSON body (a JSON string holding the raw text when it was not JSON).
    pub body: Value,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn is_anthropic(&self) -> bool {
        self.path.ends_with("/messages")
    }

    pub fn streamed(&self) -> bool {
        self.body["stream"] == json!(true)
    }

    pub fn model(&self) -> &str {
        self.body["model"].as_str().unwrap_or("")
    }

    /// The `messages` array ("" for a missing one).
    pub fn messages(&self) -> Vec<(String, String)> {
        let Some(messages) = self.body["messages"].as_array() else {
            return vec![];
        };
        messages
            .iter()
            .map(|m| {
                (
                    m["role"].as_str().unwrap_or("").to_string(),
                    content_text(&m["content"]),
                )
            })
            .collect()
    }

    /// The system prompt: OpenAI's first `system` message or Anthropic's `system` field.
    pub fn system(&self) -> String {
        if self.is_anthropic() {
            return content_text(&self.body["system"]);
        }
        self.messages()
            .into_iter()
            .find(|(role, _)| role == "system")
            .map(|(_, c)| c)
            .unwrap_or_default()
    }

    /// The content of the last `user` message ("" when none).
    pub fn last_user_text(&self) -> String {
        self.messages()
            .into_iter()
            .rev()
            .find(|(role, _)| role == "user")
            .map(|(_, c)| c)
            .unwrap_or_default()
    }

    /// The system prompt (Anthropic's field) and every message's content, joined with '\n'.
    pub fn all_text(&self) -> String {
        let mut parts = Vec::new();
        if self.is_anthropic() && !self.body["system"].is_null() {
            parts.push(content_text(&self.body["system"]));
        }
        parts.extend(self.messages().into_iter().map(|(_, c)| c));
        parts.join("\n")
    }
}

/// A string, or an array of content blocks whose texts are concatenated.
fn content_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(blocks) => blocks.iter().filter_map(|b| b["text"].as_str()).collect(),
        _ => String::new(),
    }
}

type Script = dyn Fn(&Recorded) -> Reply + Send + Sync;

struct Shared {
    script: Box<Script>,
    requests: Mutex<Vec<Recorded>>,
}

pub struct ScriptedModel {
    /// `http://127.0.0.1:PORT/v1`, the OpenAI SDK's convention.
    pub base_url_openai: String,
    /// `http://127.0.0.1:PORT`, the Anthropic SDK's convention.
    pub base_url_anthropic: String,
    pub port: u16,
    shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl ScriptedModel {
    /// Answers in order; once the script is spent, 500 `{"error":{"message":"script exhausted"}}`.
    pub fn start(replies: Vec<Reply>) -> ScriptedModel {
        let script = Mutex::new(VecDeque::from(replies));
        ScriptedModel::start_with(move |_| {
            script.lock().unwrap().pop_front().unwrap_or_else(|| {
                Reply::Status(500, r#"{"error":{"message":"script exhausted"}}"#.into())
            })
        })
    }

    /// Answers each request with `f(request)`; `f` sees the request already recorded.
    pub fn start_with(f: impl Fn(&Recorded) -> Reply + Send + Sync + 'static) -> ScriptedModel {
        let shared = Arc::new(Shared {
            script: Box::new(f),
            requests: Mutex::new(Vec::new()),
        });
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binding a loopback port");
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let app = Router::new()
            .route("/v1/chat/completions", post(answer))
            .route("/v1/messages", post(answer))
            .with_state(shared.clone());
        std::thread::Builder::new()
            .name(format!("scripted-model-{port}"))
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                    tokio::select! {
                        served = axum::serve(listener, app) => served.unwrap(),
                        _ = stopped => {}
                    }
                });
                // Dropping the runtime cancels whatever is still answering (a Hang, a Stall).
            })
            .unwrap();
        ScriptedModel {
            base_url_openai: format!("http://127.0.0.1:{port}/v1"),
            base_url_anthropic: format!("http://127.0.0.1:{port}"),
            port,
            shared,
            stop: Some(stop),
        }
    }

    /// Every request received, in order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.requests.lock().unwrap().clone()
    }
}

impl Drop for ScriptedModel {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

async fn answer(
    State(shared): State<Arc<Shared>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let recorded = Recorded {
        path: uri.path().to_string(),
        query: uri.query().unwrap_or("").to_string(),
        headers: headers
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_ascii_lowercase(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: serde_json::from_slice(&body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned())),
    };
    shared.requests.lock().unwrap().push(recorded.clone());
    let reply = (shared.script)(&recorded);
    respond(&recorded, reply).await
}

async fn respond(req: &Recorded, reply: Reply) -> Response {
    let estimate = |s: &str| s.chars().count().div_ceil(4) as u64;
    let (text, usage) = match reply {
        Reply::Text(text) => {
            let usage = (estimate(&req.all_text()), estimate(&text));
            (text, Some(usage))
        }
        Reply::TextWithUsage(text, input, output) => (text, Some((input, output))),
        Reply::TextNoUsage(text) => (text, None),
        Reply::Status(status, body) => return json_response(status, body, None),
        Reply::StatusRetryAfter(status, secs) => {
            let body = json!({"error": {"message": format!("scripted HTTP {status}, retry after {secs} s")}});
            return json_response(status, body.to_string(), Some(secs));
        }
        Reply::Hang(wait) => {
            tokio::time::sleep(wait).await;
            return json_response(
                500,
                json!({"error": {"message": "scripted hang"}}).to_string(),
                None,
            );
        }
        Reply::Stall(text, wait) => {
            if req.streamed() {
                return sse_response(stream_events(req, &text, None, Tail::StallThenFinish(wait)));
            }
            tokio::time::sleep(wait).await;
            (text, None)
        }
        Reply::ErrorEvent(text, kind) => {
            if req.streamed() {
                return sse_response(stream_events(req, &text, None, Tail::Error(kind)));
            }
            let error = json!({"type": kind, "message": format!("scripted {kind}")});
            let body = if req.is_anthropic() {
                json!({"type": "error", "error": error})
            } else {
                json!({"error": error})
            };
            return json_response(200, body.to_string(), None);
        }
    };
    if req.streamed() {
        return sse_response(stream_events(req, &text, usage, Tail::Finish));
    }
    let body = if req.is_anthropic() {
        anthropic_message(req, &text, usage)
    } else {
        openai_completion(req, &text, usage)
    };
    json_response(200, body.to_string(), None)
}

fn json_response(status: u16, body: String, retry_after: Option<u64>) -> Response {
    let mut response = Response::builder()
        .status(StatusCode::from_u16(status).unwrap())
        .header("content-type", "application/json");
    if let Some(secs) = retry_after {
        response = response.header("retry-after", secs.to_string());
    }
    response.body(Body::from(body)).unwrap()
}

fn openai_completion(req: &Recorded, text: &str, usage: Option<(u64, u64)>) -> Value {
    let mut body = json!({
        "id": "chatcmpl-scripted",
        "object": "chat.completion",
        "created": 0,
        "model": req.model(),
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
    });
    if let Some((i, o)) = usage {
        body["usage"] = json!({"prompt_tokens": i, "completion_tokens": o, "total_tokens": i + o});
    }
    body
}

fn anthropic_message(req: &Recorded, text: &str, usage: Option<(u64, u64)>) -> Value {
    let mut body = json!({
        "id": "msg_scripted",
        "type": "message",
        "role": "assistant",
        "model": req.model(),
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn",
        "stop_sequence": null,
    });
    if let Some((i, o)) = usage {
        body["usage"] = json!({"input_tokens": i, "output_tokens": o});
    }
    body
}

/// How a stream ends after its text.
enum Tail {
    Finish,
    StallThenFinish(Duration),
    Error(String),
}

/// One SSE frame to send, after an optional pause.
struct Frame {
    pause: Option<Duration>,
    data: String,
}

fn frame(event: Option<&str>, data: Value) -> Frame {
    let data = match event {
        Some(event) => format!("event: {event}\ndata: {data}\n\n"),
        None => format!("data: {data}\n\n"),
    };
    Frame { pause: None, data }
}

fn pieces(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    chars.chunks(3).map(|c| c.iter().collect()).collect()
}

fn stream_events(req: &Recorded, text: &str, usage: Option<(u64, u64)>, tail: Tail) -> Vec<Frame> {
    let mut frames = Vec::new();
    let model = req.model();
    if req.is_anthropic() {
        let start_usage = match usage {
            Some((i, _)) => json!({"input_tokens": i, "output_tokens": 1}),
            None => json!({}),
        };
        frames.push(frame(
            Some("message_start"),
            json!({"type": "message_start", "message": {
            "id": "msg_scripted", "type": "message", "role": "assistant", "model": model,
            "content": [], "stop_reason": null, "usage": start_usage}}),
        ));
        frames.push(frame(
            Some("content_block_start"),
            json!({"type": "content_block_start", "index": 0,
            "content_block": {"type": "text", "text": ""}}),
        ));
        frames.push(frame(Some("ping"), json!({"type": "ping"})));
        for piece in pieces(text) {
            frames.push(frame(
                Some("content_block_delta"),
                json!({"type": "content_block_delta", "index": 0,
                "delta": {"type": "text_delta", "text": piece}}),
            ));
        }
    } else {
        let chunk = |delta: Value, finish: Value| {
            json!({"id": "chatcmpl-scripted", "object": "chat.completion.chunk",
            "created": 0, "model": model, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
        };
        frames.push(frame(
            None,
            chunk(json!({"role": "assistant", "content": ""}), Value::Null),
        ));
        for piece in pieces(text) {
            frames.push(frame(None, chunk(json!({"content": piece}), Value::Null)));
        }
    }
    let mut finish = Vec::new();
    let mut stall = None;
    match tail {
        Tail::Error(kind) => {
            let error = json!({"type": kind, "message": format!("scripted {kind}")});
            frames.push(if req.is_anthropic() {
                frame(Some("error"), json!({"type": "error", "error": error}))
            } else {
                frame(None, json!({"error": error}))
            });
            return frames;
        }
        Tail::StallThenFinish(wait) => stall = Some(wait),
        Tail::Finish => {}
    }
    if req.is_anthropic() {
        finish.push(frame(
            Some("content_block_stop"),
            json!({"type": "content_block_stop", "index": 0}),
        ));
        let delta_usage = match usage {
            Some((_, o)) => json!({"output_tokens": o}),
            None => json!({}),
        };
        finish.push(frame(
            Some("message_delta"),
            json!({"type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": null}, "usage": delta_usage}),
        ));
        finish.push(frame(Some("message_stop"), json!({"type": "message_stop"})));
    } else {
        finish.push(frame(
            None,
            json!({"id": "chatcmpl-scripted", "object": "chat.completion.chunk", "created": 0,
            "model": model, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}),
        ));
        let include_usage = req.body["stream_options"]["include_usage"] == json!(true);
        if let (Some((i, o)), true) = (usage, include_usage) {
            finish.push(frame(
                None,
                json!({"id": "chatcmpl-scripted", "object": "chat.completion.chunk",
                "created": 0, "model": model, "choices": [],
                "usage": {"prompt_tokens": i, "completion_tokens": o, "total_tokens": i + o}}),
            ));
        }
        finish.push(Frame {
            pause: None,
            data: "data: [DONE]\n\n".into(),
        });
    }
    finish[0].pause = stall;
    frames.extend(finish);
    frames
}

fn sse_response(frames: Vec<Frame>) -> Response {
    let stream = futures_util::stream::unfold(frames.into_iter(), |mut frames| async move {
        let frame = frames.next()?;
        if let Some(pause) = frame.pause {
            tokio::time::sleep(pause).await;
        }
        Some((
            Ok::<_, std::convert::Infallible>(Bytes::from(frame.data)),
            frames,
        ))
    });
    Response::builder()
        .status(200)
        .header("content-type", "text/event-stream")
        .header("cache-control", "no-cache")
        .body(Body::from_stream(stream))
        .unwrap()
}
