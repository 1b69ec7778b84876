//! `ModelClient` over real loopback HTTP against the scripted model server: both wire formats,
//! streamed and not, usage, retries, timeouts, and a key that never shows in an error.

use std::time::{Duration, Instant};

use execbox::agent::model::{
    ChatMessage, ClientEvent, ClientSettings, Completion, KeyPolicy, ModelClient, ModelError,
    ModelSpec, Provider, Role, TokenUsage,
};
use serde_json::json;

use crate::scripted_model::{Reply, ScriptedModel};

const KEY: &str = "sk-test-key-never-shown";

fn settings() -> ClientSettings {
    ClientSettings {
        timeout: Duration::from_secs(1),
        max_retries: 3,
        backoff: Duration::from_millis(10),
        max_backoff: Duration::from_secs(2),
        public_only: false,
    }
}

fn client_with(
    provider: Provider,
    base_url: &str,
    stream: bool,
    settings: ClientSettings,
) -> ModelClient {
    let spec = ModelSpec {
        provider,
        model: "test-model".into(),
        base_url: Some(base_url.into()),
        api_key: Some(KEY.into()),
        api_key_env: None,
        stream: Some(stream),
        max_tokens: None,
        temperature: None,
    };
    ModelClient::new(spec.resolve(&KeyPolicy::default()).unwrap(), settings).unwrap()
}

fn openai(model: &ScriptedModel, stream: bool) -> ModelClient {
    client_with(Provider::Openai, &model.base_url_openai, stream, settings())
}

fn anthropic(model: &ScriptedModel, stream: bool) -> ModelClient {
    client_with(
        Provider::Anthropic,
        &model.base_url_anthropic,
        stream,
        settings(),
    )
}

fn user(text: &str) -> ChatMessage {
    ChatMessage {
        role: Role::User,
        content: text.into(),
    }
}

fn assistant(text: &str) -> ChatMessage {
    ChatMessage {
        role: Role::Assistant,
        content: text.into(),
    }
}

/// What the client reported while it worked.
#[derive(Debug, Default)]
struct Seen {
    pieces: Vec<String>,
    /// (attempt, max_attempts, delay, reason)
    retries: Vec<(u32, u32, Duration, String)>,
}

async fn complete(
    client: &ModelClient,
    messages: &[ChatMessage],
) -> (Result<Completion, ModelError>, Seen) {
    let mut seen = Seen::default();
    let result = client
        .complete("You are terse.", messages, &mut |event| match event {
            ClientEvent::Text(piece) => seen.pieces.push(piece.to_string()),
            ClientEvent::Retry {
                attempt,
                max_attempts,
                delay,
                reason,
            } => seen
                .retries
                .push((attempt, max_attempts, delay, reason.to_string())),
        })
        .await;
    (result, seen)
}

fn usage(input_tokens: u64, output_tokens: u64) -> TokenUsage {
    TokenUsage {
        input_tokens,
        output_tokens,
        estimated: false,
    }
}

