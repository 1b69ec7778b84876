//! `/mcp`: MCP's streamable HTTP transport on the service's own listener, behind the same auth
//! middleware as `/v1` (the bearer key's team is the caller, its quotas apply). Stateless:
//! each POST is one JSON-RPC message, a request answered in JSON and a notification with 202,
//! so no session lives in the service; GET (a stream of server messages) and DELETE (a
//! session's end) answer 405.

use std::sync::Arc;

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use rmcp::transport::streamable_http_server::session::never::NeverSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};

use super::server::Server;
use crate::api::ApiError;
use crate::service::auth::Auth;
use crate::service::AppState;

pub const PATH: &str = "/mcp";

/// The `/mcp` route, to be merged below the auth middleware. Runs go to the local executor
/// unless a call names another.
pub fn router(state: &Arc<AppState>, max_body_bytes: usize) -> Router<Arc<AppState>> {
    let mut config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(false)
        .with_json_response(true)
        .with_max_request_body_bytes(max_body_bytes);
    // Without auth the listener is loopback, and rmcp's default Host check (localhost,
    // 127.0.0.1, ::1) keeps a page on a rebound DNS name out; with a key, the key does.
    if matches!(state.auth, Auth::ApiKey) {
        config = config.disable_allowed_hosts();
    }
    let server = Server::new(state.clone(), None, "local");
    let service = StreamableHttpService::new(
        move || Ok(server.clone()),
        Arc::new(NeverSessionManager::default()),
        config,
    );
    Router::new()
        .route_service(PATH, service)
        .layer(axum::middleware::map_response(as_error_json))
}

/// rmcp answers what is not MCP (a wrong method, media type or Host) in plain text: here it
/// becomes the service's one error JSON. JSON-RPC errors (JSON bodies) are MCP's own and pass.
async fn as_error_json(resp: Response) -> Response {
    let json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let status = resp.status();
    if status.is_success() || json {
        return resp;
    }
    let allow = resp.headers().get(header::ALLOW).cloned();
    let said = match axum::body::to_bytes(resp.into_body(), 64 << 10).await {
        Ok(b) => String::from_utf8_lossy(&b).trim().to_string(),
        Err(_) => String::new(),
    };
    if status.is_server_error() {
        tracing::error!(%status, error = %said, "the MCP transport failed");
    }
    let (code, message) = match status {
        StatusCode::METHOD_NOT_ALLOWED => (
            "method_not_allowed",
            "MCP here takes POST only: one JSON-RPC message per request, answered in JSON; \
             the server keeps no sessions, so there is no GET stream and nothing to DELETE"
                .to_string(),
        ),
        StatusCode::NOT_ACCEPTABLE => ("not_acceptable", format!("{said}; send Accept: application/json, text/event-stream")),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ("unsupported_media_type", format!("{said}; send the JSON-RPC message as Content-Type: application/json")),
        StatusCode::PAYLOAD_TOO_LARGE => ("body_too_large", "the request body is larger than this service accepts (max_body_bytes); send less or raise the limit".to_string()),
        StatusCode::FORBIDDEN => ("forbidden", format!("{said}; without auth, /mcp answers only requests to localhost, 127.0.0.1 or [::1]")),
        s if s.is_server_error() => ("internal_error", "the MCP transport failed; it has been logged".to_string()),
        _ => ("invalid_request", said),
    };
    let mut answer = ApiError::new(status, code, message).into_response();
    if let Some(allow) = allow {
        answer.headers_mut().insert(header::ALLOW, allow);
    }
    answer
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::HeaderValue;

    async fn mapped(status: StatusCode, content_type: &str, body: &str) -> (StatusCode, String) {
        let resp = Response::builder()
            .status(status)
            .header(
                header::CONTENT_TYPE,
                HeaderValue::from_str(content_type).unwrap(),
            )
            .body(Body::from(body.to_string()))
            .unwrap();
        let out = as_error_json(resp).await;
        let status = out.status();
        let bytes = axum::body::to_bytes(out.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, String::from_utf8(bytes.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn plain_refusals_become_the_error_json_and_json_rpc_errors_pass() {
        let (s, body) = mapped(
            StatusCode::NOT_ACCEPTABLE,
            "text/plain",
            "Not Acceptable: Client must accept both application/json and text/event-stream",
        )
        .await;
        assert_eq!(s, StatusCode::NOT_ACCEPTABLE);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["error"]["code"], "not_acceptable");
        assert_eq!(
            v["error"]["message"],
            "Not Acceptable: Client must accept both application/json and text/event-stream; send Accept: application/json, text/event-stream"
        );
        let rpc = r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32601,"message":"m"}}"#;
        let (s, body) = mapped(StatusCode::NOT_FOUND, "application/json", rpc).await;
        assert_eq!((s, body.as_str()), (StatusCode::NOT_FOUND, rpc));
    }
}
