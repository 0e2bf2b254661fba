//! Prompt and argument fingerprints: what the audit keeps instead of raw
//! content, and how arguments are redacted for humans and auditors.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// SHA-256 and character count of a prompt: enough to correlate and to
/// prove what was sent, without keeping the text.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PromptFingerprint {
    /// Lower-case hex SHA-256 of the prompt's UTF-8 bytes.
    pub sha256: String,
    /// Unicode scalar values (what people call characters), not bytes.
    pub chars: u64,
}

impl PromptFingerprint {
    pub fn of(prompt: &str) -> Self {
        Self {
            sha256: hex(&Sha256::digest(prompt.as_bytes())),
            chars: prompt.chars().count() as u64,
        }
    }
}

/// SHA-256 over the canonical JSON of tool arguments (object keys sorted,
/// no insignificant white space), so the same arguments always give the
/// same digest whatever order a client wrote them in. Prefixed `sha256:`.
/// Only as precise as a `Value`: a number serde_json had to round to a
/// double (an integer above 2^64, a long decimal) is digested rounded.
/// For arguments received as text use [`crate::ToolArguments::digest`],
/// which digests every number as written (and is the same digest for
/// everything a `Value` holds exactly).
pub fn argument_digest(arguments: &Value) -> String {
    crate::arguments::digest_of(&crate::arguments::canonical_json(arguments))
}

/// The placeholder that replaces a redacted value.
pub const REDACTED: &str = "[REDACTED]";

/// A copy of `arguments` where the value of every object key named in
/// `keys` (ASCII case-insensitive, at any depth) is replaced by
/// `[REDACTED]`.
pub fn redact_arguments(arguments: &Value, keys: &[String]) -> Value {
    match arguments {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    if keys.iter().any(|r| r.eq_ignore_ascii_case(k)) {
                        (k.clone(), Value::String(REDACTED.to_owned()))
                    } else {
                        (k.clone(), redact_arguments(v, keys))
                    }
                })
                .collect(),
        ),
        Value::Array(items) => {
            Value::Array(items.iter().map(|v| redact_arguments(v, keys)).collect())
        }
        scalar => scalar.clone(),
    }
}

/// Hex SHA-256 of an agent's API key: what a bundle keeps to recognise the
/// key without holding it.
pub fn api_key_digest(key: &str) -> String {
    sha256_hex(key.as_bytes())
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 0xf) as usize] as char);
    }
    s
}

/// Lower-case hex SHA-256 of some bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn prompt_fingerprint_is_sha256_and_counts_characters_not_bytes() {
        let fp = PromptFingerprint::of("héllo");
        assert_eq!(fp.chars, 5);
        // Computed independently: printf 'héllo' | sha256sum
        assert_eq!(
            fp.sha256,
            "3c48591d8d098a4538f5e013dfcf406e948eac4d3277b10bf614e295d6068179"
        );
        assert_eq!(
            PromptFingerprint::of("abc").sha256,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn argument_digest_ignores_key_order_but_not_values() {
        let a = argument_digest(&json!({"to": "a@b.c", "body": {"x": 1, "y": [1, 2]}}));
        let b = argument_digest(&json!({"body": {"y": [1, 2], "x": 1}, "to": "a@b.c"}));
        let c = argument_digest(&json!({"body": {"y": [2, 1], "x": 1}, "to": "a@b.c"}));
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!(a.starts_with("sha256:") && a.len() == 7 + 64);
    }

    #[test]
    fn redaction_replaces_named_keys_at_any_depth_case_insensitively() {
        let redacted = redact_arguments(
            &json!({"to": "x", "Password": "hunter2", "nested": [{"ssn": "123"}]}),
            &["password".into(), "SSN".into()],
        );
        assert_eq!(
            redacted,
            json!({"to": "x", "Password": REDACTED, "nested": [{"ssn": REDACTED}]})
        );
    }
}
