//! Validation of custom resources against their CRD's OpenAPI v3 schema,
//! the way the API server does it: unknown fields pruned (or rejected under
//! `fieldValidation=Strict`), defaults applied, types / required / enums /
//! patterns / bounds checked, then the `x-kubernetes-validations` CEL rules
//! (with `oldSelf` on updates). Errors come back as field causes for a
//! `422 Invalid` Status.

use kube_cel::{CompiledSchema, Validator, compile_schema};
use regex::Regex;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};

static CEL: LazyLock<Mutex<Validator>> = LazyLock::new(|| Mutex::new(Validator::new()));

/// One invalid field, as in `Status.details.causes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cause {
    pub reason: &'static str,
    pub field: String,
    pub message: String,
}

impl Cause {
    fn new(reason: &'static str, field: &str, message: String) -> Self {
        Self {
            reason,
            field: field.to_string(),
            message,
        }
    }
}

/// How to treat unknown fields (`?fieldValidation=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldValidation {
    Ignore,
    Warn,
    Strict,
}

impl FieldValidation {
    pub fn parse(s: Option<&str>) -> Self {
        match s {
            Some("Strict") => Self::Strict,
            Some("Ignore") => Self::Ignore,
            _ => Self::Warn,
        }
    }
}

/// What validation concluded.
#[derive(Debug)]
pub enum Outcome {
    /// Valid; the object was pruned and defaulted in place. Warnings go in
    /// `Warning` headers.
    Valid { warnings: Vec<String> },
    /// Unknown fields under `fieldValidation=Strict` (400 BadRequest).
    UnknownFields(Vec<String>),
    /// Schema or CEL violations (422 Invalid).
    Invalid(Vec<Cause>),
}

/// A CRD version's schema, with its regexes and CEL rules compiled once.
pub struct Schema {
    raw: Value,
    cel: CompiledSchema,
    patterns: HashMap<String, Regex>,
}

impl std::fmt::Debug for Schema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Schema").finish_non_exhaustive()
    }
}

impl Schema {
    /// Compiles a schema, or says which rule or pattern does not compile
    /// (the API server rejects such a CRD).
    pub fn new(raw: Value) -> Result<Self, String> {
        let cel = compile_schema(&raw);
        if let Some(e) = cel.compilation_errors().first() {
            return Err(format!(
                "spec.validation.openAPIV3Schema: Invalid value: compilation failed: {e}"
            ));
        }
        let mut patterns = HashMap::new();
        collect_patterns(&raw, &mut patterns)?;
        Ok(Self { raw, cel, patterns })
    }

    pub fn raw(&self) -> &Value {
        &self.raw
    }

    /// Prunes, defaults and validates `object` in place.
    pub fn validate(
        &self,
        object: &mut Value,
        old: Option<&Value>,
        mode: FieldValidation,
    ) -> Outcome {
        let mut unknown = Vec::new();
        prune(&self.raw, object, "", true, &mut unknown);
        if mode == FieldValidation::Strict && !unknown.is_empty() {
            return Outcome::UnknownFields(unknown);
        }
        *object = kube_cel::apply_defaults(&self.raw, object);
        let mut causes = Vec::new();
        self.walk(&self.raw, object, "", &mut causes, true);
        if causes.is_empty() {
            let result = match CEL.lock() {
                Ok(v) => v.validate_compiled(&self.cel, object, old),
                Err(poisoned) => poisoned
                    .into_inner()
                    .validate_compiled(&self.cel, object, old),
            };
            if let Err(errors) = result {
                for e in errors.iter() {
                    let value_type = type_name(lookup(object, &e.field_path));
                    let reason = match e.reason.as_deref() {
                        Some("FieldValueForbidden") => "FieldValueForbidden",
                        Some("FieldValueRequired") => "FieldValueRequired",
                        Some("FieldValueDuplicate") => "FieldValueDuplicate",
                        _ => "FieldValueInvalid",
                    };
                    let message = match reason {
                        "FieldValueForbidden" => format!("Forbidden: {}", e.message),
                        "FieldValueRequired" => format!("Required value: {}", e.message),
                        "FieldValueDuplicate" => format!("Duplicate value: {}", e.message),
                        _ => format!("Invalid value: \"{value_type}\": {}", e.message),
                    };
                    causes.push(Cause::new(reason, &e.field_path, message));
                }
            }
        }
        if causes.is_empty() {
            let warnings = if mode == FieldValidation::Warn {
                unknown
                    .into_iter()
                    .map(|f| format!("unknown field \"{f}\""))
                    .collect()
            } else {
                Vec::new()
            };
            Outcome::Valid { warnings }
        } else {
            Outcome::Invalid(causes)
        }
    }

