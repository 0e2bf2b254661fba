//! Palisade's policy core: the compiled [`PolicyBundle`] and the pure
//! evaluation of tool calls ([`PolicyBundle::evaluate_tool`]) and chat
//! routing ([`PolicyBundle::evaluate_chat`]), the stable [`ReasonCode`]
//! list, tool arguments as evaluated ([`ToolArguments`]: parsed once,
//! canonical JSON and digest), prompt / argument fingerprints, and the
//! bounded [`ArgumentsPreview`] a human sees of a held call.
//!
//! Nothing here knows about Kubernetes, HTTP, databases or async: the
//! `palisade-crds` compiler builds a bundle from resources, the gateway
//! evaluates requests against it, and both are tested with plain unit tests.
//! Everything expensive (globs, regexes, keyword automata, CEL programs) is
//! compiled once when the bundle is built, never per request.

mod approval;
mod arguments;
mod bundle;
mod cel_regex;
mod condition;
mod cost;
mod decision;
mod egress;
mod fingerprint;
mod globs;
mod limits;
mod mcp;
mod models;
mod preview;
mod reason;
mod routing;
mod runnable;
mod sanitize;
mod security;
mod tool;

pub use approval::{ApprovalDecision, HeldCall};
pub use arguments::{Arguments, ArgumentsError, ToolArguments};
pub use bundle::{
    Agent, ApprovalSettings, ArgumentCapture, AuditSettings, BundleError, Enforcement,
    InvalidPolicy, KillSwitches, Policy, PolicyBundle, PromptCapture, Provider, ProviderKind,
    SecretString, ToolCalling,
};
pub use condition::{Condition, ConditionError, ConditionInput};
pub use decision::{Decision, Evaluated, Outcome, PolicyRef};
pub use egress::{DEFAULT_ALLOWED_PROVIDER_URLS, Egress, EgressPatternError, EgressRefusal};
pub use fingerprint::{
    PromptFingerprint, REDACTED, api_key_digest, argument_digest, redact_arguments, sha256_hex,
};
pub use globs::{GlobError, NameGlobs};
pub use limits::{LimitSet, Limits};
pub use mcp::McpServer;
pub use preview::{ArgumentsPreview, PREVIEW_LIMIT};
pub use reason::ReasonCode;
pub use routing::{
    ChatDecision, ChatRequest, CloudRouting, Fallback, PATTERN_DFA_SIZE_LIMIT, PATTERN_MAX_LEN,
    PATTERN_SET_SIZE_LIMIT, PATTERN_SIZE_LIMIT, PatternError, Route, RouteRule, Routing,
    RoutingError, check_pattern,
};
pub use runnable::{
    FileAccess, FileRoot, FileTools, HttpMethod, HttpTool, READ_FILE, ResultSettings, Runnable,
    RunnableTools, SQL_QUERY, SqlDatabase, SqlEngine, SqlTool, ToolOffer, WRITE_FILE,
};
pub use sanitize::{Redaction, Redactions, cap, sanitize_bytes, sanitize_json, sanitize_text};
pub use security::{AlertKind, Burst, SecuritySettings, argument_shapes};
pub use tool::{Grant, MAX_TOOL_NAME_BYTES, ToolCall, ToolRule, ToolRules, ToolRulesError};