#[tokio::test]
async fn model_clients_openai_non_stream_sends_system_first_and_the_key() {
    let model = ScriptedModel::start(vec![Reply::TextWithUsage("print(42)".into(), 17, 4)]);
    let (result, seen) = complete(&openai(&model, false), &[user("write code")]).await;
    let done = result.unwrap();
    assert_eq!(
        (done.text.as_str(), done.usage, done.attempts),
        ("print(42)", usage(17, 4), 1)
    );
    assert_eq!(
        seen.pieces,
        vec!["print(42)"],
        "a reply not streamed comes as one piece"
    );
    let requests = model.requests();
    assert_eq!(requests.len(), 1);
    let r = &requests[0];
    assert_eq!(r.path, "/v1/chat/completions");
    assert_eq!(
        r.header("authorization"),
        Some(format!("Bearer {KEY}").as_str())
    );
    assert_eq!(r.header("api-key"), None);
    assert_eq!(
        r.body,
        json!({"model": "test-model", "stream": false, "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "write code"}]})
    );
}

#[tokio::test]
async fn model_clients_openai_stream_pieces_make_the_text_and_usage_comes_last() {
    let text = "The answer is 42, naturally.";
    let model = ScriptedModel::start(vec![Reply::TextWithUsage(text.into(), 30, 7)]);
    let (result, seen) = complete(&openai(&model, true), &[user("what is it?")]).await;
    let done = result.unwrap();
    assert_eq!(
        (done.text.as_str(), done.usage, done.attempts),
        (text, usage(30, 7), 1)
    );
    assert_eq!(seen.pieces.len(), 10, "{:?}", seen.pieces);
    assert_eq!(seen.pieces.concat(), text);
    let r = &model.requests()[0];
    assert!(r.streamed());
    assert_eq!(r.body["stream_options"], json!({"include_usage": true}));
    assert_eq!(
        r.messages()[0],
        ("system".to_string(), "You are terse.".to_string())
    );
    assert_eq!(r.model(), "test-model");
}

#[tokio::test]
async fn model_clients_anthropic_non_stream_sends_the_version_the_key_and_a_system_field() {
    let model = ScriptedModel::start(vec![Reply::TextWithUsage("Done.".into(), 21, 2)]);
    let (result, _) = complete(&anthropic(&model, false), &[user("go")]).await;
    let done = result.unwrap();
    assert_eq!(
        (done.text.as_str(), done.usage, done.attempts),
        ("Done.", usage(21, 2), 1)
    );
    let r = &model.requests()[0];
    assert_eq!(r.path, "/v1/messages");
    assert_eq!(r.header("x-api-key"), Some(KEY));
    assert_eq!(r.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(r.header("authorization"), None);
    assert_eq!(
        r.body,
        json!({"model": "test-model", "max_tokens": 4096, "stream": false, "system": "You are terse.",
               "messages": [{"role": "user", "content": "go"}]})
    );
}

#[tokio::test]
async fn model_clients_anthropic_stream_pieces_make_the_text_and_usage_is_exact() {
    let text = "import math\nprint(math.pi)";
    let model = ScriptedModel::start(vec![Reply::TextWithUsage(text.into(), 55, 9)]);
    let (result, seen) = complete(&anthropic(&model, true), &[user("pi please")]).await;
    let done = result.unwrap();
    assert_eq!(
        (done.text.as_str(), done.usage, done.attempts),
        (text, usage(55, 9), 1)
    );
    assert_eq!(seen.pieces.len(), 9, "{:?}", seen.pieces);
    assert_eq!(seen.pieces.concat(), text);
    let r = &model.requests()[0];
    assert!(r.streamed());
    assert_eq!(r.system(), "You are terse.");
}

#[tokio::test]
async fn model_clients_consecutive_messages_of_one_role_are_merged() {
    let model = ScriptedModel::start(vec![Reply::text("ok"), Reply::text("ok")]);
    let messages = [
        user("a"),
        user("b"),
        assistant("c"),
        assistant("d"),
        user("e"),
    ];
    complete(&openai(&model, false), &messages).await.0.unwrap();
    complete(&anthropic(&model, true), &messages)
        .await
        .0
        .unwrap();
    let expected = |with_system: bool| {
        let mut m: Vec<(String, String)> = Vec::new();
        if with_system {
            m.push(("system".into(), "You are terse.".into()));
        }
        m.extend(
            [("user", "a\n\nb"), ("assistant", "c\n\nd"), ("user", "e")]
                .map(|(r, c)| (r.into(), c.into())),
        );
        m
    };
    let requests = model.requests();
    assert_eq!(requests[0].messages(), expected(true));
    assert_eq!(requests[1].messages(), expected(false));
}

#[tokio::test]
async fn model_clients_missing_usage_is_estimated_from_characters() {
    // Input: "You are terse." (14) + "count to three" (14) = 28 chars -> 7; output 8 chars -> 2.
    let model = ScriptedModel::start(vec![
        Reply::TextNoUsage("1, 2, 3.".into()),
        Reply::TextNoUsage("1, 2, 3.".into()),
    ]);
    let estimated = TokenUsage {
        input_tokens: 7,
        output_tokens: 2,
        estimated: true,
    };
    let (result, _) = complete(&openai(&model, true), &[user("count to three")]).await;
    assert_eq!(result.unwrap().usage, estimated);
    let (result, _) = complete(&anthropic(&model, false), &[user("count to three")]).await;
    assert_eq!(result.unwrap().usage, estimated);
}

#[tokio::test]
async fn model_clients_a_500_then_success_takes_two_attempts_and_reports_one_retry() {
    let model = ScriptedModel::start(vec![
        Reply::Status(500, r#"{"error":{"message":"internal oops"}}"#.into()),
        Reply::TextWithUsage("fine".into(), 3, 1),
    ]);
    let (result, seen) = complete(&anthropic(&model, true), &[user("hi")]).await;
    let done = result.unwrap();
    assert_eq!((done.text.as_str(), done.attempts), ("fine", 2));
    assert_eq!(model.requests().len(), 2);
    assert_eq!(seen.retries.len(), 1, "{:?}", seen.retries);
    let (attempt, max_attempts, delay, reason) = &seen.retries[0];
    assert_eq!((*attempt, *max_attempts), (2, 4));
    assert!(*delay <= Duration::from_millis(10), "{delay:?}");
    let url = format!("{}/v1/messages", model.base_url_anthropic);
    assert_eq!(
        reason,
        &format!("the model endpoint {url} answered HTTP 500: internal oops")
    );
}

#[tokio::test]
async fn model_clients_retry_after_is_respected() {
    let model = ScriptedModel::start(vec![
        Reply::StatusRetryAfter(429, 1),
        Reply::text("after the wait"),
    ]);
    let started = Instant::now();
    let (result, seen) = complete(&openai(&model, false), &[user("hi")]).await;
    assert_eq!(result.unwrap().attempts, 2);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(seen.retries.len(), 1);
    assert_eq!(seen.retries[0].2, Duration::from_secs(1));
}

#[tokio::test]
async fn model_clients_a_503_forever_fails_after_every_attempt_naming_status_and_attempts() {
    let model = ScriptedModel::start_with(|_| {
        Reply::Status(
            503,
            r#"{"error":{"message":"overloaded, try later"}}"#.into(),
        )
    });
    let (result, seen) = complete(&openai(&model, true), &[user("hi")]).await;
    let err = result.unwrap_err();
    assert_eq!(model.requests().len(), 4);
    assert_eq!((err.status(), err.attempts()), (Some(503), 4));
    assert_eq!(
        err.to_string(),
        format!(
            "the model endpoint {}/chat/completions answered HTTP 503 after 4 attempts: overloaded, try later",
            model.base_url_openai
        )
    );
    let attempts: Vec<u32> = seen.retries.iter().map(|r| r.0).collect();
    assert_eq!(attempts, vec![2, 3, 4]);
}

#[tokio::test]
async fn model_clients_a_400_fails_at_once_with_the_endpoints_message() {
    let body = r#"{"type":"error","error":{"type":"invalid_request_error","message":"max_tokens: too large"}}"#;
    let model = ScriptedModel::start(vec![
        Reply::Status(400, body.into()),
        Reply::text("never sent"),
    ]);
    let (result, seen) = complete(&anthropic(&model, false), &[user("hi")]).await;
    let err = result.unwrap_err();
    assert_eq!(model.requests().len(), 1);
    assert!(seen.retries.is_empty());
    assert_eq!(
        err.to_string(),
        format!(
            "the model endpoint {}/v1/messages answered HTTP 400: max_tokens: too large (invalid_request_error)",
            model.base_url_anthropic
        )
    );
}

#[tokio::test]
async fn model_clients_an_error_object_in_a_200_body_is_an_error() {
    let model = ScriptedModel::start(vec![Reply::ErrorEvent(
        String::new(),
        "invalid_request_error".into(),
    )]);
    let (result, _) = complete(&openai(&model, false), &[user("hi")]).await;
    let err = result.unwrap_err();
    assert_eq!(
        model.requests().len(),
        1,
        "an invalid request is not retried"
    );
    assert!(matches!(err, ModelError::Endpoint { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "the model endpoint {}/chat/completions reported an error: scripted invalid_request_error (invalid_request_error)",
            model.base_url_openai
        )
    );
}

#[tokio::test]
async fn model_clients_an_overloaded_event_mid_stream_is_retried_and_the_pieces_start_over() {
    let model = ScriptedModel::start(vec![
        Reply::ErrorEvent("partial".into(), "overloaded_error".into()),
        Reply::TextWithUsage("whole reply".into(), 5, 3),
    ]);
    let (result, seen) = complete(&anthropic(&model, true), &[user("hi")]).await;
    let done = result.unwrap();
    assert_eq!(
        (done.text.as_str(), done.usage, done.attempts),
        ("whole reply", usage(5, 3), 2)
    );
    assert_eq!(seen.retries.len(), 1);
    assert!(
        seen.retries[0]
            .3
            .ends_with("reported an error: scripted overloaded_error (overloaded_error)"),
        "{:?}",
        seen.retries
    );
    // Before the Retry event: the broken attempt's pieces; after it: the whole reply's.
    assert_eq!(seen.pieces.concat(), "partialwhole reply");
}

#[tokio::test]
async fn model_clients_a_hang_longer_than_the_timeout_times_out_then_retries() {
    let model = ScriptedModel::start(vec![
        Reply::Hang(Duration::from_secs(5)),
        Reply::text("awake"),
    ]);
    let (result, seen) = complete(&openai(&model, false), &[user("hi")]).await;
    assert_eq!(result.unwrap().attempts, 2);
    assert_eq!(seen.retries.len(), 1);
    assert_eq!(
        seen.retries[0].3,
        format!(
            "the model endpoint {}/chat/completions timed out with no answer within 1s; raise the timeout or check the endpoint",
            model.base_url_openai
        )
    );
}

#[tokio::test]
async fn model_clients_a_hang_every_time_ends_in_a_timeout_error_after_all_attempts() {
    let model = ScriptedModel::start_with(|_| Reply::Hang(Duration::from_secs(5)));
    let quick = ClientSettings {
        max_retries: 1,
        ..settings()
    };
    let client = client_with(Provider::Anthropic, &model.base_url_anthropic, true, quick);
    let (result, _) = complete(&client, &[user("hi")]).await;
    let err = result.unwrap_err();
    assert!(
        matches!(err, ModelError::Timeout { attempts: 2, .. }),
        "{err:?}"
    );
    assert_eq!(model.requests().len(), 2);
}

#[tokio::test]
async fn model_clients_a_stream_that_goes_silent_times_out_and_is_retried() {
    let model = ScriptedModel::start(vec![
        Reply::Stall("half".into(), Duration::from_secs(5)),
        Reply::TextWithUsage("all of it".into(), 4, 3),
    ]);
    let (result, seen) = complete(&openai(&model, true), &[user("hi")]).await;
    let done = result.unwrap();
    assert_eq!((done.text.as_str(), done.attempts), ("all of it", 2));
    assert_eq!(seen.retries.len(), 1);
    assert!(
        seen.retries[0]
            .3
            .contains("timed out with no stream data for 1s"),
        "{:?}",
        seen.retries
    );
    assert_eq!(seen.pieces.concat(), "halfall of it");
}

#[tokio::test]
async fn model_clients_an_unreachable_endpoint_is_a_transport_error_after_the_retries() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let quick = ClientSettings {
        max_retries: 2,
        ..settings()
    };
    let client = client_with(
        Provider::Openai,
        &format!("http://127.0.0.1:{port}/v1"),
        false,
        quick,
    );
    let (result, seen) = complete(&client, &[user("hi")]).await;
    let err = result.unwrap_err();
    assert_eq!(seen.retries.len(), 2);
    let text = err.to_string();
    let start = format!("cannot reach the model endpoint http://127.0.0.1:{port}/v1/chat/completions after 3 attempts: ");
    assert!(text.starts_with(&start), "{text}");
    assert!(
        text.ends_with("; check base_url and that the endpoint is up"),
        "{text}"
    );
}

#[tokio::test]
async fn model_clients_the_key_never_shows_in_an_error_even_when_the_endpoint_echoes_it() {
    let model = ScriptedModel::start_with(|r| {
        let sent = r
            .header("authorization")
            .or(r.header("x-api-key"))
            .unwrap_or("")
            .to_string();
        Reply::Status(
            401,
            json!({"error": {"message": format!("Incorrect API key provided: {sent}")}})
                .to_string(),
        )
    });
    for client in [openai(&model, false), anthropic(&model, true)] {
        let (result, _) = complete(&client, &[user("hi")]).await;
        let err = result.unwrap_err();
        let shown = format!("{err} {err:?} {:?}", client.model());
        assert!(!shown.contains(KEY), "{shown}");
        assert!(
            err.to_string().contains("Incorrect API key provided: "),
            "{err}"
        );
        assert!(
            err.to_string().ends_with("[redacted] (check the api key)"),
            "{err}"
        );
    }
    assert_eq!(model.requests().len(), 2, "a 401 is not retried");
}

#[tokio::test]
async fn model_clients_base_url_with_the_path_or_a_query_is_tolerated() {
    let model = ScriptedModel::start(vec![Reply::text("a"), Reply::text("b"), Reply::text("c")]);
    let full = format!("{}/chat/completions", model.base_url_openai);
    complete(
        &client_with(Provider::Openai, &full, false, settings()),
        &[user("hi")],
    )
    .await
    .0
    .unwrap();
    let azure_like = format!("{}?api-version=2024-10-21", model.base_url_openai);
    complete(
        &client_with(Provider::Openai, &azure_like, true, settings()),
        &[user("hi")],
    )
    .await
    .0
    .unwrap();
    let with_v1 = format!("{}/v1/", model.base_url_anthropic);
    complete(
        &client_with(Provider::Anthropic, &with_v1, false, settings()),
        &[user("hi")],
    )
    .await
    .0
    .unwrap();
    let seen: Vec<(String, String)> = model
        .requests()
        .into_iter()
        .map(|r| (r.path, r.query))
        .collect();
    let expected = [
        ("/v1/chat/completions", ""),
        ("/v1/chat/completions", "api-version=2024-10-21"),
        ("/v1/messages", ""),
    ]
    .map(|(p, q)| (p.to_string(), q.to_string()));
    assert_eq!(seen, expected);
}

/// A client of a shared service connects only to public addresses: a name that resolves to
/// loopback is refused at connect time (the check a rebinding name cannot pass later), and
/// nothing reaches the server.
#[tokio::test]
async fn a_public_only_client_does_not_connect_to_loopback() {
    let server = ScriptedModel::start(vec![Reply::text("never sent")]);
    let base = format!("http://localhost:{}/v1", server.port);
    let client = client_with(
        Provider::Openai,
        &base,
        false,
        ClientSettings {
            public_only: true,
            max_retries: 0,
            ..settings()
        },
    );
    let err = client
        .complete("s", &[user("hi")], &mut |_| {})
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no public address"), "{err}");
    assert!(server.requests().is_empty());
}
