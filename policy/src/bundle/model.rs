//! What a compiled policy holds: its providers, agents, rules and
//! settings ([`Policy`]), and how its kill switches decide.

use super::KillSwitches;
use crate::{Decision, NameGlobs, Outcome, PolicyRef, ReasonCode, Routing, ToolRules};
use serde::{Deserialize, Serialize};
use std::fmt;

/// `Enforce` blocks; `Audit` decides and records but never blocks — except
/// a kill switch, which blocks in every mode.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Enforcement {
    #[default]
    Enforce,
    Audit,
}

/// The wire protocol a provider speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    /// Ollama's native `/api/chat` (NDJSON streaming).
    Ollama,
    /// OpenAI or any OpenAI-compatible server (`/v1/chat/completions`, SSE).
    #[serde(rename = "openai")]
    OpenAi,
    /// Anthropic's Messages API (SSE).
    Anthropic,
}

/// A credential: carried in the bundle, never printed.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SecretString(String);

impl SecretString {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    /// The secret itself; call only where it is sent on.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretString(***)")
    }
}

/// A model provider a policy may route to.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Provider {
    pub name: String,
    pub kind: ProviderKind,
    pub base_url: String,
    pub api_key: Option<SecretString>,
    pub default_model: Option<String>,
    pub timeout_ms: u64,
    /// How the provider's models are given tools.
    #[serde(default, skip_serializing_if = "ToolCalling::is_native")]
    pub tool_calling: ToolCalling,
}

/// How a provider's models are given tools and call them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ToolCalling {
    /// The API's own `tools` (the default).
    #[default]
    Native,
    /// For models without tool support: the tools are described in the
    /// system prompt, and the gateway reads calls out of the reply text
    /// (the format is in docs/policy.md).
    Prompt,
}

impl ToolCalling {
    pub fn is_native(&self) -> bool {
        *self == Self::Native
    }
}

/// An agent a policy governs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Agent {
    pub name: String,
    /// Kubernetes ServiceAccount (in the policy's namespace) that identifies it.
    pub service_account: Option<String>,
    /// Hex SHA-256 of its API key; the key itself is never kept.
    pub api_key_sha256: Option<String>,
    /// Per-agent kill switch.
    pub suspended: bool,
    /// Why the agent is quarantined (a security alert suspended it until
    /// a human lifts it), if it is: e.g. `alert.path_traversal at
    /// 2026-12-06T21:00:00Z: argument path looks like path traversal`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quarantine: Option<String>,
}

/// How long a human has to decide a held call, and how many may wait.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApprovalSettings {
    pub ttl_seconds: u64,
    /// How many approvals one agent may have pending at once; a held call
    /// beyond it is refused (`limit.pending_approvals`).
    #[serde(default = "ApprovalSettings::default_max_pending")]
    pub max_pending_per_agent: u32,
}

impl ApprovalSettings {
    /// The default cap on pending approvals per agent.
    pub const DEFAULT_MAX_PENDING: u32 = 20;

    fn default_max_pending() -> u32 {
        Self::DEFAULT_MAX_PENDING
    }

    /// `ttl_seconds` and the default cap.
    pub fn with_ttl(ttl_seconds: u64) -> Self {
        Self {
            ttl_seconds,
            max_pending_per_agent: Self::DEFAULT_MAX_PENDING,
        }
    }
}

/// What the audit keeps of prompts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum PromptCapture {
    /// SHA-256 and character count only (default).
    #[default]
    Digest,
    /// The raw prompt too. Only when a policy explicitly asks.
    Full,
}

/// What the audit keeps of tool arguments.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ArgumentCapture {
    /// The digest only (default).
    #[default]
    Digest,
    /// The arguments with `redactKeys` replaced.
    Redacted,
    /// The raw arguments. Only when a policy explicitly asks.
    Full,
}

/// What the audit keeps.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuditSettings {
    pub prompts: PromptCapture,
    pub arguments: ArgumentCapture,
    /// Argument keys whose values are redacted wherever arguments are shown.
    pub redact_keys: Vec<String>,
}

