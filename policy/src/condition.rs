//! CEL conditions on tool calls, compiled once when the bundle is built.
//! A condition sees `args` (the tool's JSON arguments), `tool` (its name)
//! and `agent` (`name`, `namespace`). It must return a bool; anything else,
//! or an evaluation error, is a [`ConditionError`] and the caller fails
//! closed.

use cel::{Context, Env, Program, Value};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, LazyLock};

static ENV: LazyLock<Arc<Env>> = LazyLock::new(|| {
    let mut env = Env::stdlib();
    // The strings extension (lowerAscii, startsWith, ...) is what people
    // reach for in argument checks; it cannot fail to register on a fresh
    // standard environment, and if it ever did we keep the plain stdlib.
    let _ = env.add_extension(cel::extensions::strings);
    Arc::new(env)
});

/// Why a condition could not be compiled or evaluated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConditionError {
    #[error("CEL expression does not compile: {0}")]
    Compile(String),
    #[error("CEL expression failed: {0}")]
    Evaluate(String),
    #[error("CEL expression returned {0}, not a bool")]
    NotBool(String),
}

/// A compiled CEL condition, serialized as its source text.
#[derive(Clone, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Condition {
    source: String,
    program: Arc<Program>,
    /// Which variables the expression reads: only those are bound, so a
    /// condition on `tool` never pays for converting the arguments.
    uses_args: bool,
    uses_tool: bool,
    uses_agent: bool,
}

/// The variables a condition is evaluated against.
#[derive(Debug, Clone, Copy)]
pub struct ConditionInput<'a> {
    pub args: &'a serde_json::Value,
    pub tool: &'a str,
    pub agent: &'a str,
    pub namespace: &'a str,
}

impl Condition {
    pub fn compile(source: &str) -> Result<Self, ConditionError> {
        let program = ENV
            .compile(source)
            .map_err(|e| ConditionError::Compile(e.to_string()))?;
        let references = program.references();
        let (uses_args, uses_tool, uses_agent) = (
            references.has_variable("args"),
            references.has_variable("tool"),
            references.has_variable("agent"),
        );
        Ok(Self {
            source: source.to_owned(),
            program: Arc::new(program),
            uses_args,
            uses_tool,
            uses_agent,
        })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    pub(crate) fn evaluate(&self, input: &ConditionInput<'_>) -> Result<bool, ConditionError> {
        let mut context = Context::with_env(Arc::clone(&ENV));
        if self.uses_args {
            context.add_variable_from_value("args", json_to_cel(input.args));
        }
        if self.uses_tool {
            context.add_variable_from_value("tool", input.tool);
        }
        if self.uses_agent {
            let agent: HashMap<&str, &str> =
                [("name", input.agent), ("namespace", input.namespace)]
                    .into_iter()
                    .collect();
            context.add_variable_from_value("agent", agent);
        }
        match self.program.execute(&context) {
            Ok(Value::Bool(b)) => Ok(b),
            Ok(other) => Err(ConditionError::NotBool(format!("{other:?}"))),
            Err(e) => Err(ConditionError::Evaluate(e.to_string())),
        }
    }
}

/// JSON → CEL without a serde round trip (this runs on every evaluation).
fn json_to_cel(value: &serde_json::Value) -> Value {
    use serde_json::Value as J;
    match value {
        J::Null => Value::Null,
        J::Bool(b) => Value::Bool(*b),
        J::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Value::Int(i),
            (None, Some(u)) => Value::UInt(u),
            _ => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        J::String(s) => Value::String(Arc::new(s.clone())),
        J::Array(items) => Value::List(Arc::new(items.iter().map(json_to_cel).collect())),
        J::Object(map) => {
            let map: HashMap<String, Value> = map
                .iter()
                .map(|(k, v)| (k.clone(), json_to_cel(v)))
                .collect();
            Value::from(map)
        }
    }
}

impl TryFrom<String> for Condition {
    type Error = ConditionError;
    fn try_from(source: String) -> Result<Self, Self::Error> {
        Self::compile(&source)
    }
}

impl From<Condition> for String {
    fn from(c: Condition) -> Self {
        c.source
    }
}

impl fmt::Debug for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Condition({:?})", self.source)
    }
}

impl PartialEq for Condition {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn eval(src: &str, args: serde_json::Value) -> Result<bool, ConditionError> {
        Condition::compile(src).unwrap().evaluate(&ConditionInput {
            args: &args,
            tool: "send_email",
            agent: "intake",
            namespace: "clinic",
        })
    }

    #[test]
    fn conditions_see_args_tool_and_agent() {
        assert!(
            eval(
                "args.to.endsWith('@clinic.example')",
                json!({"to": "a@clinic.example"})
            )
            .unwrap()
        );
        assert!(!eval("args.amount < 100", json!({"amount": 250})).unwrap());
        assert!(
            eval(
                "tool == 'send_email' && agent.name == 'intake' && agent.namespace == 'clinic'",
                json!({})
            )
            .unwrap()
        );
        assert!(
            eval(
                "size(args.recipients) <= 2",
                json!({"recipients": ["a", "b"]})
            )
            .unwrap()
        );
        assert!(eval("args.to.lowerAscii() == 'x@y'", json!({"to": "X@Y"})).unwrap());
    }

    #[test]
    fn a_missing_argument_is_an_error_not_false() {
        assert!(matches!(
            eval("args.amount < 100", json!({})),
            Err(ConditionError::Evaluate(_))
        ));
        assert!(eval("has(args.amount) && args.amount < 100", json!({})).is_ok());
    }

    #[test]
    fn a_non_bool_result_is_an_error() {
        assert!(matches!(
            eval("args.amount", json!({"amount": 1})),
            Err(ConditionError::NotBool(_))
        ));
    }

    #[test]
    fn a_syntax_error_fails_at_compile_time() {
        assert!(matches!(
            Condition::compile("args.amount <"),
            Err(ConditionError::Compile(_))
        ));
    }

    #[test]
    fn json_numbers_floats_nulls_and_nesting_reach_cel_intact() {
        assert!(
            eval(
                "args.n == 3 && args.f == 2.5 && args.z == null && args.l[1].k == 'v'",
                json!({"n": 3, "f": 2.5, "z": null, "l": [1, {"k": "v"}]})
            )
            .unwrap()
        );
        assert!(
            eval(
                "args.big == 18446744073709551615u",
                json!({"big": u64::MAX})
            )
            .unwrap()
        );
    }

    #[test]
    fn conditions_round_trip_as_their_source() {
        let c = Condition::compile("args.x == 1").unwrap();
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(json, "\"args.x == 1\"");
        let back: Condition = serde_json::from_str(&json).unwrap();
        assert_eq!(back, c);
    }
}
