//! The MCP server (rmcp's `ServerHandler`): the initialize handshake of protocol versions
//! 2024-11-05 to 2025-11-25, `tools/list` and `tools/call`. `server/discover` (the probe of
//! newer clients) is answered with an error, so they fall back to `initialize`.

use std::borrow::Cow;
use std::sync::Arc;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, DiscoverResult, ErrorCode, Implementation,
    ListToolsResult, PaginatedRequestParams, ProtocolVersion, ServerCapabilities, ServerConfig,
    Tool,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler};

use super::tools::{self, Caller};
use crate::service::AppState;
use crate::store::Team;

/// The newest protocol version served: the last with the `initialize` handshake.
pub const NEWEST: ProtocolVersion = ProtocolVersion::V_2025_11_25;

/// One server, cheap to clone (the HTTP door makes one per request).
#[derive(Clone)]
pub struct Server {
    state: Arc<AppState>,
    /// Whose runs these are: fixed for stdio; over HTTP, the request's (the auth middleware's).
    team: Option<Team>,
    default_executor: Arc<str>,
    tools: Arc<Vec<Tool>>,
}

impl Server {
    /// `team` is None over HTTP, where each request carries its own.
    pub fn new(state: Arc<AppState>, team: Option<Team>, default_executor: &str) -> Server {
        // As `GET /v1/runtimes` lists them: those that passed their probe on some executor.
        let served: Vec<_> = state.executors.values().map(|e| e.runtimes()).collect();
        let mut languages: Vec<&str> = state
            .runtimes
            .runtimes
            .iter()
            .map(|r| r.language.as_str())
            .filter(|l| served.iter().any(|s| s.contains_key(*l)))
            .collect();
        languages.sort();
        let tools = Arc::new(tools::list(&languages.join(", ")));
        Server {
            state,
            team,
            default_executor: default_executor.into(),
            tools,
        }
    }

    fn team(&self, context: &RequestContext<RoleServer>) -> Result<Team, ErrorData> {
        if let Some(team) = &self.team {
            return Ok(team.clone());
        }
        context
            .extensions
            .get::<axum::http::request::Parts>()
            .and_then(|parts| parts.extensions.get::<Team>())
            .cloned()
            // The router puts /mcp behind the auth middleware, so this is a wiring fault.
            .ok_or_else(|| ErrorData::internal_error("the request carries no team", None))
    }
}

impl ServerHandler for Server {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_protocol_version(NEWEST)
            .with_server_info(Implementation::new("execbox", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "execbox runs code in isolated sandboxes without network. `execute` runs a \
                 program once; for work across calls, `create_sandbox`, then `sandbox_execute`, \
                 `write_file`, `read_file` and `list_files` in it (and `create_context` for \
                 Python whose variables persist), and `delete_sandbox` when done.",
            )
    }

    fn supported_protocol_versions(&self) -> Cow<'static, [ProtocolVersion]> {
        Cow::Borrowed(ProtocolVersion::known_up_to(&NEWEST))
    }

    async fn discover(
        &self,
        _context: RequestContext<RoleServer>,
    ) -> Result<DiscoverResult, ErrorData> {
        Err(ErrorData::new(
            ErrorCode::METHOD_NOT_FOUND,
            "server/discover is not served: this server speaks protocol versions 2024-11-05 to \
             2025-11-25; start with initialize",
            None,
        ))
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(self.tools.to_vec()))
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        self.tools.iter().find(|t| t.name == name).cloned()
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let team = self.team(&context)?;
        let caller = Caller {
            state: &self.state,
            team: &team,
            default_executor: &self.default_executor,
        };
        let arguments = request.arguments.unwrap_or_default();
        // A cancelled call drops the tool's future, which cancels its run.
        tokio::select! {
            answered = tools::call(&caller, &request.name, arguments) => answered.map(Into::into),
            // The client no longer waits for an answer; this one is for the log.
            _ = context.ct.cancelled() => Err(ErrorData::new(
                ErrorCode::INVALID_REQUEST,
                "the call was cancelled by the client",
                None,
            )),
        }
    }
}
