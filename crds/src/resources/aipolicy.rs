//! `AIPolicy` (short name `aip`): which agents a team runs in its namespace,
//! what they may call, and where their chat goes.

use super::{SecretKeyRef, conditions_schema, list_map_by_name};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A policy for the AI agents of one namespace: their identities, kill
/// switches, allowed models, providers, chat routing, tool rules, approvals
/// and what the audit keeps. A policy only governs agents in its own
/// namespace.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "palisade.dev",
    version = "v1alpha1",
    kind = "AIPolicy",
    plural = "aipolicies",
    singular = "aipolicy",
    shortname = "aip",
    namespaced,
    doc = r#"An AIPolicy governs the AI agents of one namespace: identities, kill switches, models, providers, chat routing, tool rules, approvals and audit. Apply with kubectl; the Palisade operator compiles it for the gateways."#,
    status = "AIPolicyStatus",
    printcolumn = r#"{"name":"Enforcement","type":"string","jsonPath":".spec.enforcement"}"#,
    printcolumn = r#"{"name":"Suspended","type":"boolean","jsonPath":".spec.suspend"}"#,
    printcolumn = r#"{"name":"Agents","type":"integer","jsonPath":".status.agents"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Gateways","type":"integer","jsonPath":".status.gatewaysApplied"}"#,
    printcolumn = r#"{"name":"Served","type":"integer","priority":1,"jsonPath":".status.servedGeneration"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[x_kube(
    validation = Rule::new("self.providers.exists(p, p.name == self.routing.defaultProvider)")
        .message("spec.routing.defaultProvider must name one of spec.providers")
        .field_path(".routing.defaultProvider"),
    validation = Rule::new("!has(self.routing.fallbackProvider) || self.providers.exists(p, p.name == self.routing.fallbackProvider)")
        .message("spec.routing.fallbackProvider must name one of spec.providers")
        .field_path(".routing.fallbackProvider"),
    validation = Rule::new("!has(self.routing.rules) || self.routing.rules.all(r, self.providers.exists(p, p.name == r.provider))")
        .message("every spec.routing.rules[].provider must name one of spec.providers")
        .field_path(".routing.rules")
)]
#[serde(rename_all = "camelCase")]
pub struct AIPolicySpec {
    /// The agents this policy governs. Each agent name may appear in only
    /// one AIPolicy per namespace.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "list_map_by_name::<AgentSpec>", length(max = 256))]
    pub agents: Vec<AgentSpec>,

    /// Policy-wide kill switch: while true every request of every agent
    /// under this policy is refused (reason `kill_switch.policy`).
    #[serde(default)]
    pub suspend: bool,

    /// `Enforce` (default) blocks what the policy denies; `Audit` is a dry
    /// run that decides and audits but never blocks.
    #[serde(default)]
    pub enforcement: Enforcement,

    /// Which models agents may ask for. Omitted: any model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub models: Option<ModelsSpec>,

    /// Model providers this policy may route to.
    #[schemars(
        schema_with = "list_map_by_name::<ProviderSpec>",
        length(min = 1, max = 16)
    )]
    pub providers: Vec<ProviderSpec>,

    /// Where chat requests go.
    pub routing: RoutingSpec,

    /// What agents may do with tools.
    #[serde(default)]
    pub tools: ToolsSpec,

    /// How held tool calls are approved.
    #[serde(default)]
    pub approvals: ApprovalsSpec,

    /// What the audit keeps of prompts and arguments.
    #[serde(default)]
    pub audit: AuditSpec,

    /// How much each agent, and all of the policy's agents together, may
    /// use: requests and tokens per minute, tokens per day, streams open
    /// at once. A request over a limit is refused with 429 and a `limit.*`
    /// reason code. Omitted: no limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<LimitsSpec>,

    /// Security alerts over the agents' decisions (attack shapes in tool
    /// arguments, bursts of denials, repeated held calls, new tools,
    /// token jumps). Omitted: on, with the defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security: Option<super::SecuritySpec>,
    /// MCP servers (Streamable HTTP) the gateway serves to this policy's
    /// agents at `/mcp/{name}`: `tools/list` shows only the tools an agent
    /// may call, every `tools/call` is decided like any other tool call
    /// (rules, CEL on arguments, ToolGrants, approvals, kill switches) and
    /// audited, and results are sanitised.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub mcp_servers: Vec<super::McpServerSpec>,
}

