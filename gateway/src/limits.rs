//! Input limits the HTTP surface enforces before parsing: the body size
//! ([`BODY_LIMIT`], read by [`crate::router`]) and the JSON nesting depth
//! (a deeply nested body is a cheap way to make a parser recurse).

use crate::error::GatewayError;

/// Request bodies larger than this are refused with 413.
pub const BODY_LIMIT: usize = 1 << 20;

/// The deepest JSON nesting a request may use. Chat messages with tool
/// schemas need perhaps 10; 64 leaves room and stops abuse.
pub const MAX_JSON_DEPTH: usize = 64;

/// Refuses a body nested deeper than [`MAX_JSON_DEPTH`] (one pass over the
/// bytes, strings skipped, no allocation).
pub fn check_json_depth(body: &[u8]) -> Result<(), GatewayError> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in body {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > MAX_JSON_DEPTH {
                    return Err(GatewayError::BadRequest(format!(
                        "the JSON body is nested more than {MAX_JSON_DEPTH} levels deep; flatten it"
                    )));
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_is_counted_outside_strings_only() {
        let ok = format!(
            "{}{}",
            "[".repeat(MAX_JSON_DEPTH),
            "]".repeat(MAX_JSON_DEPTH)
        );
        assert!(check_json_depth(ok.as_bytes()).is_ok());
        let deep = format!(
            "{}{}",
            "[".repeat(MAX_JSON_DEPTH + 1),
            "]".repeat(MAX_JSON_DEPTH + 1)
        );
        let e = check_json_depth(deep.as_bytes()).unwrap_err();
        assert_eq!(e.status(), 400);
        assert!(e.to_string().contains("nested more than 64"));
        // Brackets inside strings (and escaped quotes) do not count.
        let text = format!(r#"{{"a": "{}\" {}"}}"#, "[".repeat(500), "{".repeat(500));
        assert!(check_json_depth(text.as_bytes()).is_ok());
    }
}
