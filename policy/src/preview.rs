//! What a human sees of a held call's arguments: a bounded preview. The
//! arguments are redacted as the policy says (a redacted key stays, with
//! `[REDACTED]` as its value), written as indented JSON (one member per
//! line), and cut to at most [`PREVIEW_LIMIT`] bytes, marked when cut.
//! The approval itself is bound to the digest of the full arguments, so
//! the preview only has to show what is approved, not carry it.

use crate::fingerprint::redact_arguments;
use serde_json::Value;

/// The most a preview holds, in bytes (the truncation marker included).
pub const PREVIEW_LIMIT: usize = 4096;

/// A held call's arguments as a human sees them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgumentsPreview {
    /// Indented JSON of the redacted arguments, or its first part followed
    /// by a line saying how much was cut.
    pub text: String,
    /// Whether the arguments were longer than the preview.
    pub truncated: bool,
}

impl ArgumentsPreview {
    /// The preview of `arguments` with the values of `redact_keys`
    /// replaced.
    pub fn of(arguments: &Value, redact_keys: &[String]) -> Self {
        let redacted = redact_arguments(arguments, redact_keys);
        let full = serde_json::to_string_pretty(&redacted).unwrap_or_default();
        Self::cut(full)
    }

    fn cut(full: String) -> Self {
        if full.len() <= PREVIEW_LIMIT {
            return Self {
                text: full,
                truncated: false,
            };
        }
        let total = full.len();
        // The marker's room: its numbers have at most 20 digits each.
        let room = PREVIEW_LIMIT - marker(usize::MAX, usize::MAX).len();
        let at = sensible_cut(&full, room);
        let mut text = full;
        text.truncate(at);
        text.push_str(&marker(at, total));
        Self {
            text,
            truncated: true,
        }
    }
}

/// The line that ends a cut preview.
fn marker(shown: usize, total: usize) -> String {
    format!(
        "\n… [truncated: the first {shown} of {total} bytes are shown; the approval is for the full arguments, by their digest]"
    )
}

/// Where to cut `text` to keep at most `room` bytes: after the last whole
/// line if that keeps at least half of it (members stay whole), else on a
/// character boundary outside any escape sequence (inside one long
/// string).
fn sensible_cut(text: &str, room: usize) -> usize {
    let head = &text.as_bytes()[..room];
    if let Some(newline) = head.iter().rposition(|&b| b == b'\n')
        && newline >= room / 2
    {
        return newline;
    }
    let mut at = room;
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    // An escape (`\n`, `\"`, `\u00e9`) is at most six bytes: one that
    // starts shortly before the cut and runs past it is cut before.
    let bytes = text.as_bytes();
    let from = at.saturating_sub(5);
    for start in from..at {
        if bytes[start] == b'\\' && starts_escape(bytes, start) {
            let len = if bytes.get(start + 1) == Some(&b'u') {
                6
            } else {
                2
            };
            if start + len > at {
                return start;
            }
        }
    }
    at
}

/// Whether the backslash at `i` begins an escape (it is not itself
/// escaped by an odd run of backslashes before it).
fn starts_escape(bytes: &[u8], i: usize) -> bool {
    let run = bytes[..i].iter().rev().take_while(|&&b| b == b'\\').count();
    run % 2 == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fingerprint::REDACTED;
    use serde_json::json;

    #[test]
    fn small_arguments_are_shown_whole_with_redacted_keys_kept_as_redacted() {
        let p = ArgumentsPreview::of(
            &json!({"to": "a@b.c", "password": "hunter2", "nested": {"SSN": "123"}}),
            &["password".into(), "ssn".into()],
        );
        assert!(!p.truncated);
        let shown: Value = serde_json::from_str(&p.text).unwrap();
        assert_eq!(
            shown,
            json!({"to": "a@b.c", "password": REDACTED, "nested": {"SSN": REDACTED}})
        );
        assert!(!p.text.contains("hunter2"));
    }

    #[test]
    fn large_arguments_are_cut_to_the_limit_between_members_and_marked() {
        let members: serde_json::Map<String, Value> = (0..2000)
            .map(|i| (format!("k{i:05}"), json!(format!("value {i}"))))
            .collect();
        let mut args = Value::Object(members);
        args["a-password"] = json!("hunter2");
        let p = ArgumentsPreview::of(&args, &["a-password".into()]);
        assert!(p.truncated);
        assert!(p.text.len() <= PREVIEW_LIMIT, "{}", p.text.len());
        assert!(p.text.len() > PREVIEW_LIMIT / 2);
        let (shown, marker) = p.text.rsplit_once('\n').unwrap();
        assert!(marker.starts_with("… [truncated: the first"), "{marker}");
        // Whole members only: every line shown is one.
        for line in shown.lines().skip(1) {
            assert!(line.trim_end().ends_with(','), "{line:?}");
        }
        assert!(p.text.contains(&format!("\"a-password\": \"{REDACTED}\"")));
        assert!(!p.text.contains("hunter2"));
    }

    #[test]
    fn one_huge_string_is_cut_on_a_character_boundary_outside_any_escape() {
        for filler in ["é", "\u{1F600}", "\"", "\u{1}", "a\\"] {
            for pad in 0..7 {
                let s = format!("{}{}", "x".repeat(pad), filler.repeat(3000));
                let p = ArgumentsPreview::of(&json!({ "body": s }), &[]);
                assert!(p.truncated);
                assert!(p.text.len() <= PREVIEW_LIMIT);
                let (shown, _) = p.text.rsplit_once('\n').unwrap();
                // What is shown reads as the start of the JSON string: no
                // escape split in two.
                let body = shown.split_once(": \"").unwrap().1;
                let closed: String = serde_json::from_str(&format!("\"{body}\"")).unwrap();
                assert!(s.starts_with(&closed), "{filler:?} {pad}");
            }
        }
    }
}
