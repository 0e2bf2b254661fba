//! The forms in which routing sees a text, so that what a human reads as
//! the same words is matched as the same words:
//!
//! - [`text_form`] (what `patterns` match): Unicode NFKC (full-width
//!   `１２３` is `123`, ligatures and other compatibility characters are
//!   their plain letters), invisible characters removed (zero-width
//!   spaces and joiners, soft hyphens, bidirectional controls, variation
//!   selectors, tag characters), every run of whitespace one space. Case
//!   is kept: a pattern says `(?i)` if it wants.
//! - [`word_form`] (what `keywords` match, keywords themselves too): the
//!   text form lower-cased, with every run of characters that are neither
//!   letters nor digits (whitespace, hyphens, underscores, punctuation)
//!   one space. `Date-of-Birth`, `date_of_birth`, `DATE OF\nBIRTH` and
//!   `ｄａｔｅ of birth` are all `date of birth`.
//!
//! ASCII text (most prompts) skips the normalisation tables.

use std::borrow::Cow;
use unicode_normalization::UnicodeNormalization;

/// Characters that render as nothing (or only steer rendering) and can
/// split a word without a reader seeing it.
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{034F}'
            | '\u{061C}'
            | '\u{115F}'
            | '\u{1160}'
            | '\u{17B4}'
            | '\u{17B5}'
            | '\u{180B}'..='\u{180F}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}'
            | '\u{3164}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{FEFF}'
            | '\u{FFA0}'
            | '\u{1BCA0}'..='\u{1BCA3}'
            | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0000}'..='\u{E007F}'
            | '\u{E0100}'..='\u{E01EF}'
    )
}

/// `text` without invisible characters, in NFKC.
fn visible_nfkc(text: &str) -> Cow<'_, str> {
    if text.is_ascii() {
        return Cow::Borrowed(text);
    }
    let visible: String = text.chars().filter(|&c| !is_invisible(c)).collect();
    // NFKC may produce invisible characters of its own (rare); a second
    // filter keeps the result free of them.
    Cow::Owned(
        visible
            .nfkc()
            .filter(|&c| !is_invisible(c))
            .collect::<String>(),
    )
}

/// What routing `patterns` are matched against; see the module docs.
pub(crate) fn text_form(text: &str) -> String {
    let visible = visible_nfkc(text);
    let mut out = String::with_capacity(visible.len());
    let mut space = false;
    for c in visible.chars() {
        if c.is_whitespace() {
            space = true;
            continue;
        }
        if space && !out.is_empty() {
            out.push(' ');
        }
        space = false;
        out.push(c);
    }
    out
}

/// What routing `keywords` are matched against, and the form keywords are
/// compiled in; see the module docs. Words are separated by one space, with
/// none before the first or after the last.
pub(crate) fn word_form(text: &str) -> String {
    let visible = visible_nfkc(text);
    let mut out = String::with_capacity(visible.len());
    let mut gap = false;
    for c in visible.chars() {
        if !c.is_alphanumeric() {
            gap = true;
            continue;
        }
        if gap && !out.is_empty() {
            out.push(' ');
        }
        gap = false;
        if c.is_ascii() {
            out.push(c.to_ascii_lowercase());
        } else {
            out.extend(c.to_lowercase());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_reader_sees_as_the_same_words_has_one_word_form() {
        for text in [
            "date of birth",
            "Date-of-Birth",
            "DATE_OF_BIRTH",
            "date\nof\t\tbirth",
            "date of\u{00A0}birth",
            "ｄａｔｅ ｏｆ ｂｉｒｔｈ",
            "da\u{200B}te o\u{2060}f bi\u{00AD}rth",
            "\u{FEFF}date of birth!",
        ] {
            assert_eq!(word_form(text), "date of birth", "{text:?}");
        }
        assert_eq!(word_form("medical\r\nrecord"), "medical record");
        assert_eq!(word_form("Ｐａｔｉｅｎｔ"), "patient");
        assert_eq!(word_form("ﬁle Ⅻ"), "file xii");
        assert_eq!(word_form("--"), "");
    }

    #[test]
    fn the_text_form_keeps_case_and_punctuation() {
        assert_eq!(text_form("SSN １２３-４５-６７８９"), "SSN 123-45-6789");
        assert_eq!(text_form("  MRN\u{200B}-42 \n\n x  "), "MRN-42 x");
        assert_eq!(text_form("plain ascii"), "plain ascii");
    }
}
