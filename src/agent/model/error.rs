//! How a model request fails. Each message names the endpoint's URL (never the key), the HTTP
//! status and the start of the endpoint's own message, and the attempts when retries were spent.

use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The client could not be built (TLS backend, a key no header can carry).
    #[error("cannot set up the model client: {reason}")]
    Setup { reason: String },
    /// The endpoint answered with an error status.
    #[error("the model endpoint {url} answered HTTP {status}{}: {message}{}", after(*attempts), status_hint(*status))]
    Status {
        url: String,
        status: u16,
        message: String,
        attempts: u32,
    },
    /// The endpoint could not be reached, or the connection broke during the reply.
    #[error("cannot reach the model endpoint {url}{}: {reason}; check base_url and that the endpoint is up", after(*attempts))]
    Transport {
        url: String,
        reason: String,
        attempts: u32,
    },
    /// No answer, or no next chunk of a stream, in time.
    #[error("the model endpoint {url} timed out {}{}; raise the timeout or check the endpoint", phase.describe(*limit), after(*attempts))]
    Timeout {
        url: String,
        phase: TimeoutPhase,
        limit: Duration,
        attempts: u32,
    },
    /// The endpoint reported an error inside a successful answer (a JSON body or a stream event).
    #[error("the model endpoint {url} reported an error{}: {message}", after(*attempts))]
    Endpoint {
        url: String,
        message: String,
        attempts: u32,
    },
    /// The answer is not in the shape the provider's API promises.
    #[error("the model endpoint {url} sent a reply this client cannot read ({reason}); check that base_url points at an API of the chosen provider")]
    Protocol {
        url: String,
        reason: String,
        attempts: u32,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeoutPhase {
    /// Non-stream: the whole request. Stream: the response headers.
    Response,
    /// The wait between two chunks of a stream.
    Idle,
    /// A stream's total (10 times the timeout).
    Total,
}

impl TimeoutPhase {
    fn describe(self, limit: Duration) -> String {
        match self {
            TimeoutPhase::Response => format!("with no answer within {limit:?}"),
            TimeoutPhase::Idle => format!("with no stream data for {limit:?}"),
            TimeoutPhase::Total => format!("with the stream still running after {limit:?}"),
        }
    }
}

fn after(attempts: u32) -> String {
    if attempts > 1 {
        format!(" after {attempts} attempts")
    } else {
        String::new()
    }
}

fn status_hint(status: u16) -> &'static str {
    match status {
        401 | 403 => " (check the api key)",
        404 => " (check base_url and the model name)",
        300..=399 => " (redirects are not followed: give the final URL as base_url)",
        _ => "",
    }
}

impl ModelError {
    /// The HTTP status, when the endpoint answered with an error status.
    pub fn status(&self) -> Option<u16> {
        match self {
            ModelError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The requests made before giving up (0 when none could be made).
    pub fn attempts(&self) -> u32 {
        match self {
            ModelError::Setup { .. } => 0,
            ModelError::Status { attempts, .. }
            | ModelError::Transport { attempts, .. }
            | ModelError::Timeout { attempts, .. }
            | ModelError::Endpoint { attempts, .. }
            | ModelError::Protocol { attempts, .. } => *attempts,
        }
    }

    pub(super) fn with_attempts(mut self, n: u32) -> ModelError {
        match &mut self {
            ModelError::Setup { .. } => {}
            ModelError::Status { attempts, .. }
            | ModelError::Transport { attempts, .. }
            | ModelError::Timeout { attempts, .. }
            | ModelError::Endpoint { attempts, .. }
            | ModelError::Protocol { attempts, .. } => *attempts = n,
        }
        self
    }

    /// An endpoint may echo what it was sent; the key is cut out of every text field.
    pub(super) fn redact(mut self, key: Option<&str>) -> ModelError {
        let Some(key) = key.filter(|k| !k.is_empty()) else {
            return self;
        };
        let texts: Vec<&mut String> = match &mut self {
            ModelError::Setup { reason } => vec![reason],
            ModelError::Status { url, message, .. } | ModelError::Endpoint { url, message, .. } => {
                vec![url, message]
            }
            ModelError::Transport { url, reason, .. }
            | ModelError::Protocol { url, reason, .. } => vec![url, reason],
            ModelError::Timeout { url, .. } => vec![url],
        };
        for text in texts {
            if text.contains(key) {
                *text = text.replace(key, "[redacted]");
            }
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_url_the_status_and_the_attempts_spent() {
        let e = ModelError::Status {
            url: "http://h/v1/messages".into(),
            status: 503,
            message: "busy".into(),
            attempts: 4,
        };
        assert_eq!(
            e.to_string(),
            "the model endpoint http://h/v1/messages answered HTTP 503 after 4 attempts: busy"
        );
        let e = ModelError::Status {
            url: "http://h/v1/messages".into(),
            status: 401,
            message: "bad key".into(),
            attempts: 1,
        };
        assert_eq!(e.to_string(), "the model endpoint http://h/v1/messages answered HTTP 401: bad key (check the api key)");
        let e = ModelError::Timeout {
            url: "http://h/v1".into(),
            phase: TimeoutPhase::Idle,
            limit: Duration::from_secs(2),
            attempts: 2,
        };
        assert_eq!(
            e.to_string(),
            "the model endpoint http://h/v1 timed out with no stream data for 2s after 2 attempts; raise the timeout or check the endpoint"
        );
    }

    #[test]
    fn redact_cuts_the_key_out_of_echoed_messages() {
        let e = ModelError::Endpoint {
            url: "http://h".into(),
            message: "bad key sk-123 given".into(),
            attempts: 1,
        };
        assert_eq!(
            e.redact(Some("sk-123")).to_string(),
            "the model endpoint http://h reported an error: bad key [redacted] given"
        );
    }
}
