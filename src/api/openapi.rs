//! `GET /openapi.json`: the API described from the code — each handler's `#[utoipa::path]`, the
//! request and response types' `ToSchema` — and from this service's own state, built once when
//! the router is: the auth mode decides whether routes carry the bearer scheme, and the loaded
//! runtimes and policies and the configured bounds give the names, maxima and patterns the
//! service enforces, so that what the document calls valid is exactly what the service takes.

use std::sync::Arc;

use axum::http::header;
use axum::response::IntoResponse;
use axum::Extension;
use serde_json::{json, Value};
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
use utoipa::OpenApi;

use super::auth;
use super::error::ErrorBody;
use super::execute::OutputEvent;
use super::{agent, batch, contexts, execute, info, processes, runs, sandboxes, team, AppState};
use crate::exec::request::{ENV_NAME_PATTERN, PATH_PATTERN};
use crate::policy::KNOWN_EXECUTORS;

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
        runs::get,
        info::runtimes,
        info::policies,
        team::get,
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
        contexts::create,
        contexts::list,
        contexts::delete,
        processes::create,
        processes::list,
        processes::delete,
        processes::logs,
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
    components(schemas(OutputEvent, ErrorBody, agent::DeltaEvent, crate::service::agent::runs::EndEvent, crate::agent::messages::Message)),
    tags(
        (name = "runs", description = "One-off runs"),
        (name = "sandboxes", description = "A team's persistent workspaces and the calls in them"),
        (name = "files", description = "The files of a sandbox's work dir"),
        (name = "contexts", description = "Stateful Python interpreters in a sandbox: variables, imports and definitions persist between calls (`POST /v1/sandboxes/{id}/execute` with `context`)"),
        (name = "processes", description = "Background processes of a sandbox: they outlive the call that started them and are reached over the sandbox's own loopback"),
        (name = "agent", description = "Agent runs: a model writes code, a sandbox runs it, the output goes back, until a termination condition fires"),
        (name = "service", description = "What the service offers and how it is"),
    ),
)]
struct ApiDoc;

/// The served document, built by [`Document::build`] when the router is.
#[derive(Clone)]
pub struct Document(Arc<str>);

impl Document {
    pub fn build(state: &AppState) -> Document {
        let mut doc = ApiDoc::openapi();
        guard_routes(&mut doc, state.auth.shared());
        let mut doc = serde_json::to_value(&doc).expect("the API description serializes");
        constrain(&mut doc, state);
        Document(doc.to_string().into())
    }
}

#[utoipa::path(get, path = "/openapi.json", operation_id = "openapi", summary = "This API description", tag = "service",
    responses((status = 200, description = "This document (OpenAPI 3.1)", body = Object, content_type = "application/json")))]
pub async fn openapi_json(Extension(doc): Extension<Document>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        doc.0.to_string(),
    )
}

const SCHEME: &str = "api_key";

/// Every route but the auth middleware's open ones answers the 500 of a failed store; under
/// `auth = "api-key"` they also take the bearer scheme and answer the middleware's 401. Under
/// `auth = "none"` no route needs anything, so the document names no scheme at all.
fn guard_routes(doc: &mut utoipa::openapi::OpenApi, api_key: bool) {
    if api_key {
        let scheme = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .description(Some(
                "`Authorization: Bearer KEY`, with a key from `execbox keys create --team NAME`.",
            ))
            .build();
        doc.components
            .get_or_insert_with(Default::default)
            .add_security_scheme(SCHEME, SecurityScheme::Http(scheme));
        doc.security = Some(vec![SecurityRequirement::new(SCHEME, Vec::<String>::new())]);
    }
    for (path, item) in doc.paths.paths.iter_mut() {
        let open = auth::is_open(path);
        let ops = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
            &mut item.head,
            &mut item.options,
            &mut item.trace,
        ];
        for op in ops.into_iter().flatten() {
            match (open, api_key) {
                (true, true) => op.security = Some(Vec::new()),
                (true, false) => {}
                (false, _) => add_guarded_errors(op, api_key),
            }
        }
    }
}

