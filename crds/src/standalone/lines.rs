//! Where things are in a YAML text: splitting a stream into documents with
//! their first line, and finding the line of a field path (such as
//! `spec.routing.rules[1].patterns[0]`) so every diagnostic says
//! `file:line`.

/// Splits a multi-document YAML text on `---` lines: `(first line, text)`.
pub(super) fn documents(text: &str) -> Vec<(usize, &str)> {
    let mut docs = Vec::new();
    let mut start_byte = 0;
    let mut start_line = 1;
    let mut offset = 0;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let trimmed = line.trim_end();
        if trimmed == "---" || trimmed.starts_with("--- ") {
            docs.push((start_line, &text[start_byte..offset]));
            start_byte = offset + line.len();
            start_line = i + 2;
        }
        offset += line.len();
    }
    docs.push((start_line, &text[start_byte..]));
    docs
}

/// The 0-based line of `doc`, as editors and `grep -n` count them (a line
/// ends at LF), that YAML's 0-based line `yaml_line` is on: YAML also ends
/// a line at a lone CR, NEL, LS and PS.
pub(super) fn file_line(doc: &str, yaml_line: usize) -> usize {
    let (mut yaml, mut file) = (0, 0);
    let mut chars = doc.chars().peekable();
    while yaml < yaml_line {
        match chars.next() {
            None => break,
            Some('\n') => file += 1,
            Some('\r') if chars.peek() == Some(&'\n') => {
                chars.next();
                file += 1;
            }
            Some('\r' | '\u{85}' | '\u{2028}' | '\u{2029}') => {}
            Some(_) => continue,
        }
        yaml += 1;
    }
    file
}

/// A YAML error message without the ` at line L column C` positions it
/// carries (once, or more with a context such as "while scanning").
pub(super) fn without_positions(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(i) = rest.find(" at line ") {
        out.push_str(&rest[..i]);
        let after = &rest[i + " at line ".len()..];
        let digits = |t: &str| t.len() - t.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        let n = digits(after);
        let position = after[n..]
            .strip_prefix(" column ")
            .filter(|_| n > 0)
            .map(|t| (t, digits(t)))
            .filter(|(_, m)| *m > 0);
        match position {
            Some((t, m)) => rest = &t[m..],
            None => {
                out.push_str(" at line ");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Finds the 0-based line (within a document) of a field path such as
/// `spec.routing.rules[1].patterns[0]` in block-style YAML; falls back to
/// the deepest part it could find, or the document's first line.
pub(super) fn locate(doc: &str, path: &str) -> usize {
    let lines: Vec<&str> = doc.lines().collect();
    let content = |l: usize| -> Option<(usize, &str)> {
        let line = lines[l];
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            None
        } else {
            Some((line.len() - trimmed.len(), trimmed))
        }
    };
    let mut found = 0;
    // The region to search: lines [from, lines.len()) that are deeper than
    // `parent`; `item` marks a region that starts on a "- " line whose
    // content sits after the dash.
    let mut from = 0;
    let mut parent: isize = -1;
    let mut item_start = false;
    for segment in split_path(path) {
        match segment {
            Segment::Key(key) => {
                let mut mapping_indent = None;
                let mut hit = None;
                for l in from..lines.len() {
                    let Some((mut indent, mut text)) = content(l) else {
                        continue;
                    };
                    if l == from && item_start {
                        let after = text.trim_start_matches('-').trim_start();
                        indent += text.len() - after.len();
                        text = after;
                    } else if (indent as isize) <= parent {
                        break;
                    }
                    let m = *mapping_indent.get_or_insert(indent);
                    if indent < m {
                        break;
                    }
                    if indent == m && is_key(text, key) {
                        hit = Some((l, indent));
                        break;
                    }
                }
                let Some((l, indent)) = hit else { return found };
                found = l;
                from = l + 1;
                parent = indent as isize;
                item_start = false;
            }
            Segment::Index(index) => {
                let mut item_indent = None;
                let mut seen = 0;
                let mut hit = None;
                for l in from..lines.len() {
                    let Some((indent, text)) = content(l) else {
                        continue;
                    };
                    if (indent as isize) < parent
                        || ((indent as isize) == parent && !text.starts_with('-'))
                    {
                        break;
                    }
                    let ii = *item_indent.get_or_insert(indent);
                    if indent < ii {
                        break;
                    }
                    if indent == ii && text.starts_with('-') {
                        if seen == index {
                            hit = Some((l, indent));
                            break;
                        }
                        seen += 1;
                    }
                }
                let Some((l, indent)) = hit else { return found };
                found = l;
                from = l;
                parent = indent as isize;
                item_start = true;
            }
        }
    }
    found
}

fn is_key(text: &str, key: &str) -> bool {
    let unquoted = text
        .strip_prefix('"')
        .and_then(|t| t.strip_prefix(key))
        .and_then(|t| t.strip_prefix('"'))
        .or_else(|| text.strip_prefix(key));
    unquoted.is_some_and(|rest| rest.starts_with(':'))
}

enum Segment<'a> {
    Key(&'a str),
    Index(usize),
}

fn split_path(path: &str) -> Vec<Segment<'_>> {
    let mut out = Vec::new();
    for part in path.split('.') {
        let (key, mut rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !key.is_empty() {
            out.push(Segment::Key(key));
        }
        while let Some(close) = rest.find(']') {
            if let Ok(i) = rest[1..close].parse() {
                out.push(Segment::Index(i));
            }
            rest = &rest[close + 1..];
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "apiVersion: v\nkind: K\nspec:\n  routing:\n    defaultProvider: a\n    rules:\n      - name: one\n        keywords: [a]\n      - name: two\n        patterns:\n          - \"ok\"\n          - \"(bad\"\n  tools:\n    rules:\n    - tools: [x]\n      when: \"args.y <\"\n";

    #[test]
    fn locate_finds_nested_keys_and_list_items() {
        assert_eq!(locate(DOC, "spec"), 2);
        assert_eq!(locate(DOC, "spec.routing.defaultProvider"), 4);
        assert_eq!(locate(DOC, "spec.routing.rules[1]"), 8);
        assert_eq!(locate(DOC, "spec.routing.rules[1].name"), 8);
        assert_eq!(locate(DOC, "spec.routing.rules[1].patterns[1]"), 11);
        assert_eq!(locate(DOC, "spec.tools.rules[0].when"), 15);
    }

    #[test]
    fn locate_falls_back_to_the_deepest_part_found() {
        assert_eq!(locate(DOC, "spec.routing.rules[0].keywords[0]"), 7);
        assert_eq!(locate(DOC, "spec.routing.nothing"), 3);
        assert_eq!(locate(DOC, "nothing"), 0);
    }

    #[test]
    fn yaml_positions_are_dropped_from_messages() {
        assert_eq!(
            without_positions(
                "could not find expected ':' at line 6 column 12, while scanning a simple key at line 5 column 3"
            ),
            "could not find expected ':', while scanning a simple key"
        );
        assert_eq!(
            without_positions("a value at line one"),
            "a value at line one"
        );
    }

    #[test]
    fn documents_split_on_separator_lines_with_their_first_line() {
        let docs = documents("a: 1\n---\nb: 2\nc: 3\n--- # x\nd: 4\n");
        let starts: Vec<usize> = docs.iter().map(|d| d.0).collect();
        assert_eq!(starts, vec![1, 3, 6]);
        assert_eq!(docs[1].1, "b: 2\nc: 3\n");
    }
}
