//! One object never stops a loop: the work done for one object runs under
//! [`isolated`], so a panic on it (a bug) is caught and reported for that
//! object while the others carry on. The compiler isolates each policy and
//! grant this way; the operator its per-object status planning (its
//! `guard` module cuts the message to an Event note's size).

use std::panic::{AssertUnwindSafe, catch_unwind};

/// Runs `work`; a panic is caught and returned as its message.
pub fn isolated<T>(work: impl FnOnce() -> T) -> Result<T, String> {
    // Nothing `work` could leave half-changed is kept: it only reads.
    catch_unwind(AssertUnwindSafe(work)).map_err(|p| panic_message(&*p))
}

/// What a caught panic said.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}
