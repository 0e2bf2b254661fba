//! `spec.routing`: rules, patterns within their cost bound, providers named
//! by the routing, the fallback, and whether only rules may reach the
//! cloud (`spec.routing.cloud`).

use super::Diags;
use crate::resources::{AIPolicy, CloudRoutingMode, ProviderLocation, ProviderType};
use palisade_policy as policy;
use palisade_policy::{CloudRouting, RouteRule, Routing};

/// `spec.routing.cloud` with the names of the policy's local providers;
/// under `AllowRulesOnly` the default and fallback providers must be local.
fn cloud_routing(d: &mut Diags<'_>, p: &AIPolicy) -> Option<CloudRouting> {
    let spec = &p.spec.routing;
    if spec.cloud == CloudRoutingMode::Any {
        return Some(CloudRouting::Any);
    }
    let local: Vec<String> = p
        .spec
        .providers
        .iter()
        .filter(|q| {
            q.location.unwrap_or(match q.kind {
                ProviderType::Ollama => ProviderLocation::Local,
                ProviderType::OpenAi | ProviderType::Anthropic => ProviderLocation::Cloud,
            }) == ProviderLocation::Local
        })
        .map(|q| q.name.clone())
        .collect();
    let mut ok = true;
    for (field, provider) in [
        ("spec.routing.defaultProvider", Some(&spec.default_provider)),
        (
            "spec.routing.fallbackProvider",
            spec.fallback_provider.as_ref(),
        ),
    ] {
        if let Some(name) = provider
            && !local.contains(name)
        {
            d.push(
                field,
                format!("names provider {name:?}, a cloud provider, while spec.routing.cloud is AllowRulesOnly (only a rule may send a request to the cloud)"),
                format!(
                    "name a local provider ({}), or set location: Local on {name:?} if it runs in your infrastructure",
                    if local.is_empty() { "the policy has none".to_owned() } else { local.join(", ") }
                ),
            );
            ok = false;
        }
    }
    ok.then_some(CloudRouting::AllowRulesOnly { local })
}

pub(super) fn unknown_provider(d: &mut Diags<'_>, field: &str, name: &str, known: &[&str]) -> bool {
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

pub(super) fn compile_routing(
    d: &mut Diags<'_>,
    p: &AIPolicy,
    providers: &[&str],
) -> Option<Routing> {
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
            if !k.chars().any(char::is_alphanumeric) {
                d.push(
                    format!("{field}.keywords[{j}]"),
                    "a keyword without a letter or digit matches every prompt (keywords are matched as words: punctuation and spaces only separate them)",
                    "remove it",
                );
                ok = false;
            }
        }
        for (j, pattern) in r.patterns.iter().enumerate() {
            if let Err(e) = policy::check_pattern(pattern) {
                let (what, message, fix) = match &e {
                    policy::PatternError::Invalid(m) => (
                        "invalid regular expression",
                        m,
                        "fix the expression (Rust regex syntax: no look-around or back-references)",
                    ),
                    policy::PatternError::TooCostly(m) => (
                        "regular expression too costly",
                        m,
                        "make it smaller: ASCII classes ((?-u:\\w), [0-9], [A-Za-z]) instead of Unicode ones, fewer and bounded repetitions ({2,12}, not {200} or a repeated group), or several patterns",
                    ),
                };
                d.push(
                    format!("{field}.patterns[{j}]"),
                    format!("{what}: {}", message.lines().last().unwrap_or(message)),
                    fix,
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
    let cloud = cloud_routing(d, p);
    let (true, Some(cloud)) = (ok, cloud) else {
        return None;
    };
    match Routing::new(
        rules,
        spec.default_provider.clone(),
        spec.fallback_provider.clone(),
    )
    .and_then(|r| r.with_cloud(cloud))
    {
        Ok(r) => Some(r),
        Err(e) => {
            d.push(
                "spec.routing.rules",
                format!(
                    "{e} (all patterns of a policy are matched as one set, of at most {} KiB compiled)",
                    policy::PATTERN_SET_SIZE_LIMIT >> 10
                ),
                "use fewer or simpler patterns",
            );
            None
        }
    }
}
