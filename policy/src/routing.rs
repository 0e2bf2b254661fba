//! Chat routing: which provider serves a chat request, and why.
//!
//! Rules are ordered; the first rule whose criteria all hold decides. Every
//! other rule that also matched adds its reason code after the decisive
//! one, so an auditor sees "keyword, and also prompt length". All keywords
//! of all rules are found in one Aho-Corasick pass over the text the
//! provider would see and all patterns in one `RegexSet` pass; no per-rule
//! scanning. Both look at that text normalised ([`scan`]), so `Date-of-
//! Birth`, full-width letters and zero-width-split words are caught.
//!
//! With [`CloudRouting::AllowRulesOnly`] (regulated tenants), a request
//! reaches a cloud provider only when a rule sends it there and no
//! matching rule keeps it local; otherwise it stays on the local default
//! (`routing.cloud_not_allowed`).

mod scan;

use crate::bundle::{Agent, Lookup, Policy, PolicyBundle};
use crate::{Decision, Evaluated, NameGlobs, Outcome, ReasonCode};
use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use regex::{RegexSet, RegexSetBuilder};
use serde::{Deserialize, Serialize};

/// The compiled size one routing pattern may take. Every chat request is
/// matched against every pattern, and the regex crate's worst case is
/// linear in the prompt times this size, so it bounds both memory and
/// the time per request. Identifier patterns (SSNs, record numbers,
/// e-mail addresses) take 16–256 KiB; `(?i)(\w+\s*){200}zzz` takes
/// 16 MiB and a second per MiB of prompt.
pub const PATTERN_SIZE_LIMIT: usize = 1 << 20;

/// The compiled size of all of a policy's patterns together (one set,
/// matched in one pass).
pub const PATTERN_SET_SIZE_LIMIT: usize = 4 << 20;

/// The lazy DFA's cache, per pattern set and thread: what matching may
/// hold beyond the compiled patterns. Past it the cache is cleared or the
/// match falls back to a slower engine, never grows.
pub const PATTERN_DFA_SIZE_LIMIT: usize = 2 << 20;

/// The longest pattern source, in bytes (the parser's own nesting limit
/// stands too).
pub const PATTERN_MAX_LEN: usize = 4096;

/// A chat request as the router sees it; its texts are scanned, never
/// stored.
#[derive(Debug, Clone, Copy)]
pub struct ChatRequest<'a> {
    pub namespace: &'a str,
    pub agent: &'a str,
    pub model: &'a str,
    /// The text of the messages: what `maxPromptChars` / `minPromptChars`
    /// measure.
    pub prompt: &'a str,
    /// Every text the provider will see (messages of every role and their
    /// parts, earlier tool calls and their arguments, names, tool
    /// definitions): what `keywords` and `patterns` are matched against,
    /// normalised. Must contain `prompt`.
    pub provider_text: &'a str,
}

/// Whether a request may go to a cloud provider without a rule saying so.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum CloudRouting {
    /// Any route may be a cloud provider (the default).
    #[default]
    Any,
    /// Only a rule may send a request to a provider not in `local`, and a
    /// matching rule to a `local` provider wins over one to the cloud
    /// whatever their order. The default and fallback providers are
    /// local.
    AllowRulesOnly { local: Vec<String> },
}

impl CloudRouting {
    fn is_any(&self) -> bool {
        *self == Self::Any
    }

    /// Whether `provider` is a cloud provider under this setting.
    pub fn is_cloud(&self, provider: &str) -> bool {
        match self {
            Self::Any => false,
            Self::AllowRulesOnly { local } => !local.iter().any(|l| l == provider),
        }
    }
}

/// One ordered routing rule. All criteria that are set must hold.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RouteRule {
    /// How decisions name this rule: its `name`, or `spec.routing.rules[i]`.
    pub rule: String,
    /// Matches if any keyword occurs in the prompt (ASCII case-insensitive substring).
    #[serde(default)]
    pub keywords: Vec<String>,
    /// Matches if any regex matches somewhere in the prompt.
    #[serde(default)]
    pub patterns: Vec<String>,
    /// Matches prompts of at most this many characters.
    pub max_prompt_chars: Option<u64>,
    /// Matches prompts of at least this many characters.
    pub min_prompt_chars: Option<u64>,
    /// Matches requested models (globs).
    pub models: Option<NameGlobs>,
    /// Matches calling agents (globs).
    pub agents: Option<NameGlobs>,
    /// The provider that serves matching requests.
    pub provider: String,
    /// The model to ask that provider for; the request's model if unset.
    pub model: Option<String>,
}

