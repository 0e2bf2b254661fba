//! Where a gateway may send chat requests: the platform admin's allow-list
//! of provider base URLs, and whether provider credentials may travel over
//! plain `http://`. Policy authors choose providers; the admin bounds them,
//! so a policy cannot point the gateway (and a credentials Secret) at a
//! host of its author's choosing, or use it to reach internal addresses.
//!
//! Checked twice: by the compiler on every `spec.providers[].baseUrl`
//! (a diagnostic), and by the gateway on the parsed URL it is about to
//! connect to (a refusal, `upstream.not_allowed`).
//!
//! A pattern is `SCHEME://HOST[:PORT]`: the scheme `http` or `https`
//! exactly; the host exact, or `*.SUFFIX` for any host with at least one
//! label before `.SUFFIX`; without a port any port matches. Host names
//! compare case-insensitively, a trailing dot ignored. `*` alone allows
//! every URL.

use std::fmt;

/// The allow-list the chart installs by default: the well-known cloud
/// providers over TLS and in-cluster services (such as Ollama) by their
/// `.svc` names over plain HTTP.
pub const DEFAULT_ALLOWED_PROVIDER_URLS: &[&str] = &[
    "https://api.openai.com",
    "https://api.anthropic.com",
    "http://*.svc",
    "http://*.svc.cluster.local",
];

/// One allow-list entry.
#[derive(Clone, Debug, PartialEq, Eq)]
struct UrlPattern {
    https: bool,
    /// Lower-case; `suffix` true: matches `*.host`.
    host: String,
    suffix: bool,
    port: Option<u16>,
}

/// Why an allow-list entry is not a pattern.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{pattern:?} is not a provider URL pattern: {why} (write SCHEME://HOST[:PORT], e.g. https://api.openai.com or http://*.svc.cluster.local:11434)"
)]
pub struct EgressPatternError {
    pub pattern: String,
    pub why: &'static str,
}

/// Why a URL is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EgressRefusal {
    #[error("{url} is not on the platform's allow-list of provider URLs ({allowed})")]
    NotAllowed { url: String, allowed: String },
    #[error(
        "{url} is plain http:// and the provider has credentials; they are sent only over https:// unless the platform allows plaintext credentials"
    )]
    PlaintextCredentials { url: String },
    #[error("{url} is not an http(s) URL with a host")]
    NotAUrl { url: String },
}

/// The admin's rules for provider URLs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Egress {
    /// `None`: any URL.
    allowed: Option<Vec<UrlPattern>>,
    plaintext_credentials: bool,
}

impl Default for Egress {
    /// [`DEFAULT_ALLOWED_PROVIDER_URLS`], no plaintext credentials.
    fn default() -> Self {
        let allowed = DEFAULT_ALLOWED_PROVIDER_URLS
            .iter()
            .filter_map(|p| parse_pattern(p).ok())
            .collect();
        Self {
            allowed: Some(allowed),
            plaintext_credentials: false,
        }
    }
}

impl Egress {
    /// Any URL; credentials only over `https://` unless
    /// `plaintext_credentials`.
    pub fn any_url(plaintext_credentials: bool) -> Self {
        Self {
            allowed: None,
            plaintext_credentials,
        }
    }

