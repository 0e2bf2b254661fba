//! Writes other than a plain replace: JSON merge patch (RFC 7386), JSON
//! patch (RFC 6902), and server-side apply with field managers,
//! `managedFields`, conflicts between managers and `force`.
//!
//! Field ownership is tracked at leaves: scalars, atomic lists, and the
//! fields of list elements keyed by `x-kubernetes-list-map-keys` (e.g.
//! conditions by `type`). Other lists are atomic, as in the API server.

use serde_json::{Map, Value, json};
use std::collections::BTreeSet;

/// JSON merge patch: objects merge, `null` deletes, everything else replaces.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = Value::Object(Map::new());
            }
            if let Value::Object(t) = target {
                for (k, v) in p {
                    if v.is_null() {
                        t.remove(k);
                    } else {
                        merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                    }
                }
            }
        }
        other => *target = other.clone(),
    }
}

/// JSON patch; a failed `test` or a bad path is an error.
pub fn json_patch(target: &mut Value, patch: &Value) -> Result<(), String> {
    let ops: json_patch::Patch =
        serde_json::from_value(patch.clone()).map_err(|e| e.to_string())?;
    json_patch::patch(target, &ops).map_err(|e| e.to_string())
}

/// One step of a field path, in `fieldsV1` spelling: `f:name` or
/// `k:{"type":"Ready"}`.
type Path = Vec<String>;

/// Leaf paths of `value`, following `schema` to find keyed lists.
fn leaves(value: &Value, schema: Option<&Value>, prefix: &mut Path, out: &mut BTreeSet<Path>) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                let child = schema.and_then(|s| {
                    s.get("properties")
                        .and_then(|p| p.get(k))
                        .or_else(|| s.get("additionalProperties").filter(|a| a.is_object()))
                });
                prefix.push(format!("f:{k}"));
                leaves(v, child, prefix, out);
                prefix.pop();
            }
        }
        Value::Array(items) => {
            let keys = list_map_keys(schema);
            if keys.is_empty() {
                out.insert(prefix.clone());
                return;
            }
            let item_schema = schema.and_then(|s| s.get("items"));
            for item in items {
                prefix.push(element_key(item, &keys));
                leaves(item, item_schema, prefix, out);
                prefix.pop();
            }
        }
        _ => {
            out.insert(prefix.clone());
        }
    }
}

