//! Builders for policies, grants and bundles whose method names read like
//! the sentence a test is about.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use jiff::Timestamp;
use palisade_policy::*;

pub const NS: &str = "clinic";

pub fn now() -> Timestamp {
    "2026-11-22T12:00:00Z".parse().unwrap()
}

pub fn hours(h: i64) -> jiff::SignedDuration {
    jiff::SignedDuration::from_hours(h)
}

pub struct PolicyBuilder {
    namespace: String,
    name: String,
    generation: i64,
    suspend: bool,
    enforcement: Enforcement,
    agents: Vec<Agent>,
    models: Vec<String>,
    providers: Vec<Provider>,
    routes: Vec<RouteRule>,
    default_provider: String,
    fallback_provider: Option<String>,
    cloud: CloudRouting,
    tool_rules: Vec<ToolRule>,
    default_tool: Outcome,
}

/// A policy in namespace `clinic` with one Ollama provider `local`
/// (model `llama3.1`) and one OpenAI provider `cloud`, routing to `cloud`
/// by default, all models allowed, no tool rules and default deny.
pub fn policy(name: &str) -> PolicyBuilder {
    PolicyBuilder {
        namespace: NS.into(),
        name: name.into(),
        generation: 1,
        suspend: false,
        enforcement: Enforcement::Enforce,
        agents: Vec::new(),
        models: vec!["*".into()],
        providers: vec![
            Provider {
                name: "local".into(),
                kind: ProviderKind::Ollama,
                base_url: "http://ollama:11434".into(),
                api_key: None,
                default_model: Some("llama3.1".into()),
                timeout_ms: 30_000,
                tool_calling: Default::default(),
            },
            Provider {
                name: "cloud".into(),
                kind: ProviderKind::OpenAi,
                base_url: "https://api.openai.com".into(),
                api_key: Some(SecretString::new("sk-test")),
                default_model: Some("gpt-4o-mini".into()),
                timeout_ms: 30_000,
                tool_calling: Default::default(),
            },
        ],
        routes: Vec::new(),
        default_provider: "cloud".into(),
        fallback_provider: None,
        cloud: CloudRouting::Any,
        tool_rules: Vec::new(),
        default_tool: Outcome::Deny,
    }
}

impl PolicyBuilder {
    pub fn in_namespace(mut self, ns: &str) -> Self {
        self.namespace = ns.into();
        self
    }
    pub fn generation(mut self, g: i64) -> Self {
        self.generation = g;
        self
    }
    pub fn governing(mut self, agent: &str) -> Self {
        self.agents.push(Agent {
            name: agent.into(),
            service_account: Some(agent.into()),
            api_key_sha256: None,
            suspended: false,
            quarantine: None,
        });
        self
    }
    pub fn governing_suspended(mut self, agent: &str) -> Self {
        self = self.governing(agent);
        if let Some(a) = self.agents.last_mut() {
            a.suspended = true;
        }
        self
    }
    pub fn suspended(mut self) -> Self {
        self.suspend = true;
        self
    }
    pub fn audit_only(mut self) -> Self {
        self.enforcement = Enforcement::Audit;
        self
    }
    pub fn allowing_models(mut self, globs: &[&str]) -> Self {
        self.models = globs.iter().map(|s| s.to_string()).collect();
        self
    }
    fn rule(mut self, action: Outcome, tools: &[&str], when: Option<&str>) -> Self {
        let i = self.tool_rules.len();
        self.tool_rules.push(ToolRule {
            rule: format!("spec.tools.rules[{i}]"),
            tools: tools.iter().map(|s| s.to_string()).collect(),
            action,
            when: when.map(|w| Condition::compile(w).unwrap()),
        });
        self
    }
    pub fn allowing(self, tools: &[&str]) -> Self {
        self.rule(Outcome::Allow, tools, None)
    }
    pub fn allowing_when(self, tools: &[&str], when: &str) -> Self {
        self.rule(Outcome::Allow, tools, Some(when))
    }
    pub fn denying(self, tools: &[&str]) -> Self {
        self.rule(Outcome::Deny, tools, None)
    }
    pub fn denying_when(self, tools: &[&str], when: &str) -> Self {
        self.rule(Outcome::Deny, tools, Some(when))
    }
    pub fn requiring_approval_for(self, tools: &[&str]) -> Self {
        self.rule(Outcome::RequireApproval, tools, None)
    }
    pub fn requiring_approval_when(self, tools: &[&str], when: &str) -> Self {
        self.rule(Outcome::RequireApproval, tools, Some(when))
    }
    pub fn by_default(mut self, outcome: Outcome) -> Self {
        self.default_tool = outcome;
        self
    }
    pub fn routing(mut self, rule: RouteRule) -> Self {
        self.routes.push(rule);
        self
    }
    pub fn falling_back_to(mut self, provider: &str) -> Self {
        self.fallback_provider = Some(provider.into());
        self
    }
    pub fn defaulting_to(mut self, provider: &str) -> Self {
        self.default_provider = provider.into();
        self
    }
    /// `spec.routing.cloud: AllowRulesOnly`, `local` being the only local
    /// provider.
    pub fn cloud_only_by_rule(mut self) -> Self {
        self.cloud = CloudRouting::AllowRulesOnly {
            local: vec!["local".into()],
        };
        self
    }
    pub fn build(self) -> Policy {
        Policy {
            namespace: self.namespace,
            name: self.name,
            generation: self.generation,
            suspend: self.suspend,
            enforcement: self.enforcement,
            agents: self.agents,
            models: NameGlobs::new(self.models).unwrap(),
            providers: self.providers,
            routing: Routing::new(self.routes, self.default_provider, self.fallback_provider)
                .and_then(|r| r.with_cloud(self.cloud))
                .unwrap(),
            tools: ToolRules::new(self.default_tool, self.tool_rules).unwrap(),
            approvals: ApprovalSettings::with_ttl(900),
            audit: AuditSettings::default(),
            limits: Default::default(),
            runnable: Default::default(),
            security: Default::default(),
            mcp_servers: Vec::new(),
        }
    }
}

