//! What a caller says about the model (`ModelSpec`) and what the service makes of it
//! (`ResolvedModel`): the base URL settled, the key found, and a service key sent only where the
//! operator allowed it.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    /// OpenAI-compatible chat completions (OpenAI, Azure OpenAI, vLLM, Ollama, llama.cpp...).
    Openai,
    /// The Anthropic Messages API.
    Anthropic,
}

impl Provider {
    /// The SDK's default base URL: with `/v1` for OpenAI, without for Anthropic.
    pub fn default_base_url(self) -> &'static str {
        match self {
            Provider::Openai => "https://api.openai.com/v1",
            Provider::Anthropic => "https://api.anthropic.com",
        }
    }
}

/// What the caller says about the model (the `model` object of POST /v1/agent/runs).
#[derive(Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    pub provider: Provider,
    /// The model's name at the endpoint, e.g. `gpt-4o-mini` or `claude-sonnet-4-5`.
    pub model: String,
    /// Default: `https://api.openai.com/v1` (openai) or `https://api.anthropic.com` (anthropic).
    #[serde(default)]
    pub base_url: Option<String>,
    /// The caller's own key for the endpoint. Never serialized back out.
    #[serde(default, skip_serializing)]
    #[schema(write_only)]
    pub api_key: Option<String>,
    /// The name of a service environment variable holding the key; the operator lists which
    /// variables may be used and the base URLs each may be sent to.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// Stream the reply (default true).
    #[serde(default)]
    pub stream: Option<bool>,
    #[serde(default, deserialize_with = "crate::wire::whole::option")]
    pub max_tokens: Option<u32>,
    #[serde(default)]
    pub temperature: Option<f32>,
}

/// Which service environment variables may supply a key, and where each may be sent.
#[derive(Debug, Clone, Default)]
pub struct KeyPolicy {
    /// Env var name -> allowed base URLs (normalized: no trailing slash).
    pub envs: BTreeMap<String, Vec<String>>,
}

#[derive(Clone)]
pub struct ResolvedModel {
    pub provider: Provider,
    pub model: String,
    /// Normalized: no trailing slash.
    pub base_url: String,
    pub api_key: Option<String>,
    pub stream: bool,
    pub max_tokens: Option<u32>,
    pub temperature: Option<f32>,
}

impl ModelSpec {
    /// Validate and resolve. Errors are one actionable sentence.
    pub fn resolve(&self, policy: &KeyPolicy) -> Result<ResolvedModel, String> {
        if self.model.trim().is_empty() {
            return Err("model must name the model at the endpoint, e.g. \"gpt-4o-mini\"".into());
        }
        let base_url = match &self.base_url {
            Some(url) => check_base_url(url)?,
            None => self.provider.default_base_url().to_string(),
        };
        if self.max_tokens == Some(0) {
            return Err("max_tokens must be at least 1 (or left out)".into());
        }
        if let Some(t) = self.temperature {
            if !(0.0..=2.0).contains(&t) {
                return Err(format!("temperature must be between 0 and 2, not {t}"));
            }
        }
        let api_key = match (&self.api_key, &self.api_key_env) {
            (Some(_), Some(_)) => {
                return Err("api_key and api_key_env are exclusive: give one of them, not both".into())
            }
            (Some(key), None) if key.is_empty() => {
                return Err("api_key is empty: give the key, or leave api_key out for an endpoint that needs none".into())
            }
            (Some(key), None) => Some(key.clone()),
            (None, Some(env)) => Some(key_from_env(env, &base_url, policy)?),
            (None, None) => None,
        };
        Ok(ResolvedModel {
            provider: self.provider,
            model: self.model.clone(),
            base_url,
            api_key,
            stream: self.stream.unwrap_or(true),
            max_tokens: self.max_tokens,
            temperature: self.temperature,
        })
    }
}

/// Trailing slashes trimmed, so that `https://x/v1/` and `https://x/v1` compare equal.
pub fn normalize_url(url: &str) -> String {
    url.trim().trim_end_matches('/').to_string()
}