impl RouteRule {
    /// The reason code this rule contributes: its most specific criterion.
    pub fn reason_code(&self) -> ReasonCode {
        if !self.keywords.is_empty() {
            ReasonCode::RoutingKeyword
        } else if !self.patterns.is_empty() {
            ReasonCode::RoutingPattern
        } else if self.max_prompt_chars.is_some() || self.min_prompt_chars.is_some() {
            ReasonCode::RoutingPromptLength
        } else if self.models.is_some() {
            ReasonCode::RoutingModel
        } else {
            ReasonCode::RoutingAgent
        }
    }
}

/// Why routing rules could not be compiled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoutingError {
    #[error("routing rule {rule} pattern {index}: {message}")]
    Pattern {
        rule: usize,
        index: usize,
        message: String,
    },
    #[error("routing rule {rule} keyword {index} has no letter or digit")]
    EmptyKeyword { rule: usize, index: usize },
    #[error(
        "with cloud routing AllowRulesOnly, the {which} provider {provider:?} must be local (only a rule may send a request to the cloud)"
    )]
    CloudByDefault {
        which: &'static str,
        provider: String,
    },
    #[error("routing rules: {0}")]
    Build(String),
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RoutingData {
    rules: Vec<RouteRule>,
    default_provider: String,
    fallback_provider: Option<String>,
    #[serde(default, skip_serializing_if = "CloudRouting::is_any")]
    cloud: CloudRouting,
}

/// A policy's routing table with its prompt scanners built once.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(try_from = "RoutingData", into = "RoutingData")]
pub struct Routing {
    rules: Vec<RouteRule>,
    default_provider: String,
    fallback_provider: Option<String>,
    cloud: CloudRouting,
    /// Keywords in their word form ([`scan::word_form`]).
    keywords: Option<AhoCorasick>,
    keyword_owner: Vec<usize>,
    /// How many distinct rules have keywords: the scan stops once all hit.
    keyword_rules: usize,
    patterns: Option<RegexSet>,
    pattern_owner: Vec<usize>,
    /// Whether any rule looks at prompt length (saves counting characters).
    needs_length: bool,
}

impl Routing {
    pub fn new(
        rules: Vec<RouteRule>,
        default_provider: String,
        fallback_provider: Option<String>,
    ) -> Result<Self, RoutingError> {
        let mut keywords = Vec::new();
        let mut keyword_owner = Vec::new();
        let mut patterns = Vec::new();
        let mut pattern_owner = Vec::new();
        for (i, rule) in rules.iter().enumerate() {
            for (j, keyword) in rule.keywords.iter().enumerate() {
                let word_form = scan::word_form(keyword);
                if word_form.is_empty() {
                    return Err(RoutingError::EmptyKeyword { rule: i, index: j });
                }
                keywords.push(word_form);
                keyword_owner.push(i);
            }
            for (j, pattern) in rule.patterns.iter().enumerate() {
                check_pattern(pattern).map_err(|e| RoutingError::Pattern {
                    rule: i,
                    index: j,
                    message: e.to_string(),
                })?;
                patterns.push(pattern.as_str());
                pattern_owner.push(i);
            }
        }
        let keywords = if keywords.is_empty() {
            None
        } else {
            Some(
                AhoCorasickBuilder::new()
                    .match_kind(MatchKind::Standard)
                    .build(&keywords)
                    .map_err(|e| RoutingError::Build(e.to_string()))?,
            )
        };
        let patterns = if patterns.is_empty() {
            None
        } else {
            Some(
                RegexSetBuilder::new(&patterns)
                    .size_limit(PATTERN_SET_SIZE_LIMIT)
                    .dfa_size_limit(PATTERN_DFA_SIZE_LIMIT)
                    .build()
                    .map_err(|e| RoutingError::Build(e.to_string()))?,
            )
        };
        let keyword_rules = rules.iter().filter(|r| !r.keywords.is_empty()).count();
        let needs_length = rules
            .iter()
            .any(|r| r.max_prompt_chars.is_some() || r.min_prompt_chars.is_some());
        Ok(Self {
            rules,
            default_provider,
            fallback_provider,
            cloud: CloudRouting::Any,
            keywords,
            keyword_owner,
            keyword_rules,
            patterns,
            pattern_owner,
            needs_length,
        })
    }

    /// Sets whether requests may go to the cloud without a rule saying so;
    /// the default and fallback providers must then be local.
    pub fn with_cloud(mut self, cloud: CloudRouting) -> Result<Self, RoutingError> {
        for (which, provider) in [
            ("default", Some(&self.default_provider)),
            ("fallback", self.fallback_provider.as_ref()),
        ] {
            if let Some(p) = provider
                && cloud.is_cloud(p)
            {
                return Err(RoutingError::CloudByDefault {
                    which,
                    provider: p.clone(),
                });
            }
        }
        self.cloud = cloud;
        Ok(self)
    }

    pub fn rules(&self) -> &[RouteRule] {
        &self.rules
    }