/// A routing rule to `provider` with no criteria yet.
pub fn route_to(provider: &str, name: &str) -> RouteRule {
    RouteRule {
        rule: name.into(),
        keywords: Vec::new(),
        patterns: Vec::new(),
        max_prompt_chars: None,
        min_prompt_chars: None,
        models: None,
        agents: None,
        provider: provider.into(),
        model: None,
    }
}

pub trait RouteRuleExt {
    fn on_keywords(self, k: &[&str]) -> Self;
    fn on_patterns(self, p: &[&str]) -> Self;
    fn up_to_chars(self, n: u64) -> Self;
    fn for_models(self, g: &[&str]) -> Self;
    fn for_agents(self, g: &[&str]) -> Self;
    fn asking_for(self, model: &str) -> Self;
}

impl RouteRuleExt for RouteRule {
    fn on_keywords(mut self, k: &[&str]) -> Self {
        self.keywords = k.iter().map(|s| s.to_string()).collect();
        self
    }
    fn on_patterns(mut self, p: &[&str]) -> Self {
        self.patterns = p.iter().map(|s| s.to_string()).collect();
        self
    }
    fn up_to_chars(mut self, n: u64) -> Self {
        self.max_prompt_chars = Some(n);
        self
    }
    fn for_models(mut self, g: &[&str]) -> Self {
        self.models = Some(NameGlobs::new(g.iter().copied()).unwrap());
        self
    }
    fn for_agents(mut self, g: &[&str]) -> Self {
        self.agents = Some(NameGlobs::new(g.iter().copied()).unwrap());
        self
    }
    fn asking_for(mut self, model: &str) -> Self {
        self.model = Some(model.into());
        self
    }
}

pub struct GrantBuilder(Grant);

/// A grant in `clinic` that allows nothing until told which agents and tools,
/// expiring in one hour.
pub fn grant(name: &str) -> GrantBuilder {
    GrantBuilder(Grant {
        namespace: NS.into(),
        name: name.into(),
        agents: NameGlobs::new(Vec::<String>::new()).unwrap(),
        tools: NameGlobs::new(Vec::<String>::new()).unwrap(),
        action: Outcome::Allow,
        when: None,
        expires_at: now() + hours(1),
        reason: "test".into(),
    })
}

impl GrantBuilder {
    pub fn for_agent(mut self, agent: &str) -> Self {
        self.0.agents = NameGlobs::new([agent]).unwrap();
        self
    }
    pub fn on_tools(mut self, tools: &[&str]) -> Self {
        self.0.tools = NameGlobs::new(tools.iter().copied()).unwrap();
        self
    }
    pub fn requiring_approval(mut self) -> Self {
        self.0.action = Outcome::RequireApproval;
        self
    }
    pub fn when(mut self, cel: &str) -> Self {
        self.0.when = Some(Condition::compile(cel).unwrap());
        self
    }
    pub fn expired(mut self) -> Self {
        self.0.expires_at = now() - hours(1);
        self
    }
    pub fn in_namespace(mut self, ns: &str) -> Self {
        self.0.namespace = ns.into();
        self
    }
    pub fn build(self) -> Grant {
        self.0
    }
}

pub fn bundle(policies: Vec<Policy>, grants: Vec<Grant>) -> PolicyBundle {
    PolicyBundle::new(policies, Vec::new(), grants).unwrap()
}

pub fn decide(bundle: &PolicyBundle, agent: &str, tool: &str, args: serde_json::Value) -> Decision {
    bundle
        .evaluate_tool(
            &ToolCall {
                namespace: NS,
                agent,
                tool,
                arguments: &args,
            },
            now(),
        )
        .decision
}

pub fn chat(bundle: &PolicyBundle, agent: &str, model: &str, prompt: &str) -> ChatDecision {
    chat_seeing(bundle, agent, model, prompt, prompt)
}

/// [`chat`] whose provider would also see `provider_text` (earlier
/// messages, tool calls, tool definitions).
pub fn chat_seeing(
    bundle: &PolicyBundle,
    agent: &str,
    model: &str,
    prompt: &str,
    provider_text: &str,
) -> ChatDecision {
    bundle
        .evaluate_chat(&ChatRequest {
            namespace: NS,
            agent,
            model,
            prompt,
            provider_text,
        })
        .decision
}
