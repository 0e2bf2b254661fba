//! The OpenAPI 3 document of the gateway's API, served at `/openapi.json`,
//! and a small browsable page at `/docs` rendered from it (no scripts, no
//! CDN: it works on an air-gapped cluster).

use axum::Json;
use axum::response::{Html, IntoResponse, Response};
use serde_json::{Value, json};

fn error_response(description: &str) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}})
}

/// The document.
pub fn document() -> Value {
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "Palisade gateway",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Policy gateway for AI agents: OpenAI-compatible chat, Responses and embeddings and Anthropic's Messages API routed by policy, the models each agent may use, tool-call decisions, audit. Every error uses OpenAI's error shape; `error.code` is a Palisade reason code (see docs/reason-codes.md), unknown routes included (404 not_found, 405 method_not_allowed)."
        },
        "components": {
            "securitySchemes": {
                "agentKey": {"type": "http", "scheme": "bearer", "description": "The agent's API key (or, in a cluster, its ServiceAccount token)."},
                "operatorToken": {"type": "http", "scheme": "bearer", "description": "Standalone only: a token from GatewaySettings spec.approvals.operators. Agents never have one."},
                "auditorToken": {"type": "http", "scheme": "bearer", "description": "Standalone only: the token GatewaySettings spec.audit.readTokenEnv names. The audit routes are served only when it is set."}
            },
            "schemas": {
                "Error": {
                    "type": "object",
                    "properties": {
                        "error": {"type": "object", "properties": {
                            "message": {"type": "string"}, "type": {"type": "string"}, "param": {"nullable": true},
                            "code": {"type": "string", "description": "Reason code, e.g. tool.denied_by_rule, kill_switch.agent, model.not_allowed"}
                        }},
                        "palisade": {"type": "object", "description": "Rule, policy and request id of the decision."}
                    }
                },
                "ToolCallRequest": {
                    "type": "object", "required": ["tool"], "additionalProperties": false,
                    "properties": {
                        "tool": {"type": "string", "maxLength": 256, "description": "At most 256 bytes (400 tool.name_too_long)."},
                        "arguments": {"type": "object", "description": "The tool's arguments, decided as the text sent: a key given twice, or anything but an object, is 403 tool.arguments_invalid. Only their digest (of the text, every digit kept) is audited unless the policy says otherwise."},
                        "requestId": {"type": "string", "maxLength": 128},
                        "approval": {"type": "string", "description": "After a 202: the approved Approval this call uses (once, for exactly this agent, tool and arguments, before it expires)."},
                        "execute": {"type": "boolean", "description": "Run the call too, if it is allowed and the policy declares the tool in spec.tools.run: the answer carries `result` and `execution` (400 for a tool Palisade does not run)."}
                    }
                },
                "Approval": {
                    "type": "object",
                    "properties": {
                        "name": {"type": "string"}, "namespace": {"type": "string"}, "agent": {"type": "string"}, "tool": {"type": "string"},
                        "argumentsPreview": {"type": "string", "maxLength": 4096, "description": "What a human sees of the arguments: indented JSON, redacted as the policy says, at most 4096 bytes; longer arguments are cut, ending with a line saying how much is shown."},
                        "argumentsTruncated": {"type": "boolean", "description": "Whether argumentsPreview shows only the start of the arguments. The approval is for the full arguments, by argumentsDigest."},
                        "argumentsDigest": {"type": "string"}, "requestId": {"type": "string"}, "policy": {"type": "string"}, "rule": {"type": "string", "nullable": true},
                        "phase": {"type": "string", "enum": ["Pending", "Approved", "Denied", "Expired", "Consumed"]},
                        "decision": {"type": "string", "nullable": true}, "reason": {"type": "string", "nullable": true}, "decidedBy": {"type": "string", "nullable": true},
                        "requestedAt": {"type": "string", "format": "date-time"}, "expiresAt": {"type": "string", "format": "date-time"},
                        "poll": {"type": "string", "description": "Where to poll: /v1/approvals/{name}"}
                    }
                },
                "Decision": {
                    "type": "object",
                    "properties": {
                        "decision": {"type": "string", "enum": ["Allow", "Deny", "RequireApproval"]},
                        "effectiveDecision": {"type": "string", "description": "What the gateway does: Allow in Audit (dry-run) enforcement."},
                        "enforced": {"type": "boolean"},
                        "reasonCode": {"type": "string"},
                        "rule": {"type": "string", "nullable": true},
                        "policy": {"type": "object", "nullable": true},
                        "requestId": {"type": "string"},
                        "result": {"description": "With execute: the tool's sanitised result (sql_query: columns, rows, rowCount, truncated; read_file: root, path, bytes, content; HTTP tools: status, body)."},
                        "execution": {"type": "object", "description": "With execute: reasonCode (tool.executed or why not), durationMs, truncated."}
                    }
                }
            }
        },
        "paths": {
            "/v1/chat/completions": {"post": {
                "summary": "Chat completion (OpenAI-compatible), routed by policy",
                "description": "Same request and response as OpenAI's chat completions, `stream: true` included. Response headers x-palisade-provider, x-palisade-model, x-palisade-reasons, x-request-id. Tool calls the model proposes are decided before they are returned. A request whose `tools` name tools the agent's policy runs (spec.tools.run; by function name) is served by the server-side tool loop: Palisade runs the allowed calls of those tools and feeds the results back, up to spec.tools.run.maxSteps rounds, and the answer's `palisade.toolLoop` lists every call, its decision and its run (`stoppedBy`: answer, clientTools, approval, maxSteps).",
                "security": [{"agentKey": []}],
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["messages"]}}}},
                "responses": {
                    "200": {"description": "The completion (JSON) or a stream (text/event-stream)"},
                    "400": error_response("Malformed request"),
                    "401": error_response("Unknown API key"),
                    "403": error_response("Refused by policy (kill switch, model not allowed, no policy)"),
                    "502": error_response("Provider failed (and its fallback, if any)"),
                    "503": error_response("Not ready, or the request could not be audited"),
                    "504": error_response("Provider timed out")
                }
            }},
            "/v1/embeddings": {"post": {
                "summary": "Embeddings (OpenAI-compatible), routed by policy like chat",
                "description": "Same request and response as OpenAI's embeddings; `input` is a string or an array of strings (token ids are refused: the routing rules read the text). Routed and refused like a chat request (kill switches, model allow-list); OpenAI-compatible providers get the request as sent, Ollama's /api/embed is translated (`encoding_format: base64` included), Anthropic has none (400 upstream.unsupported). Audited as an `embedding` event. Response headers as for chat.",
                "security": [{"agentKey": []}],
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["input"]}}}},
                "responses": {
                    "200": {"description": "OpenAI's list of embeddings, with a `palisade` object saying where it went"},
                    "400": error_response("Malformed request, or routed to a provider without embeddings (upstream.unsupported)"),
                    "401": error_response("Unknown API key"),
                    "403": error_response("Refused by policy (kill switch, model not allowed, no policy)"),
                    "502": error_response("Provider failed (and its fallback, if any)"),
                    "503": error_response("Not ready, or the request could not be audited"),
                    "504": error_response("Provider timed out")
                }
            }},
            "/v1/messages": {"post": {
                "summary": "Anthropic's Messages API (the anthropic SDKs), routed by policy like chat",
                "description": "Same request and response as Anthropic's Messages API, `stream: true` included (Anthropic's SSE events). The agent's key in `x-api-key` or `Authorization: Bearer`. Routed to any provider (Anthropic's own, or translated to OpenAI-compatible and Ollama ones), audited as a chat request; every `tool_use` the model proposes is decided before the client sees it (denied and held ones replaced by an explanation in the text). Text, tool_use and tool_result blocks are carried; other block types (images, documents, thinking) are refused 400 naming the block. Errors in OpenAI's shape with Palisade's codes (the SDK raises its typed errors).",
                "security": [{"agentKey": []}],
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["max_tokens", "messages"]}}}},
                "responses": {
                    "200": {"description": "A Messages answer (JSON, with a `palisade` object) or a Messages stream (text/event-stream)"},
                    "400": error_response("Malformed request, or a content block it does not carry"),
                    "401": error_response("Unknown API key"),
                    "403": error_response("Refused by policy (kill switch, model not allowed, no policy)"),
                    "502": error_response("Provider failed (and its fallback, if any)"),
                    "503": error_response("Not ready, or the request could not be audited"),
                    "504": error_response("Provider timed out")
                }
            }},
            "/v1/responses": {"post": {
                "summary": "OpenAI's Responses API, routed by policy like chat",
                "description": "Same request and response as OpenAI's Responses API, `stream: true` included (its event stream). Read into a chat request and routed like one, to any provider; every `function_call` the model proposes is decided before the client sees it (denied and held ones replaced by an explanation in the text). Stateless: `previous_response_id` is refused (send the conversation in `input`); input items other than messages, function_call and function_call_output, content other than text, and tools other than functions are refused 400 naming them.",
                "security": [{"agentKey": []}],
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["input"]}}}},
                "responses": {
                    "200": {"description": "A Response (JSON, with a `palisade` object) or the Responses event stream (text/event-stream)"},
                    "400": error_response("Malformed request, or something it does not carry (named)"),
                    "401": error_response("Unknown API key"),
                    "403": error_response("Refused by policy (kill switch, model not allowed, no policy)"),
                    "429": error_response("Over one of the policy's spec.limits (limit.*), with Retry-After"),
                    "502": error_response("Provider failed (and its fallback, if any)"),
                    "503": error_response("Not ready, or the request could not be audited"),
                    "504": error_response("Provider timed out")
                }
            }},
            "/v1/models": {"get": {
                "summary": "The models this agent may ask for (OpenAI's list shape)",
                "description": "Every model the agent's policy's providers list (OpenAI and Anthropic GET /v1/models, Ollama /api/tags) that the policy's models.allow matches, plus each provider's defaultModel when allowed; `owned_by` is the provider's name in the policy. A provider that cannot be listed is left out. Not audited.",
                "security": [{"agentKey": []}],
                "responses": {
                    "200": {"description": "{\"object\": \"list\", \"data\": [{\"id\", \"object\": \"model\", \"created\", \"owned_by\"}]}"},
                    "401": error_response("Unknown API key"),
                    "403": error_response("A kill switch, or no valid policy for the agent")
                }
            }},
            "/v1/tool-calls": {"post": {
                "summary": "May this agent run this tool with these arguments?",
                "security": [{"agentKey": []}],
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ToolCallRequest"}}}},
                "responses": {
                    "200": {"description": "Allowed", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Decision"}}}},
                    "400": error_response("Malformed request, or a tool name over 256 bytes (tool.name_too_long)"),
                    "401": error_response("Unknown API key"),
                    "202": {"description": "Held for a human: the body's `approval` names the Approval, where to poll and its expiry; repeat the call with `approval` once it is Approved", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Decision"}}}},
                    "403": error_response("Denied, or the named approval cannot be used (approval.denied, approval.expired, approval.replay_refused, approval.mismatch, approval.not_found)"),
                    "413": error_response("Body larger than 1 MiB"),
                    "415": error_response("Body not sent as application/json"),
                    "502": error_response("With execute: the tool ran and failed (tool.execution_failed)"),
                    "503": error_response("Not ready, or the decision could not be audited"),
                    "504": error_response("With execute: the tool ran past its timeout (tool.timeout)")
                }
            }},
            "/v1/approvals/{name}": {"get": {
                "summary": "Where an approval stands (long-poll with ?wait=30s, at most 60s)",
                "security": [{"agentKey": []}, {"operatorToken": []}],
                "parameters": [
                    {"name": "name", "in": "path", "required": true, "schema": {"type": "string"}},
                    {"name": "wait", "in": "query", "schema": {"type": "string"}, "description": "Wait while Pending, e.g. 30s"},
                    {"name": "namespace", "in": "query", "schema": {"type": "string"}, "description": "Operators: the approval's namespace (default: found by name)"}
                ],
                "responses": {
                    "200": {"description": "The approval", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Approval"}}}},
                    "401": error_response("Unknown key or token"),
                    "404": error_response("No such approval that the caller may see (agents see only their own)")
                }
            }},
            "/v1/approvals": {"get": {
                "summary": "List approvals (standalone; operator token)",
                "security": [{"operatorToken": []}],
                "parameters": [
                    {"name": "namespace", "in": "query", "schema": {"type": "string"}},
                    {"name": "pending", "in": "query", "schema": {"type": "boolean"}}
                ],
                "responses": {
                    "200": {"description": "{\"items\": [Approval]}"},
                    "403": error_response("An agent key: agents cannot list or decide"),
                    "404": error_response("In a cluster: decide with kubectl patch approval")
                }
            }},
            "/v1/approvals/{name}/{action}": {"post": {
                "summary": "Approve or deny a held call (standalone; operator token)",
                "security": [{"operatorToken": []}],
                "parameters": [
                    {"name": "name", "in": "path", "required": true, "schema": {"type": "string"}},
                    {"name": "action", "in": "path", "required": true, "schema": {"type": "string", "enum": ["approve", "deny"]}}
                ],
                "requestBody": {"content": {"application/json": {"schema": {"type": "object", "properties": {"reason": {"type": "string", "maxLength": 1024}, "namespace": {"type": "string"}}}}}},
                "responses": {
                    "200": {"description": "Recorded (decidedBy operator:NAME)", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Approval"}}}},
                    "403": error_response("An agent key"),
                    "404": error_response("No such approval; or, in a cluster, decisions go through kubectl"),
                    "409": error_response("Already decided (final) or expired")
                }
            }},
            "/v1/audit/events": {"get": {
                "summary": "The audit's rows (auditor token; served only when one is configured)",
                "security": [{"auditorToken": []}],
                "parameters": [
                    {"name": "requestId", "in": "query", "schema": {"type": "string"}},
                    {"name": "namespace", "in": "query", "schema": {"type": "string"}},
                    {"name": "agent", "in": "query", "schema": {"type": "string"}},
                    {"name": "decision", "in": "query", "schema": {"type": "string"}},
                    {"name": "reason", "in": "query", "schema": {"type": "string"}},
                    {"name": "tool", "in": "query", "schema": {"type": "string"}},
                    {"name": "since", "in": "query", "schema": {"type": "string", "format": "date-time"}},
                    {"name": "until", "in": "query", "schema": {"type": "string", "format": "date-time"}},
                    {"name": "limit", "in": "query", "schema": {"type": "integer", "maximum": 10000}}
                ],
                "responses": {
                    "200": {"description": "{\"events\": [...]}, oldest first"},
                    "400": error_response("A parameter it does not take, or a time that is not RFC 3339 (invalid_parameter)"),
                    "401": error_response("No, or a wrong, auditor token"),
                    "503": error_response("The audit database cannot be read")
                }
            }},
            "/v1/security/alerts": {"get": {
                "summary": "Security alerts over the agents' decisions (auditor token; served with the audit queries)",
                "security": [{"auditorToken": []}],
                "parameters": [
                    {"name": "namespace", "in": "query", "schema": {"type": "string"}},
                    {"name": "agent", "in": "query", "schema": {"type": "string"}},
                    {"name": "kind", "in": "query", "schema": {"type": "string", "enum": ["path_traversal", "sql_injection", "denial_burst", "repeated_held_call", "new_tool", "token_jump"]}},
                    {"name": "since", "in": "query", "schema": {"type": "string", "format": "date-time"}, "description": "Default: 24 hours ago"},
                    {"name": "until", "in": "query", "schema": {"type": "string", "format": "date-time"}},
                    {"name": "limit", "in": "query", "schema": {"type": "integer", "maximum": 10000}}
                ],
                "responses": {
                    "200": {"description": "{\"alerts\": [{time, namespace, agent, kind, policy, tool, argumentDigest, detail, requestId}]}, oldest first"},
                    "400": error_response("A parameter it does not take, or a time that is not RFC 3339 (invalid_parameter)"),
                    "401": error_response("No, or a wrong, auditor token"),
                    "503": error_response("The audit database cannot be read")
                }
            }},
            "/mcp/{server}": {
                "post": {
                    "summary": "An MCP server of the agent's policy (spec.mcpServers), Streamable HTTP: one JSON-RPC message; tools/call decided and audited first, tools/list filtered",
                    "security": [{"agentKey": []}],
                    "parameters": [{"name": "server", "in": "path", "required": true, "schema": {"type": "string"}}],
                    "responses": {
                        "200": {"description": "The server's answer (JSON or text/event-stream); a refused or held tools/call is a JSON-RPC error (-32001 refused, -32002 held for approval, data.reasonCode)"},
                        "403": error_response("No policy, or a kill switch"),
                        "404": error_response("No such MCP server in the agent's policy")
                    }
                },
                "get": {
                    "summary": "The MCP server's own event stream, passed through (ended by a kill switch)",
                    "security": [{"agentKey": []}],
                    "parameters": [{"name": "server", "in": "path", "required": true, "schema": {"type": "string"}}],
                    "responses": {"200": {"description": "text/event-stream"}}
                },
                "delete": {
                    "summary": "Ends the MCP session, passed through",
                    "security": [{"agentKey": []}],
                    "parameters": [{"name": "server", "in": "path", "required": true, "schema": {"type": "string"}}],
                    "responses": {"200": {"description": "Ended"}}
                }
            },
            "/v1/security/quarantines/{namespace}/{agent}/lift": {"post": {
                "summary": "Lift an agent's quarantine (standalone; operator token)",
                "security": [{"operatorToken": []}],
                "parameters": [
                    {"name": "namespace", "in": "path", "required": true, "schema": {"type": "string"}},
                    {"name": "agent", "in": "path", "required": true, "schema": {"type": "string"}}
                ],
                "responses": {
                    "200": {"description": "{namespace, agent, lifted: true, liftedBy: \"operator:NAME\"}"},
                    "401": error_response("No token"),
                    "403": error_response("Not an operator token"),
                    "404": error_response("The agent is not quarantined; or, in a cluster, remove the annotation palisade.dev/quarantine.AGENT")
                }
            }},
            "/v1/audit/usage": {"get": {
                "summary": "Requests and tokens per namespace, agent, provider and model (auditor token)",
                "security": [{"auditorToken": []}],
                "parameters": [
                    {"name": "namespace", "in": "query", "schema": {"type": "string"}},
                    {"name": "agent", "in": "query", "schema": {"type": "string"}},
                    {"name": "since", "in": "query", "schema": {"type": "string", "format": "date-time"}, "description": "Default: 24 hours ago"},
                    {"name": "until", "in": "query", "schema": {"type": "string", "format": "date-time"}}
                ],
                "responses": {
                    "200": {"description": "{\"usage\": [{namespace, agent, provider, model, requests, inputTokens, outputTokens, cachedTokens}]}"},
                    "400": error_response("A parameter it does not take (invalid_parameter)"),
                    "401": error_response("No, or a wrong, auditor token"),
                    "503": error_response("The audit database cannot be read")
                }
            }},
            "/healthz": {"get": {"summary": "Liveness", "responses": {"200": {"description": "ok"}}}},
            "/readyz": {"get": {"summary": "Readiness: a configuration is loaded", "responses": {"200": {"description": "Ready, with the served revision"}, "503": error_response("No configuration loaded yet")}}},
            "/metrics": {"get": {"summary": "Prometheus metrics", "responses": {"200": {"description": "text/plain exposition"}}}},
            "/openapi.json": {"get": {"summary": "This document", "responses": {"200": {"description": "OpenAPI 3"}}}},
            "/docs": {"get": {"summary": "This document as a page", "responses": {"200": {"description": "HTML"}}}}
        }
    })
}

