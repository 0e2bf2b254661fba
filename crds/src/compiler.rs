//! The compiler: AIPolicies + ToolGrants + the Secrets they reference →
//! one [`PolicyBundle`], plus a report per object.
//!
//! Each policy compiles on its own: a bad one gets diagnostics (object,
//! field path, fix) and never breaks the others, nor does a panic on one
//! (a bug: caught for that object, see [`crate::guard`]), nor one over the
//! per-policy size budget. A policy whose new generation does not compile
//! (or is over the budget) keeps serving its last good generation from the
//! previous bundle, with the new generation's kill switches turned on over
//! it; one that never compiled denies its agents (`policy.invalid`). When
//! two policies name the same agent in one namespace, or give an agent the
//! same API key in any namespace, the older policy keeps it and the newer
//! one is refused.

use crate::diagnostic::{Diagnostic, ObjectRef};
use crate::duration::parse_duration;
use crate::guard;
use crate::namespaces::is_dns_label;
use crate::resources::{
    AIPolicy, AgentSpec, ArgumentCapture, Enforcement, GrantState, PromptCapture, ProviderSpec,
    ProviderType, ToolGrant,
};
use jiff::Timestamp;
use palisade_policy as policy;
use palisade_policy::{
    Agent, ApprovalSettings, AuditSettings, BundleError, Egress, InvalidPolicy, NameGlobs, Policy,
    PolicyBundle, Provider, SecretString,
};
use std::collections::HashMap;
use std::time::Duration;

mod claims;
mod diags;
mod limits;
mod mcp;
mod providers;
mod routing;
mod runnable;
mod secrets;
mod security;
mod served;
mod tools;
use claims::{Claims, claim_agents};
use diags::Diags;
use limits::compile_limits;
use mcp::compile_mcp_servers;
use providers::compile_providers;
use routing::compile_routing;
use runnable::compile_runnable;
pub use secrets::Secrets;
use security::compile_security;
use served::{last_good, spec_within_budget, within_budget};
use tools::{compile_grant, compile_tools};

/// Upstream timeout when a provider sets none.
pub const DEFAULT_PROVIDER_TIMEOUT: Duration = Duration::from_secs(60);

/// Everything one compilation reads.
#[derive(Debug, Clone, Copy)]
pub struct CompileInput<'a> {
    pub policies: &'a [AIPolicy],
    pub grants: &'a [ToolGrant],
    pub secrets: &'a Secrets,
    /// Which provider base URLs the platform allows, and whether
    /// credentials may go over plain `http://`.
    pub egress: &'a Egress,
    /// The bundle currently served: the source of last known good policies.
    pub previous: Option<&'a PolicyBundle>,
    /// Grants expiring at or before `now` are left out.
    pub now: Timestamp,
    /// The most bytes one compiled policy may take in the bundle (its
    /// JSON), so one tenant cannot fill the Secret that carries everyone's
    /// configuration: a policy over it is refused on its own. `None`: no
    /// budget (standalone files are not shipped in a Secret).
    pub policy_budget: Option<usize>,
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
    /// The generation was refused for its size (see
    /// [`CompileInput::policy_budget`]), not for its content.
    pub over_budget: bool,
    /// Agents of the served generation a quarantine annotation suspends,
    /// each with why (`status.quarantined`).
    pub quarantined: Vec<(String, String)>,
}

impl PolicyReport {
    pub fn accepted(&self) -> bool {
        self.diagnostics.is_empty()
    }

    /// Why the current generation is not served: `TooLarge` or `Invalid`
    /// (the `Accepted` condition's reason and the Event's).
    pub fn refusal(&self) -> &'static str {
        if self.over_budget {
            "TooLarge"
        } else {
            "Invalid"
        }
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
    compile_with(input, compile_policy)
}

/// How one policy's generation is compiled (the compiler's own
/// [`compile_policy`]; a test gives one that fails on purpose).
type CompileOne = fn(&AIPolicy, &ObjectRef, &Secrets, &Egress) -> Result<Policy, Vec<Diagnostic>>;

