//! CEL conditions on tool calls, compiled once when the bundle is built.
//! A condition sees `args` (the tool's JSON arguments), `tool` (its name)
//! and `agent` (`name`, `namespace`). It must return a bool; anything else,
//! or an evaluation error, is a [`ConditionError`] and the caller fails
//! closed.

use crate::cost::MAX_ARGUMENT_BYTES;
use cel::common::types::{
    CelBool, CelDouble, CelInt, CelList, CelMap, CelMapKey, CelNull, CelString, CelUInt,
};
use cel::common::value::Val;
use cel::{Context, Env, Program, Value};
use serde::{Deserialize, Serialize};
use std::cell::OnceCell;
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, LazyLock};

static ENV: LazyLock<Arc<Env>> = LazyLock::new(|| {
    let mut env = Env::stdlib();
    // The strings extension (lowerAscii, startsWith, ...) is what people
    // reach for in argument checks; it cannot fail to register on a fresh
    // standard environment, and if it ever did we keep the plain stdlib.
    let _ = env.add_extension(cel::extensions::strings);
    // `matches()` with compiled patterns kept (cel's own, left out of the
    // build, compiles its pattern at every evaluation). Nothing else
    // declares it; were it ever refused, a condition using it would fail
    // to compile, with the reason, when the policy loads.
    let _ = crate::cel_regex::register(&mut env);
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
    /// Refused when compiled: its worst case could run away (see the
    /// cost bound in docs/policy.md).
    #[error("CEL expression is too costly: {0}")]
    Cost(String),
}

/// A compiled CEL condition, serialized as its source text.
#[derive(Clone, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Condition {
    source: String,
    program: Arc<Program>,
    /// Whether the expression reads `args`: a call whose conditions never
    /// do never pays for converting its arguments.
    uses_args: bool,
}

/// The variables the conditions of one call are evaluated against. The
/// CEL context is built once per call, at the first condition, and shared
/// by every condition after it: the arguments are converted to CEL values
/// at most once per call (and not at all when no condition reads them),
/// with strings borrowed, not copied.
pub struct ConditionInput<'a> {
    args: &'a serde_json::Value,
    tool: &'a str,
    agent: &'a str,
    namespace: &'a str,
    /// `tool` and `agent` bound: for conditions that do not read `args`.
    /// `None` when `tool` is too large to read.
    without_args: OnceCell<Option<Context<'a, 'a>>>,
    /// `args` bound too; `None` when they are too large to read.
    with_args: OnceCell<Option<Context<'a, 'a>>>,
}

impl<'a> ConditionInput<'a> {
    /// The variables of one call: `args`, `tool`, and the agent's `name`
    /// and `namespace`.
    pub fn new(
        args: &'a serde_json::Value,
        tool: &'a str,
        agent: &'a str,
        namespace: &'a str,
    ) -> Self {
        Self {
            args,
            tool,
            agent,
            namespace,
            without_args: OnceCell::new(),
            with_args: OnceCell::new(),
        }
    }

    /// The context with `tool` and `agent` (and `args` if asked), or an
    /// error when what it would hold is larger than conditions may read
    /// (their cost bound assumes at most that much).
    fn context(&self, args: bool) -> Result<&Context<'a, 'a>, ConditionError> {
        let cell = if args {
            &self.with_args
        } else {
            &self.without_args
        };
        let context = cell.get_or_init(|| {
            let size = self.tool.len() + if args { json_size(self.args) } else { 0 };
            if size > MAX_ARGUMENT_BYTES {
                return None;
            }
            let mut context = Context::with_env(Arc::clone(&ENV));
            context.add_variable_as_val("tool", Box::new(CelString::from(self.tool)));
            let agent: HashMap<CelMapKey<'a>, Box<dyn Val + 'a>> =
                [("name", self.agent), ("namespace", self.namespace)]
                    .into_iter()
                    .map(|(k, v)| {
                        (
                            CelMapKey::from(k),
                            Box::new(CelString::from(v)) as Box<dyn Val>,
                        )
                    })
                    .collect();
            context.add_variable_as_val("agent", Box::new(CelMap::from(agent)));
            if args {
                #[cfg(test)]
                tests::CONVERSIONS.with(|n| n.set(n.get() + 1));
                context.add_variable_as_val("args", json_to_cel(self.args));
            }
            Some(context)
        });
        context.as_ref().ok_or_else(|| {
            ConditionError::Evaluate(format!(
                "the arguments are larger than the {} KiB conditions may read",
                MAX_ARGUMENT_BYTES >> 10
            ))
        })
    }
}

