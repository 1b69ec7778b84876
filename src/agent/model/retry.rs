//! When to try a model request again, and how long to wait first.

use std::time::Duration;

use reqwest::header::HeaderMap;

use super::{ClientSettings, ModelError};

/// One attempt's failure: the error (its attempts set later) and whether to try again.
pub struct Failure {
    pub error: ModelError,
    pub retryable: bool,
    /// The endpoint's `Retry-After`, when it sent one.
    pub retry_after: Option<Duration>,
}

impl Failure {
    pub fn new(error: ModelError, retryable: bool) -> Failure {
        Failure {
            error,
            retryable,
            retry_after: None,
        }
    }
}

/// Rate limits, server errors and overload (Anthropic's 529); other 4xx fail at once.
pub fn retryable_status(status: u16) -> bool {
    matches!(status, 429 | 500 | 502 | 503 | 504 | 529)
}

/// The wait after attempt `failed_attempt` (1-based): exponential from `backoff` with jitter
/// (half fixed, half random), or the endpoint's `Retry-After`; never above `max_backoff`.
pub fn delay(s: &ClientSettings, failed_attempt: u32, retry_after: Option<Duration>) -> Duration {
    if let Some(wait) = retry_after {
        return wait.min(s.max_backoff);
    }
    let doublings = failed_attempt.saturating_sub(1).min(20);
    let base = s.backoff.saturating_mul(1 << doublings).min(s.max_backoff);
    let mut bytes = [0u8; 8];
    let fraction = match getrandom::fill(&mut bytes) {
        Ok(()) => u64::from_le_bytes(bytes) as f64 / u64::MAX as f64,
        Err(_) => 0.5,
    };
    base / 2 + base.mul_f64(fraction / 2.0)
}

/// `retry-after-ms` (Azure, OpenAI) or `retry-after` in seconds; an HTTP date is ignored.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let number = |name: &str| {
        let n = headers
            .get(name)?
            .to_str()
            .ok()?
            .trim()
            .parse::<f64>()
            .ok()?;
        (n.is_finite() && n >= 0.0).then_some(n.min(86_400_000.0))
    };
    number("retry-after-ms")
        .map(|ms| Duration::from_secs_f64(ms / 1000.0))
        .or_else(|| number("retry-after").map(Duration::from_secs_f64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped_retry_after_too() {
        let s = ClientSettings {
            backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(1000),
            ..ClientSettings::default()
        };
        for (failed, base) in [
            (1, 100),
            (2, 200),
            (3, 400),
            (4, 800),
            (5, 1000),
            (40, 1000),
        ] {
            let d = delay(&s, failed, None);
            let base = Duration::from_millis(base);
            assert!(
                d >= base / 2 && d <= base,
                "attempt {failed}: {d:?} outside {:?}..={base:?}",
                base / 2
            );
        }
        assert_eq!(
            delay(&s, 1, Some(Duration::from_millis(700))),
            Duration::from_millis(700)
        );
        assert_eq!(
            delay(&s, 1, Some(Duration::from_secs(60))),
            Duration::from_millis(1000)
        );
    }

    #[test]
    fn retry_after_is_read_in_seconds_or_milliseconds() {
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert("retry-after", "2".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(2)));
        h.insert("retry-after-ms", "250".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_millis(250)));
        let mut h = HeaderMap::new();
        h.insert(
            "retry-after",
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn only_rate_limits_and_server_errors_are_retried() {
        let retried: Vec<u16> = (400..600).filter(|s| retryable_status(*s)).collect();
        assert_eq!(retried, vec![429, 500, 502, 503, 504, 529]);
    }
}