fn add_guarded_errors(op: &mut Operation, api_key: bool) {
    let error = |description: &str| {
        let content = ContentBuilder::new()
            .schema(Some(Ref::from_schema_name("ErrorBody")))
            .build();
        ResponseBuilder::new()
            .description(description)
            .content("application/json", content)
            .build()
    };
    let responses = &mut op.responses.responses;
    if api_key {
        responses.insert("401".into(), error("`unauthorized`: no `Authorization: Bearer KEY`, or a key that is not valid or has been revoked").into());
    }
    responses
        .entry("500".into())
        .or_insert_with(|| error("`internal_error`").into());
}

/// The node at `pointer`, which the derived document must have.
fn at<'a>(doc: &'a mut Value, pointer: &str) -> &'a mut Value {
    doc.pointer_mut(pointer)
        .unwrap_or_else(|| panic!("the API description has no {pointer}"))
}

/// Merge `extra`'s keys into the object at `pointer`.
fn add(doc: &mut Value, pointer: &str, extra: Value) {
    let node = at(doc, pointer)
        .as_object_mut()
        .unwrap_or_else(|| panic!("{pointer} is not an object"));
    node.extend(extra.as_object().expect("an object").clone());
}

const NO_NUL: &str = "^[^\\x00]*$";
/// Standard base64 as the service decodes it: padded, and the unused bits of the last symbol zero.
const BASE64: &str =
    "^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/][AQgw]==|[A-Za-z0-9+/]{2}[AEIMQUYcgkosw048]=)?$";