    /// The allow-list `patterns` (`*` alone: any URL).
    pub fn new<S: AsRef<str>>(
        patterns: &[S],
        plaintext_credentials: bool,
    ) -> Result<Self, EgressPatternError> {
        if patterns.iter().any(|p| p.as_ref().trim() == "*") {
            return Ok(Self::any_url(plaintext_credentials));
        }
        let allowed = patterns
            .iter()
            .map(|p| parse_pattern(p.as_ref().trim()))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            allowed: Some(allowed),
            plaintext_credentials,
        })
    }

    /// The binaries' `--allowed-provider-urls` (comma-separated; unset or
    /// empty: [`DEFAULT_ALLOWED_PROVIDER_URLS`]) and
    /// `--allow-plaintext-credentials`.
    pub fn from_flag(
        list: Option<&str>,
        plaintext_credentials: bool,
    ) -> Result<Self, EgressPatternError> {
        let patterns: Vec<&str> = list
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .collect();
        if patterns.is_empty() {
            Ok(Self {
                plaintext_credentials,
                ..Self::default()
            })
        } else {
            Self::new(&patterns, plaintext_credentials)
        }
    }

    /// Whether plain-HTTP credentials are allowed.
    pub fn plaintext_credentials(&self) -> bool {
        self.plaintext_credentials
    }

    /// Checks a base URL as written in a policy.
    pub fn check_url(&self, url: &str, has_credentials: bool) -> Result<(), EgressRefusal> {
        let not_a_url = || EgressRefusal::NotAUrl {
            url: url.to_owned(),
        };
        let (scheme, rest) = url.split_once("://").ok_or_else(not_a_url)?;
        let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
        if authority.contains('@') {
            return Err(not_a_url());
        }
        let (host, port) = split_port(authority).ok_or_else(not_a_url)?;
        self.check(url, scheme, host, port, has_credentials)
    }

    /// Checks a URL already parsed into its parts (`url` names it in the
    /// refusal, and is formatted only then): what the gateway does before
    /// it connects, once per request, so the common case allocates nothing.
    pub fn check(
        &self,
        url: impl std::fmt::Display,
        scheme: &str,
        host: &str,
        port: Option<u16>,
        has_credentials: bool,
    ) -> Result<(), EgressRefusal> {
        let https = if scheme.eq_ignore_ascii_case("https") {
            true
        } else if scheme.eq_ignore_ascii_case("http") {
            false
        } else {
            return Err(EgressRefusal::NotAUrl {
                url: url.to_string(),
            });
        };
        let host = host.trim_end_matches('.');
        let host: std::borrow::Cow<'_, str> = if host.bytes().any(|b| b.is_ascii_uppercase()) {
            host.to_ascii_lowercase().into()
        } else {
            host.into()
        };
        if host.is_empty() {
            return Err(EgressRefusal::NotAUrl {
                url: url.to_string(),
            });
        }
        let port = port.unwrap_or(if https { 443 } else { 80 });
        if let Some(allowed) = &self.allowed
            && !allowed.iter().any(|p| p.matches(https, &host, port))
        {
            return Err(EgressRefusal::NotAllowed {
                url: url.to_string(),
                allowed: self.to_string(),
            });
        }
        if !https && has_credentials && !self.plaintext_credentials {
            return Err(EgressRefusal::PlaintextCredentials {
                url: url.to_string(),
            });
        }
        Ok(())
    }
}

impl fmt::Display for Egress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(allowed) = &self.allowed else {
            return f.write_str("*");
        };
        if allowed.is_empty() {
            return f.write_str("empty");
        }
        for (i, p) in allowed.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            let scheme = if p.https { "https" } else { "http" };
            let wild = if p.suffix { "*." } else { "" };
            write!(f, "{scheme}://{wild}{}", p.host)?;
            if let Some(port) = p.port {
                write!(f, ":{port}")?;
            }
        }
        Ok(())
    }
}

impl UrlPattern {
    fn matches(&self, https: bool, host: &str, port: u16) -> bool {
        self.https == https
            && self.port.is_none_or(|p| p == port)
            && if self.suffix {
                host.strip_suffix(self.host.as_str())
                    .and_then(|head| head.strip_suffix('.'))
                    .is_some_and(|label| !label.is_empty())
            } else {
                host == self.host
            }
    }
}

