//! The compiler: AIPolicies + ToolGrants + the Secrets they reference →
//! one [`PolicyBundle`], plus a report per object.
//!
//! Each policy compiles on its own: a bad one gets diagnostics (object,
//! field path, fix) and never breaks the others. A policy whose new
//! generation does not compile keeps serving its last good generation from
//! the previous bundle; one that never compiled denies its agents
//! (`policy.invalid`). When two policies name the same agent in one
//! namespace, the older policy keeps it.

use crate::diagnostic::{Diagnostic, ObjectRef};
use crate::duration::parse_duration;
use crate::resources::{
    AIPolicy, AgentSpec, ArgumentCapture, Enforcement, GrantAction, GrantState, PromptCapture,
    ProviderSpec, ProviderType, SecretKeyRef, ToolAction, ToolGrant,
};
use jiff::Timestamp;
use palisade_policy as policy;
use palisade_policy::{
    Agent, ApprovalSettings, AuditSettings, BundleError, Condition, Grant, InvalidPolicy,
    NameGlobs, Outcome, Policy, PolicyBundle, Provider, RouteRule, Routing, SecretString, ToolRule,
    ToolRules,
};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::time::Duration;

/// Upstream timeout when a provider sets none.
pub const DEFAULT_PROVIDER_TIMEOUT: Duration = Duration::from_secs(60);

/// Secret values the compiler may read, keyed by namespace, name and key.
/// Only Secrets in a policy's own namespace are ever looked up.
#[derive(Clone, Default)]
pub struct Secrets {
    map: BTreeMap<(String, String), BTreeMap<String, String>>,
}

impl Secrets {
    pub fn insert(&mut self, namespace: &str, name: &str, key: &str, value: impl Into<String>) {
        self.map
            .entry((namespace.to_owned(), name.to_owned()))
            .or_default()
            .insert(key.to_owned(), value.into());
    }

    fn lookup(&self, namespace: &str, reference: &SecretKeyRef) -> Result<&str, String> {
        let secret = self
            .map
            .get(&(namespace.to_owned(), reference.name.clone()))
            .ok_or_else(|| format!("Secret {namespace}/{} does not exist", reference.name))?;
        secret
            .get(&reference.key)
            .map(String::as_str)
            .ok_or_else(|| {
                format!(
                    "Secret {namespace}/{} has no key {:?}",
                    reference.name, reference.key
                )
            })
    }
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.map.iter().map(|((ns, name), keys)| {
                format!("{ns}/{name}: {:?}", keys.keys().collect::<Vec<_>>())
            }))
            .finish()
    }
}

/// Everything one compilation reads.
#[derive(Debug, Clone, Copy)]
pub struct CompileInput<'a> {
    pub policies: &'a [AIPolicy],
    pub grants: &'a [ToolGrant],
    pub secrets: &'a Secrets,
    /// The bundle currently served: the source of last known good policies.
    pub previous: Option<&'a PolicyBundle>,
    /// Grants expiring at or before `now` are left out.
    pub now: Timestamp,
}

/// What became of one AIPolicy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyReport {
    pub object: ObjectRef,
    pub generation: i64,
    /// Empty when the current generation compiled.
    pub diagnostics: Vec<Diagnostic>,
    /// The generation in the bundle: the current one, an older last known
    /// good one, or none.
    pub served_generation: Option<i64>,
    pub agents: usize,
}

impl PolicyReport {
    pub fn accepted(&self) -> bool {
        self.diagnostics.is_empty()
    }
}

/// What became of one ToolGrant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantReport {
    pub object: ObjectRef,
    pub generation: i64,
    pub state: GrantState,
    pub diagnostics: Vec<Diagnostic>,
}

/// The bundle and a report for every input object.
#[derive(Debug, Clone)]
pub struct Compilation {
    pub bundle: PolicyBundle,
    pub policies: Vec<PolicyReport>,
    pub grants: Vec<GrantReport>,
}

impl Compilation {
    /// Every error (not warning) of every object.
    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics().filter(|d| d.is_error())
    }

    /// Every diagnostic of every object, policies first.
    pub fn diagnostics(&self) -> impl Iterator<Item = &Diagnostic> {
        self.policies
            .iter()
            .flat_map(|p| &p.diagnostics)
            .chain(self.grants.iter().flat_map(|g| &g.diagnostics))
    }
}