/// What the service enforces beyond the derived types: names from the loaded runtimes and
/// policies, each policy's maxima and executors, the configured TTL bound, the patterns of
/// paths, env names and base64.
fn constrain(doc: &mut Value, state: &AppState) {
    let schemas = "/components/schemas";
    batch_items(doc);
    unsigned(doc);
    let languages: Vec<&str> = state.runtimes.names();
    let nullable = |names: &[&str]| -> Value {
        names
            .iter()
            .map(|n| json!(n))
            .chain([Value::Null])
            .collect()
    };

    for request in ["ExecuteRequest", "SandboxCallRequest"] {
        let props = format!("{schemas}/{request}/properties");
        add(
            doc,
            &format!("{props}/language"),
            json!({"enum": languages}),
        );
        add(
            doc,
            &format!("{props}/args"),
            json!({"items": {"type": "string", "pattern": NO_NUL}}),
        );
        add(doc, &format!("{props}/env"), env_map());
        // A file may not take the path of the language's own source or compiled program.
        let by_language: Vec<Value> = state
            .runtimes
            .runtimes
            .iter()
            .map(|r| {
                let mut names = vec![r.language.as_str()];
                names.extend(r.aliases.iter().map(String::as_str));
                let reserved: Vec<&str> = std::iter::once(r.source_file.as_str())
                    .chain(r.artifact.as_deref())
                    .collect();
                json!({"properties": {
                    "language": {"enum": names},
                    "files": {"items": {"properties": {"path": {"not": {"enum": reserved}}}}},
                }})
            })
            .collect();
        add(
            doc,
            &format!("{schemas}/{request}"),
            json!({"anyOf": by_language}),
        );
    }

    // A run names a policy (or takes `default`), an executor that policy allows (or `local`),
    // and limits up to that policy's maxima: one alternative per policy.
    let policies = &state.policies.policies;
    let executors_of = |p: &crate::policy::Policy| -> Vec<&str> {
        KNOWN_EXECUTORS
            .iter()
            .copied()
            .filter(|e| p.executors.iter().any(|x| x == e))
            .collect()
    };
    let names: Vec<&str> = policies.keys().map(String::as_str).collect();
    let per_policy = |with_limits: bool, available: &dyn Fn(&str) -> bool| -> Vec<Value> {
        policies
            .values()
            .map(|p| {
                let executors: Vec<&str> = executors_of(p).into_iter().filter(|e| available(e)).collect();
                let mut alt = json!({"properties": {
                    "policy": if p.name == "default" { json!({"enum": ["default", null]}) } else { json!({"const": p.name}) },
                    "executor": if executors.contains(&"local") { json!({"enum": nullable(&executors)}) } else { json!({"enum": executors}) },
                }});
                let mut required = Vec::new();
                if p.name != "default" {
                    required.push("policy");
                }
                if !executors.contains(&"local") {
                    required.push("executor");
                }
                if !required.is_empty() {
                    alt["required"] = json!(required);
                }
                if with_limits {
                    let m = &p.maxima;
                    alt["properties"]["limits"] = json!({"properties": {
                        "wall_time_ms": {"maximum": m.wall_time_ms},
                        "cpu_time_ms": {"maximum": m.cpu_time_ms},
                        "memory_bytes": {"maximum": m.memory_bytes},
                        "pids": {"maximum": m.pids},
                        "output_bytes": {"maximum": m.output_bytes},
                        "disk_bytes": {"maximum": m.disk_bytes},
                    }});
                }
                alt
            })
            .collect()
    };
    let props = format!("{schemas}/ExecuteRequest/properties");
    add(
        doc,
        &format!("{props}/executor"),
        json!({"enum": nullable(KNOWN_EXECUTORS)}),
    );
    add(
        doc,
        &format!("{props}/policy"),
        json!({"enum": nullable(&names)}),
    );
    let runs = per_policy(true, &|_| true);
    let by_language = at(doc, &format!("{schemas}/ExecuteRequest/anyOf")).take();
    at(doc, &format!("{schemas}/ExecuteRequest"))
        .as_object_mut()
        .unwrap()
        .remove("anyOf");
    add(
        doc,
        &format!("{schemas}/ExecuteRequest"),
        json!({"allOf": [{"anyOf": by_language}, {"anyOf": runs}]}),
    );

    // A sandbox call runs under its sandbox's policy, which the body does not name, and may not
    // ask for more disk than the sandbox has (its policy's default): the bounds here are what a
    // sandbox of every policy takes, so a call within them is never refused for its limits; one
    // above them is refused unless the sandbox's policy allows it.
    let smallest = |f: fn(&crate::policy::Limits) -> u64| {
        policies.values().map(|p| f(&p.maxima)).min().unwrap_or(0)
    };
    let sandbox_disk = policies
        .values()
        .map(|p| p.defaults.disk_bytes.min(p.maxima.disk_bytes))
        .min()
        .unwrap_or(0);
    add(
        doc,
        &format!("{schemas}/SandboxCallRequest/properties/limits"),
        json!({"properties": {
        "wall_time_ms": {"maximum": smallest(|l| l.wall_time_ms)},
        "cpu_time_ms": {"maximum": smallest(|l| l.cpu_time_ms)},
        "memory_bytes": {"maximum": smallest(|l| l.memory_bytes)},
        "pids": {"maximum": smallest(|l| l.pids)},
        "output_bytes": {"maximum": smallest(|l| l.output_bytes)},
        "disk_bytes": {"maximum": sandbox_disk},
    }, "description": "Each at most the sandbox policy's maximum (`GET /v1/policies`), `disk_bytes` at most the sandbox's own disk \
(its policy's default); the bounds given here are what a sandbox of every policy takes."}),
    );

    add(
        doc,
        &format!("{schemas}/FileSpec/properties/path"),
        json!({"pattern": PATH_PATTERN}),
    );
    add(
        doc,
        &format!("{schemas}/FileSpec"),
        json!({"anyOf": [
            {"properties": {"encoding": {"enum": ["utf8"]}}},
            {"required": ["encoding"], "properties": {"encoding": {"enum": ["base64"]}, "content": {"pattern": BASE64}}},
        ]}),
    );

    // Sandboxes: executors this service has a backend for, each policy's executors, the TTL bound.
    let max_ttl = state.max_sandbox_ttl_seconds;
    let backends: Vec<&str> = KNOWN_EXECUTORS
        .iter()
        .copied()
        .filter(|e| {
            state
                .sandboxes
                .as_ref()
                .is_some_and(|m| m.backend(e).is_some())
        })
        .collect();
    let props = format!("{schemas}/CreateSandbox/properties");
    add(
        doc,
        &format!("{props}/executor"),
        json!({"enum": nullable(&backends)}),
    );
    add(
        doc,
        &format!("{props}/policy"),
        json!({"enum": nullable(&names)}),
    );
    add(
        doc,
        &format!("{props}/ttl_seconds"),
        json!({"minimum": 1, "maximum": max_ttl}),
    );
    add(
        doc,
        &format!("{props}/idle_timeout_seconds"),
        json!({"minimum": 1, "maximum": max_ttl}),
    );
    add(doc, &format!("{props}/env"), env_map());
    let sandboxes = per_policy(false, &|e| backends.contains(&e));
    add(
        doc,
        &format!("{schemas}/CreateSandbox"),
        json!({"anyOf": sandboxes}),
    );
    add(
        doc,
        &format!("{schemas}/Keepalive/properties/ttl_seconds"),
        json!({"minimum": 1, "maximum": max_ttl}),
    );

    // Agent runs.
    let agent = &state.agent_settings;
    let props = format!("{schemas}/AgentRequest/properties");
    add(
        doc,
        &format!("{props}/max_turns"),
        json!({"minimum": 1, "maximum": agent.max_turns}),
    );
    add(
        doc,
        &format!("{props}/max_output_chars"),
        json!({"minimum": 100, "maximum": 1_000_000}),
    );
    add(
        doc,
        &format!("{props}/executor"),
        json!({"enum": nullable(&backends)}),
    );
    add(
        doc,
        &format!("{props}/policy"),
        json!({"enum": nullable(&names)}),
    );

    // Contexts speak Python; a context call brings only code (the interpreter is running).
    let python: Vec<&str> = state
        .runtimes
        .runtimes
        .iter()
        .filter(|r| crate::sandbox::stateful::CONTEXT_LANGUAGES.contains(&r.language.as_str()))
        .flat_map(|r| {
            std::iter::once(r.language.as_str()).chain(r.aliases.iter().map(String::as_str))
        })
        .collect();
    add(
        doc,
        &format!("{schemas}/CreateContext/properties/language"),
        json!({"enum": python}),
    );
    add(
        doc,
        &format!("{schemas}/SandboxCallRequest"),
        json!({"allOf": [{"anyOf": [
            {"properties": {"context": {"type": "null"}}},
            {"properties": {
                "language": {"enum": python},
                "files": {"maxItems": 0},
                "stdin": {"maxLength": 0},
                "args": {"maxItems": 0},
                "env": {"maxProperties": 0},
            }},
        ]}]}),
    );
    let props = format!("{schemas}/CreateProcess/properties");
    add(
        doc,
        &format!("{props}/command"),
        json!({"items": {"type": "string", "pattern": NO_NUL}}),
    );
    add(doc, &format!("{props}/env"), env_map());
    add(
        doc,
        &format!("{props}/cwd"),
        json!({"pattern": format!("^(?:(?:\\./?)?|{}/?)$", &PATH_PATTERN[1..PATH_PATTERN.len() - 1])}),
    );

    // Paths in URLs: a file, or the directory to list (the whole work dir when empty or `.`).
    for (path, method) in [
        ("/v1/sandboxes/{id}/files/{path}", "get"),
        ("/v1/sandboxes/{id}/files/{path}", "put"),
        ("/v1/sandboxes/{id}/files", "get"),
    ] {
        let escaped = path.replace('~', "~0").replace('/', "~1");
        let params = at(doc, &format!("/paths/{escaped}/{method}/parameters"))
            .as_array_mut()
            .expect("parameters");
        for p in params.iter_mut().filter(|p| p["name"] == "path") {
            // A directory to list: empty, `.` or `./` for the work dir, else a path with at most one
            // trailing slash, as `exec::path::check_dir_raw` takes it.
            let pattern = if p["in"] == "query" {
                format!(
                    "^(?:(?:\\./?)?|{}/?)$",
                    &PATH_PATTERN[1..PATH_PATTERN.len() - 1]
                )
            } else {
                PATH_PATTERN.to_string()
            };
            p["schema"]["pattern"] = json!(pattern);
            if p["in"] == "path" {
                p["schema"]["maxLength"] = json!(crate::exec::path::MAX_PATH_BYTES);
            }
        }
    }
}