impl AIPolicySpec {
    /// Every Secret key the policy reads: agents' API keys, providers'
    /// credentials, and those of the tools Palisade runs (PostgreSQL
    /// connections, HTTP tools' credentials).
    pub fn secret_refs(&self) -> Vec<&SecretKeyRef> {
        let agents = self
            .agents
            .iter()
            .filter_map(|a| a.api_key_secret_ref.as_ref());
        let providers = self
            .providers
            .iter()
            .filter_map(|p| p.credentials_secret_ref.as_ref());
        let run = self.tools.run.as_ref();
        let databases = run
            .and_then(|r| r.sql_query.as_ref())
            .into_iter()
            .flat_map(|s| &s.databases)
            .filter_map(|d| d.postgres_secret_ref.as_ref());
        let http = run
            .into_iter()
            .flat_map(|r| &r.http)
            .filter_map(|h| h.credentials_secret_ref.as_ref());
        let mcp = self
            .mcp_servers
            .iter()
            .filter_map(|s| s.credentials_secret_ref.as_ref());
        agents
            .chain(providers)
            .chain(databases)
            .chain(http)
            .chain(mcp)
            .collect()
    }
}

/// `spec.limits`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LimitsSpec {
    /// For each agent on its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<LimitSetSpec>,
    /// For all of the policy's agents together.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<LimitSetSpec>,
}

/// One set of limits; each one left out does not apply.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LimitSetSpec {
    /// Chat, Messages and embeddings requests per minute (UTC minutes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub requests_per_minute: Option<u64>,
    /// Tokens (input and output, as providers report them) per minute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub tokens_per_minute: Option<u64>,
    /// Tokens per UTC day.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub tokens_per_day: Option<u64>,
    /// Streamed answers open at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub concurrent_streams: Option<u32>,
}

/// `Enforce` blocks; `Audit` decides and records but never blocks.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum Enforcement {
    #[default]
    Enforce,
    Audit,
}

/// One agent and how it proves who it is.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[x_kube(validation = Rule::new("has(self.serviceAccount) || has(self.apiKeySecretRef)")
    .message("an agent needs an identity: set serviceAccount (in-cluster) or apiKeySecretRef (API key)"))]
#[serde(rename_all = "camelCase")]
pub struct AgentSpec {
    /// The agent's name, as it appears in decisions, audit rows and
    /// Approvals. Unique within the namespace.
    #[schemars(length(min = 1, max = 63), pattern(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"))]
    pub name: String,
    /// Kubernetes ServiceAccount (in this namespace) whose tokens identify
    /// the agent in-cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub service_account: Option<String>,
    /// Secret key holding the agent's API key (for agents outside the
    /// cluster). Only its SHA-256 reaches the gateways.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_secret_ref: Option<SecretKeyRef>,
    /// Per-agent kill switch: while true every request of this agent is
    /// refused (reason `kill_switch.agent`).
    #[serde(default)]
    pub suspended: bool,
}

/// Which models agents may ask for.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModelsSpec {
    /// Model-name globs, e.g. `gpt-4o*`, `llama3.*`. A request for any other
    /// model is refused (reason `model.not_allowed`). Empty: no model.
    #[serde(default)]
    #[schemars(length(max = 64), inner(length(min = 1, max = 253)))]
    pub allow: Vec<String>,
}

/// A model provider.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProviderSpec {
    /// How routing rules refer to this provider.
    #[schemars(length(min = 1, max = 63), pattern(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"))]
    pub name: String,
    /// Wire protocol: `ollama` (native API), `openai` (OpenAI or any
    /// OpenAI-compatible server) or `anthropic` (Messages API).
    #[serde(rename = "type")]
    pub kind: ProviderType,
    /// Base URL, e.g. `http://ollama.ollama.svc:11434` or `https://api.openai.com`.
    #[schemars(length(min = 1, max = 2048), pattern(r"^https?://[^\s]+$"))]
    pub base_url: String,
    /// Secret key holding the provider's API key, in this namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<SecretKeyRef>,
    /// The model to ask for when a request names none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub default_model: Option<String>,
    /// Upstream timeout, e.g. `30s`, `2m`. Default `60s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(r"^([0-9]+(ms|s|m|h))+$"))]
    pub timeout: Option<String>,
    /// `Local` (data stays in your infrastructure) or `Cloud`. Default:
    /// `Local` for `type: ollama`, `Cloud` otherwise (set `Local` for an
    /// OpenAI-compatible server you run). Used by `spec.routing.cloud`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<ProviderLocation>,
    /// How its models are given tools: `Native` (default: the API's own
    /// `tools`) or `Prompt`, for models without tool support — the tools
    /// are described in the system prompt and the gateway reads the calls
    /// out of the reply (a malformed reply is retried once, then
    /// reported).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calling: Option<ToolCallingSpec>,
}

/// `spec.providers[].toolCalling`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ToolCallingSpec {
    #[default]
    Native,
    Prompt,
}

/// Where a provider runs.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ProviderLocation {
    Local,
    Cloud,
}

