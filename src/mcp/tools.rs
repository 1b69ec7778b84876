//! The tools: their names, descriptions and input schemas, and one call each through the run
//! path (`service.rs`). A call the service refuses is an answer with `isError` and the API's
//! error code and message, never a protocol error; only an unknown tool is one.

use std::sync::Arc;

use base64::Engine;
use rmcp::model::{CallToolResult, JsonObject, Tool, ToolAnnotations};
use rmcp::ErrorData;
use schemars::generate::SchemaSettings;
use schemars::JsonSchema;
use serde::de::DeserializeOwned;

use super::args::{self, Encoding};
use super::{answer, service};
use crate::api::ApiError;
use crate::service::AppState;
use crate::store::Team;

/// What a call runs with: the service, the caller's team and where runs go by default.
pub struct Caller<'a> {
    pub state: &'a Arc<AppState>,
    pub team: &'a Team,
    pub default_executor: &'a str,
}

/// The tools as `tools/list` shows them. `languages` is named in each `language` argument.
pub fn list(languages: &str) -> Vec<Tool> {
    vec![
        tool::<args::Execute>(
            "execute",
            "Run a program once in a fresh, isolated sandbox (no network) and answer its status, \
             exit code, stdout and stderr. Nothing is kept after the run.",
            languages,
        )
        .annotate(annotations(false, false)),
        tool::<args::CreateSandbox>(
            "create_sandbox",
            "Create a persistent sandbox: a working directory that lives across calls until its \
             TTL passes or it is deleted. Answers its id (sb_...) for the other tools.",
            languages,
        )
        .annotate(annotations(false, false)),
        tool::<args::SandboxExecute>(
            "sandbox_execute",
            "Run a program in a sandbox's working directory, where earlier calls' files remain. \
             With `context`, run Python code in a stateful interpreter instead (variables persist \
             between calls).",
            languages,
        )
        .annotate(annotations(false, false)),
        tool::<args::CreateContext>(
            "create_context",
            "Start a stateful Python interpreter in a sandbox; pass its id (ctx_...) as \
             `context` to sandbox_execute to run code in it.",
            languages,
        )
        .annotate(annotations(false, false)),
        tool::<args::WriteFile>(
            "write_file",
            "Write a file into a sandbox's working directory (replacing it if it exists).",
            languages,
        )
        .annotate(annotations(false, true)),
        tool::<args::ReadFile>(
            "read_file",
            "Read a file from a sandbox's working directory: its text, or base64 when it is not \
             UTF-8.",
            languages,
        )
        .annotate(annotations(true, false)),
        tool::<args::ListFiles>(
            "list_files",
            "List the files and directories below a directory of a sandbox, recursively.",
            languages,
        )
        .annotate(annotations(true, false)),
        tool::<args::DeleteSandbox>(
            "delete_sandbox",
            "Delete a sandbox with all its files, contexts and processes.",
            languages,
        )
        .annotate(annotations(false, true)),
    ]
}

/// Every tool works only in execbox's sandboxes; `destructive` ones replace or delete what a
/// sandbox holds.
fn annotations(read_only: bool, destructive: bool) -> ToolAnnotations {
    let a = ToolAnnotations::new()
        .read_only(read_only)
        .open_world(false);
    if read_only {
        a
    } else {
        a.destructive(destructive)
    }
}

fn tool<T: JsonSchema + 'static>(
    name: &'static str,
    description: &'static str,
    languages: &str,
) -> Tool {
    // Subschemas inline: clients hand `properties` to models as they are, without `$defs`.
    let settings = SchemaSettings::draft2020_12().with(|s| s.inline_subschemas = true);
    let root = settings.into_generator().into_root_schema_for::<T>();
    let serde_json::Value::Object(mut schema) = root.to_value() else {
        unreachable!("a struct's schema is an object")
    };
    for meta in ["$schema", "title"] {
        schema.remove(meta);
    }
    one_line_descriptions(&mut schema);
    if let Some(language) = schema
        .get_mut("properties")
        .and_then(|p| p.get_mut("language"))
        .and_then(|l| l.as_object_mut())
    {
        let said = language
            .get("description")
            .and_then(|d| d.as_str())
            .unwrap_or_default();
        let said = format!("{said} Available: {languages}.");
        language.insert("description".into(), said.trim_start().into());
    }
    Tool::new(name, description, Arc::new(schema))
}

/// Doc comments wrap; a description reads as one line.
fn one_line_descriptions(schema: &mut JsonObject) {
    for (key, value) in schema.iter_mut() {
        match value {
            serde_json::Value::String(s) if key == "description" => *s = s.replace('\n', " "),
            serde_json::Value::Object(o) => one_line_descriptions(o),
            _ => {}
        }
    }
}