/// One compiled AIPolicy generation.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Policy {
    pub namespace: String,
    pub name: String,
    pub generation: i64,
    /// Policy-wide kill switch.
    pub suspend: bool,
    pub enforcement: Enforcement,
    pub agents: Vec<Agent>,
    /// Model globs agents may ask for.
    pub models: NameGlobs,
    pub providers: Vec<Provider>,
    pub routing: Routing,
    pub tools: ToolRules,
    pub approvals: ApprovalSettings,
    pub audit: AuditSettings,
    /// Requests, tokens and streams each agent (and the whole policy) may use.
    #[serde(default)]
    pub limits: crate::limits::Limits,
    /// Tools the gateway runs itself (`spec.tools.run`).
    #[serde(default, skip_serializing_if = "crate::RunnableTools::is_default")]
    pub runnable: crate::RunnableTools,
    /// Security alert thresholds (`spec.security.alerts`).
    #[serde(default, skip_serializing_if = "crate::SecuritySettings::is_default")]
    pub security: crate::SecuritySettings,
    /// MCP servers served to the agents at `/mcp/{name}` (`spec.mcpServers`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mcp_servers: Vec<crate::McpServer>,
}

impl Policy {
    pub fn reference(&self) -> PolicyRef {
        PolicyRef {
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            generation: self.generation,
        }
    }

    pub fn provider(&self, name: &str) -> Option<&Provider> {
        self.providers.iter().find(|p| p.name == name)
    }

    pub fn mcp_server(&self, name: &str) -> Option<&crate::McpServer> {
        self.mcp_servers.iter().find(|s| s.name == name)
    }

    pub fn agent(&self, name: &str) -> Option<&Agent> {
        self.agents.iter().find(|a| a.name == name)
    }

    /// Turns on the kill switches a newer generation of this policy sets
    /// (`spec.suspend`, the `suspended` of the agents named), over this
    /// one: how the last good generation keeps serving when a newer one
    /// does not compile. A switch only ever turns on here; lifting one
    /// takes a generation that compiles.
    pub fn switch_on<'n>(
        &mut self,
        suspend: bool,
        suspended_agents: impl IntoIterator<Item = &'n str>,
    ) {
        self.suspend |= suspend;
        for name in suspended_agents {
            if let Some(agent) = self.agents.iter_mut().find(|a| a.name == name) {
                agent.suspended = true;
            }
        }
    }

    /// Quarantines `agent` (if the policy names it) for `why`; a
    /// quarantine already there stays as it was.
    pub fn quarantine(&mut self, agent: &str, why: &str) {
        if let Some(a) = self.agents.iter_mut().find(|a| a.name == agent) {
            a.quarantine.get_or_insert_with(|| why.to_owned());
        }
    }

    /// [`Policy::switch_on`] with the switches `edit` sets, if it is for
    /// this policy.
    pub(super) fn switch_on_from(&mut self, edit: &KillSwitches) {
        if edit.namespace == self.namespace && edit.policy == self.name {
            self.switch_on(
                edit.suspend,
                edit.suspended_agents.iter().map(String::as_str),
            );
        }
    }

    pub(crate) fn enforces(&self) -> bool {
        self.enforcement == Enforcement::Enforce
    }

    /// The kill-switch decision for `agent`, if a switch is on. Always
    /// enforced: `Audit` is a dry run of the rules, and a kill switch is
    /// not a rule being tried out but the off button, so it stops the
    /// agent in every mode.
    pub fn kill_switch(&self, agent: &Agent) -> Option<Decision> {
        let (reason_code, rule) = if self.suspend {
            (ReasonCode::KillSwitchPolicy, "spec.suspend".to_owned())
        } else if agent.suspended {
            (
                ReasonCode::KillSwitchAgent,
                format!("spec.agents[{}].suspended", agent.name),
            )
        } else if let Some(why) = &agent.quarantine {
            (
                ReasonCode::KillSwitchQuarantine,
                format!("quarantine: {why}"),
            )
        } else {
            return None;
        };
        Some(Decision {
            outcome: Outcome::Deny,
            enforced: true,
            reason_code,
            rule: Some(rule),
            policy: Some(self.reference()),
        })
    }
}
