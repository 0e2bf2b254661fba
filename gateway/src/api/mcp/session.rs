//! MCP sessions bound to the agent that opened them: the gateway hands
//! the agent the server's `Mcp-Session-Id` with a tag of its own,
//! `<server's id>.<tag>`, the tag an HMAC-SHA256 of the agent's identity
//! and the id under a key derived from the server's credentials (so every
//! replica computes the same tag, and no agent can). A request whose tag
//! does not fit its agent is answered `404` (the session is unknown, as
//! the specification has it: the client starts a new one), so one agent
//! cannot ride another's session.

use crate::credentials::Identity;
use hmac::{Hmac, KeyInit, Mac};
use palisade_policy::McpServer;
use sha2::{Digest, Sha256};

const TAG_HEX: usize = 32;

fn key(server: &McpServer) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"palisade-mcp-session\0");
    h.update(server.url.as_bytes());
    h.update(b"\0");
    if let Some(token) = &server.token {
        h.update(token.expose().as_bytes());
    }
    h.finalize().into()
}

fn tag(server: &McpServer, who: &Identity, id: &str) -> Option<String> {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&key(server)).ok()?;
    for part in [who.namespace.as_str(), who.agent.as_str(), id] {
        mac.update(part.as_bytes());
        mac.update(b"\0");
    }
    let bytes = mac.finalize().into_bytes();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    Some(hex[..TAG_HEX].to_owned())
}

/// The session id the agent gets for the server's `id`.
pub fn wrap(server: &McpServer, who: &Identity, id: &str) -> Option<String> {
    Some(format!("{id}.{}", tag(server, who, id)?))
}

/// The server's id in the agent's `wrapped` one, if its tag fits this
/// agent.
pub fn unwrap<'a>(server: &McpServer, who: &Identity, wrapped: &'a str) -> Option<&'a str> {
    let (id, sent) = wrapped.rsplit_once('.')?;
    let want = tag(server, who, id)?;
    let same = want.len() == sent.len()
        && want
            .bytes()
            .zip(sent.bytes())
            .fold(0u8, |d, (a, b)| d | (a ^ b))
            == 0;
    same.then_some(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(token: Option<&str>) -> McpServer {
        McpServer {
            name: "files".into(),
            url: "http://files.tools.svc/mcp".into(),
            token: token.map(palisade_policy::SecretString::new),
            timeout_ms: 1000,
        }
    }

    fn who(agent: &str) -> Identity {
        Identity {
            namespace: "clinic".into(),
            agent: agent.into(),
        }
    }

    #[test]
    fn a_session_is_its_agents_only() {
        let s = server(Some("t0ken"));
        let wrapped = wrap(&s, &who("intake"), "abc123").unwrap();
        assert_eq!(unwrap(&s, &who("intake"), &wrapped), Some("abc123"));
        assert_eq!(unwrap(&s, &who("billing"), &wrapped), None, "another agent");
        assert_eq!(unwrap(&s, &who("intake"), "abc123"), None, "no tag");
        let other_key = server(Some("rotated"));
        assert_eq!(unwrap(&other_key, &who("intake"), &wrapped), None);
        let mut tampered = wrapped.clone();
        tampered.pop();
        tampered.push('0');
        assert!(tampered == wrapped || unwrap(&s, &who("intake"), &tampered).is_none());
    }
}
