//! The primitives every credential check is made of: the one
//! `Authorization: Bearer` parser, the one constant-time comparison, and
//! [`Tokens`], a set of secrets known only by their SHA-256, each naming
//! who holds it (an agent's API key, an operator's token, the auditor's
//! token). Who is calling is decided in [`crate::auth`].

use axum::http::{HeaderMap, header};
use sha2::{Digest, Sha256};

/// An authenticated agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub namespace: String,
    pub agent: String,
}

/// The token of an `Authorization: Bearer <token>` header (trimmed, never
/// empty).
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// An agent's key: `Authorization: Bearer <key>`, else Anthropic's
/// `x-api-key: <key>` (what the `anthropic` SDKs send).
pub fn agent_key(headers: &HeaderMap) -> Option<&str> {
    bearer(headers).or_else(|| {
        headers
            .get("x-api-key")?
            .to_str()
            .ok()
            .map(str::trim)
            .filter(|t| !t.is_empty())
    })
}

/// A secret's SHA-256.
pub fn sha256(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// Whether two digests are equal, in time that does not depend on where
/// they differ.
fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

/// Secrets by their SHA-256, each with its holder.
#[derive(Debug, Clone)]
pub struct Tokens<T> {
    entries: Vec<([u8; 32], T)>,
}

impl<T> Default for Tokens<T> {
    fn default() -> Self {
        Self {
            entries: Vec::new(),
        }
    }
}

impl<T> FromIterator<([u8; 32], T)> for Tokens<T> {
    fn from_iter<I: IntoIterator<Item = ([u8; 32], T)>>(digests: I) -> Self {
        Self {
            entries: digests.into_iter().collect(),
        }
    }
}

impl<T> Tokens<T> {
    /// Holders of plain-text secrets (hashed here; the text is not kept).
    pub fn of_secrets(secrets: impl IntoIterator<Item = (T, String)>) -> Self {
        secrets
            .into_iter()
            .map(|(holder, secret)| (sha256(&secret), holder))
            .collect()
    }

    /// Who holds `token`. Every entry is compared, in constant time, so
    /// timing does not say which one (or whether one) matched.
    pub fn holder(&self, token: &str) -> Option<&T> {
        self.holder_of(&sha256(token))
    }

    /// Who holds the secret with this digest (compared like [`Self::holder`]).
    pub fn holder_of(&self, digest: &[u8; 32]) -> Option<&T> {
        let mut found = None;
        for (want, holder) in &self.entries {
            if same(want, digest) && found.is_none() {
                found = Some(holder);
            }
        }
        found
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Every secret's digest with its holder: keys derived from the
    /// secrets (the console's session seals, [`crate::console`]).
    pub fn digests(&self) -> impl Iterator<Item = (&[u8; 32], &T)> {
        self.entries.iter().map(|(d, h)| (d, h))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn a_bearer_token_is_trimmed_and_never_empty() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer(&h), None);
        for (value, token) in [
            ("Bearer abc", Some("abc")),
            ("Bearer  abc ", Some("abc")),
            ("Bearer ", None),
            ("Basic abc", None),
        ] {
            h.insert(header::AUTHORIZATION, HeaderValue::from_static(value));
            assert_eq!(bearer(&h), token, "{value}");
        }
    }

    #[test]
    fn tokens_name_their_holder_and_nothing_else() {
        let tokens = Tokens::of_secrets([("a", "key-a".to_owned()), ("b", "key-b".to_owned())]);
        assert_eq!(tokens.holder("key-b"), Some(&"b"));
        assert_eq!(tokens.holder("key-c"), None);
        assert_eq!(tokens.holder_of(&sha256("key-a")), Some(&"a"));
        assert!(Tokens::<()>::default().is_empty());
    }
}