/// Failures that are bugs in the compiler, not in the input: the pieces
/// it validated do not assemble into a bundle.
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    #[error("compiled policies do not form a consistent bundle: {0}")]
    Bundle(#[from] BundleError),
}

/// Compiles every policy and grant; see the module docs for the rules.
pub fn compile(input: CompileInput<'_>) -> Result<Compilation, CompileError> {
    let mut order: Vec<&AIPolicy> = input.policies.iter().collect();
    order.sort_by(|a, b| {
        let key = |p: &AIPolicy| {
            (
                namespace_of(&p.metadata),
                p.metadata.creation_timestamp.as_ref().map(|t| t.0),
                p.metadata.name.clone().unwrap_or_default(),
            )
        };
        key(a).cmp(&key(b))
    });

    let mut claimed: HashMap<(String, String), String> = HashMap::new();
    let mut compiled = Vec::new();
    let mut invalid = Vec::new();
    let mut reports = Vec::new();
    for p in order {
        let object = object_ref("AIPolicy", &p.metadata);
        let generation = p.metadata.generation.unwrap_or(0);
        let mut diagnostics = Vec::new();
        let fresh = match compile_policy(p, &object, input.secrets) {
            Ok(policy) => match claim_agents(&policy, &object, &claimed) {
                Ok(()) => Some(policy),
                Err(d) => {
                    diagnostics.extend(d);
                    None
                }
            },
            Err(d) => {
                diagnostics.extend(d);
                None
            }
        };
        let chosen = fresh.or_else(|| {
            let previous = input
                .previous?
                .policy(&object.namespace, &object.name)?
                .clone();
            claim_agents(&previous, &object, &claimed)
                .ok()
                .map(|()| previous)
        });
        let agents = p.spec.agents.len();
        match chosen {
            Some(policy) => {
                for agent in &policy.agents {
                    claimed.insert(
                        (policy.namespace.clone(), agent.name.clone()),
                        policy.name.clone(),
                    );
                }
                reports.push(PolicyReport {
                    object,
                    generation,
                    diagnostics,
                    served_generation: Some(policy.generation),
                    agents,
                });
                compiled.push(policy);
            }
            None => {
                invalid.push(InvalidPolicy {
                    namespace: object.namespace.clone(),
                    name: object.name.clone(),
                    generation,
                    agents: p.spec.agents.iter().map(|a| a.name.clone()).collect(),
                });
                reports.push(PolicyReport {
                    object,
                    generation,
                    diagnostics,
                    served_generation: None,
                    agents,
                });
            }
        }
    }

    let mut grants = Vec::new();
    let mut grant_reports = Vec::new();
    for g in input.grants {
        let object = object_ref("ToolGrant", &g.metadata);
        let generation = g.metadata.generation.unwrap_or(0);
        let (state, diagnostics) = match compile_grant(g, &object) {
            Err(d) => (GrantState::Invalid, d),
            Ok(grant) if !grant.is_active(input.now) => (
                GrantState::Expired,
                vec![
                    Diagnostic::new(
                        &object,
                        "spec.expiresAt",
                        format!("the grant expired at {}", grant.expires_at),
                        "extend spec.expiresAt if the exception is still needed, or delete the grant",
                    )
                    .warning(),
                ],
            ),
            Ok(grant) => {
                grants.push(grant);
                (GrantState::Active, Vec::new())
            }
        };
        grant_reports.push(GrantReport {
            object,
            generation,
            state,
            diagnostics,
        });
    }

    let bundle = PolicyBundle::new(compiled, invalid, grants)?;
    Ok(Compilation {
        bundle,
        policies: reports,
        grants: grant_reports,
    })
}

fn namespace_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> String {
    meta.namespace
        .clone()
        .unwrap_or_else(|| "default".to_owned())
}

fn object_ref(
    kind: &str,
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> ObjectRef {
    ObjectRef::new(
        kind,
        &namespace_of(meta),
        meta.name.as_deref().unwrap_or(""),
    )
}

fn claim_agents(
    policy: &Policy,
    object: &ObjectRef,
    claimed: &HashMap<(String, String), String>,
) -> Result<(), Vec<Diagnostic>> {
    let conflicts: Vec<Diagnostic> = policy
        .agents
        .iter()
        .enumerate()
        .filter_map(|(i, agent)| {
            let owner = claimed.get(&(policy.namespace.clone(), agent.name.clone()))?;
            Some(Diagnostic::new(
                object,
                format!("spec.agents[{i}].name"),
                format!("agent {:?} is already governed by AIPolicy {owner:?} in this namespace", agent.name),
                format!("remove it from one of the two policies (an agent has exactly one policy); {owner:?} is older and keeps it"),
            ))
        })
        .collect();
    if conflicts.is_empty() {
        Ok(())
    } else {
        Err(conflicts)
    }
}

/// Collects diagnostics for one object.
struct Diags<'a> {
    object: &'a ObjectRef,
    list: Vec<Diagnostic>,
}

