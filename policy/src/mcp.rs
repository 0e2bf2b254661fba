//! MCP servers a policy puts behind the gateway (`spec.mcpServers`): each
//! served to the policy's agents at `/mcp/{name}`, its tool calls decided
//! like any other (the gateway's `api/mcp/`).

use crate::bundle::SecretString;
use serde::{Deserialize, Serialize};

/// One MCP server (Streamable HTTP).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct McpServer {
    /// The path segment agents use: `/mcp/{name}`.
    pub name: String,
    /// The server's endpoint, e.g. `http://files-mcp.tools.svc:8000/mcp`.
    pub url: String,
    /// Sent as `Authorization: Bearer ...`; the agent never sees it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<SecretString>,
    /// For one request's answer (a streamed one included).
    pub timeout_ms: u64,
}
