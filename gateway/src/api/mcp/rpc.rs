//! The JSON-RPC side of the MCP gateway, pure: reading a client's message,
//! the errors Palisade answers in-band, `tools/list` filtered to what the
//! agent may call, and results sanitised.
//!
//! Error codes (in the JSON-RPC range left to implementations):
//! `-32001` refused by the policy (the reason code in `data.reasonCode`),
//! `-32002` held for a human's approval (`data.approval` names it; repeat
//! the call with `_meta: {"palisade.dev/approval": NAME}` once approved),
//! `-32003` the MCP server failed (unreachable, too slow, unreadable).

use palisade_policy::{Outcome, PolicyBundle, Redactions, sanitize_json};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};

pub const REFUSED: i64 = -32001;
pub const HELD: i64 = -32002;
pub const UPSTREAM: i64 = -32003;
/// The `_meta` key naming the approval a repeated call uses.
pub const APPROVAL_META: &str = "palisade.dev/approval";
/// What a held tool's description starts with in `tools/list`.
pub const HELD_MARK: &str = "[Palisade: needs human approval] ";

/// A client's JSON-RPC message as far as the gateway reads it.
#[derive(Debug, Deserialize)]
pub struct Message {
    #[serde(default)]
    pub id: Option<Value>,
    #[serde(default)]
    pub method: Option<String>,
    #[serde(default)]
    pub params: Option<Box<RawValue>>,
}

/// `tools/call`'s params: the arguments as sent (decided and digested as
/// that text), and the approval its `_meta` names.
#[derive(Debug, Deserialize)]
pub struct CallParams {
    pub name: String,
    #[serde(default)]
    pub arguments: Option<Box<RawValue>>,
    #[serde(default, rename = "_meta")]
    pub meta: Option<serde_json::Map<String, Value>>,
}

impl CallParams {
    pub fn approval(&self) -> Option<&str> {
        self.meta.as_ref()?.get(APPROVAL_META)?.as_str()
    }
}

/// A JSON-RPC error response to `id`.
pub fn error(id: Option<&Value>, code: i64, message: &str, data: Value) -> Value {
    json!({
        "jsonrpc": "2.0",
        "id": id.cloned().unwrap_or(Value::Null),
        "error": {"code": code, "message": message, "data": data},
    })
}

/// `result.tools` of a `tools/list` answer, keeping only the tools
/// `agent` may call ([`PolicyBundle::tool_listing`]): a tool it can never
/// call is left out, one held for approval is kept with [`HELD_MARK`]
/// before its description.
pub fn filter_tools(result: &mut Value, bundle: &PolicyBundle, who: (&str, &str)) {
    let Some(tools) = result.get_mut("tools").and_then(Value::as_array_mut) else {
        return;
    };
    let now = jiff::Timestamp::now();
    tools.retain_mut(|tool| {
        let Some(name) = tool.get("name").and_then(Value::as_str) else {
            return false;
        };
        match bundle.tool_listing(who.0, who.1, name, now) {
            Outcome::Deny => false,
            Outcome::RequireApproval => {
                let description = tool
                    .get("description")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                tool["description"] = Value::String(format!("{HELD_MARK}{description}"));
                true
            }
            Outcome::Allow => true,
        }
    });
}

/// A `tools/call` result with every string sanitised (API keys,
/// authorization values, private keys, ... as for the tools Palisade
/// runs).
pub fn sanitize_result(result: &mut Value, redactions: &mut Redactions) {
    sanitize_json(result, redactions);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_approval_is_read_from_meta() {
        let p: CallParams = serde_json::from_str(
            r#"{"name":"send_email","arguments":{"to":"a"},"_meta":{"palisade.dev/approval":"app-1","progressToken":3}}"#,
        )
        .unwrap();
        assert_eq!(p.approval(), Some("app-1"));
        assert_eq!(p.arguments.unwrap().get(), r#"{"to":"a"}"#);
    }

    #[test]
    fn an_error_keeps_the_id() {
        let e = error(Some(&json!(7)), REFUSED, "no", json!({"reasonCode": "x"}));
        assert_eq!(e["id"], 7);
        assert_eq!(e["error"]["code"], REFUSED);
        assert_eq!(error(None, HELD, "h", json!({}))["id"], Value::Null);
    }
}
