//! Collecting one object's diagnostics as it compiles: each names the
//! field, what is wrong and the fix.

use super::Secrets;
use crate::diagnostic::{Diagnostic, ObjectRef};
use crate::duration::parse_duration;
use crate::resources::SecretKeyRef;
use palisade_policy::{Condition, ConditionError, NameGlobs};
use std::time::Duration;

/// Collects diagnostics for one object.
pub(super) struct Diags<'a> {
    pub(super) object: &'a ObjectRef,
    pub(super) list: Vec<Diagnostic>,
}

impl Diags<'_> {
    pub(super) fn push(
        &mut self,
        field: impl Into<String>,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) {
        self.list
            .push(Diagnostic::new(self.object, field, message, fix));
    }

    pub(super) fn globs(&mut self, field: &str, patterns: &[String]) -> Option<NameGlobs> {
        match NameGlobs::new(patterns.iter().cloned()) {
            Ok(g) => Some(g),
            Err(e) => {
                self.push(
                    format!("{field}[{}]", e.index),
                    format!("{:?} is not a valid glob: {}", e.pattern, e.message),
                    "use * and ? wildcards, [abc] classes and {a,b} alternatives; escape literal brackets",
                );
                None
            }
        }
    }

    pub(super) fn condition(
        &mut self,
        field: &str,
        source: Option<&str>,
    ) -> Option<Option<Condition>> {
        let Some(source) = source else {
            return Some(None);
        };
        match Condition::compile(source) {
            Ok(c) => Some(Some(c)),
            Err(e) => {
                let fix = match e {
                    ConditionError::Cost(_) => {
                        "keep the cost linear in the arguments: no loop (all, exists, map, filter) over args inside another, no whole argument scanned or concatenated inside a loop, no pattern or replacement taken from args, no replace of a replace"
                    }
                    _ => {
                        "write a CEL expression over args, tool and agent that returns a bool, e.g. has(args.amount) && args.amount <= 100"
                    }
                };
                self.push(field, e.to_string(), fix);
                None
            }
        }
    }

    pub(super) fn secret(
        &mut self,
        field: &str,
        secrets: &Secrets,
        reference: &SecretKeyRef,
    ) -> Option<String> {
        match secrets.lookup(&self.object.namespace, reference) {
            Ok(v) => Some(v.to_owned()),
            Err(message) => {
                self.push(
                    field,
                    message,
                    format!(
                        "create it in namespace {}, e.g. kubectl create secret generic {} -n {} --from-literal={}=...",
                        self.object.namespace, reference.name, self.object.namespace, reference.key
                    ),
                );
                None
            }
        }
    }

    /// A provider credential: a Secret like [`Diags::secret`], that its
    /// owner also let be sent to a provider.
    pub(super) fn credentials(
        &mut self,
        field: &str,
        secrets: &Secrets,
        reference: &SecretKeyRef,
    ) -> Option<String> {
        let value = self.secret(field, secrets, reference)?;
        let ns = &self.object.namespace;
        if secrets.allowed_as_credentials(ns, &reference.name) {
            return Some(value);
        }
        let (label, yes) = (
            crate::labels::CREDENTIALS,
            crate::labels::CREDENTIALS_OPT_IN,
        );
        self.push(
            field,
            format!(
                "Secret {ns}/{} is not labelled {label}: \"{yes}\", so it may not be sent to a model provider",
                reference.name
            ),
            format!(
                "if the Secret holds this provider's API key, its owner labels it: kubectl label secret {} -n {ns} {label}={yes}",
                reference.name
            ),
        );
        None
    }

    /// A duration field: `default` when left out; zero or unreadable is
    /// an error naming `example`.
    pub(super) fn duration(
        &mut self,
        field: &str,
        value: Option<&str>,
        default: Duration,
        example: &str,
    ) -> Option<Duration> {
        match value.map(parse_duration) {
            None => Some(default),
            Some(Ok(t)) if !t.is_zero() => Some(t),
            Some(Ok(_)) => {
                self.push(
                    field,
                    "a duration of zero fails every call",
                    format!("use e.g. {example}"),
                );
                None
            }
            Some(Err(message)) => {
                self.push(field, message, format!("use e.g. {example}"));
                None
            }
        }
    }

    /// Rule names are how decisions cite rules, so they must be unique.
    pub(super) fn unique_rule_name<'n>(
        &mut self,
        field: &str,
        name: Option<&str>,
        mut earlier: impl Iterator<Item = Option<&'n str>>,
    ) -> bool {
        let Some(name) = name else { return true };
        if earlier.any(|q| q == Some(name)) {
            self.push(
                format!("{field}.name"),
                format!("rule name {name:?} is used twice"),
                "give every rule its own name",
            );
            return false;
        }
        true
    }

    pub(super) fn finish<T>(self, value: Option<T>) -> Result<T, Vec<Diagnostic>> {
        match value {
            Some(v) if self.list.is_empty() => Ok(v),
            _ => Err(self.list),
        }
    }
}
