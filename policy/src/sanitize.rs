//! Tool results made safe to hand to a model or a client: secrets
//! redacted (API-key shapes, `Authorization` / bearer credentials, private
//! key blocks, passwords in connection strings, `password=...` pairs), long
//! base64 / hex blobs and binary content replaced by a marker with their
//! size and digest, and the whole capped. Every replacement is counted by
//! kind, so the gateway can export it as a metric.
//!
//! The patterns are deliberately broad: a redacted non-secret costs a
//! model a few characters, a secret passed on cannot be taken back.

use crate::fingerprint::sha256_hex;
use regex::{Captures, Regex};
use serde_json::Value;
use std::sync::LazyLock;

/// What was replaced, by kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Redaction {
    PrivateKey,
    Authorization,
    ConnectionPassword,
    ApiKey,
    SecretAssignment,
    Blob,
    Binary,
    Truncated,
}

impl Redaction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PrivateKey => "private_key",
            Self::Authorization => "authorization",
            Self::ConnectionPassword => "connection_password",
            Self::ApiKey => "api_key",
            Self::SecretAssignment => "secret_assignment",
            Self::Blob => "blob",
            Self::Binary => "binary",
            Self::Truncated => "truncated",
        }
    }
}

/// The replacements made to one result.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Redactions(Vec<(Redaction, u32)>);

impl Redactions {
    fn add(&mut self, kind: Redaction, n: u32) {
        if n == 0 {
            return;
        }
        match self.0.iter_mut().find(|(k, _)| *k == kind) {
            Some((_, count)) => *count += n,
            None => self.0.push((kind, n)),
        }
    }

    /// Each kind replaced and how often.
    pub fn iter(&self) -> impl Iterator<Item = (Redaction, u32)> + '_ {
        self.0.iter().copied()
    }

    pub fn total(&self) -> u32 {
        self.0.iter().map(|(_, n)| n).sum()
    }
}

struct Pattern {
    kind: Redaction,
    regex: Regex,
    /// Replacement; `$name` groups are kept (the key, the scheme, ...).
    replacement: &'static str,
}

/// Each secret pattern: what it finds, the regex, the replacement.
const SOURCES: &[(Redaction, &str, &str)] = &[
    (
        Redaction::PrivateKey,
        r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY( BLOCK)?-----(?s:.*?)(-----END [A-Z0-9 ]*PRIVATE KEY( BLOCK)?-----|\z)",
        "[REDACTED:private_key]",
    ),
    (
        Redaction::Authorization,
        r#"(?i)(?P<k>\b(?:proxy-)?authorization["']?\s*[:=]\s*["']?)[^\r\n"',}]+"#,
        "${k}[REDACTED:authorization]",
    ),
    (
        Redaction::Authorization,
        r"(?i)\b(?P<k>bearer|basic|token)\s+[A-Za-z0-9\-._~+/]{8,}=*",
        "${k} [REDACTED:authorization]",
    ),
    (
        Redaction::ConnectionPassword,
        r"(?P<k>\b[a-zA-Z][a-zA-Z0-9+.\-]*://[^\s:/@?#]*:)[^\s@/?#]+@",
        "${k}[REDACTED:password]@",
    ),
    (
        Redaction::ApiKey,
        concat!(
            r"\b(?:sk-(?:proj-|ant-|live-|test-)?[A-Za-z0-9_\-]{16,}",
            r"|(?:AKIA|ASIA)[0-9A-Z]{16}",
            r"|gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{30,}",
            r"|xox[abposr]-[A-Za-z0-9\-]{10,}",
            r"|AIza[0-9A-Za-z_\-]{30,}",
            r"|glpat-[A-Za-z0-9_\-]{20,}",
            r"|(?:rk|pk|sk)_(?:live|test)_[A-Za-z0-9]{16,}",
            r"|eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,})",
        ),
        "[REDACTED:api_key]",
    ),
    (
        Redaction::SecretAssignment,
        r#"(?i)(?P<k>\b(?:api[_-]?key|apikey|secret(?:[_-]?key)?|client[_-]?secret|password|passwd|pwd|access[_-]?token|auth[_-]?token|private[_-]?key)["']?\s*[:=]\s*["']?)[^\s"',;&}]{4,}"#,
        "${k}[REDACTED:secret]",
    ),
];