fn check_base_url(url: &str) -> Result<String, String> {
    let normalized = normalize_url(url);
    let parsed = reqwest::Url::parse(&normalized).map_err(|e| {
        format!(
            "base_url {normalized:?} is not a URL ({e}); give e.g. \"https://api.openai.com/v1\""
        )
    })?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!(
            "base_url {normalized:?} must start with http:// or https://"
        ));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(format!("base_url {normalized:?} has no host"));
    }
    // The URL goes into error messages and logs; a key in it would leak there.
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(
            "base_url must not carry credentials; give the key as api_key or api_key_env".into(),
        );
    }
    Ok(normalized)
}

fn key_from_env(env: &str, base_url: &str, policy: &KeyPolicy) -> Result<String, String> {
    let Some(allowed_urls) = policy.envs.get(env) else {
        return Err(if policy.envs.is_empty() {
            format!("api_key_env {env:?} is not allowed: this service lends no keys, so give your own api_key")
        } else {
            let names: Vec<&str> = policy.envs.keys().map(String::as_str).collect();
            format!(
                "api_key_env {env:?} is not allowed; this service allows: {}",
                names.join(", ")
            )
        });
    };
    let key = match std::env::var(env) {
        Ok(key) if !key.is_empty() => key,
        _ => {
            return Err(format!(
                "api_key_env {env:?} is allowed but not set in the service's environment; ask the operator to set it, or give your own api_key"
            ))
        }
    };
    if !allowed_urls
        .iter()
        .any(|allowed| normalize_url(allowed) == base_url)
    {
        return Err(format!(
            "the key in {env:?} may only be sent to {}, not to {base_url}; use one of those base URLs or give your own api_key",
            allowed_urls.iter().map(|u| normalize_url(u)).collect::<Vec<_>>().join(", ")
        ));
    }
    Ok(key)
}

fn redacted(key: &Option<String>) -> Option<&'static str> {
    key.as_ref().map(|_| "[redacted]")
}

// Manual Debug: the key must never reach a log line.
impl fmt::Debug for ModelSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ModelSpec")
            .field("provider", &self.provider)
            .field("model", &self.model)
            .field("base_url", &self.base_url)
            .field("api_key", &redacted(&self.api_key))
            .field("api_key_env", &self.api_key_env)
            .field("stream", &self.stream)
            .field("max_tokens", &self.max_tokens)
            .field("temperature", &self.temperature)
            .finish()
    }
}

