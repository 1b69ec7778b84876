//! `GET /openapi.json`: the API described from the code — each handler's `#[utoipa::path]`, the
//! request and response types' `ToSchema`, and the auth middleware's list of open paths — built
//! once, on the first request.

use std::sync::LazyLock;

use axum::http::header;
use axum::response::IntoResponse;
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use super::error::ErrorBody;
use super::execute::OutputEvent;
use super::{agent, auth, batch, execute, info, sandboxes};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "execbox",
        version = env!("CARGO_PKG_VERSION"),
        description = "A sandboxed code-execution service: run a program under a named resource policy on the local \
                       namespace/cgroup/seccomp executor or the Docker executor, once or in a team's persistent sandbox. \
                       Every error is answered as `ErrorBody` with a stable `code`; an unknown path answers 404 `not_found` \
                       and a known path with another method 405 `method_not_allowed`.",
    ),
    paths(
        execute::execute,
        batch::batch,
        info::runtimes,
        info::policies,
        sandboxes::create,
        sandboxes::list,
        sandboxes::get,
        sandboxes::delete,
        sandboxes::keepalive,
        sandboxes::execute,
        sandboxes::list_files,
        sandboxes::get_file,
        sandboxes::put_file,
        sandboxes::get_archive,
        sandboxes::post_archive,
        agent::start,
        agent::list,
        agent::get,
        agent::cancel,
        agent::events,
        agent::approve,
        info::healthz,
        info::readyz,
        info::metrics,
        openapi_json,
    ),
    // Named in the event-stream description, so listed though no body refers to them.
    components(schemas(OutputEvent, ErrorBody, agent::DeltaEvent, crate::agent::runs::EndEvent, crate::agent::messages::Message)),
    modifiers(&BearerAuth),
    tags(
        (name = "runs", description = "One-off runs"),
        (name = "sandboxes", description = "A team's persistent workspaces and the calls in them"),
        (name = "files", description = "The files of a sandbox's work dir"),
        (name = "agent", description = "Agent runs: a model writes code, a sandbox runs it, the output goes back, until a termination condition fires"),
        (name = "service", description = "What the service offers and how it is"),
    ),
)]
struct ApiDoc;

static DOCUMENT: LazyLock<String> = LazyLock::new(|| ApiDoc::openapi().to_json().expect("the API description serializes"));

#[utoipa::path(get, path = "/openapi.json", summary = "This API description", tag = "service",
    responses((status = 200, description = "This document (OpenAPI 3.1)", body = Object, content_type = "application/json")))]
pub async fn openapi_json() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], DOCUMENT.as_str())
}

const SCHEME: &str = "api_key";

/// The bearer scheme on every route but the auth middleware's open ones, with the middleware's
/// 401 (and the 500 of a failed key lookup) on each route it guards.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let scheme = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .description(Some(
                "`Authorization: Bearer KEY`, with a key from `execbox keys create --team NAME`. Needed only when the service \
                 runs with `--auth api-key`; with `--auth none` (loopback listeners only) every request is the built-in team.",
            ))
            .build();
        doc.components.get_or_insert_with(Default::default).add_security_scheme(SCHEME, SecurityScheme::Http(scheme));
        doc.security = Some(vec![SecurityRequirement::new(SCHEME, Vec::<String>::new())]);
        for (path, item) in doc.paths.paths.iter_mut() {
            let open = auth::is_open(path);
            let ops = [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.patch, &mut item.head, &mut item.options, &mut item.trace];
            for op in ops.into_iter().flatten() {
                if open {
                    op.security = Some(Vec::new());
                } else {
                    add_auth_errors(op);
                }
            }
        }
    }
}

fn add_auth_errors(op: &mut Operation) {
    let error = |description: &str| {
        let content = ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build();
        ResponseBuilder::new().description(description).content("application/json", content).build()
    };
    let responses = &mut op.responses.responses;
    responses.insert("401".into(), error("`unauthorized`: no `Authorization: Bearer KEY`, or a key that is not valid or has been revoked (only with `--auth api-key`)").into());
    responses.entry("500".into()).or_insert_with(|| error("`internal_error`").into());
}