/// Call tool `name` with `arguments` for the caller; Err only for a tool that does not exist.
pub async fn call(
    caller: &Caller<'_>,
    name: &str,
    arguments: JsonObject,
) -> Result<CallToolResult, ErrorData> {
    let answered = match name {
        "execute" => execute(caller, arguments).await,
        "create_sandbox" => create_sandbox(caller, arguments).await,
        "sandbox_execute" => sandbox_execute(caller, arguments).await,
        "create_context" => create_context(caller, arguments).await,
        "write_file" => write_file(caller, arguments).await,
        "read_file" => read_file(caller, arguments).await,
        "list_files" => list_files(caller, arguments).await,
        "delete_sandbox" => delete_sandbox(caller, arguments).await,
        _ => {
            return Err(ErrorData::invalid_params(
                format!("no tool named \"{name}\"; tools/list lists them"),
                None,
            ))
        }
    };
    Ok(answered.unwrap_or_else(|e| answer::error(&e)))
}

/// Arguments that do not fit the schema are the caller's to fix, answered like the API's 400.
fn parse<T: DeserializeOwned>(tool: &str, arguments: JsonObject) -> Result<T, ApiError> {
    serde_json::from_value(serde_json::Value::Object(arguments)).map_err(|e| {
        ApiError::new(
            axum::http::StatusCode::BAD_REQUEST,
            "invalid_request",
            format!("the arguments of {tool} do not fit its input schema: {e}"),
        )
    })
}

async fn execute(c: &Caller<'_>, arguments: JsonObject) -> Result<CallToolResult, ApiError> {
    let a: args::Execute = parse("execute", arguments)?;
    let req = a.into_request(c.default_executor);
    let result = service::execute(c.state, c.team, req).await?;
    Ok(answer::run(&result))
}

async fn create_sandbox(c: &Caller<'_>, arguments: JsonObject) -> Result<CallToolResult, ApiError> {
    let a: args::CreateSandbox = parse("create_sandbox", arguments)?;
    let req = a.into_request(c.default_executor, c.state.max_sandbox_ttl_seconds);
    let sandbox = service::create_sandbox(c.state, c.team, req).await?;
    let text = format!(
        "created sandbox {} (executor {}, policy {}); it expires at {}",
        sandbox.id, sandbox.executor, sandbox.policy, sandbox.expires_at
    );
    Ok(answer::done(text, &sandbox))
}

async fn sandbox_execute(
    c: &Caller<'_>,
    arguments: JsonObject,
) -> Result<CallToolResult, ApiError> {
    let a: args::SandboxExecute = parse("sandbox_execute", arguments)?;
    let (id, req) = a.into_request();
    let result = service::sandbox_execute(c.state, c.team, &id, req).await?;
    Ok(answer::run(&result))
}

async fn create_context(c: &Caller<'_>, arguments: JsonObject) -> Result<CallToolResult, ApiError> {
    let a: args::CreateContext = parse("create_context", arguments)?;
    let id = service::create_context(c.state, c.team, &a.sandbox_id, &a.language).await?;
    let text = format!(
        "started context {id} in sandbox {}; run code in it with sandbox_execute and context \"{id}\"",
        a.sandbox_id
    );
    let view = serde_json::json!({"id": id, "sandbox_id": a.sandbox_id, "language": "python"});
    Ok(answer::done(text, &view))
}

async fn write_file(c: &Caller<'_>, arguments: JsonObject) -> Result<CallToolResult, ApiError> {
    let a: args::WriteFile = parse("write_file", arguments)?;
    let content = match a.encoding {
        Encoding::Utf8 => a.content.into_bytes(),
        Encoding::Base64 => base64::engine::general_purpose::STANDARD
            .decode(&a.content)
            .map_err(|e| {
                ApiError::new(
                    axum::http::StatusCode::BAD_REQUEST,
                    "invalid_request",
                    format!("content is not valid base64 ({e}); send standard base64 with padding, or the text itself without encoding"),
                )
            })?,
    };
    let written = service::write_file(c.state, c.team, &a.sandbox_id, &a.path, content).await?;
    let text = format!("wrote {} bytes to {}", written.size, written.path);
    Ok(answer::done(text, &written))
}

async fn read_file(c: &Caller<'_>, arguments: JsonObject) -> Result<CallToolResult, ApiError> {
    let a: args::ReadFile = parse("read_file", arguments)?;
    let bytes = service::read_file(c.state, c.team, &a.sandbox_id, &a.path).await?;
    Ok(answer::file(&a.path, bytes))
}

async fn list_files(c: &Caller<'_>, arguments: JsonObject) -> Result<CallToolResult, ApiError> {
    let a: args::ListFiles = parse("list_files", arguments)?;
    let files = service::list_files(c.state, c.team, &a.sandbox_id, &a.path).await?;
    Ok(answer::listing(&files))
}

async fn delete_sandbox(c: &Caller<'_>, arguments: JsonObject) -> Result<CallToolResult, ApiError> {
    let a: args::DeleteSandbox = parse("delete_sandbox", arguments)?;
    service::delete_sandbox(c.state, c.team, &a.sandbox_id).await?;
    let text = format!("deleted sandbox {}", a.sandbox_id);
    Ok(answer::done(
        text,
        &serde_json::json!({"deleted": a.sandbox_id}),
    ))
}