fn compile_with(
    input: CompileInput<'_>,
    compile_one: CompileOne,
) -> Result<Compilation, CompileError> {
    // Oldest first, across namespaces: what two policies both claim (an
    // agent name in one namespace, an API key anywhere) stays with the
    // older. Reports keep the order by namespace, then age.
    let created = |p: &AIPolicy| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
    let name = |p: &AIPolicy| p.metadata.name.clone().unwrap_or_default();
    let mut order: Vec<&AIPolicy> = input.policies.iter().collect();
    order.sort_by_key(|p| (created(p), namespace_of(&p.metadata), name(p)));

    let mut claimed = Claims::default();
    let mut compiled = Vec::new();
    let mut invalid = Vec::new();
    let mut reports = Vec::new();
    for p in order {
        let report_order = (namespace_of(&p.metadata), created(p), name(p));
        let object = object_ref("AIPolicy", &p.metadata);
        let generation = p.metadata.generation.unwrap_or(0);
        let mut diagnostics = Vec::new();
        let mut over_budget = false;
        // A panic on one policy (a bug) refuses that generation alone.
        let fresh = spec_within_budget(p, &object, input.policy_budget)
            .inspect_err(|_| over_budget = true)
            .and_then(|()| {
                guard::isolated(|| compile_one(p, &object, input.secrets, input.egress))
                    .unwrap_or_else(|panic| Err(vec![compiler_failed(&object, &panic)]))
            })
            .and_then(|policy| {
                within_budget(policy, &object, input.policy_budget, "compiled policy")
                    .inspect_err(|_| over_budget = true)
            })
            .and_then(|policy| claim_agents(&policy, &object, &claimed).map(|()| policy));
        let fresh = match fresh {
            Ok(policy) => Some(policy),
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
            let previous = last_good(previous, p, &object, input.policy_budget)
                .map_err(|d| diagnostics.extend(d))
                .ok()?;
            claim_agents(&previous, &object, &claimed)
                .ok()
                .map(|()| previous)
        });
        let mut quarantined = Vec::new();
        let served_generation = match chosen {
            Some(mut policy) => {
                // Quarantines from the policy's annotations, on whichever
                // generation is served: they always win, like kill switches.
                for (agent, why) in
                    crate::quarantine::of_annotations(p.metadata.annotations.as_ref())
                {
                    if policy.agent(agent).is_some() {
                        policy.quarantine(agent, &why);
                        quarantined.push((agent.to_owned(), why));
                    }
                }
                claimed.record(&policy);
                let served = policy.generation;
                compiled.push(policy);
                Some(served)
            }
            None => {
                invalid.push(InvalidPolicy {
                    namespace: object.namespace.clone(),
                    name: object.name.clone(),
                    generation,
                    agents: p.spec.agents.iter().map(|a| a.name.clone()).collect(),
                });
                None
            }
        };
        reports.push((
            report_order,
            PolicyReport {
                object,
                generation,
                diagnostics,
                served_generation,
                agents: p.spec.agents.len(),
                over_budget,
                quarantined,
            },
        ));
    }

    reports.sort_by(|(a, _), (b, _)| a.cmp(b));
    let reports: Vec<PolicyReport> = reports.into_iter().map(|(_, r)| r).collect();

    let mut grants = Vec::new();
    let mut grant_reports = Vec::new();
    for g in input.grants {
        let object = object_ref("ToolGrant", &g.metadata);
        let generation = g.metadata.generation.unwrap_or(0);
        let compiled = guard::isolated(|| compile_grant(g, &object))
            .unwrap_or_else(|panic| Err(vec![compiler_failed(&object, &panic)]));
        let (state, diagnostics) = match compiled {
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

/// The diagnostic of an object the compiler panicked on (a bug).
fn compiler_failed(object: &ObjectRef, panic: &str) -> Diagnostic {
    Diagnostic::new(
        object,
        "spec",
        format!("the compiler failed on this generation: {panic}"),
        "this is a bug in Palisade: report it with the operator's log; the other objects are compiled as usual",
    )
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

fn compile_policy(
    p: &AIPolicy,
    object: &ObjectRef,
    secrets: &Secrets,
    egress: &Egress,
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
    let providers = compile_providers(&mut d, &spec.providers, secrets, egress);
    let provider_names: Vec<&str> = spec.providers.iter().map(|p| p.name.as_str()).collect();
    let routing = compile_routing(&mut d, p, &provider_names);
    let tools = compile_tools(&mut d, p);
    let runnable = compile_runnable(&mut d, &spec.tools, secrets, egress);
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
    let limits = compile_limits(&mut d, spec.limits.as_ref());
    let security = compile_security(&mut d, spec.security.as_ref());
    let mcp_servers = compile_mcp_servers(&mut d, &spec.mcp_servers, secrets, egress);
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
                max_pending_per_agent: spec.approvals.max_pending_per_agent,
            },
            audit,
            limits: limits?,
            runnable: runnable?,
            security: security?,
            mcp_servers: mcp_servers?,
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
        if let Some(key) = &api_key_sha256
            && let Some(twin) = out
                .iter()
                .find(|b: &&Agent| b.api_key_sha256.as_ref() == Some(key))
        {
            d.push(
                format!("{field}.apiKeySecretRef"),
                format!(
                    "agent {:?} has the same API key as agent {:?} of this policy; a key identifies exactly one agent",
                    a.name, twin.name
                ),
                "give every agent a key of its own",
            );
            ok = false;
        }
        out.push(Agent {
            name: a.name.clone(),
            service_account: a.service_account.clone(),
            api_key_sha256,
            suspended: a.suspended,
            quarantine: None,
        });
    }
    ok.then_some(out)
}

#[cfg(test)]
mod tests;
