//! One object never stops a loop (issue 22): the pure work done for one
//! object runs under [`isolated`], so a panic on it (a bug, such as a
//! cut inside a character) is caught, reported for that object, and the
//! others carry on. The loops use the same catch around whole passes and
//! around each Approval's reconcile; the catch itself is the compiler's
//! ([`palisade_crds::guard`]), which isolates each object it compiles.

/// Runs `work`; a panic is caught and returned as its message.
pub fn isolated<T>(work: impl FnOnce() -> T) -> Result<T, String> {
    palisade_crds::guard::isolated(work).map_err(cut)
}

/// What a caught panic said (cut to an Event note's size: a panic on a
/// string quotes the string).
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    cut(palisade_crds::guard::panic_message(payload))
}

fn cut(mut message: String) -> String {
    crate::text::cut_to(&mut message, crate::text::EVENT_NOTE_BYTES);
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_on_one_object_is_caught_and_says_what_it_was() {
        assert_eq!(isolated(|| 7), Ok(7));
        let caught = isolated(|| {
            let mut s = "é".to_owned();
            #[allow(clippy::disallowed_methods)] // the very panic of issue 22
            s.truncate(1);
        });
        assert!(
            caught.as_ref().unwrap_err().contains("is_char_boundary"),
            "{caught:?}"
        );
    }
}