fn list_map_keys(schema: Option<&Value>) -> Vec<String> {
    let Some(s) = schema else { return Vec::new() };
    if s.get("x-kubernetes-list-type").and_then(Value::as_str) != Some("map") {
        return Vec::new();
    }
    s.get("x-kubernetes-list-map-keys")
        .and_then(Value::as_array)
        .map(|k| {
            k.iter()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

fn element_key(item: &Value, keys: &[String]) -> String {
    let mut m = Map::new();
    for k in keys {
        m.insert(k.clone(), item.get(k).cloned().unwrap_or(Value::Null));
    }
    format!("k:{}", Value::Object(m))
}

fn get<'a>(value: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut v = value;
    for step in path {
        v = if let Some(field) = step.strip_prefix("f:") {
            v.get(field)?
        } else {
            let want: Map<String, Value> = serde_json::from_str(step.strip_prefix("k:")?).ok()?;
            v.as_array()?
                .iter()
                .find(|item| want.iter().all(|(k, val)| item.get(k) == Some(val)))?
        };
    }
    Some(v)
}

fn remove(value: &mut Value, path: &[String]) {
    let Some((last, parent)) = path.split_last() else {
        return;
    };
    let mut v = value;
    for step in parent {
        let next = if let Some(field) = step.strip_prefix("f:") {
            v.get_mut(field)
        } else {
            let want: Option<Map<String, Value>> = step
                .strip_prefix("k:")
                .and_then(|s| serde_json::from_str(s).ok());
            match (want, v.as_array_mut()) {
                (Some(want), Some(items)) => items
                    .iter_mut()
                    .find(|item| want.iter().all(|(k, val)| item.get(k) == Some(val))),
                _ => None,
            }
        };
        match next {
            Some(n) => v = n,
            None => return,
        }
    }
    if let Some(field) = last.strip_prefix("f:") {
        if let Some(m) = v.as_object_mut() {
            m.remove(field);
        }
    } else if let (Some(want), Some(items)) = (
        last.strip_prefix("k:")
            .and_then(|s| serde_json::from_str::<Map<String, Value>>(s).ok()),
        v.as_array_mut(),
    ) {
        items.retain(|item| !want.iter().all(|(k, val)| item.get(k) == Some(val)));
    }
}

/// Deep merge for apply: objects merge, keyed lists merge by key, other
/// lists and scalars replace.
fn apply_merge(target: &mut Value, applied: &Value, schema: Option<&Value>) {
    match (target, applied) {
        (Value::Object(t), Value::Object(a)) => {
            for (k, v) in a {
                let child = schema.and_then(|s| {
                    s.get("properties")
                        .and_then(|p| p.get(k))
                        .or_else(|| s.get("additionalProperties").filter(|x| x.is_object()))
                });
                match t.get_mut(k) {
                    Some(existing) => apply_merge(existing, v, child),
                    None => {
                        t.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (t @ Value::Array(_), Value::Array(a)) => {
            let keys = list_map_keys(schema);
            if keys.is_empty() {
                *t = Value::Array(a.clone());
                return;
            }
            let item_schema = schema.and_then(|s| s.get("items"));
            if let Value::Array(items) = t {
                for item in a {
                    let id = element_key(item, &keys);
                    match items.iter_mut().find(|x| element_key(x, &keys) == id) {
                        Some(existing) => apply_merge(existing, item, item_schema),
                        None => items.push(item.clone()),
                    }
                }
            }
        }
        (t, a) => *t = a.clone(),
    }
}

/// Paths the server manages itself and never attributes to a manager.
fn untracked(path: &Path) -> bool {
    matches!(
        path.first().map(String::as_str),
        Some("f:apiVersion") | Some("f:kind")
    ) || (path.first().map(String::as_str) == Some("f:metadata")
        && !matches!(
            path.get(1).map(String::as_str),
            Some("f:labels")
                | Some("f:annotations")
                | Some("f:finalizers")
                | Some("f:ownerReferences")
        ))
}

fn tracked_leaves(value: &Value, schema: Option<&Value>) -> BTreeSet<Path> {
    let mut out = BTreeSet::new();
    leaves(value, schema, &mut Vec::new(), &mut out);
    out.retain(|p| !untracked(p) && !p.is_empty());
    out
}

/// `.spec.agents[name="intake"].suspended`, as conflict messages print paths.
fn display(path: &Path) -> String {
    let mut s = String::new();
    for step in path {
        if let Some(f) = step.strip_prefix("f:") {
            s.push('.');
            s.push_str(f);
        } else if let Some(k) = step
            .strip_prefix("k:")
            .and_then(|k| serde_json::from_str::<Map<String, Value>>(k).ok())
        {
            let inner: Vec<String> = k.iter().map(|(k, v)| format!("{k}={v}")).collect();
            s.push_str(&format!("[{}]", inner.join(",")));
        }
    }
    s
}

fn to_fields_v1(paths: &BTreeSet<Path>) -> Value {
    let mut root = Map::new();
    for path in paths {
        let mut node = &mut root;
        for step in path {
            let entry = node.entry(step.clone()).or_insert_with(|| json!({}));
            match entry.as_object_mut() {
                Some(m) => node = m,
                None => break,
            }
        }
    }
    Value::Object(root)
}

fn from_fields_v1(v: &Value, prefix: &mut Path, out: &mut BTreeSet<Path>) {
    match v.as_object() {
        Some(m) if !m.is_empty() => {
            for (k, child) in m {
                if k == "." {
                    continue;
                }
                prefix.push(k.clone());
                from_fields_v1(child, prefix, out);
                prefix.pop();
            }
        }
        _ => {
            if !prefix.is_empty() {
                out.insert(prefix.clone());
            }
        }
    }
}

/// One `managedFields` entry.
#[derive(Debug, Clone)]
struct Entry {
    manager: String,
    operation: String,
    api_version: String,
    subresource: Option<String>,
    time: String,
    fields: BTreeSet<Path>,
}

fn read_entries(object: &Value) -> Vec<Entry> {
    object
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .map(|entries| {
            entries
                .iter()
                .map(|e| {
                    let mut fields = BTreeSet::new();
                    if let Some(f) = e.get("fieldsV1") {
                        from_fields_v1(f, &mut Vec::new(), &mut fields);
                    }
                    let s = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or("").to_string();
                    Entry {
                        manager: s("manager"),
                        operation: s("operation"),
                        api_version: s("apiVersion"),
                        subresource: e
                            .get("subresource")
                            .and_then(Value::as_str)
                            .map(String::from),
                        time: s("time"),
                        fields,
                    }
                })
                .collect()
        })
        .unwrap_or_default()
}

fn write_entries(object: &mut Value, entries: Vec<Entry>) {
    let list: Vec<Value> = entries
        .into_iter()
        .filter(|e| !e.fields.is_empty())
        .map(|e| {
            let mut v = json!({
                "manager": e.manager,
                "operation": e.operation,
                "apiVersion": e.api_version,
                "time": e.time,
                "fieldsType": "FieldsV1",
                "fieldsV1": to_fields_v1(&e.fields),
            });
            if let Some(s) = e.subresource {
                v["subresource"] = json!(s);
            }
            v
        })
        .collect();
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        if list.is_empty() {
            meta.remove("managedFields");
        } else {
            meta.insert("managedFields".into(), Value::Array(list));
        }
    }
}

/// Who is writing, and how.
#[derive(Debug, Clone)]
pub struct Writer<'a> {
    pub manager: &'a str,
    pub api_version: &'a str,
    pub subresource: Option<&'a str>,
    pub now: &'a str,
}

/// A field another manager owns with a different value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    pub manager: String,
    pub api_version: String,
    pub field: String,
}

/// Server-side apply of `applied` onto `current` (an empty object when
/// creating). Returns the new object with its managedFields, or the
/// conflicts when another manager owns a field with a different value and
/// `force` is false.
pub fn server_side_apply(
    current: &Value,
    applied: &Value,
    writer: &Writer<'_>,
    force: bool,
    schema: Option<&Value>,
) -> Result<Value, Vec<Conflict>> {
    let mut entries = read_entries(current);
    let applied_paths = tracked_leaves(applied, schema);
    let mine = |e: &Entry| {
        e.manager == writer.manager
            && e.operation == "Apply"
            && e.subresource.as_deref() == writer.subresource
    };

    let mut conflicts = Vec::new();
    let mut conflicting = BTreeSet::new();
    for path in &applied_paths {
        if get(applied, path) == get(current, path) {
            continue;
        }
        for e in entries
            .iter()
            .filter(|e| !mine(e) && e.fields.contains(path))
        {
            conflicts.push(Conflict {
                manager: e.manager.clone(),
                api_version: e.api_version.clone(),
                field: display(path),
            });
            conflicting.insert(path.clone());
        }
    }
    if !conflicts.is_empty() && !force {
        return Err(conflicts);
    }
    for e in entries.iter_mut().filter(|e| !mine(e)) {
        e.fields.retain(|p| !conflicting.contains(p));
    }

    let mut merged = current.clone();
    apply_merge(&mut merged, applied, schema);
    // Fields this manager applied before but no longer does go away,
    // unless someone else also owns them.
    let previous: BTreeSet<Path> = entries
        .iter()
        .filter(|e| mine(e))
        .flat_map(|e| e.fields.iter().cloned())
        .collect();
    for path in previous.difference(&applied_paths) {
        if !entries.iter().any(|e| !mine(e) && e.fields.contains(path)) {
            remove(&mut merged, path);
        }
    }
    entries.retain(|e| !mine(e));
    entries.push(Entry {
        manager: writer.manager.to_string(),
        operation: "Apply".into(),
        api_version: writer.api_version.to_string(),
        subresource: writer.subresource.map(String::from),
        time: writer.now.to_string(),
        fields: applied_paths,
    });
    write_entries(&mut merged, entries);
    Ok(merged)
}

/// Records an ordinary write (create, update, patch): the writer takes
/// ownership of every field it added or changed, and nobody owns fields
/// that were removed.
pub fn record_update(old: &Value, new: &mut Value, writer: &Writer<'_>, schema: Option<&Value>) {
    let mut entries = read_entries(old);
    let before = tracked_leaves(old, schema);
    let after = tracked_leaves(new, schema);
    let changed: BTreeSet<Path> = after
        .iter()
        .filter(|p| get(old, p) != get(new, p))
        .cloned()
        .collect();
    let removed: BTreeSet<Path> = before.difference(&after).cloned().collect();
    let writer_entry = |e: &Entry| {
        e.manager == writer.manager
            && e.operation == "Update"
            && e.subresource.as_deref() == writer.subresource
    };
    for e in entries.iter_mut() {
        let is_writer = writer_entry(e);
        e.fields
            .retain(|p| !removed.contains(p) && (is_writer || !changed.contains(p)));
    }
    if !changed.is_empty() {
        match entries.iter_mut().find(|e| writer_entry(e)) {
            Some(e) => {
                e.fields.extend(changed);
                e.time = writer.now.to_string();
                e.api_version = writer.api_version.to_string();
            }
            None => entries.push(Entry {
                manager: writer.manager.to_string(),
                operation: "Update".into(),
                api_version: writer.api_version.to_string(),
                subresource: writer.subresource.map(String::from),
                time: writer.now.to_string(),
                fields: changed,
            }),
        }
    }
    write_entries(new, entries);
}

/// The conflict Status message: `Apply failed with 1 conflict: conflict
/// with "kubectl" using v1: .spec.x`.
pub fn conflict_message(conflicts: &[Conflict]) -> String {
    let n = conflicts.len();
    let parts: Vec<String> = conflicts
        .iter()
        .map(|c| {
            format!(
                "conflict with \"{}\" using {}: {}",
                c.manager, c.api_version, c.field
            )
        })
        .collect();
    if n == 1 {
        format!("Apply failed with 1 conflict: {}", parts[0])
    } else {
        format!("Apply failed with {n} conflicts: {}", parts.join("\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(manager: &str) -> Writer<'static> {
        let manager: &'static str = Box::leak(manager.to_string().into_boxed_str());
        Writer {
            manager,
            api_version: "v1",
            subresource: None,
            now: "2026-01-01T00:00:00Z",
        }
    }

    fn schema() -> Value {
        json!({"properties": {"status": {"properties": {"conditions": {
            "type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"],
            "items": {"type": "object"}
        }}}}})
    }

    #[test]
    fn merge_patch_merges_objects_and_deletes_nulls() {
        let mut t = json!({"a": {"b": 1, "c": 2}, "l": [1, 2]});
        merge_patch(&mut t, &json!({"a": {"b": null, "d": 3}, "l": [3]}));
        assert_eq!(t, json!({"a": {"c": 2, "d": 3}, "l": [3]}));
    }

    #[test]
    fn two_managers_conflict_on_a_field_with_different_values_unless_forced() {
        let obj = json!({"metadata": {"name": "x"}, "spec": {"a": 1}});
        let first = server_side_apply(
            &obj,
            &json!({"spec": {"a": 1, "b": 2}}),
            &w("one"),
            false,
            None,
        )
        .unwrap();
        // Same value: shared ownership, no conflict.
        let shared =
            server_side_apply(&first, &json!({"spec": {"b": 2}}), &w("two"), false, None).unwrap();
        let err = server_side_apply(&shared, &json!({"spec": {"a": 5}}), &w("two"), false, None)
            .unwrap_err();
        assert_eq!(
            conflict_message(&err),
            "Apply failed with 1 conflict: conflict with \"one\" using v1: .spec.a"
        );
        let forced =
            server_side_apply(&shared, &json!({"spec": {"a": 5}}), &w("two"), true, None).unwrap();
        assert_eq!(forced["spec"], json!({"a": 5, "b": 2}));
        let managers: Vec<&str> = forced["metadata"]["managedFields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["manager"].as_str().unwrap())
            .collect();
        assert_eq!(managers, ["one", "two"]);
        assert_eq!(
            forced["metadata"]["managedFields"][0]["fieldsV1"],
            json!({"f:spec": {"f:b": {}}})
        );
    }

    #[test]
    fn fields_a_manager_stops_applying_are_removed() {
        let first = server_side_apply(
            &json!({"metadata": {}}),
            &json!({"spec": {"a": 1, "b": 2}}),
            &w("one"),
            false,
            None,
        )
        .unwrap();
        let second =
            server_side_apply(&first, &json!({"spec": {"a": 1}}), &w("one"), false, None).unwrap();
        assert_eq!(second["spec"], json!({"a": 1}));
    }

    #[test]
    fn keyed_lists_merge_by_key_between_managers() {
        let s = schema();
        let a = server_side_apply(
            &json!({"metadata": {}}),
            &json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}}),
            &w("one"),
            false,
            Some(&s),
        )
        .unwrap();
        let b = server_side_apply(
            &a,
            &json!({"status": {"conditions": [{"type": "Accepted", "status": "True"}]}}),
            &w("two"),
            false,
            Some(&s),
        )
        .unwrap();
        assert_eq!(b["status"]["conditions"].as_array().unwrap().len(), 2);
        let err = server_side_apply(
            &b,
            &json!({"status": {"conditions": [{"type": "Ready", "status": "False"}]}}),
            &w("two"),
            false,
            Some(&s),
        )
        .unwrap_err();
        assert_eq!(err[0].field, ".status.conditions[type=\"Ready\"].status");
    }

    #[test]
    fn an_update_takes_ownership_of_what_it_changed() {
        let applied = server_side_apply(
            &json!({"metadata": {}}),
            &json!({"spec": {"a": 1}}),
            &w("one"),
            false,
            None,
        )
        .unwrap();
        let mut updated = applied.clone();
        updated["spec"]["a"] = json!(2);
        record_update(&applied, &mut updated, &w("kubectl-edit"), None);
        let entries = updated["metadata"]["managedFields"].as_array().unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0]["manager"], "kubectl-edit");
        assert_eq!(entries[0]["operation"], "Update");
    }
}