/// The blob pattern: long base64(url) runs and long hex runs.
const BLOB_SOURCE: &str = r"[A-Za-z0-9+/_\-]{256,}={0,2}|\b[0-9a-fA-F]{128,}\b";

/// [`SOURCES`] compiled; a unit test checks every one compiles (they are
/// constants), so none is silently missing.
static PATTERNS: LazyLock<Vec<Pattern>> = LazyLock::new(|| {
    SOURCES
        .iter()
        .filter_map(|&(kind, re, replacement)| {
            Some(Pattern {
                kind,
                regex: Regex::new(re).ok()?,
                replacement,
            })
        })
        .collect()
});

static BLOBS: LazyLock<Option<Regex>> = LazyLock::new(|| Regex::new(BLOB_SOURCE).ok());

/// Redacts secrets and replaces blobs in one piece of text.
pub fn sanitize_text(text: &str, redactions: &mut Redactions) -> String {
    let mut out = std::borrow::Cow::Borrowed(text);
    for p in PATTERNS.iter() {
        let mut n = 0u32;
        let replaced = p.regex.replace_all(&out, |c: &Captures<'_>| {
            n += 1;
            let mut s = String::new();
            c.expand(p.replacement, &mut s);
            s
        });
        if n > 0 {
            redactions.add(p.kind, n);
            out = std::borrow::Cow::Owned(replaced.into_owned());
        }
    }
    let Some(blobs) = BLOBS.as_ref() else {
        return out.into_owned();
    };
    let mut n = 0u32;
    let replaced = blobs.replace_all(&out, |c: &Captures<'_>| {
        n += 1;
        blob_marker(c[0].as_bytes())
    });
    if n > 0 {
        redactions.add(Redaction::Blob, n);
        return replaced.into_owned();
    }
    out.into_owned()
}

fn blob_marker(bytes: &[u8]) -> String {
    format!(
        "[blob: {} bytes, sha256:{}]",
        bytes.len(),
        &sha256_hex(bytes)[..16]
    )
}

/// Bytes a tool produced (a file, an HTTP body) as text for a model:
/// binary content (not UTF-8, or with NUL / many control characters)
/// becomes a marker; text is sanitized.
pub fn sanitize_bytes(bytes: &[u8], redactions: &mut Redactions) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) if !looks_binary(text) => sanitize_text(text, redactions),
        _ => {
            redactions.add(Redaction::Binary, 1);
            format!(
                "[binary content: {} bytes, sha256:{}]",
                bytes.len(),
                &sha256_hex(bytes)[..16]
            )
        }
    }
}

