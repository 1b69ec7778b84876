//! `ModelClient`: one reply per call, over HTTP, with the retries (`retry.rs`) and timeouts of
//! `ClientSettings`. The wire format is the provider's (`openai.rs`, `anthropic.rs`).

use std::time::Duration;

use futures_util::StreamExt;
use reqwest::header::{HeaderMap, CONTENT_TYPE};
use reqwest::Response;
use serde_json::Value;
use tokio::time::{timeout, timeout_at, Instant};

use super::error::TimeoutPhase;
use super::retry::{delay, retry_after, retryable_status, Failure};
use super::sse::SseParser;
use super::wire::{error_body_message, merge, Reply, Wire, WireError};
use super::{ChatMessage, ClientEvent, ClientSettings, Completion, ModelError, ResolvedModel};

pub struct ModelClient {
    model: ResolvedModel,
    settings: ClientSettings,
    wire: Wire,
    /// The endpoint: base_url with the provider's path.
    url: String,
    headers: HeaderMap,
    http: reqwest::Client,
}

type Sink<'s> = &'s mut (dyn FnMut(ClientEvent<'_>) + Send);

impl ModelClient {
    /// Redirects are not followed: a redirect could carry the key to a host nobody allowed.
    /// Proxies from the environment (`HTTPS_PROXY`, `NO_PROXY`) are honoured, for operators
    /// whose egress goes through one, unless `public_only` asks for the guard.
    pub fn new(model: ResolvedModel, settings: ClientSettings) -> Result<ModelClient, ModelError> {
        let wire = Wire(model.provider);
        let url = wire.endpoint(&model.base_url);
        let headers = wire.headers(&url, model.api_key.as_deref())?;
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(settings.timeout)
            .user_agent(concat!("execbox/", env!("CARGO_PKG_VERSION")));
        if settings.public_only {
            // A proxy would resolve names itself, past the guard.
            builder = builder
                .dns_resolver(std::sync::Arc::new(super::guard::PublicOnly))
                .no_proxy();
        }
        let http = builder.build().map_err(|e| ModelError::Setup {
            reason: error_chain(&e),
        })?;
        Ok(ModelClient {
            model,
            settings,
            wire,
            url,
            headers,
            http,
        })
    }

    pub fn model(&self) -> &ResolvedModel {
        &self.model
    }

    /// One reply to `messages` under `system`. Consecutive messages of one role are merged.
    pub async fn complete(
        &self,
        system: &str,
        messages: &[ChatMessage],
        on_event: &mut (dyn FnMut(ClientEvent<'_>) + Send),
    ) -> Result<Completion, ModelError> {
        let messages = merge(messages);
        let body = self.wire.body(&self.model, system, &messages);
        let input_chars = system.chars().count()
            + messages
                .iter()
                .map(|m| m.content.chars().count())
                .sum::<usize>();
        let max_attempts = 1 + self.settings.max_retries;
        let mut attempt = 1;
        loop {
            let failure = match self.attempt(&body, on_event).await {
                Ok(reply) => {
                    let usage = reply.usage(input_chars);
                    return Ok(Completion {
                        text: reply.text,
                        usage,
                        attempts: attempt,
                    });
                }
                Err(failure) => failure,
            };
            let error = failure
                .error
                .with_attempts(attempt)
                .redact(self.model.api_key.as_deref());
            if !failure.retryable || attempt >= max_attempts {
                return Err(error);
            }
            let delay = delay(&self.settings, attempt, failure.retry_after);
            let reason = error.to_string();
            tracing::warn!(
                attempt,
                max_attempts,
                ?delay,
                "model request failed, retrying: {reason}"
            );
            on_event(ClientEvent::Retry {
                attempt: attempt + 1,
                max_attempts,
                delay,
                reason: &reason,
            });
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
    }

    async fn attempt(&self, body: &Value, on_event: Sink<'_>) -> Result<Reply, Failure> {
        let started = Instant::now();
        let limit = self.settings.timeout;
        let send = self
            .http
            .post(&self.url)
            .headers(self.headers.clone())
            .json(body)
            .send();
        let response_timeout = || self.timeout(TimeoutPhase::Response, limit);
        let reply = if self.model.stream {
            let response = timeout(limit, send).await.map_err(|_| response_timeout())?;
            let response = response.map_err(|e| self.transport(&e))?;
            let response = timeout(limit, self.check_status(response))
                .await
                .map_err(|_| response_timeout())??;
            if !is_json(&response) {
                return self
                    .read_stream(response, started + limit * 10, on_event)
                    .await;
            }
            // A server that ignores `stream: true` answers with one JSON body.
            let bytes = timeout(limit, response.bytes())
                .await
                .map_err(|_| response_timeout())?;
            self.parse_json(&bytes.map_err(|e| self.transport(&e))?)?
        } else {
            let whole = async {
                let response = send.await.map_err(|e| self.transport(&e))?;
                let response = self.check_status(response).await?;
                let bytes = response.bytes().await.map_err(|e| self.transport(&e))?;
                self.parse_json(&bytes)
            };
            timeout(limit, whole)
                .await
                .map_err(|_| response_timeout())??
        };
        if !reply.text.is_empty() {
            on_event(ClientEvent::Text(&reply.text));
        }
        Ok(reply)
    }

    /// Reads SSE until the format's end marker, under the idle and total limits.
    async fn read_stream(
        &self,
        response: Response,
        deadline: Instant,
        on_event: Sink<'_>,
    ) -> Result<Reply, Failure> {
        let limit = self.settings.timeout;
        let mut chunks = response.bytes_stream();
        let mut parser = SseParser::new();
        let mut decoder = self.wire.decoder();
        let mut text = String::new();
        while !decoder.done() {
            let idle_until = Instant::now() + limit;
            let (until, phase, phase_limit) = if idle_until < deadline {
                (idle_until, TimeoutPhase::Idle, limit)
            } else {
                (deadline, TimeoutPhase::Total, limit * 10)
            };
            let (events, ended) = match timeout_at(until, chunks.next()).await {
                Err(_) => return Err(self.timeout(phase, phase_limit)),
                Ok(Some(Ok(bytes))) => (parser.push(&bytes), false),
                Ok(Some(Err(e))) => return Err(self.transport(&e)),
                Ok(None) => (parser.finish().into_iter().collect(), true),
            };
            for event in &events {
                let piece = decoder.event(event).map_err(|e| self.wire_failure(e))?;
                if let Some(piece) = piece {
                    on_event(ClientEvent::Text(&piece));
                    text.push_str(&piece);
                }
                if decoder.done() {
                    break;
                }
            }
            if ended {
                if !decoder.complete() {
                    let reason = "the stream ended before the reply was complete".to_string();
                    let error = ModelError::Transport {
                        url: self.url.clone(),
                        reason,
                        attempts: 1,
                    };
                    return Err(Failure::new(error, true));
                }
                break;
            }
        }
        let (input_tokens, output_tokens) = decoder.usage();
        Ok(Reply {
            text,
            input_tokens,
            output_tokens,
        })
    }

    /// A success status passes; an error status becomes a failure carrying the body's message.
    async fn check_status(&self, response: Response) -> Result<Response, Failure> {
        let status = response.status().as_u16();
        if response.status().is_success() {
            return Ok(response);
        }
        let retry_after = retry_after(response.headers());
        let body = response.text().await.unwrap_or_default();
        let message = error_body_message(&body);
        let error = ModelError::Status {
            url: self.url.clone(),
            status,
            message,
            attempts: 1,
        };
        Err(Failure {
            retry_after,
            ..Failure::new(error, retryable_status(status))
        })
    }

    fn parse_json(&self, bytes: &[u8]) -> Result<Reply, Failure> {
        let v: Value = serde_json::from_slice(bytes).map_err(|e| {
            let start = error_body_message(&String::from_utf8_lossy(bytes));
            self.wire_failure(WireError::Protocol(format!(
                "the answer is not JSON ({e}): {start}"
            )))
        })?;
        self.wire.reply(&v).map_err(|e| self.wire_failure(e))
    }

    fn wire_failure(&self, e: WireError) -> Failure {
        let url = self.url.clone();
        match e {
            WireError::Endpoint { message, retryable } => Failure::new(
                ModelError::Endpoint {
                    url,
                    message,
                    attempts: 1,
                },
                retryable,
            ),
            WireError::Protocol(reason) => Failure::new(
                ModelError::Protocol {
                    url,
                    reason,
                    attempts: 1,
                },
                false,
            ),
        }
    }

    fn transport(&self, e: &reqwest::Error) -> Failure {
        let reason = error_chain(e);
        Failure::new(
            ModelError::Transport {
                url: self.url.clone(),
                reason,
                attempts: 1,
            },
            true,
        )
    }

    fn timeout(&self, phase: TimeoutPhase, limit: Duration) -> Failure {
        let error = ModelError::Timeout {
            url: self.url.clone(),
            phase,
            limit,
            attempts: 1,
        };
        Failure::new(error, true)
    }
}

fn is_json(response: &Response) -> bool {
    let content_type = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    content_type.is_some_and(|ct| {
        ct.trim_start()
            .to_ascii_lowercase()
            .starts_with("application/json")
    })
}

/// The error and its sources in one line, without reqwest's "for url (...)": the message names
/// the URL once.
fn error_chain(e: &reqwest::Error) -> String {
    let top = e.to_string();
    let mut parts = vec![match top.find(" for url (") {
        Some(i) => top[..i].to_string(),
        None => top,
    }];
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let text = s.to_string();
        if parts.last() != Some(&text) {
            parts.push(text);
        }
        source = s.source();
    }
    parts.join(": ")
}