impl fmt::Debug for ResolvedModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResolvedModel")
            .field("provider", &self.provider)
            .field("model", &self.model)
            .field("base_url", &self.base_url)
            .field("api_key", &redacted(&self.api_key))
            .field("stream", &self.stream)
            .field("max_tokens", &self.max_tokens)
            .field("temperature", &self.temperature)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(provider: Provider) -> ModelSpec {
        ModelSpec {
            provider,
            model: "m".into(),
            base_url: None,
            api_key: None,
            api_key_env: None,
            stream: None,
            max_tokens: None,
            temperature: None,
        }
    }

    fn policy(env: &str, urls: &[&str]) -> KeyPolicy {
        let mut envs = BTreeMap::new();
        envs.insert(
            env.to_string(),
            urls.iter().map(|u| u.to_string()).collect(),
        );
        KeyPolicy { envs }
    }

    #[test]
    fn default_base_urls_per_provider_and_stream_on_by_default() {
        let openai = spec(Provider::Openai)
            .resolve(&KeyPolicy::default())
            .unwrap();
        assert_eq!(
            (openai.base_url.as_str(), openai.stream, openai.api_key),
            ("https://api.openai.com/v1", true, None)
        );
        let anthropic = spec(Provider::Anthropic)
            .resolve(&KeyPolicy::default())
            .unwrap();
        assert_eq!(anthropic.base_url, "https://api.anthropic.com");
    }

    #[test]
    fn base_url_trailing_slashes_are_trimmed() {
        let s = ModelSpec {
            base_url: Some("http://localhost:11434/v1//".into()),
            ..spec(Provider::Openai)
        };
        assert_eq!(
            s.resolve(&KeyPolicy::default()).unwrap().base_url,
            "http://localhost:11434/v1"
        );
    }

    #[test]
    fn base_url_must_be_http_with_a_host_and_no_credentials() {
        for bad in [
            "ftp://x/v1",
            "localhost:8080",
            "http://",
            "https://user:pw@x.example/v1",
        ] {
            let s = ModelSpec {
                base_url: Some(bad.into()),
                ..spec(Provider::Openai)
            };
            assert!(
                s.resolve(&KeyPolicy::default()).is_err(),
                "{bad} was accepted"
            );
        }
        let err = ModelSpec {
            base_url: Some("https://user:sk-secret@x.example/v1".into()),
            ..spec(Provider::Openai)
        }
        .resolve(&KeyPolicy::default())
        .unwrap_err();
        assert!(!err.contains("sk-secret"), "{err}");
    }

    #[test]
    fn api_key_and_api_key_env_are_exclusive() {
        let s = ModelSpec {
            api_key: Some("k".into()),
            api_key_env: Some("E".into()),
            ..spec(Provider::Openai)
        };
        let err = s
            .resolve(&policy("E", &["https://api.openai.com/v1"]))
            .unwrap_err();
        assert_eq!(
            err,
            "api_key and api_key_env are exclusive: give one of them, not both"
        );
    }

    #[test]
    fn an_env_not_in_the_policy_is_refused_naming_the_allowed_ones() {
        let s = ModelSpec {
            api_key_env: Some("HOME".into()),
            ..spec(Provider::Openai)
        };
        let err = s
            .resolve(&policy(
                "SPEC_TEST_MODEL_KEY_A",
                &["https://api.openai.com/v1"],
            ))
            .unwrap_err();
        assert_eq!(
            err,
            "api_key_env \"HOME\" is not allowed; this service allows: SPEC_TEST_MODEL_KEY_A"
        );
        let err = s.resolve(&KeyPolicy::default()).unwrap_err();
        assert!(err.contains("lends no keys"), "{err}");
    }

    #[test]
    fn an_allowed_env_that_is_unset_is_refused() {
        let s = ModelSpec {
            api_key_env: Some("SPEC_TEST_MODEL_KEY_UNSET".into()),
            ..spec(Provider::Openai)
        };
        let err = s
            .resolve(&policy(
                "SPEC_TEST_MODEL_KEY_UNSET",
                &["https://api.openai.com/v1"],
            ))
            .unwrap_err();
        assert!(
            err.contains("not set in the service's environment"),
            "{err}"
        );
    }

    #[test]
    fn a_service_key_goes_only_to_its_allowed_base_urls() {
        // PATH is set in every test process, so no test has to change the environment
        // (which would race with the tests that read it).
        let secret = std::env::var("PATH").expect("PATH is set");
        let p = policy("PATH", &["https://api.openai.com/v1/"]);
        let to = |url: Option<&str>| {
            ModelSpec {
                base_url: url.map(str::to_string),
                api_key_env: Some("PATH".into()),
                ..spec(Provider::Openai)
            }
            .resolve(&p)
        };
        assert_eq!(to(None).unwrap().api_key.as_deref(), Some(secret.as_str()));
        assert_eq!(
            to(Some("https://api.openai.com/v1/"))
                .unwrap()
                .api_key
                .as_deref(),
            Some(secret.as_str())
        );
        let err = to(Some("https://evil.example/v1")).unwrap_err();
        assert_eq!(
            err,
            "the key in \"PATH\" may only be sent to https://api.openai.com/v1, not to https://evil.example/v1; use one of those base URLs or give your own api_key"
        );
        assert!(!err.contains(&secret));
    }

    #[test]
    fn debug_output_never_shows_the_key() {
        let s = ModelSpec {
            api_key: Some("sk-visible-nowhere".into()),
            ..spec(Provider::Anthropic)
        };
        let resolved = s.resolve(&KeyPolicy::default()).unwrap();
        let shown = format!("{s:?} {resolved:?} {s:#?}");
        assert!(!shown.contains("sk-visible-nowhere"), "{shown}");
        assert!(shown.contains("[redacted]"), "{shown}");
    }

    #[test]
    fn the_key_is_never_serialized_and_unknown_fields_are_refused() {
        let s: ModelSpec =
            serde_json::from_str(r#"{"provider":"anthropic","model":"m","api_key":"sk-x"}"#)
                .unwrap();
        assert_eq!(s.api_key.as_deref(), Some("sk-x"));
        assert!(!serde_json::to_string(&s).unwrap().contains("sk-x"));
        let err =
            serde_json::from_str::<ModelSpec>(r#"{"provider":"openai","model":"m","key":"x"}"#)
                .unwrap_err();
        assert!(err.to_string().contains("unknown field `key`"), "{err}");
    }
}
