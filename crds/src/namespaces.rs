//! Namespace names as Kubernetes accepts them, and the `--watch-namespaces`
//! list both binaries take (one parser, so the operator and the gateway
//! agree on what a list means).

/// A DNS-1123 label: what Kubernetes accepts as a namespace name (and
/// what Palisade accepts as an agent name).
pub fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// A `--watch-namespaces` item that is not a namespace name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not a namespace name (lowercase letters, digits and '-', at most 63, starting and ending with a letter or digit)"
)]
pub struct NotANamespace(pub String);

/// Parses `ns1,ns2` (a flag, or `PALISADE_WATCH_NAMESPACES`): blanks and
/// empty items are ignored, duplicates dropped; empty means every
/// namespace; a name that is not a namespace name fails.
pub fn parse_list(list: &str) -> Result<Vec<String>, NotANamespace> {
    let mut out: Vec<String> = Vec::new();
    for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        if !is_dns_label(item) {
            return Err(NotANamespace(item.to_owned()));
        }
        if !out.iter().any(|n| n == item) {
            out.push(item.to_owned());
        }
    }
    Ok(out)
}