    fn walk(&self, schema: &Value, value: &Value, path: &str, causes: &mut Vec<Cause>, root: bool) {
        if value.is_null() {
            return;
        }
        if schema
            .get("x-kubernetes-int-or-string")
            .and_then(Value::as_bool)
            == Some(true)
        {
            if !(value.is_i64() || value.is_u64() || value.is_string()) {
                causes.push(type_error(path, value, "integer or string"));
            }
            return;
        }
        if let Some(t) = schema.get("type").and_then(Value::as_str) {
            let ok = match t {
                "object" => value.is_object(),
                "array" => value.is_array(),
                "string" => value.is_string(),
                "integer" => value.is_i64() || value.is_u64(),
                "number" => value.is_number(),
                "boolean" => value.is_boolean(),
                _ => true,
            };
            if !ok {
                causes.push(type_error(path, value, t));
                return;
            }
        }
        if let Some(options) = schema.get("enum").and_then(Value::as_array)
            && !options.contains(value)
        {
            let supported: Vec<String> = options.iter().map(Value::to_string).collect();
            causes.push(Cause::new(
                "FieldValueNotSupported",
                path,
                format!(
                    "Unsupported value: {value}: supported values: {}",
                    supported.join(", ")
                ),
            ));
        }
        match value {
            Value::String(s) => self.check_string(schema, s, path, causes),
            Value::Number(n) => check_number(schema, n, path, causes),
            Value::Array(items) => {
                let len = items.len() as u64;
                if let Some(max) = schema.get("maxItems").and_then(Value::as_u64)
                    && len > max
                {
                    causes.push(Cause::new(
                        "FieldValueTooMany",
                        path,
                        format!("Too many: {len}: must have at most {max} items"),
                    ));
                }
                if let Some(min) = schema.get("minItems").and_then(Value::as_u64)
                    && len < min
                {
                    causes.push(Cause::new(
                        "FieldValueInvalid",
                        path,
                        format!(
                            "Invalid value: {len}: {} in body should have at least {min} items",
                            body(path)
                        ),
                    ));
                }
                check_list_type(schema, items, path, causes);
                if let Some(item_schema) = schema.get("items") {
                    for (i, item) in items.iter().enumerate() {
                        self.walk(item_schema, item, &format!("{path}[{i}]"), causes, false);
                    }
                }
            }
            Value::Object(map) => {
                if let Some(required) = schema.get("required").and_then(Value::as_array) {
                    for r in required.iter().filter_map(Value::as_str) {
                        if map.get(r).is_none_or(Value::is_null) {
                            causes.push(Cause::new(
                                "FieldValueRequired",
                                &join(path, r),
                                "Required value".into(),
                            ));
                        }
                    }
                }
                let properties = schema.get("properties").and_then(Value::as_object);
                for (k, v) in map {
                    if root && matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                        continue;
                    }
                    if let Some(s) = properties.and_then(|p| p.get(k)) {
                        self.walk(s, v, &join(path, k), causes, false);
                    } else if let Some(s) =
                        schema.get("additionalProperties").filter(|s| s.is_object())
                    {
                        self.walk(s, v, &join(path, k), causes, false);
                    }
                }
            }
            _ => {}
        }
    }

    fn check_string(&self, schema: &Value, s: &str, path: &str, causes: &mut Vec<Cause>) {
        let chars = s.chars().count() as u64;
        if let Some(max) = schema.get("maxLength").and_then(Value::as_u64)
            && chars > max
        {
            causes.push(Cause::new(
                "FieldValueTooLong",
                path,
                format!("Too long: may not be more than {max} bytes"),
            ));
        }
        if let Some(min) = schema.get("minLength").and_then(Value::as_u64)
            && chars < min
        {
            causes.push(Cause::new(
                "FieldValueInvalid",
                path,
                format!(
                    "Invalid value: {:?}: {} in body should be at least {min} chars long",
                    s,
                    body(path)
                ),
            ));
        }
        if let Some(p) = schema.get("pattern").and_then(Value::as_str)
            && let Some(re) = self.patterns.get(p)
            && !re.is_match(s)
        {
            causes.push(Cause::new(
                "FieldValueInvalid",
                path,
                format!(
                    "Invalid value: {:?}: {} in body should match '{p}'",
                    s,
                    body(path)
                ),
            ));
        }
        if schema.get("format").and_then(Value::as_str) == Some("date-time")
            && s.parse::<jiff::Timestamp>().is_err()
        {
            causes.push(Cause::new(
                "FieldValueInvalid",
                path,
                format!(
                    "Invalid value: {:?}: {} in body must be of type date-time: {:?}",
                    s,
                    body(path),
                    s
                ),
            ));
        }
    }
}

