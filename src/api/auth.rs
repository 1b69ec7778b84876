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
    let key = credentials(&req).map(str::to_string);
    let team = match auth::team_for(&state, key.as_deref()).await {
        Ok(team) => team,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let span = tracing::info_span!("request", team = %team.name);
    req.extensions_mut().insert(team);
    next.run(req).instrument(span).await
}

/// The request's API key: `Authorization: Bearer KEY` everywhere; on the Judge0 door also
/// Judge0's `X-Auth-Token: KEY`, on the Piston door also a bare `Authorization: KEY`, which is
/// how those peers' clients send theirs.
fn credentials(req: &Request) -> Option<&str> {
    let path = req.uri().path();
    let header = |name| {
        req.headers()
            .get(name)?
            .to_str()
            .ok()
            .map(str::trim)
            .filter(|k| !k.is_empty())
    };
    bearer(req)
        .or_else(|| {
            path.starts_with("/judge0/")
                .then(|| header("x-auth-token"))
                .flatten()
        })
        .or_else(|| {
            path.starts_with("/piston/")
                .then(|| header(header::AUTHORIZATION.as_str()))
                .flatten()
                .filter(|k| !k.contains(' '))
        })
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

    fn request(path: &str, headers: &[(&str, &str)]) -> Request {
        let mut b = Request::builder().uri(path);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(axum::body::Body::empty()).unwrap()
    }

    #[test]
    fn the_peers_headers_carry_the_key_only_on_their_own_doors() {
        let token = [("X-Auth-Token", "exb_1")];
        let bare = [("Authorization", "exb_1")];
        assert_eq!(
            credentials(&request("/judge0/submissions", &token)),
            Some("exb_1")
        );
        assert_eq!(credentials(&request("/v1/execute", &token)), None);
        assert_eq!(
            credentials(&request("/piston/api/v2/execute", &token)),
            None
        );
        assert_eq!(
            credentials(&request("/piston/api/v2/execute/", &bare)),
            Some("exb_1")
        );
        assert_eq!(credentials(&request("/judge0/about", &bare)), None);
        assert_eq!(credentials(&request("/v1/runtimes", &bare)), None);
        assert_eq!(
            credentials(&request(
                "/piston/api/v2/runtimes",
                &[("Authorization", "Basic x")]
            )),
            None
        );
        let both = [("Authorization", "Bearer exb_2"), ("X-Auth-Token", "exb_1")];
        assert_eq!(credentials(&request("/judge0/about", &both)), Some("exb_2"));
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