    pub fn cloud(&self) -> &CloudRouting {
        &self.cloud
    }

    pub fn default_provider(&self) -> &str {
        &self.default_provider
    }

    pub fn fallback_provider(&self) -> Option<&str> {
        self.fallback_provider.as_deref()
    }

    /// Indexes of the rules that match, in rule order.
    fn matching(&self, request: &ChatRequest<'_>) -> Vec<usize> {
        let n = self.rules.len();
        let mut keyword_hit = vec![false; n];
        let mut pattern_hit = vec![false; n];
        if let Some(ac) = &self.keywords {
            let words = scan::word_form(request.provider_text);
            let mut found = 0;
            for m in ac.find_overlapping_iter(&words) {
                let rule = self.keyword_owner[m.pattern().as_usize()];
                if !keyword_hit[rule] {
                    keyword_hit[rule] = true;
                    found += 1;
                    if found == self.keyword_rules {
                        break;
                    }
                }
            }
        }
        if let Some(set) = &self.patterns {
            for p in set.matches(&scan::text_form(request.provider_text)).iter() {
                pattern_hit[self.pattern_owner[p]] = true;
            }
        }
        let chars = if self.needs_length {
            request.prompt.chars().count() as u64
        } else {
            0
        };
        (0..n)
            .filter(|&i| {
                let r = &self.rules[i];
                (r.keywords.is_empty() || keyword_hit[i])
                    && (r.patterns.is_empty() || pattern_hit[i])
                    && r.max_prompt_chars.is_none_or(|max| chars <= max)
                    && r.min_prompt_chars.is_none_or(|min| chars >= min)
                    && r.models.as_ref().is_none_or(|g| g.is_match(request.model))
                    && r.agents.as_ref().is_none_or(|g| g.is_match(request.agent))
            })
            .collect()
    }
}

/// Why a routing pattern is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    /// Not a valid regular expression (the regex crate's message).
    #[error("{0}")]
    Invalid(String),
    /// Valid, but over [`PATTERN_MAX_LEN`] or, compiled, over
    /// [`PATTERN_SIZE_LIMIT`].
    #[error("{0}")]
    TooCostly(String),
}

/// Checks one regex against the bounds the router compiles it with:
/// [`PATTERN_MAX_LEN`], [`PATTERN_SIZE_LIMIT`], [`PATTERN_DFA_SIZE_LIMIT`].
pub fn check_pattern(pattern: &str) -> Result<(), PatternError> {
    if pattern.len() > PATTERN_MAX_LEN {
        return Err(PatternError::TooCostly(format!(
            "the pattern is {} bytes long, over the limit of {PATTERN_MAX_LEN}",
            pattern.len()
        )));
    }
    regex::RegexBuilder::new(pattern)
        .size_limit(PATTERN_SIZE_LIMIT)
        .dfa_size_limit(PATTERN_DFA_SIZE_LIMIT)
        .build()
        .map(|_| ())
        .map_err(|e| match e {
            regex::Error::CompiledTooBig(limit) => PatternError::TooCostly(format!(
                "compiled, it exceeds the size limit of {} KiB per pattern (matching costs prompt length times that size, on every chat request)",
                limit >> 10
            )),
            other => PatternError::Invalid(other.to_string()),
        })
}

impl TryFrom<RoutingData> for Routing {
    type Error = RoutingError;
    fn try_from(d: RoutingData) -> Result<Self, Self::Error> {
        Self::new(d.rules, d.default_provider, d.fallback_provider)?.with_cloud(d.cloud)
    }
}

impl From<Routing> for RoutingData {
    fn from(r: Routing) -> Self {
        Self {
            rules: r.rules,
            default_provider: r.default_provider,
            fallback_provider: r.fallback_provider,
            cloud: r.cloud,
        }
    }
}

/// Where a chat request goes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Route {
    /// Provider name (as in the policy's `spec.providers`).
    pub provider: String,
    /// The model to ask the provider for.
    pub model: String,
    /// Ordered: the decisive reason first, then those of other matching rules.
    pub reasons: Vec<ReasonCode>,
    /// The decisive rule, if a rule (not the default) decided.
    pub rule: Option<String>,
    /// Where to go on connect error, 5xx or timeout, if the policy says.
    pub fallback: Option<Fallback>,
}

/// The policy's fallback for a route.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Fallback {
    pub provider: String,
    pub model: String,
}

impl Route {
    /// The route to take when this one's provider failed, with
    /// `routing.fallback` appended to the reasons.
    pub fn fallback_route(&self) -> Option<Route> {
        let fallback = self.fallback.as_ref()?;
        let mut reasons = self.reasons.clone();
        reasons.push(ReasonCode::RoutingFallback);
        Some(Route {
            provider: fallback.provider.clone(),
            model: fallback.model.clone(),
            reasons,
            rule: self.rule.clone(),
            fallback: None,
        })
    }
}