impl Diags<'_> {
    fn push(
        &mut self,
        field: impl Into<String>,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) {
        self.list
            .push(Diagnostic::new(self.object, field, message, fix));
    }

    fn globs(&mut self, field: &str, patterns: &[String]) -> Option<NameGlobs> {
        match NameGlobs::new(patterns.iter().cloned()) {
            Ok(g) => Some(g),
            Err(e) => {
                self.push(
                    format!("{field}[{}]", e.index),
                    format!("{:?} is not a valid glob: {}", e.pattern, e.message),
                    "use * and ? wildcards, [abc] classes and {a,b} alternatives; escape literal brackets",
                );
                None
            }
        }
    }

    fn condition(&mut self, field: &str, source: Option<&str>) -> Option<Option<Condition>> {
        let Some(source) = source else {
            return Some(None);
        };
        match Condition::compile(source) {
            Ok(c) => Some(Some(c)),
            Err(e) => {
                self.push(
                    field,
                    e.to_string(),
                    "write a CEL expression over args, tool and agent that returns a bool, e.g. has(args.amount) && args.amount <= 100",
                );
                None
            }
        }
    }

    fn secret(
        &mut self,
        field: &str,
        secrets: &Secrets,
        reference: &SecretKeyRef,
    ) -> Option<String> {
        match secrets.lookup(&self.object.namespace, reference) {
            Ok(v) => Some(v.to_owned()),
            Err(message) => {
                self.push(
                    field,
                    message,
                    format!(
                        "create it in namespace {}, e.g. kubectl create secret generic {} -n {} --from-literal={}=...",
                        self.object.namespace, reference.name, self.object.namespace, reference.key
                    ),
                );
                None
            }
        }
    }

    /// Rule names are how decisions cite rules, so they must be unique.
    fn unique_rule_name<'n>(
        &mut self,
        field: &str,
        name: Option<&str>,
        mut earlier: impl Iterator<Item = Option<&'n str>>,
    ) -> bool {
        let Some(name) = name else { return true };
        if earlier.any(|q| q == Some(name)) {
            self.push(
                format!("{field}.name"),
                format!("rule name {name:?} is used twice"),
                "give every rule its own name",
            );
            return false;
        }
        true
    }

    fn finish<T>(self, value: Option<T>) -> Result<T, Vec<Diagnostic>> {
        match value {
            Some(v) if self.list.is_empty() => Ok(v),
            _ => Err(self.list),
        }
    }
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn compile_policy(
    p: &AIPolicy,
    object: &ObjectRef,
    secrets: &Secrets,
) -> Result<Policy, Vec<Diagnostic>> {
    let mut d = Diags {
        object,
        list: Vec::new(),
    };
    if object.name.is_empty() {
        d.push(
            "metadata.name",
            "the policy has no name",
            "set metadata.name",
        );
    }
    let spec = &p.spec;
    let agents = compile_agents(&mut d, &spec.agents, secrets);
    let models = match &spec.models {
        None => Some(NameGlobs::any()),
        Some(m) => d.globs("spec.models.allow", &m.allow),
    };
    let providers = compile_providers(&mut d, &spec.providers, secrets);
    let provider_names: Vec<&str> = spec.providers.iter().map(|p| p.name.as_str()).collect();
    let routing = compile_routing(&mut d, p, &provider_names);
    let tools = compile_tools(&mut d, p);
    let ttl = match parse_duration(&spec.approvals.ttl) {
        Ok(t) if t.is_zero() => {
            d.push(
                "spec.approvals.ttl",
                "a TTL of zero expires every approval at once",
                "use e.g. 15m",
            );
            None
        }
        Ok(t) => Some(t),
        Err(message) => {
            d.push("spec.approvals.ttl", message, "use e.g. 15m");
            None
        }
    };
    let audit = AuditSettings {
        prompts: match spec.audit.prompts {
            PromptCapture::Digest => policy::PromptCapture::Digest,
            PromptCapture::Full => policy::PromptCapture::Full,
        },
        arguments: match spec.audit.arguments {
            ArgumentCapture::Digest => policy::ArgumentCapture::Digest,
            ArgumentCapture::Redacted => policy::ArgumentCapture::Redacted,
            ArgumentCapture::Full => policy::ArgumentCapture::Full,
        },
        redact_keys: spec.audit.redact_keys.clone(),
    };
    let assembled = (|| {
        Some(Policy {
            namespace: object.namespace.clone(),
            name: object.name.clone(),
            generation: p.metadata.generation.unwrap_or(0),
            suspend: spec.suspend,
            enforcement: match spec.enforcement {
                Enforcement::Enforce => policy::Enforcement::Enforce,
                Enforcement::Audit => policy::Enforcement::Audit,
            },
            agents: agents?,
            models: models?,
            providers: providers?,
            routing: routing?,
            tools: tools?,
            approvals: ApprovalSettings {
                ttl_seconds: ttl?.as_secs().max(1),
            },
            audit,
        })
    })();
    d.finish(assembled)
}