/// Whether requests may reach a cloud provider without a rule saying so.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum CloudRoutingMode {
    /// Any route may be a cloud provider.
    #[default]
    Any,
    /// Deny by default: only a rule may send a request to a cloud
    /// provider, a matching rule to a local provider wins over any to the
    /// cloud, and `defaultProvider` / `fallbackProvider` must be local.
    /// Requests no rule sends to the cloud carry `routing.cloud_not_allowed`.
    AllowRulesOnly,
}

/// Wire protocol of a provider.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ProviderType {
    Ollama,
    #[serde(rename = "openai")]
    OpenAi,
    Anthropic,
}

/// Chat routing.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RoutingSpec {
    /// Ordered rules; the first whose criteria all hold decides.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub rules: Vec<RoutingRuleSpec>,
    /// The provider for requests no rule matches.
    #[schemars(length(min = 1, max = 63))]
    pub default_provider: String,
    /// Optional provider to retry on when the chosen one fails (connect
    /// error, 5xx, timeout); the decision then carries `routing.fallback`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub fallback_provider: Option<String>,
    /// `Any` (default), or `AllowRulesOnly`: a request reaches a cloud
    /// provider (`spec.providers[].location`) only when a rule sends it
    /// there and no matching rule keeps it local (deny-by-default cloud
    /// routing, for regulated tenants).
    #[serde(default, skip_serializing_if = "is_default")]
    pub cloud: CloudRoutingMode,
}

fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

/// One routing rule. Every criterion that is set must hold; at least one
/// must be set.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[x_kube(validation = Rule::new("(has(self.keywords) && size(self.keywords) > 0) || (has(self.patterns) && size(self.patterns) > 0) || has(self.maxPromptChars) || has(self.minPromptChars) || has(self.models) || has(self.agents)")
    .message("a routing rule needs at least one criterion: keywords, patterns, maxPromptChars, minPromptChars, models or agents"))]
#[x_kube(validation = Rule::new("!has(self.maxPromptChars) || !has(self.minPromptChars) || self.minPromptChars <= self.maxPromptChars")
    .message("minPromptChars must not exceed maxPromptChars"))]
#[serde(rename_all = "camelCase")]
pub struct RoutingRuleSpec {
    /// Optional name; decisions and audit rows cite it (otherwise
    /// `spec.routing.rules[i]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub name: Option<String>,
    /// Matches if any keyword occurs in the text the provider would see
    /// (every message, tool call and tool definition), as a substring after
    /// both are normalised: NFKC, lower-cased, invisible characters removed,
    /// every run of non-letters one space (`date of birth` matches
    /// `Date-of-Birth`), e.g. `diagnosis`, `patient`. Reason `routing.keyword`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 1024), inner(length(min = 1, max = 256)))]
    pub keywords: Vec<String>,
    /// Matches if any regular expression (RE2-like syntax) matches somewhere
    /// in the text the provider would see, in NFKC with invisible characters
    /// removed and whitespace runs as one space (case kept: use `(?i)`).
    /// Reason `routing.pattern`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(min = 1, max = 1024)))]
    pub patterns: Vec<String>,
    /// Matches prompts of at most this many characters. Reason
    /// `routing.prompt_length`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub max_prompt_chars: Option<u64>,
    /// Matches prompts of at least this many characters. Reason
    /// `routing.prompt_length`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub min_prompt_chars: Option<u64>,
    /// Matches requested models (globs). Reason `routing.model`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    pub models: Option<Vec<String>>,
    /// Matches calling agents (globs). Reason `routing.agent`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub agents: Option<Vec<String>>,
    /// The provider that serves matching requests.
    #[schemars(length(min = 1, max = 63))]
    pub provider: String,
    /// The model to ask that provider for (e.g. a local model for PHI);
    /// the request's own model if unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub model: Option<String>,
}

/// Tool rules.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ToolsSpec {
    /// What happens to a tool no rule matches: `Deny` (default), `Allow` or
    /// `RequireApproval`.
    #[serde(default)]
    pub default: ToolAction,
    /// Ordered rules. A matching `Deny` rule always wins; otherwise the
    /// first matching rule decides.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 1024))]
    pub rules: Vec<ToolRuleSpec>,
    /// Tools Palisade runs itself: `sqlQuery`, `files`, registered `http`
    /// tools, and the server-side loop's `maxSteps`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<super::ToolRunSpec>,
    /// What is done to tool results before a model or client sees them
    /// (sanitized and capped by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub results: Option<super::ToolResultsSpec>,
}

/// What a tool rule does.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ToolAction {
    Allow,
    #[default]
    Deny,
    RequireApproval,
}