/// "spec.x in body", as the API server words it.
fn body(path: &str) -> &str {
    if path.is_empty() { "body" } else { path }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn type_name(v: Option<&Value>) -> &'static str {
    match v {
        Some(Value::Object(_)) => "object",
        Some(Value::Array(_)) => "array",
        Some(Value::String(_)) => "string",
        Some(Value::Number(n)) if n.is_f64() => "number",
        Some(Value::Number(_)) => "integer",
        Some(Value::Bool(_)) => "boolean",
        _ => "null",
    }
}

/// The value at a dotted path with `[i]` indexes, if there is one.
fn lookup<'a>(root: &'a Value, path: &str) -> Option<&'a Value> {
    let mut v = root;
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let (key, rest) = part.split_once('[').map_or((part, ""), |(k, r)| (k, r));
        if !key.is_empty() {
            v = v.get(key)?;
        }
        for idx in rest.split('[') {
            if let Ok(i) = idx.trim_end_matches(']').parse::<usize>() {
                v = v.get(i)?;
            }
        }
    }
    Some(v)
}

fn type_error(path: &str, value: &Value, expected: &str) -> Cause {
    let got = type_name(Some(value));
    Cause::new(
        "FieldValueTypeInvalid",
        path,
        format!(
            "Invalid value: \"{got}\": {} in body must be of type {expected}: \"{got}\"",
            body(path)
        ),
    )
}

fn check_number(schema: &Value, n: &serde_json::Number, path: &str, causes: &mut Vec<Cause>) {
    let Some(x) = n.as_f64() else { return };
    let exclusive = |key: &str| schema.get(key).and_then(Value::as_bool) == Some(true);
    if let Some(min) = schema.get("minimum").and_then(Value::as_f64) {
        let bad = if exclusive("exclusiveMinimum") {
            x <= min
        } else {
            x < min
        };
        if bad {
            let op = if exclusive("exclusiveMinimum") {
                "greater than"
            } else {
                "greater than or equal to"
            };
            causes.push(Cause::new(
                "FieldValueInvalid",
                path,
                format!(
                    "Invalid value: {n}: {} in body should be {op} {min}",
                    body(path)
                ),
            ));
        }
    }
    if let Some(max) = schema.get("maximum").and_then(Value::as_f64) {
        let bad = if exclusive("exclusiveMaximum") {
            x >= max
        } else {
            x > max
        };
        if bad {
            let op = if exclusive("exclusiveMaximum") {
                "less than"
            } else {
                "less than or equal to"
            };
            causes.push(Cause::new(
                "FieldValueInvalid",
                path,
                format!(
                    "Invalid value: {n}: {} in body should be {op} {max}",
                    body(path)
                ),
            ));
        }
    }
}

/// `x-kubernetes-list-type: set` items and `map` keys must be unique.
fn check_list_type(schema: &Value, items: &[Value], path: &str, causes: &mut Vec<Cause>) {
    let list_type = schema.get("x-kubernetes-list-type").and_then(Value::as_str);
    let keys: Vec<&str> = schema
        .get("x-kubernetes-list-map-keys")
        .and_then(Value::as_array)
        .map(|k| k.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let identity = |item: &Value| -> Value {
        match list_type {
            Some("map") => {
                let mut m = Map::new();
                for k in &keys {
                    if let Some(v) = item.get(*k) {
                        m.insert((*k).to_string(), v.clone());
                    }
                }
                Value::Object(m)
            }
            _ => item.clone(),
        }
    };
    if !matches!(list_type, Some("map") | Some("set")) {
        return;
    }
    let mut seen: Vec<Value> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let id = identity(item);
        if seen.contains(&id) {
            causes.push(Cause::new(
                "FieldValueDuplicate",
                &format!("{path}[{i}]"),
                format!("Duplicate value: {id}"),
            ));
        } else {
            seen.push(id);
        }
    }
}