fn compile_agents(
    d: &mut Diags<'_>,
    agents: &[AgentSpec],
    secrets: &Secrets,
) -> Option<Vec<Agent>> {
    let mut out = Vec::with_capacity(agents.len());
    let mut ok = true;
    for (i, a) in agents.iter().enumerate() {
        let field = format!("spec.agents[{i}]");
        if !is_dns_label(&a.name) {
            d.push(
                format!("{field}.name"),
                format!("{:?} is not a valid agent name", a.name),
                "use lower-case letters, digits and '-', at most 63 characters",
            );
            ok = false;
        }
        if agents[..i].iter().any(|b| b.name == a.name) {
            d.push(
                format!("{field}.name"),
                format!("agent {:?} is listed twice", a.name),
                "remove one of the entries",
            );
            ok = false;
        }
        if a.service_account.is_none() && a.api_key_secret_ref.is_none() {
            d.push(
                field.clone(),
                "an agent needs an identity",
                "set serviceAccount (in-cluster) or apiKeySecretRef (API key)",
            );
            ok = false;
        }
        let api_key_sha256 = match &a.api_key_secret_ref {
            None => None,
            Some(r) => match d.secret(&format!("{field}.apiKeySecretRef"), secrets, r) {
                Some(key) => Some(policy::api_key_digest(&key)),
                None => {
                    ok = false;
                    None
                }
            },
        };
        out.push(Agent {
            name: a.name.clone(),
            service_account: a.service_account.clone(),
            api_key_sha256,
            suspended: a.suspended,
        });
    }
    ok.then_some(out)
}

