//! `spec.providers`: types, base URLs, credentials from Secrets, timeouts.
//! A base URL must be on the platform's allow-list ([`Egress`]), and a
//! credentials Secret must be opted in by its owner (the
//! [`crate::labels::CREDENTIALS`] label): a policy author can neither send
//! an arbitrary Secret of the namespace to a host of their choosing nor
//! make the gateway reach an internal address.

use super::*;
use crate::resources::ToolCallingSpec;
use palisade_policy::EgressRefusal;

pub(super) fn compile_providers(
    d: &mut Diags<'_>,
    providers: &[ProviderSpec],
    secrets: &Secrets,
    egress: &Egress,
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
        let earlier = providers[..i].iter().map(|q| q.name.as_str());
        ok &= unique_name(d, &format!("{field}.name"), "provider", &p.name, earlier);
        let url_ok = endpoint_url(d, &format!("{field}.baseUrl"), &p.base_url);
        ok &= url_ok;
        let api_key = match &p.credentials_secret_ref {
            None => None,
            Some(r) => match d.credentials(&format!("{field}.credentialsSecretRef"), secrets, r) {
                Some(v) => Some(SecretString::new(v)),
                None => {
                    ok = false;
                    None
                }
            },
        };
        if url_ok {
            ok &= allowed(
                d,
                &format!("{field}.baseUrl"),
                &p.base_url,
                p.credentials_secret_ref.is_some(),
                egress,
            );
        }
        let timeout = d
            .duration(
                &format!("{field}.timeout"),
                p.timeout.as_deref(),
                DEFAULT_PROVIDER_TIMEOUT,
                "30s",
            )
            .unwrap_or_else(|| {
                ok = false;
                DEFAULT_PROVIDER_TIMEOUT
            });
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
            tool_calling: match p.tool_calling.unwrap_or_default() {
                ToolCallingSpec::Native => policy::ToolCalling::Native,
                ToolCallingSpec::Prompt => policy::ToolCalling::Prompt,
            },
        });
    }
    ok.then_some(out)
}

/// Whether `url` (at `field`) is an http(s) URL without credentials in it;
/// a diagnostic says why not.
pub(super) fn endpoint_url(d: &mut Diags<'_>, field: &str, url: &str) -> bool {
    let url_ok = ["http://", "https://"].iter().any(|s| {
        url.strip_prefix(s)
            .is_some_and(|rest| !rest.is_empty() && !rest.contains(char::is_whitespace))
    });
    // user:password@ in the authority: never sent (Host carries the
    // host only) and never echoed (it is a credential).
    let has_userinfo = url
        .split_once("://")
        .map(|(_, rest)| rest.split(['/', '?', '#']).next().unwrap_or(""))
        .is_some_and(|authority| authority.contains('@'));
    if has_userinfo {
        d.push(
            field,
            "holds credentials (user:password@host); they are not sent, and a URL is no place for a secret".to_owned(),
            "remove them from the URL and put the key in a Secret named by credentialsSecretRef",
        );
        return false;
    }
    if !url_ok {
        d.push(
            field,
            format!("{url:?} is not an http(s) URL"),
            "write e.g. http://ollama.ollama.svc:11434 or https://api.openai.com",
        );
    }
    url_ok
}

/// Whether the platform's allow-list ([`Egress`]) lets the gateway reach
/// `url` (with credentials when `credentials`).
pub(super) fn allowed(
    d: &mut Diags<'_>,
    field: &str,
    url: &str,
    credentials: bool,
    egress: &Egress,
) -> bool {
    let Err(refusal) = egress.check_url(url, credentials) else {
        return true;
    };
    let fix = match refusal {
        EgressRefusal::PlaintextCredentials { .. } => {
            "use the server's https:// URL (or, for an in-cluster server without TLS, ask the platform admin to set providers.allowPlaintextCredentials in the chart)"
        }
        _ => {
            "use an allowed URL, or ask the platform admin to add this one to providers.allowedBaseUrls in the chart's values"
        }
    };
    d.push(field, refusal.to_string(), fix);
    false
}

/// Whether `name` (at `field`, of a `what`) is a DNS label no earlier
/// entry has; diagnostics say why not.
pub(super) fn unique_name<'a>(
    d: &mut Diags<'_>,
    field: &str,
    what: &str,
    name: &str,
    mut earlier: impl Iterator<Item = &'a str>,
) -> bool {
    let mut ok = true;
    if !is_dns_label(name) {
        d.push(
            field,
            format!("{name:?} is not a valid {what} name"),
            "use lower-case letters, digits and '-', at most 63 characters",
        );
        ok = false;
    }
    if earlier.any(|n| n == name) {
        d.push(
            field,
            format!("{what} {name:?} is defined twice"),
            "rename or remove one",
        );
        ok = false;
    }
    ok
}
