//! `spec.mcpServers`: MCP servers (Streamable HTTP) the gateway serves to
//! the policy's agents at `/mcp/{name}`, deciding every tool call.

use super::SecretKeyRef;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One MCP server.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct McpServerSpec {
    /// Agents reach it at `/mcp/{name}` on the gateway.
    #[schemars(length(min = 1, max = 63), pattern(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"))]
    pub name: String,
    /// Its Streamable HTTP endpoint, e.g.
    /// `http://files-mcp.tools.svc:8000/mcp`. On the platform's allow-list
    /// like a provider's base URL.
    #[schemars(length(min = 1, max = 2048), pattern(r"^https?://[^\s]+$"))]
    pub url: String,
    /// A Secret key (labelled `palisade.dev/credentials: "true"`, in this
    /// namespace) the gateway sends as `Authorization: Bearer ...`; the
    /// agents never see it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<SecretKeyRef>,
    /// How long one request's answer may take, a streamed one included
    /// (default `60s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(r"^([0-9]+(ms|s|m|h))+$"))]
    pub timeout: Option<String>,
}