/// `host[:port]`, IPv6 literals in brackets; `None` when the port is not
/// a number or the host is empty.
fn split_port(authority: &str) -> Option<(&str, Option<u16>)> {
    let (host, port) = if authority.starts_with('[') {
        let end = authority.find(']')? + 1;
        let (host, rest) = authority.split_at(end);
        (host, rest.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let port = match port {
        None => None,
        Some(p) => Some(p.parse::<u16>().ok()?),
    };
    (!host.is_empty()).then_some((host, port))
}

fn parse_pattern(pattern: &str) -> Result<UrlPattern, EgressPatternError> {
    let error = |why| EgressPatternError {
        pattern: pattern.to_owned(),
        why,
    };
    let (scheme, rest) = pattern
        .split_once("://")
        .ok_or_else(|| error("it has no scheme"))?;
    let https = match scheme {
        "https" => true,
        "http" => false,
        _ => return Err(error("the scheme must be http or https")),
    };
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.contains(['/', '?', '#', '@']) || authority.contains(char::is_whitespace) {
        return Err(error(
            "only a host and an optional port may follow the scheme",
        ));
    }
    let (host, port) = split_port(authority).ok_or_else(|| error("the port is not a number"))?;
    let (host, suffix) = match host.strip_prefix("*.") {
        Some(h) => (h, true),
        None => (host, false),
    };
    if host.is_empty() || host.contains('*') {
        return Err(error(
            "a wildcard may only be a leading *. before a domain (e.g. *.svc)",
        ));
    }
    Ok(UrlPattern {
        https,
        host: host.trim_end_matches('.').to_ascii_lowercase(),
        suffix,
        port,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_allows_the_known_providers_and_in_cluster_services_only() {
        let e = Egress::default();
        for ok in [
            "https://api.openai.com",
            "https://API.OpenAI.com./v1",
            "https://api.anthropic.com:443",
            "http://ollama.ollama.svc:11434",
            "http://ollama.ollama.svc.cluster.local:11434",
        ] {
            assert_eq!(e.check_url(ok, false), Ok(()), "{ok}");
        }
        for refused in [
            "https://evil.example",
            "http://api.openai.com",
            "https://api.openai.com.evil.example",
            "https://x.api.openai.com",
            "http://169.254.169.254/latest",
            "http://svc",
            "http://.svc",
            "http://ollama.ollama:11434",
            "https://ollama.svc",
            "http://127.0.0.1:11434",
        ] {
            assert!(
                matches!(
                    e.check_url(refused, false),
                    Err(EgressRefusal::NotAllowed { .. })
                ),
                "{refused}"
            );
        }
    }

    #[test]
    fn credentials_over_plain_http_need_the_admins_consent() {
        let e = Egress::default();
        let url = "http://vllm.ai.svc:8000/v1";
        assert!(matches!(
            e.check_url(url, true),
            Err(EgressRefusal::PlaintextCredentials { .. })
        ));
        assert_eq!(e.check_url(url, false), Ok(()));
        let lenient = Egress::new(&["http://*.svc"], true).unwrap();
        assert_eq!(lenient.check_url(url, true), Ok(()));
        assert!(matches!(
            Egress::any_url(false).check_url("http://x:1", true),
            Err(EgressRefusal::PlaintextCredentials { .. })
        ));
        assert_eq!(
            Egress::any_url(false).check_url("https://x:1", true),
            Ok(())
        );
    }

    #[test]
    fn ports_and_patterns() {
        let e = Egress::new(&["http://127.0.0.1:8000", "https://*.example.com"], false).unwrap();
        assert_eq!(e.check_url("http://127.0.0.1:8000/v1", false), Ok(()));
        assert!(e.check_url("http://127.0.0.1:8001", false).is_err());
        assert!(e.check_url("http://127.0.0.1", false).is_err());
        assert_eq!(e.check_url("https://a.b.example.com", true), Ok(()));
        assert!(e.check_url("https://example.com", true).is_err());
        assert!(e.check_url("https://evilexample.com", true).is_err());
        assert_eq!(
            e.to_string(),
            "http://127.0.0.1:8000, https://*.example.com"
        );
        assert_eq!(Egress::new(&["*"], false).unwrap(), Egress::any_url(false));
        for bad in [
            "api.openai.com",
            "ftp://x",
            "https://a/b",
            "https://*",
            "https://a.*.b",
            "https://x:port",
        ] {
            assert!(Egress::new(&[bad], false).is_err(), "{bad}");
        }
    }
}