fn compile_providers(
    d: &mut Diags<'_>,
    providers: &[ProviderSpec],
    secrets: &Secrets,
) -> Option<Vec<Provider>> {
    let mut out = Vec::with_capacity(providers.len());
    let mut ok = true;
    if providers.is_empty() {
        d.push(
            "spec.providers",
            "the policy defines no provider",
            "add at least one provider (e.g. type: ollama)",
        );
        return None;
    }
    for (i, p) in providers.iter().enumerate() {
        let field = format!("spec.providers[{i}]");
        if !is_dns_label(&p.name) {
            d.push(
                format!("{field}.name"),
                format!("{:?} is not a valid provider name", p.name),
                "use lower-case letters, digits and '-', at most 63 characters",
            );
            ok = false;
        }
        if providers[..i].iter().any(|q| q.name == p.name) {
            d.push(
                format!("{field}.name"),
                format!("provider {:?} is defined twice", p.name),
                "rename or remove one",
            );
            ok = false;
        }
        let url_ok = ["http://", "https://"].iter().any(|s| {
            p.base_url
                .strip_prefix(s)
                .is_some_and(|rest| !rest.is_empty() && !rest.contains(char::is_whitespace))
        });
        // user:password@ in the authority: never sent (Host carries the
        // host only) and never echoed (it is a credential).
        let has_userinfo = p
            .base_url
            .split_once("://")
            .map(|(_, rest)| rest.split(['/', '?', '#']).next().unwrap_or(""))
            .is_some_and(|authority| authority.contains('@'));
        if has_userinfo {
            d.push(
                format!("{field}.baseUrl"),
                "holds credentials (user:password@host); they are not sent to the provider, and a URL is no place for a secret".to_owned(),
                "remove them from the URL and put the key in a Secret named by credentialsSecretRef",
            );
            ok = false;
        } else if !url_ok {
            d.push(
                format!("{field}.baseUrl"),
                format!("{:?} is not an http(s) URL", p.base_url),
                "write e.g. http://ollama.ollama:11434 or https://api.openai.com",
            );
            ok = false;
        }
        let api_key = match &p.credentials_secret_ref {
            None => None,
            Some(r) => match d.secret(&format!("{field}.credentialsSecretRef"), secrets, r) {
                Some(v) => Some(SecretString::new(v)),
                None => {
                    ok = false;
                    None
                }
            },
        };
        let timeout = match p.timeout.as_deref().map(parse_duration) {
            None => DEFAULT_PROVIDER_TIMEOUT,
            Some(Ok(t)) if !t.is_zero() => t,
            Some(Ok(_)) => {
                d.push(
                    format!("{field}.timeout"),
                    "a timeout of zero fails every request",
                    "use e.g. 30s",
                );
                ok = false;
                DEFAULT_PROVIDER_TIMEOUT
            }
            Some(Err(message)) => {
                d.push(format!("{field}.timeout"), message, "use e.g. 30s");
                ok = false;
                DEFAULT_PROVIDER_TIMEOUT
            }
        };
        out.push(Provider {
            name: p.name.clone(),
            kind: match p.kind {
                ProviderType::Ollama => policy::ProviderKind::Ollama,
                ProviderType::OpenAi => policy::ProviderKind::OpenAi,
                ProviderType::Anthropic => policy::ProviderKind::Anthropic,
            },
            base_url: p.base_url.trim_end_matches('/').to_owned(),
            api_key,
            default_model: p.default_model.clone(),
            timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
        });
    }
    ok.then_some(out)
}

fn unknown_provider(d: &mut Diags<'_>, field: &str, name: &str, known: &[&str]) -> bool {
    if known.contains(&name) {
        return true;
    }
    d.push(
        field,
        format!("names provider {name:?}, which spec.providers does not define"),
        format!("name one of: {}", known.join(", ")),
    );
    false
}

fn compile_routing(d: &mut Diags<'_>, p: &AIPolicy, providers: &[&str]) -> Option<Routing> {
    let spec = &p.spec.routing;
    let mut ok = unknown_provider(
        d,
        "spec.routing.defaultProvider",
        &spec.default_provider,
        providers,
    );
    if let Some(f) = &spec.fallback_provider {
        ok &= unknown_provider(d, "spec.routing.fallbackProvider", f, providers);
    }
    let mut rules = Vec::with_capacity(spec.rules.len());
    for (i, r) in spec.rules.iter().enumerate() {
        let field = format!("spec.routing.rules[{i}]");
        ok &= unknown_provider(d, &format!("{field}.provider"), &r.provider, providers);
        let earlier = spec.rules[..i].iter().map(|q| q.name.as_deref());
        ok &= d.unique_rule_name(&field, r.name.as_deref(), earlier);
        if r.keywords.is_empty()
            && r.patterns.is_empty()
            && r.max_prompt_chars.is_none()
            && r.min_prompt_chars.is_none()
            && r.models.is_none()
            && r.agents.is_none()
        {
            d.push(
                field.clone(),
                "the rule has no criterion, so it would match every request",
                "add keywords, patterns, maxPromptChars, minPromptChars, models or agents (or use spec.routing.defaultProvider)",
            );
            ok = false;
        }
        for (j, k) in r.keywords.iter().enumerate() {
            if k.trim().is_empty() {
                d.push(
                    format!("{field}.keywords[{j}]"),
                    "an empty keyword matches every prompt",
                    "remove it",
                );
                ok = false;
            }
        }
        for (j, pattern) in r.patterns.iter().enumerate() {
            if let Err(message) = policy::check_pattern(pattern) {
                d.push(
                    format!("{field}.patterns[{j}]"),
                    format!(
                        "invalid regular expression: {}",
                        message.lines().last().unwrap_or(&message)
                    ),
                    "fix the expression (Rust regex syntax: no look-around or back-references)",
                );
                ok = false;
            }
        }
        if let (Some(min), Some(max)) = (r.min_prompt_chars, r.max_prompt_chars)
            && min > max
        {
            d.push(
                format!("{field}.minPromptChars"),
                format!("{min} is more than maxPromptChars {max}"),
                "swap or fix the bounds",
            );
            ok = false;
        }
        let models = r
            .models
            .as_ref()
            .map(|m| d.globs(&format!("{field}.models"), m));
        let agents = r
            .agents
            .as_ref()
            .map(|a| d.globs(&format!("{field}.agents"), a));
        rules.push(RouteRule {
            rule: r.name.clone().unwrap_or(field),
            keywords: r.keywords.clone(),
            patterns: r.patterns.clone(),
            max_prompt_chars: r.max_prompt_chars,
            min_prompt_chars: r.min_prompt_chars,
            models: match models {
                Some(None) => {
                    ok = false;
                    None
                }
                Some(g) => g,
                None => None,
            },
            agents: match agents {
                Some(None) => {
                    ok = false;
                    None
                }
                Some(g) => g,
                None => None,
            },
            provider: r.provider.clone(),
            model: r.model.clone(),
        });
    }
    if !ok {
        return None;
    }
    match Routing::new(
        rules,
        spec.default_provider.clone(),
        spec.fallback_provider.clone(),
    ) {
        Ok(r) => Some(r),
        Err(e) => {
            d.push(
                "spec.routing.rules",
                e.to_string(),
                "use fewer or simpler patterns",
            );
            None
        }
    }
}