pub async fn serve_document() -> Response {
    Json(document()).into_response()
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A plain HTML rendering: every path, method, summary and response.
pub async fn serve_docs() -> Response {
    let doc = document();
    let mut html = String::from(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Palisade gateway API</title>\
        <style>body{font-family:sans-serif;max-width:60rem;margin:2rem auto}code{background:#eee;padding:0 .2rem}td{padding:.2rem .6rem;vertical-align:top}</style>\
        </head><body><h1>Palisade gateway API</h1>",
    );
    html.push_str(&format!(
        "<p>{}</p><p>Machine-readable: <a href=\"/openapi.json\">/openapi.json</a></p>",
        escape(doc["info"]["description"].as_str().unwrap_or(""))
    ));
    for (path, item) in doc["paths"].as_object().into_iter().flatten() {
        for (method, op) in item.as_object().into_iter().flatten() {
            html.push_str(&format!(
                "<h2><code>{} {}</code></h2><p>{}</p>",
                method.to_uppercase(),
                escape(path),
                escape(op["summary"].as_str().unwrap_or(""))
            ));
            if let Some(d) = op["description"].as_str() {
                html.push_str(&format!("<p>{}</p>", escape(d)));
            }
            html.push_str("<table>");
            for (code, r) in op["responses"].as_object().into_iter().flatten() {
                html.push_str(&format!(
                    "<tr><td><b>{code}</b></td><td>{}</td></tr>",
                    escape(r["description"].as_str().unwrap_or(""))
                ));
            }
            html.push_str("</table>");
        }
    }
    html.push_str("</body></html>");
    Html(html).into_response()
}
