//! `spec.mcpServers` → [`McpServer`]: names unique, URLs on the platform's
//! allow-list, credentials from opted-in Secrets, timeouts read.

use super::providers::{allowed, endpoint_url, unique_name};
use super::*;
use crate::resources::McpServerSpec;
use palisade_policy::McpServer;

pub(super) fn compile_mcp_servers(
    d: &mut Diags<'_>,
    servers: &[McpServerSpec],
    secrets: &Secrets,
    egress: &Egress,
) -> Option<Vec<McpServer>> {
    let mut out = Vec::with_capacity(servers.len());
    let mut ok = true;
    for (i, s) in servers.iter().enumerate() {
        let field = format!("spec.mcpServers[{i}]");
        let earlier = servers[..i].iter().map(|t| t.name.as_str());
        ok &= unique_name(d, &format!("{field}.name"), "MCP server", &s.name, earlier);
        let url_ok = endpoint_url(d, &format!("{field}.url"), &s.url);
        ok &= url_ok
            && allowed(
                d,
                &format!("{field}.url"),
                &s.url,
                s.credentials_secret_ref.is_some(),
                egress,
            );
        let token = match &s.credentials_secret_ref {
            None => None,
            Some(r) => match d.credentials(&format!("{field}.credentialsSecretRef"), secrets, r) {
                Some(v) => Some(SecretString::new(v)),
                None => {
                    ok = false;
                    None
                }
            },
        };
        let timeout = d
            .duration(
                &format!("{field}.timeout"),
                s.timeout.as_deref(),
                DEFAULT_PROVIDER_TIMEOUT,
                "30s",
            )
            .unwrap_or_else(|| {
                ok = false;
                DEFAULT_PROVIDER_TIMEOUT
            });
        out.push(McpServer {
            name: s.name.clone(),
            url: s.url.clone(),
            token,
            timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
        });
    }
    ok.then_some(out)
}