/// One tool rule.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ToolRuleSpec {
    /// Optional name; decisions and audit rows cite it (otherwise
    /// `spec.tools.rules[i]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub name: Option<String>,
    /// Tool-name globs, e.g. `sql_query`, `send_*`, `{read,list}_chart`.
    #[schemars(length(min = 1, max = 256), inner(length(min = 1, max = 253)))]
    pub tools: Vec<String>,
    /// `Allow`, `Deny` or `RequireApproval`.
    pub action: ToolAction,
    /// Optional CEL condition; the rule applies only when it is true. It
    /// sees `args` (the call's JSON arguments), `tool` and `agent` (`name`,
    /// `namespace`), e.g. `has(args.amount) && args.amount <= 100`. A
    /// condition that fails to evaluate denies (`tool.condition_error`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 4096))]
    pub when: Option<String>,
}

/// Approvals of held tool calls.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalsSpec {
    /// How long a human has to decide, e.g. `15m` (default), `1h`. Past it
    /// the Approval expires and the call stays denied.
    #[serde(default = "default_ttl")]
    #[schemars(pattern(r"^([0-9]+(ms|s|m|h))+$"))]
    pub ttl: String,
    /// How many approvals one agent may have waiting for a decision at
    /// once (default 20). A held call beyond it is not recorded: the
    /// gateway answers `429` with `limit.pending_approvals`, so one agent
    /// cannot bury the approvers (or fill etcd) with look-alike requests.
    #[serde(default = "default_max_pending")]
    #[schemars(range(min = 1, max = 10000))]
    pub max_pending_per_agent: u32,
    /// Tell people when a call is held, so nobody misses it: a webhook
    /// (Slack-compatible) the operator posts to when an Approval is
    /// created and again shortly before it expires undecided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify: Option<ApprovalNotifySpec>,
}

/// `spec.approvals.notify`: where the operator announces held calls.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalNotifySpec {
    /// The Secret key holding the webhook URL (`https://hooks.slack.com/...`
    /// or any endpoint taking a JSON POST). Like provider credentials, the
    /// Secret must carry the label `palisade.dev/credentials: "true"`.
    pub webhook_secret_ref: super::SecretKeyRef,
    /// How long before the deadline an undecided Approval is announced
    /// again, e.g. `2m` (default). `0s`: only on creation.
    #[serde(default = "default_before_expiry")]
    #[schemars(pattern(r"^([0-9]+(ms|s|m|h))+$"))]
    pub before_expiry: String,
}

fn default_before_expiry() -> String {
    "2m".into()
}

fn default_ttl() -> String {
    "15m".into()
}

fn default_max_pending() -> u32 {
    palisade_policy::ApprovalSettings::DEFAULT_MAX_PENDING
}

impl Default for ApprovalsSpec {
    fn default() -> Self {
        Self {
            ttl: default_ttl(),
            max_pending_per_agent: default_max_pending(),
            notify: None,
        }
    }
}

/// What the audit keeps.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditSpec {
    /// `Digest` (default: SHA-256 and length only) or `Full` (the raw
    /// prompt too; only where your compliance rules allow it).
    #[serde(default)]
    pub prompts: PromptCapture,
    /// `Digest` (default), `Redacted` (arguments with `redactKeys`
    /// replaced) or `Full`.
    #[serde(default)]
    pub arguments: ArgumentCapture,
    /// Argument keys whose values are replaced by `[REDACTED]` wherever
    /// arguments are shown (audit, Approvals), at any depth,
    /// case-insensitive.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256), inner(length(min = 1, max = 253)))]
    pub redact_keys: Vec<String>,
}

/// What the audit keeps of prompts.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum PromptCapture {
    #[default]
    Digest,
    Full,
}

/// What the audit keeps of tool arguments.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ArgumentCapture {
    #[default]
    Digest,
    Redacted,
    Full,
}

/// What the operator and the gateways report about a policy.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AIPolicyStatus {
    /// The generation the operator last processed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Accepted` (the latest generation compiled) and `Ready` (gateways
    /// serve it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
    /// The generation gateways serve: the latest valid one, which may be
    /// older than `metadata.generation` when the latest does not compile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub served_generation: Option<i64>,
    /// The revision of the compiled configuration that first served this
    /// generation; every later revision contains it too, so a change to
    /// another policy does not move it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub served_revision: Option<String>,
    /// How many gateway pods have applied that revision or a later one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateways_applied: Option<i32>,
    /// Number of agents the policy governs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agents: Option<i32>,
    /// Agents a security alert quarantined (suspended until a human
    /// removes the annotation `palisade.dev/quarantine.<agent>`), with why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub quarantined: Vec<QuarantinedAgent>,
}

/// One quarantined agent in `status.quarantined`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct QuarantinedAgent {
    pub agent: String,
    /// The alert, when, what it saw, and the request.
    pub reason: String,
}