fn looks_binary(text: &str) -> bool {
    let control = text
        .chars()
        .filter(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
        .count();
    text.contains('\0') || control * 20 > text.chars().count().max(1)
}

/// Every string in a JSON value (keys kept) sanitized in place.
pub fn sanitize_json(value: &mut Value, redactions: &mut Redactions) {
    match value {
        Value::String(s) => {
            let clean = sanitize_text(s, redactions);
            if clean != *s {
                *s = clean;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| sanitize_json(v, redactions)),
        Value::Object(map) => map.values_mut().for_each(|v| sanitize_json(v, redactions)),
        _ => {}
    }
}

/// `text` cut to at most `max_bytes` (on a character boundary), with a
/// marker saying how much there was.
pub fn cap(text: String, max_bytes: usize, redactions: &mut Redactions) -> String {
    /// Room kept for the marker (it is shorter than this).
    const MARKER_ROOM: usize = 64;
    if text.len() <= max_bytes {
        return text;
    }
    let mut end = max_bytes.saturating_sub(MARKER_ROOM);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    redactions.add(Redaction::Truncated, 1);
    format!(
        "{}\n[truncated: {end} of {} bytes shown]",
        &text[..end],
        text.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clean(text: &str) -> (String, Redactions) {
        let mut r = Redactions::default();
        (sanitize_text(text, &mut r), r)
    }

    #[test]
    fn secrets_of_every_shape_are_redacted_and_counted() {
        let canaries = [
            "sk-proj-CANARYabcdefghijklmnop1234",
            "AKIACANARY0123456789",
            "ghp_CANARY0123456789abcdefghijklmnopqrstuv",
            "xoxb-CANARY-123456789",
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJDQU5BUlkifQ.c2lnbmF0dXJlQ0FOQVJZ",
            "sk_live_CANARY0123456789abcd",
        ];
        for canary in canaries {
            let (out, r) = clean(&format!("the key is {canary} ok"));
            assert!(!out.contains(canary), "{canary} survived: {out}");
            assert!(out.contains("the key is") && out.ends_with(" ok"), "{out}");
            assert_eq!(r.total(), 1, "{canary}: {r:?}");
        }
        let (out, r) = clean("Authorization: Bearer CANARYtoken123456\nnext line");
        assert!(!out.contains("CANARY"), "{out}");
        assert!(
            out.contains("Authorization: [REDACTED:authorization]\nnext line"),
            "{out}"
        );
        assert!(r.iter().all(|(k, _)| k == Redaction::Authorization));
        let (out, _) = clean("curl -H 'x: y' --header \"authorization\": \"Basic Q0FOQVJZOnB3\"");
        assert!(!out.contains("Q0FOQVJZ"), "{out}");
        let (out, r) = clean("postgres://app:CANARYpw@db.svc:5432/clinic");
        assert_eq!(out, "postgres://app:[REDACTED:password]@db.svc:5432/clinic");
        assert_eq!(r.iter().next(), Some((Redaction::ConnectionPassword, 1)));
        let (out, _) = clean("{\"password\": \"CANARYpass\", \"user\": \"ann\"}");
        assert!(
            !out.contains("CANARY") && out.contains("\"user\": \"ann\""),
            "{out}"
        );
        let key = "-----BEGIN OPENSSH PRIVATE KEY-----\nCANARYb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----";
        let (out, r) = clean(&format!("id_ed25519:\n{key}\ndone"));
        assert_eq!(out, "id_ed25519:\n[REDACTED:private_key]\ndone");
        assert_eq!(r.iter().next(), Some((Redaction::PrivateKey, 1)));
    }

    #[test]
    fn every_pattern_compiles() {
        assert_eq!(PATTERNS.len(), SOURCES.len());
        assert!(BLOBS.is_some());
    }

    #[test]
    fn ordinary_text_is_left_alone() {
        for text in [
            "The patient's blood pressure was 120/80 on 2026-12-01.",
            "SELECT name FROM patients WHERE id = 4",
            "sha256 3a7bd3e2360a3d29eea436fcfb7e44c735d117c42d1c1835420b6b9942dd4f1b",
            "see https://example.com/docs?page=2",
            "tokens: 1234",
        ] {
            let (out, r) = clean(text);
            assert_eq!(out, text);
            assert_eq!(r.total(), 0);
        }
    }

    #[test]
    fn blobs_and_binary_become_markers_with_size_and_digest() {
        let blob = "QUJD".repeat(100);
        let (out, r) = clean(&format!("image: {blob} end"));
        assert!(out.starts_with("image: [blob: 400 bytes, sha256:"), "{out}");
        assert!(out.ends_with("] end"));
        assert_eq!(r.iter().next(), Some((Redaction::Blob, 1)));
        let hex = "ab".repeat(100);
        assert!(clean(&hex).0.starts_with("[blob: 200 bytes"));
        let mut r = Redactions::default();
        let out = sanitize_bytes(&[0x89, b'P', b'N', b'G', 0, 0, 0xff], &mut r);
        assert!(
            out.starts_with("[binary content: 7 bytes, sha256:"),
            "{out}"
        );
        assert_eq!(sanitize_bytes(b"plain\ttext\n", &mut r), "plain\ttext\n");
    }

    #[test]
    fn json_strings_are_sanitized_in_place_and_the_whole_is_capped() {
        let mut v = serde_json::json!({"rows": [["ann", "sk-CANARY0123456789abcdefgh"]], "n": 1});
        let mut r = Redactions::default();
        sanitize_json(&mut v, &mut r);
        assert_eq!(v["rows"][0][1], "[REDACTED:api_key]");
        assert_eq!(v["n"], 1);
        let capped = cap("é".repeat(100), 100, &mut r);
        assert!(capped.len() <= 100, "{} bytes", capped.len());
        assert!(capped.starts_with("éé"), "{capped}");
        assert!(capped.contains("[truncated: "), "{capped}");
        assert!(capped.ends_with("of 200 bytes shown]"), "{capped}");
        assert_eq!(cap("short".into(), 60, &mut r), "short");
    }
}