fn outcome(action: ToolAction) -> Outcome {
    match action {
        ToolAction::Allow => Outcome::Allow,
        ToolAction::Deny => Outcome::Deny,
        ToolAction::RequireApproval => Outcome::RequireApproval,
    }
}

fn compile_tools(d: &mut Diags<'_>, p: &AIPolicy) -> Option<ToolRules> {
    let spec = &p.spec.tools;
    let mut ok = true;
    let mut rules = Vec::with_capacity(spec.rules.len());
    for (i, r) in spec.rules.iter().enumerate() {
        let field = format!("spec.tools.rules[{i}]");
        if r.tools.is_empty() {
            d.push(
                format!("{field}.tools"),
                "the rule names no tool",
                "list tool names or globs, e.g. [sql_query]",
            );
            ok = false;
        }
        let earlier = spec.rules[..i].iter().map(|q| q.name.as_deref());
        ok &= d.unique_rule_name(&field, r.name.as_deref(), earlier);
        ok &= d.globs(&format!("{field}.tools"), &r.tools).is_some();
        let when = d.condition(&format!("{field}.when"), r.when.as_deref());
        rules.push(ToolRule {
            rule: r.name.clone().unwrap_or(field),
            tools: r.tools.clone(),
            action: outcome(r.action),
            when: when.unwrap_or_else(|| {
                ok = false;
                None
            }),
        });
    }
    if !ok {
        return None;
    }
    match ToolRules::new(outcome(spec.default), rules) {
        Ok(t) => Some(t),
        Err(e) => {
            d.push(
                format!("spec.tools.rules[{}].tools", e.rule),
                e.to_string(),
                "fix the glob",
            );
            None
        }
    }
}

fn compile_grant(g: &ToolGrant, object: &ObjectRef) -> Result<Grant, Vec<Diagnostic>> {
    let mut d = Diags {
        object,
        list: Vec::new(),
    };
    let spec = &g.spec;
    if spec.agents.is_empty() {
        d.push(
            "spec.agents",
            "the grant names no agent",
            "list the agent names it is for",
        );
    }
    if spec.tools.is_empty() {
        d.push(
            "spec.tools",
            "the grant names no tool",
            "list tool names or globs",
        );
    }
    if spec.reason.trim().is_empty() {
        d.push(
            "spec.reason",
            "every exception needs a reason",
            "say why (ticket, incident, approver)",
        );
    }
    let agents = d.globs("spec.agents", &spec.agents);
    let tools = d.globs("spec.tools", &spec.tools);
    let when = d.condition("spec.when", spec.when.as_deref());
    let grant = (|| {
        Some(Grant {
            namespace: object.namespace.clone(),
            name: object.name.clone(),
            agents: agents?,
            tools: tools?,
            action: match spec.action {
                GrantAction::Allow => Outcome::Allow,
                GrantAction::RequireApproval => Outcome::RequireApproval,
            },
            when: when?,
            expires_at: spec.expires_at.0,
            reason: spec.reason.clone(),
        })
    })();
    d.finish(grant)
}
