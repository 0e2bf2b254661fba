//! Name globs (`sql_*`, `gpt-4o*`, `{send,forward}_email`) compiled once
//! into a `GlobSet`. Serialized as the list of patterns they came from.

use globset::{Glob, GlobSet, GlobSetBuilder};
use serde::{Deserialize, Serialize};
use std::fmt;

/// A glob pattern that does not compile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("pattern {index} ({pattern:?}) is not a valid glob: {message}")]
pub struct GlobError {
    /// Index of the pattern in the list it came from.
    pub index: usize,
    pub pattern: String,
    pub message: String,
}

/// A list of name globs; matches a name if any glob does. An empty list
/// matches nothing.
#[derive(Clone, Serialize, Deserialize)]
#[serde(try_from = "Vec<String>", into = "Vec<String>")]
pub struct NameGlobs {
    patterns: Vec<String>,
    set: GlobSet,
}

impl NameGlobs {
    pub fn new<I, S>(patterns: I) -> Result<Self, GlobError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let patterns: Vec<String> = patterns.into_iter().map(Into::into).collect();
        let mut builder = GlobSetBuilder::new();
        for (index, pattern) in patterns.iter().enumerate() {
            builder.add(compile_glob(index, pattern)?);
        }
        let set = builder.build().map_err(|e| GlobError {
            index: 0,
            pattern: patterns.join(","),
            message: e.to_string(),
        })?;
        Ok(Self { patterns, set })
    }

    /// Matches every name.
    pub fn any() -> Self {
        // "*" always compiles; fall back to an empty set rather than panic.
        Self::new(["*"]).unwrap_or_else(|_| Self {
            patterns: Vec::new(),
            set: GlobSet::empty(),
        })
    }

    pub fn is_match(&self, name: &str) -> bool {
        self.set.is_match(name)
    }

    /// Indexes of every pattern that matches, ascending.
    pub fn matches(&self, name: &str) -> Vec<usize> {
        self.set.matches(name)
    }

    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }
}

/// Checks a single glob; used by the compiler for field-level diagnostics.
pub(crate) fn compile_glob(index: usize, pattern: &str) -> Result<Glob, GlobError> {
    if pattern.is_empty() {
        return Err(GlobError {
            index,
            pattern: pattern.to_owned(),
            message: "empty pattern".into(),
        });
    }
    Glob::new(pattern).map_err(|e| GlobError {
        index,
        pattern: pattern.to_owned(),
        message: e.kind().to_string(),
    })
}

impl TryFrom<Vec<String>> for NameGlobs {
    type Error = GlobError;
    fn try_from(patterns: Vec<String>) -> Result<Self, Self::Error> {
        Self::new(patterns)
    }
}

impl From<NameGlobs> for Vec<String> {
    fn from(globs: NameGlobs) -> Self {
        globs.patterns
    }
}

impl fmt::Debug for NameGlobs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(&self.patterns).finish()
    }
}

impl PartialEq for NameGlobs {
    fn eq(&self, other: &Self) -> bool {
        self.patterns == other.patterns
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_prefixes_alternatives_and_exact_names() {
        let g = NameGlobs::new(["sql_*", "{send,forward}_email", "bulk_export"]).unwrap();
        assert!(g.is_match("sql_query"));
        assert!(g.is_match("forward_email"));
        assert!(g.is_match("bulk_export"));
        assert!(!g.is_match("bulk_export_all"));
        assert!(!g.is_match("my_sql_query"));
        assert_eq!(g.matches("sql_query"), vec![0]);
    }

    #[test]
    fn an_invalid_glob_names_its_index() {
        let err = NameGlobs::new(["ok", "bad[", "x"]).unwrap_err();
        assert_eq!(err.index, 1);
        assert_eq!(err.pattern, "bad[");
    }

    #[test]
    fn an_empty_list_matches_nothing_and_any_matches_everything() {
        assert!(!NameGlobs::new(Vec::<String>::new()).unwrap().is_match("x"));
        assert!(NameGlobs::any().is_match("anything/at.all"));
    }
}
