//! CEL's `matches()` with each pattern compiled once. The cel crate's own
//! `matches()` compiles its pattern at every evaluation, which costs far
//! more than the rest of a decision; conditions here are evaluated on every
//! tool call, almost always with a pattern written in the policy. Compiled
//! patterns (and the errors of invalid ones) are kept by their text, at
//! most [`CAPACITY`] of them: a pattern built from a call's arguments
//! (the cost bound allows one only against a short text) may be new at
//! every call, and the cache is emptied when it is full rather than
//! grown. The cost bound (`cost.rs`) still counts compiling and
//! matching, since a pattern seen for the first time is compiled.

use cel::common::types::{CelBool, CelString};
use cel::{DeclarationError, Env, ExecutionError};
use regex::Regex;
use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, PoisonError};

/// How many distinct patterns are kept compiled.
pub(crate) const CAPACITY: usize = 256;

type Compiled = Result<Arc<Regex>, String>;

static CACHE: LazyLock<Mutex<HashMap<Box<str>, Compiled>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// `matches(text, pattern)` and `text.matches(pattern)`, as CEL defines
/// them (RE2 syntax; true when the pattern matches anywhere in the text).
pub(crate) fn register(env: &mut Env) -> Result<(), DeclarationError> {
    cel::add_overload!(env, fn matches: (CelString, CelString) -> Result<CelBool>, id = "matches")?;
    cel::add_member_overload!(env, fn matches: (CelString, CelString) -> Result<CelBool>)?;
    Ok(())
}

fn matches(this: &CelString<'_>, re: &CelString<'_>) -> Result<CelBool, ExecutionError> {
    match compiled(re.inner()) {
        Ok(compiled) => Ok(CelBool::from(compiled.is_match(this.inner()))),
        Err(message) => Err(ExecutionError::FunctionError {
            function: "matches".to_string(),
            message,
        }),
    }
}

/// The pattern compiled, from the cache or compiled now (outside the lock).
fn compiled(pattern: &str) -> Compiled {
    let lock = || CACHE.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(found) = lock().get(pattern) {
        return found.clone();
    }
    let compiled = Regex::new(pattern)
        .map(Arc::new)
        .map_err(|err| format!("'{pattern}' not a valid regex:\n{err}"));
    let mut cache = lock();
    if cache.len() >= CAPACITY {
        cache.clear();
    }
    cache.insert(pattern.into(), compiled.clone());
    compiled
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pattern_is_compiled_once_and_the_cache_stays_bounded() {
        let first = compiled("^cache-test-[0-9]+$");
        let again = compiled("^cache-test-[0-9]+$");
        let (Ok(first), Ok(again)) = (first, again) else {
            panic!("the pattern compiles");
        };
        assert!(
            Arc::ptr_eq(&first, &again),
            "the second use reuses the first"
        );
        for i in 0..CAPACITY * 2 {
            let _ = compiled(&format!("^bounded-{i}$"));
        }
        let size = CACHE.lock().unwrap_or_else(PoisonError::into_inner).len();
        assert!(size <= CAPACITY, "{size} patterns kept, at most {CAPACITY}");
    }
}
