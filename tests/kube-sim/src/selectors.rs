//! Label selectors (`a=b`, `a!=b`, `a in (x,y)`, `a notin (x)`, `a`, `!a`)
//! and field selectors (`metadata.name=x`, `spec.agent!=y`).

use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Op {
    Eq(String),
    NotEq(String),
    In(Vec<String>),
    NotIn(Vec<String>),
    Exists,
    NotExists,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Requirement {
    key: String,
    op: Op,
}

/// A parsed label selector; the empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector(Vec<Requirement>);

/// Splits on commas that are not inside parentheses.
fn split_top(s: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
        .into_iter()
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect()
}

fn valid_key(k: &str) -> bool {
    !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
}

fn set(values: &str) -> Result<Vec<String>, String> {
    let inner = values
        .trim()
        .strip_prefix('(')
        .and_then(|v| v.strip_suffix(')'))
        .ok_or_else(|| format!("expected (values) but found {values:?}"))?;
    Ok(inner
        .split(',')
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .collect())
}

impl LabelSelector {
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut reqs = Vec::new();
        for part in split_top(s) {
            let req = if let Some(key) = part.strip_prefix('!') {
                Requirement {
                    key: key.trim().into(),
                    op: Op::NotExists,
                }
            } else if let Some((k, v)) = part.split_once("!=") {
                Requirement {
                    key: k.trim().into(),
                    op: Op::NotEq(v.trim().into()),
                }
            } else if let Some((k, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
                Requirement {
                    key: k.trim().into(),
                    op: Op::Eq(v.trim().into()),
                }
            } else if let Some((k, v)) = part.split_once(" notin ") {
                Requirement {
                    key: k.trim().into(),
                    op: Op::NotIn(set(v)?),
                }
            } else if let Some((k, v)) = part.split_once(" in ") {
                Requirement {
                    key: k.trim().into(),
                    op: Op::In(set(v)?),
                }
            } else {
                Requirement {
                    key: part.into(),
                    op: Op::Exists,
                }
            };
            if !valid_key(&req.key) {
                return Err(format!("invalid label key {:?}", req.key));
            }
            reqs.push(req);
        }
        Ok(Self(reqs))
    }

    pub fn matches(&self, object: &Value) -> bool {
        let labels = object
            .pointer("/metadata/labels")
            .and_then(Value::as_object);
        self.0.iter().all(|r| {
            let value = labels.and_then(|l| l.get(&r.key)).and_then(Value::as_str);
            match &r.op {
                Op::Eq(v) => value == Some(v.as_str()),
                Op::NotEq(v) => value != Some(v.as_str()),
                Op::In(vs) => value.is_some_and(|x| vs.iter().any(|v| v == x)),
                Op::NotIn(vs) => value.is_none_or(|x| vs.iter().all(|v| v != x)),
                Op::Exists => value.is_some(),
                Op::NotExists => value.is_none(),
            }
        })
    }
}

/// A parsed field selector over dotted paths.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector(Vec<(String, bool, String)>);

impl FieldSelector {
    /// Parses `path=value` / `path==value` / `path!=value` terms, allowing
    /// only the paths in `allowed`.
    pub fn parse(s: &str, allowed: &dyn Fn(&str) -> bool) -> Result<Self, String> {
        let mut terms = Vec::new();
        for part in split_top(s) {
            let (path, equal, value) = if let Some((k, v)) = part.split_once("!=") {
                (k, false, v)
            } else if let Some((k, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
                (k, true, v)
            } else {
                return Err(format!(
                    "invalid selector: {part:?}; expected field=value or field!=value"
                ));
            };
            let path = path.trim();
            if !allowed(path) {
                return Err(format!("field label not supported: {path}"));
            }
            terms.push((path.to_string(), equal, value.trim().to_string()));
        }
        Ok(Self(terms))
    }

    pub fn matches(&self, object: &Value) -> bool {
        self.0.iter().all(|(path, equal, want)| {
            let pointer = format!("/{}", path.replace('.', "/"));
            let got = match object.pointer(&pointer) {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Null) | None => String::new(),
                Some(other) => other.to_string(),
            };
            (got == *want) == *equal
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj() -> Value {
        json!({"metadata": {"name": "a", "namespace": "n", "labels": {"app": "web", "tier": "front"}}, "spec": {"agent": "intake"}})
    }

    #[test]
    fn label_selectors_support_equality_sets_and_existence() {
        for (sel, want) in [
            ("app=web", true),
            ("app==web", true),
            ("app!=web", false),
            ("app in (web,api)", true),
            ("app notin (web)", false),
            ("tier,app=web", true),
            ("!tier", false),
            ("missing", false),
            ("!missing", true),
            ("missing notin (x)", true),
            ("", true),
        ] {
            assert_eq!(
                LabelSelector::parse(sel).unwrap().matches(&obj()),
                want,
                "{sel}"
            );
        }
        assert!(LabelSelector::parse("app in web").is_err());
    }

    #[test]
    fn field_selectors_compare_paths_and_reject_unsupported_ones() {
        let any = |_: &str| true;
        assert!(
            FieldSelector::parse("metadata.name=a,spec.agent!=x", &any)
                .unwrap()
                .matches(&obj())
        );
        assert!(
            !FieldSelector::parse("metadata.namespace=other", &any)
                .unwrap()
                .matches(&obj())
        );
        let only_meta = |p: &str| p.starts_with("metadata.");
        assert_eq!(
            FieldSelector::parse("spec.agent=x", &only_meta).unwrap_err(),
            "field label not supported: spec.agent"
        );
    }
}
