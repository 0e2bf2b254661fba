//! What an agent is told when a provider refuses its request (a 4xx): the
//! provider's own message, bounded and cleaned, and its error code — never
//! the body verbatim. A provider (or whatever answers at its URL) may echo
//! the request's credentials, internal details or a megabyte of HTML; the
//! agent gets at most [`MESSAGE_MAX_CHARS`] characters of one line, with
//! the provider's key and anything shaped like a secret token redacted.

use serde::Deserialize;
use serde_json::Value;

/// The longest provider message passed on, in characters.
pub const MESSAGE_MAX_CHARS: usize = 200;

/// Shortest run of token characters treated as a possible secret.
const TOKEN_MIN_CHARS: usize = 20;

/// Replaces what looks like a secret.
const REDACTED: &str = "[redacted]";

/// A provider's refusal as the agent may see it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Refusal {
    /// The provider's message, sanitised; `None` when it gave none.
    pub message: Option<String>,
    /// The provider's error code or type (`[A-Za-z0-9_.-]`, at most 64).
    pub code: Option<String>,
}

impl Refusal {
    /// Reads a refusal body: OpenAI's and Anthropic's
    /// `{"error": {"message", "code" | "type"}}` or Ollama's
    /// `{"error": "..."}`; anything else gives no message. `secret` (the
    /// provider's API key) never appears in the result.
    pub fn from_body(body: &[u8], secret: Option<&str>) -> Self {
        #[derive(Deserialize)]
        struct Body {
            error: Value,
        }
        let Ok(Body { error }) = serde_json::from_slice::<Body>(body) else {
            return Self::default();
        };
        let (message, code) = match &error {
            Value::String(m) => (Some(m.as_str()), None),
            Value::Object(o) => (
                o.get("message").and_then(Value::as_str),
                ["code", "type"]
                    .iter()
                    .find_map(|k| o.get(*k).and_then(Value::as_str).filter(|c| is_code(c))),
            ),
            _ => (None, None),
        };
        Self {
            message: message
                .map(|m| sanitise(m, secret))
                .filter(|m| !m.is_empty()),
            code: code.map(str::to_owned),
        }
    }
}

fn is_code(c: &str) -> bool {
    (1..=64).contains(&c.len())
        && c.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/' | '+' | '=')
}

/// One line, the secret and token-shaped words redacted, cut to
/// [`MESSAGE_MAX_CHARS`].
fn sanitise(message: &str, secret: Option<&str>) -> String {
    let mut text = message.to_owned();
    if let Some(s) = secret.filter(|s| !s.is_empty()) {
        text = text.replace(s, REDACTED);
    }
    // Control characters (newlines, escapes) become spaces; runs of
    // whitespace one space.
    let mut flat = String::with_capacity(text.len().min(4 * MESSAGE_MAX_CHARS));
    for c in text.chars() {
        let c = if c.is_control() { ' ' } else { c };
        if c.is_whitespace() && (flat.is_empty() || flat.ends_with(' ')) {
            continue;
        }
        flat.push(if c.is_whitespace() { ' ' } else { c });
    }
    // Long runs of token characters with a digit and a letter: keys,
    // bearer tokens, signed URLs' signatures.
    let mut out = String::with_capacity(flat.len());
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        let secretish = word.chars().count() >= TOKEN_MIN_CHARS
            && word.chars().any(|c| c.is_ascii_digit())
            && word.chars().any(|c| c.is_ascii_alphabetic());
        out.push_str(if secretish { REDACTED } else { word });
        word.clear();
    };
    for c in flat.chars() {
        if is_token_char(c) {
            word.push(c);
        } else {
            flush(&mut word, &mut out);
            out.push(c);
        }
    }
    flush(&mut word, &mut out);
    let out = out.trim();
    match out.char_indices().nth(MESSAGE_MAX_CHARS) {
        Some((cut, _)) => format!("{}…", &out[..cut]),
        None => out.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_gives_a_bounded_clean_message_and_the_providers_code() {
        let r = Refusal::from_body(
            br#"{"error": {"message": "bad temperature", "type": "invalid_request_error", "code": "bad_param"}}"#,
            None,
        );
        assert_eq!(r.message.as_deref(), Some("bad temperature"));
        assert_eq!(r.code.as_deref(), Some("bad_param"));
        let ollama = Refusal::from_body(br#"{"error": "model \"x\" not found"}"#, None);
        assert_eq!(ollama.message.as_deref(), Some("model \"x\" not found"));
        assert_eq!(
            Refusal::from_body(b"<html>secret</html>", None),
            Refusal::default()
        );
        let odd = Refusal::from_body(br#"{"error": {"message": "", "code": "a b"}}"#, None);
        assert_eq!(odd, Refusal::default());
    }

    #[test]
    fn the_key_and_token_shaped_words_are_redacted_and_the_message_cut() {
        let body = serde_json::json!({"error": {"message":
            "Incorrect API key provided: sk-upstream.\nAlso saw Bearer abcdefghij0123456789XYZ\u{1b}[31m"}});
        let r = Refusal::from_body(body.to_string().as_bytes(), Some("sk-upstream"));
        let m = r.message.unwrap();
        assert!(
            !m.contains("sk-upstream") && !m.contains("abcdefghij0123456789"),
            "{m}"
        );
        assert!(!m.contains('\n') && !m.contains('\u{1b}'), "{m}");
        assert!(
            m.starts_with("Incorrect API key provided: [redacted]."),
            "{m}"
        );
        let long = serde_json::json!({"error": {"message": "é ".repeat(1000)}});
        let m = Refusal::from_body(long.to_string().as_bytes(), None)
            .message
            .unwrap();
        assert_eq!(m.chars().count(), MESSAGE_MAX_CHARS + 1, "{m}");
        assert!(m.ends_with('…'));
    }
}
