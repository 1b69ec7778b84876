//! Who is calling. A middleware resolves every `/v1` request to a `Team` request extension
//! (handlers take `Extension<Team>`) through `service::auth`: from the bearer key under
//! `auth = "api-key"`, or the built-in team under `auth = "none"`. Only the probes, the metrics
//! and the API description stay open: the list is of what is open, so a route added later is
//! closed unless someone opens it here.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tracing::Instrument;

use super::{ApiError, AppState};
use crate::service::auth;

/// Paths answered without a key.
const OPEN_PATHS: &[&str] = &["/healthz", "/readyz", "/metrics", "/openapi.json"];

fn needs_team(path: &str) -> bool {
    !is_open(path)
}

/// Whether `path` is answered without a key (the API description marks these as open).
pub(super) fn is_open(path: &str) -> bool {
    OPEN_PATHS.contains(&path)
}

/// The middleware (`axum::middleware::from_fn_with_state`).
pub async fn require_team(
    State(state): State<Arc<AppState>>,
    mut req: Request,
    next: Next,
) -> Response {
    if !needs_team(req.uri().path()) {
        return next.run(req).await;
    }
    let key = bearer(&req).map(str::to_string);
    let team = match auth::team_for(&state, key.as_deref()).await {
        Ok(team) => team,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let span = tracing::info_span!("request", team = %team.name);
    req.extensions_mut().insert(team);
    next.run(req).instrument(span).await
}

/// The credentials of `Authorization: Bearer <key>` (the scheme is case-insensitive).
fn bearer(req: &Request) -> Option<&str> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, key) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| key.trim())
        .filter(|k| !k.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_auth(value: &str) -> Request {
        Request::builder()
            .header(header::AUTHORIZATION, value)
            .body(axum::body::Body::empty())
            .unwrap()
    }

    #[test]
    fn bearer_takes_the_key_after_a_case_insensitive_scheme() {
        assert_eq!(bearer(&with_auth("Bearer exb_1")), Some("exb_1"));
        assert_eq!(bearer(&with_auth("bearer  exb_1 ")), Some("exb_1"));
        assert_eq!(bearer(&with_auth("Basic dXNlcg==")), None);
        assert_eq!(bearer(&with_auth("Bearer ")), None);
        assert_eq!(bearer(&with_auth("exb_1")), None);
    }

    #[test]
    fn every_path_but_the_open_ones_needs_a_team() {
        assert!(
            needs_team("/v1/execute")
                && needs_team("/v1")
                && needs_team("/v1/sandboxes/x/files/a")
                && needs_team("/healthz/")
        );
        assert!(
            !needs_team("/healthz")
                && !needs_team("/readyz")
                && !needs_team("/metrics")
                && !needs_team("/openapi.json")
        );
    }
}