/// Removes fields the schema does not declare (unless it preserves unknown
/// fields), and nulls the schema does not allow; records their paths.
fn prune(schema: &Value, value: &mut Value, path: &str, root: bool, unknown: &mut Vec<String>) {
    let preserve = schema
        .get("x-kubernetes-preserve-unknown-fields")
        .and_then(Value::as_bool)
        == Some(true);
    match value {
        Value::Object(map) => {
            let properties = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            let nullable_of = |s: Option<&Value>| {
                s.and_then(|s| s.get("nullable")).and_then(Value::as_bool) == Some(true)
            };
            let keys: Vec<String> = map.keys().cloned().collect();
            for k in keys {
                if root && matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                    continue;
                }
                let child_schema = properties.and_then(|p| p.get(&k)).or(additional);
                match child_schema {
                    Some(s) => {
                        if map.get(&k).is_some_and(Value::is_null) && !nullable_of(Some(s)) {
                            map.remove(&k);
                            continue;
                        }
                        if let Some(child) = map.get_mut(&k) {
                            prune(s, child, &join(path, &k), false, unknown);
                        }
                    }
                    None if preserve
                        || (properties.is_none()
                            && additional.is_none()
                            && schema.get("type").is_none()) => {}
                    None => {
                        if schema.get("additionalProperties").and_then(Value::as_bool) == Some(true)
                        {
                            continue;
                        }
                        map.remove(&k);
                        unknown.push(join(path, &k));
                    }
                }
            }
        }
        Value::Array(items) => {
            if let Some(s) = schema.get("items") {
                for (i, item) in items.iter_mut().enumerate() {
                    prune(s, item, &format!("{path}[{i}]"), false, unknown);
                }
            }
        }
        _ => {}
    }
}

fn collect_patterns(schema: &Value, out: &mut HashMap<String, Regex>) -> Result<(), String> {
    match schema {
        Value::Object(map) => {
            if let Some(p) = map.get("pattern").and_then(Value::as_str)
                && !out.contains_key(p)
            {
                let re =
                    Regex::new(p).map_err(|e| format!("pattern {p:?} does not compile: {e}"))?;
                out.insert(p.to_string(), re);
            }
            for (k, v) in map {
                if k != "default" && k != "example" && k != "enum" {
                    collect_patterns(v, out)?;
                }
            }
        }
        Value::Array(items) => {
            for v in items {
                collect_patterns(v, out)?;
            }
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Schema {
        Schema::new(json!({
            "type": "object",
            "properties": {
                "spec": {
                    "type": "object",
                    "required": ["name"],
                    "properties": {
                        "name": {"type": "string", "pattern": "^[a-z]+$", "maxLength": 5},
                        "mode": {"type": "string", "enum": ["A", "B"], "default": "A"},
                        "count": {"type": "integer", "minimum": 1},
                        "items": {"type": "array", "maxItems": 2, "items": {"type": "string"}},
                        "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
                    },
                    "x-kubernetes-validations": [{"rule": "self.name != 'bad'", "message": "name must not be bad"}]
                }
            }
        }))
        .unwrap()
    }

    fn causes(obj: Value) -> Vec<String> {
        let mut obj = obj;
        match schema().validate(&mut obj, None, FieldValidation::Warn) {
            Outcome::Invalid(c) => c
                .into_iter()
                .map(|c| format!("{}: {}", c.field, c.message))
                .collect(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unknown_fields_are_pruned_with_a_warning_or_rejected_when_strict() {
        let mut obj = json!({"metadata": {"name": "x"}, "spec": {"name": "ok", "bogus": 1, "free": {"any": 1}}});
        match schema().validate(&mut obj, None, FieldValidation::Warn) {
            Outcome::Valid { warnings } => assert_eq!(warnings, ["unknown field \"spec.bogus\""]),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            obj["spec"],
            json!({"name": "ok", "mode": "A", "free": {"any": 1}})
        );
        let mut obj = json!({"spec": {"name": "ok", "bogus": 1}});
        assert!(
            matches!(schema().validate(&mut obj, None, FieldValidation::Strict), Outcome::UnknownFields(f) if f == ["spec.bogus"])
        );
    }

    #[test]
    fn schema_violations_read_like_the_api_server() {
        assert_eq!(causes(json!({"spec": {}})), ["spec.name: Required value"]);
        assert_eq!(
            causes(
                json!({"spec": {"name": "ABC", "mode": "C", "count": 0, "items": ["a", "b", "c"]}})
            ),
            [
                "spec.count: Invalid value: 0: spec.count in body should be greater than or equal to 1",
                "spec.items: Too many: 3: must have at most 2 items",
                "spec.mode: Unsupported value: \"C\": supported values: \"A\", \"B\"",
                "spec.name: Invalid value: \"ABC\": spec.name in body should match '^[a-z]+$'",
            ]
        );
        assert_eq!(
            causes(json!({"spec": {"name": 5}})),
            [
                "spec.name: Invalid value: \"integer\": spec.name in body must be of type string: \"integer\""
            ]
        );
    }

    #[test]
    fn cel_rules_run_after_the_schema_passes() {
        assert_eq!(
            causes(json!({"spec": {"name": "bad"}})),
            ["spec: Invalid value: \"object\": name must not be bad"]
        );
    }
}