impl fmt::Debug for ConditionInput<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConditionInput")
            .field("tool", &self.tool)
            .field("agent", &self.agent)
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

impl Condition {
    pub fn compile(source: &str) -> Result<Self, ConditionError> {
        let program = ENV
            .compile(source)
            .map_err(|e| ConditionError::Compile(e.to_string()))?;
        crate::cost::check(program.expression()).map_err(ConditionError::Cost)?;
        let uses_args = program.references().has_variable("args");
        Ok(Self {
            source: source.to_owned(),
            program: Arc::new(program),
            uses_args,
        })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether the condition holds for `input`; an error (the caller
    /// fails closed) when it cannot be evaluated or is not a bool.
    pub fn evaluate(&self, input: &ConditionInput<'_>) -> Result<bool, ConditionError> {
        match self.program.execute(input.context(self.uses_args)?) {
            Ok(Value::Bool(b)) => Ok(b),
            Ok(other) => Err(ConditionError::NotBool(format!("{other:?}"))),
            Err(e) => Err(ConditionError::Evaluate(e.to_string())),
        }
    }
}

/// The size of JSON as the cost bound counts it: the bytes of every string
/// and key, plus one for every value (no more than its JSON text).
fn json_size(value: &serde_json::Value) -> usize {
    use serde_json::Value as J;
    1 + match value {
        J::String(s) => s.len(),
        J::Array(items) => items.iter().map(json_size).sum(),
        J::Object(map) => map.iter().map(|(k, v)| k.len() + json_size(v)).sum(),
        J::Null | J::Bool(_) | J::Number(_) => 0,
    }
}

/// JSON → CEL, borrowing every string (keys too) from the JSON.
fn json_to_cel<'a>(value: &'a serde_json::Value) -> Box<dyn Val + 'a> {
    use serde_json::Value as J;
    match value {
        J::Null => Box::new(CelNull),
        J::Bool(b) => Box::new(CelBool::from(*b)),
        J::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Box::new(CelInt::from(i)),
            (None, Some(u)) => Box::new(CelUInt::from(u)),
            _ => Box::new(CelDouble::from(n.as_f64().unwrap_or(f64::NAN))),
        },
        J::String(s) => Box::new(CelString::from(s.as_str())),
        J::Array(items) => Box::new(CelList::from(
            items.iter().map(json_to_cel).collect::<Vec<_>>(),
        )),
        J::Object(map) => Box::new(CelMap::from(
            map.iter()
                .map(|(k, v)| (CelMapKey::from(k.as_str()), json_to_cel(v)))
                .collect::<HashMap<_, _>>(),
        )),
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
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    thread_local! {
        /// How often the arguments of a call were converted to CEL values.
        pub(crate) static CONVERSIONS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    }

    fn eval(src: &str, args: serde_json::Value) -> Result<bool, ConditionError> {
        Condition::compile(src)
            .unwrap()
            .evaluate(&ConditionInput::new(
                &args,
                "send_email",
                "intake",
                "clinic",
            ))
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
    fn matches_takes_a_pattern_as_cel_defines_it() {
        let to = |v: &str| json!({ "to": v });
        let rule = "args.to.matches('^[a-z.]+@clinic[.]example$')";
        assert!(eval(rule, to("dr.who@clinic.example")).unwrap());
        assert!(!eval(rule, to("dr@evil.example")).unwrap());
        assert!(!eval(rule, to("dr@clinic.example.evil")).unwrap());
        // Anywhere in the text unless anchored; the global form too.
        assert!(eval("args.to.matches('clinic')", to("a@clinic.example")).unwrap());
        assert!(eval("matches(args.to, '^a@')", to("a@clinic.example")).unwrap());
        // The same pattern again (now compiled once) gives the same answers.
        assert!(eval(rule, to("nurse@clinic.example")).unwrap());
        assert!(!eval(rule, to("NURSE@clinic.example")).unwrap());
    }

    #[test]
    fn an_invalid_pattern_is_an_error_that_names_it() {
        for _ in 0..2 {
            let err = eval("args.to.matches('(foo')", json!({"to": "a"})).unwrap_err();
            let ConditionError::Evaluate(message) = err else {
                panic!("an evaluation error, not {err:?}");
            };
            assert!(message.contains("'(foo' not a valid regex"), "{message}");
            assert!(message.contains("unclosed group"), "{message}");
        }
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