/// A batch takes any item of a run's shape: one that is otherwise invalid (an unknown language, a
/// limit over the maximum) gets its error in its place in `results`, the batch still answers
/// 200. So its items are the run's schema as derived, with the shape only: copies of the run's
/// schemas without the rules `constrain` and the types' attributes add.
fn batch_items(doc: &mut Value) {
    const COPIES: [(&str, &str); 3] = [
        ("ExecuteRequest", "BatchItemRequest"),
        ("FileSpec", "BatchItemFile"),
        ("LimitOverrides", "BatchItemLimits"),
    ];
    fn shape_only(v: &mut Value) {
        match v {
            Value::Object(o) => {
                for key in [
                    "pattern",
                    "maxLength",
                    "maxItems",
                    "maximum",
                    "propertyNames",
                    "not",
                    "anyOf",
                    "allOf",
                ] {
                    o.remove(key);
                }
                if o.get("minimum")
                    .and_then(Value::as_u64)
                    .is_some_and(|m| m > 0)
                {
                    o.insert("minimum".into(), json!(0));
                }
                if let Some(Value::String(r)) = o.get_mut("$ref") {
                    if let Some((_, copy)) = COPIES
                        .iter()
                        .find(|(from, _)| r.as_str() == format!("#/components/schemas/{from}"))
                    {
                        *r = format!("#/components/schemas/{copy}");
                    }
                }
                o.values_mut().for_each(shape_only);
            }
            Value::Array(a) => a.iter_mut().for_each(shape_only),
            _ => {}
        }
    }
    for (from, copy) in COPIES {
        let mut schema = at(doc, &format!("/components/schemas/{from}")).clone();
        shape_only(&mut schema);
        at(doc, "/components/schemas")
            .as_object_mut()
            .unwrap()
            .insert(copy.into(), schema);
    }
    *at(
        doc,
        "/components/schemas/BatchRequest/properties/requests/items",
    ) = json!({"$ref": "#/components/schemas/BatchItemRequest"});
    add(
        doc,
        "/components/schemas/BatchItemRequest",
        json!({"description": "An item of a batch: the body of `POST /v1/execute` in its shape (types and field names); \
whatever else is wrong with it is answered in its place in `results`."}),
    );
}

/// utoipa writes Rust's unsigned integers as `format: int64` (or `int32`), which bounds them at
/// the signed maximum; the service takes up to the unsigned one. Said as a `maximum` instead.
fn unsigned(v: &mut Value) {
    match v {
        Value::Object(o) => {
            let max = match o.get("format").and_then(Value::as_str) {
                Some("int64") => Some(u64::MAX),
                Some("int32") => Some(u32::MAX as u64),
                _ => None,
            };
            if let (Some(max), true) = (max, o.get("minimum").and_then(Value::as_u64).is_some()) {
                o.remove("format");
                o.entry("maximum").or_insert(json!(max));
            }
            o.values_mut().for_each(unsigned);
        }
        Value::Array(a) => a.iter_mut().for_each(unsigned),
        _ => {}
    }
}

fn env_map() -> Value {
    json!({"propertyNames": {"pattern": ENV_NAME_PATTERN}, "additionalProperties": {"type": "string", "pattern": NO_NUL}})
}
