//! Text written into the API (condition messages, Event notes) contains
//! user input — field values, globs, regular expressions — in any script,
//! and Kubernetes bounds its size. [`cut_to`] shortens it on a character
//! boundary; `String::truncate` panics when the cut falls inside a
//! multi-byte character (issue 22), so the operator never calls it
//! (`operator/clippy.toml` refuses it).

/// The longest condition message the operator writes (the API allows
/// 32 KiB; a status stays readable in `kubectl describe`).
pub const CONDITION_MESSAGE_BYTES: usize = 4000;
/// The longest Event note (the Events API allows 1 kB).
pub const EVENT_NOTE_BYTES: usize = 1000;

/// Shortens `text` to at most `max_bytes` bytes, cutting before the
/// character that would straddle the limit.
pub fn cut_to(text: &mut String, max_bytes: usize) {
    if text.len() <= max_bytes {
        return;
    }
    let mut end = max_bytes;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.drain(end..);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cut(s: &str, max: usize) -> String {
        let mut s = s.to_owned();
        cut_to(&mut s, max);
        s
    }

    #[test]
    fn a_cut_inside_a_character_keeps_the_text_before_it_and_short_text_is_left_alone() {
        // "é" is 2 bytes, "€" 3, "𝄞" 4: every cut inside one drops it whole.
        let cases = [
            ("xé", 2, "x"),
            ("x€", 3, "x"),
            ("x𝄞y", 5, "x𝄞"),
            ("é", 0, ""),
            ("abc", 4000, "abc"),
        ];
        for (text, max, expected) in cases {
            assert_eq!(cut(text, max), expected, "{text:?} to {max} bytes");
        }
    }

    #[test]
    fn every_cut_of_mixed_text_is_the_longest_valid_prefix() {
        let text = "a é € 𝄞 z".repeat(3);
        for max in 0..=text.len() + 1 {
            let got = cut(&text, max);
            assert!(got.len() <= max && text.starts_with(&got), "{max}");
            let next = text[got.len()..].chars().next();
            assert!(
                next.is_none_or(|c| got.len() + c.len_utf8() > max),
                "{max}: a longer prefix fits"
            );
        }
    }
}
