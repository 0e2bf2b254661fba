//! Diagnostics: what is wrong, where (object and field path), and how to
//! fix it. The same type serves the compiler, the standalone loader and
//! the operator's status messages.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The object a diagnostic is about.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ObjectRef {
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

impl ObjectRef {
    pub fn new(kind: &str, namespace: &str, name: &str) -> Self {
        Self {
            kind: kind.to_owned(),
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        }
    }
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
    }
}

/// Errors keep an object out of the bundle; warnings only inform.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Severity {
    #[default]
    Error,
    Warning,
}

/// One problem with one field of one object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Diagnostic {
    pub severity: Severity,
    pub object: ObjectRef,
    /// Field path as `kubectl explain` spells it, e.g.
    /// `spec.routing.rules[1].patterns[0]`.
    pub field: String,
    /// What is wrong.
    pub message: String,
    /// What to do about it.
    pub fix: String,
}

impl Diagnostic {
    pub fn new(
        object: &ObjectRef,
        field: impl Into<String>,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Self {
            severity: Severity::Error,
            object: object.clone(),
            field: field.into(),
            message: message.into(),
            fix: fix.into(),
        }
    }

    /// The same diagnostic as a warning.
    pub fn warning(mut self) -> Self {
        self.severity = Severity::Warning;
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// The text for a status condition's message, without the object
    /// (which the status belongs to).
    pub fn short(&self) -> String {
        format!("{}: {} (fix: {})", self.field, self.message, self.fix)
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.severity == Severity::Warning {
            f.write_str("warning: ")?;
        }
        write!(f, "{}: {}", self.object, self.short())
    }
}