/// The verdict on a chat request and, when a policy governs the agent,
/// its route. In `Audit` enforcement a disallowed model yields a `Deny`
/// decision that is not enforced, and the route is still there for the
/// gateway to use; a kill switch is enforced in every mode, so
/// [`ChatDecision::permitted_route`] is `None` under one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatDecision {
    pub decision: Decision,
    pub route: Option<Route>,
}

/// A refusal, with no route.
impl From<Decision> for ChatDecision {
    fn from(decision: Decision) -> Self {
        Self {
            decision,
            route: None,
        }
    }
}

impl ChatDecision {
    /// The route to use, or `None` when the request must be refused.
    pub fn permitted_route(&self) -> Option<&Route> {
        match self.decision.effective_outcome() {
            Outcome::Allow => self.route.as_ref(),
            _ => None,
        }
    }
}

// === impl PolicyBundle: chat routing ===

impl PolicyBundle {
    /// Routes a chat request, or refuses it (no policy, kill switch, model
    /// not allowed), and says which policy decided it.
    pub fn evaluate_chat(&self, request: &ChatRequest<'_>) -> Evaluated<'_, ChatDecision> {
        let (policy, agent) = match self.lookup(request.namespace, request.agent) {
            Lookup::Governed { policy, agent } => (policy, agent),
            Lookup::Invalid(invalid) => return Evaluated::ungoverned(Some(invalid)),
            Lookup::None => return Evaluated::ungoverned(None),
        };
        Evaluated {
            decision: route_chat(policy, agent, request),
            policy: Some(policy),
        }
    }
}

/// [`PolicyBundle::evaluate_chat`] for an agent `policy` governs.
fn route_chat(policy: &Policy, agent: &Agent, request: &ChatRequest<'_>) -> ChatDecision {
    let routing = &policy.routing;
    let mut matched = routing.matching(request);
    // Under AllowRulesOnly a matching rule to a local provider decides
    // before any to the cloud.
    if let Some(at) = matched
        .iter()
        .position(|&i| !routing.cloud.is_cloud(&routing.rules[i].provider))
    {
        let local = matched.remove(at);
        matched.insert(0, local);
    }
    let (provider, rule_model, rule) = match matched.first() {
        Some(&i) => {
            let r = &routing.rules[i];
            (
                r.provider.as_str(),
                r.model.as_deref(),
                Some(r.rule.clone()),
            )
        }
        None => (routing.default_provider.as_str(), None, None),
    };
    let mut reasons: Vec<ReasonCode> = Vec::with_capacity(matched.len().max(1));
    for &i in &matched {
        let code = routing.rules[i].reason_code();
        if !reasons.contains(&code) {
            reasons.push(code);
        }
    }
    if reasons.is_empty() {
        reasons.push(if routing.cloud.is_any() {
            ReasonCode::RoutingDefault
        } else {
            ReasonCode::RoutingCloudNotAllowed
        });
    }
    let model_for = |provider: &str, explicit: Option<&str>| -> String {
        if let Some(m) = explicit {
            return m.to_owned();
        }
        if request.model.is_empty()
            && let Some(m) = policy
                .provider(provider)
                .and_then(|p| p.default_model.as_deref())
        {
            return m.to_owned();
        }
        request.model.to_owned()
    };
    let model = model_for(provider, rule_model);
    let fallback = routing
        .fallback_provider
        .as_deref()
        .filter(|f| *f != provider)
        .map(|f| Fallback {
            provider: f.to_owned(),
            model: policy
                .provider(f)
                .and_then(|p| p.default_model.clone())
                .unwrap_or_else(|| model.clone()),
        });
    let route = Route {
        provider: provider.to_owned(),
        model,
        reasons,
        rule: rule.clone(),
        fallback,
    };

    // The allow-list judges what the agent asked for (or, when it asked
    // for nothing, the provider default it would get).
    let requested_model = if request.model.is_empty() {
        route.model.as_str()
    } else {
        request.model
    };
    if let Some(kill) = policy.kill_switch(agent) {
        return ChatDecision {
            decision: kill,
            route: Some(route),
        };
    }
    let (outcome, reason_code, rule) =
        if route.model.is_empty() || !policy.models.is_match(requested_model) {
            (
                Outcome::Deny,
                ReasonCode::ModelNotAllowed,
                Some("spec.models.allow".to_owned()),
            )
        } else {
            (Outcome::Allow, route.reasons[0], rule)
        };
    ChatDecision {
        decision: Decision {
            outcome,
            enforced: policy.enforces(),
            reason_code,
            rule,
            policy: Some(policy.reference()),
        },
        route: Some(route),
    }
}
