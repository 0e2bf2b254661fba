//! Server-side printing: `kubectl get` asks for `as=Table` and shows the
//! columns the server defines: a CRD's `additionalPrinterColumns` (dates as
//! ages, like the API server), or Name and Age for built-in kinds.

use crate::registry::ResourceType;
use serde_json::{Value, json};

/// Whether the client asked for a Table (`Accept: ...;as=Table;...`).
pub fn wants_table(accept: &str) -> bool {
    accept
        .split(',')
        .next()
        .is_some_and(|first| first.contains("as=Table") && first.contains("g=meta.k8s.io"))
}

pub const CONTENT_TYPE: &str = "application/json;as=Table;v=v1;g=meta.k8s.io";

/// Evaluates the JSONPath subset printer columns use: `.a.b`, `.a[0]`,
/// `.a[*].b` and `.a[?(@.k=="v")].b`.
pub fn json_path(root: &Value, path: &str) -> Vec<Value> {
    let path = path.trim().trim_start_matches('{').trim_end_matches('}');
    let mut current = vec![root.clone()];
    let mut rest = path.trim_start_matches('.');
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('[') {
            let Some(close) = after.find(']') else {
                return Vec::new();
            };
            let inner = &after[..close];
            rest = after[close + 1..].trim_start_matches('.');
            let mut next = Vec::new();
            for v in &current {
                let Some(items) = v.as_array() else { continue };
                if inner == "*" {
                    next.extend(items.iter().cloned());
                } else if let Ok(i) = inner.parse::<usize>() {
                    next.extend(items.get(i).cloned());
                } else if let Some(filter) =
                    inner.strip_prefix("?(@.").and_then(|f| f.strip_suffix(')'))
                {
                    let Some((key, want)) = filter.split_once("==") else {
                        continue;
                    };
                    let want = want.trim().trim_matches('"').trim_matches('\'');
                    next.extend(
                        items
                            .iter()
                            .filter(|i| match i.get(key.trim()) {
                                Some(Value::String(s)) => s == want,
                                Some(other) => *other == *want,
                                None => false,
                            })
                            .cloned(),
                    );
                }
            }
            current = next;
        } else {
            let end = rest.find(['.', '[']).unwrap_or(rest.len());
            let key = &rest[..end];
            rest = rest[end..].trim_start_matches('.');
            current = current.iter().filter_map(|v| v.get(key).cloned()).collect();
        }
    }
    current
}

/// Kubernetes' `HumanDuration`: 45s, 5m12s, 3h, 4d, 2y...
pub fn human_duration(seconds: i64) -> String {
    if seconds < -1 {
        return "<invalid>".into();
    }
    let s = seconds.max(0);
    let (m, h, d) = (s / 60, s / 3600, s / 86400);
    if s < 120 {
        format!("{s}s")
    } else if m < 10 {
        if s % 60 == 0 {
            format!("{m}m")
        } else {
            format!("{m}m{}s", s % 60)
        }
    } else if m < 180 {
        format!("{m}m")
    } else if h < 8 {
        if m % 60 == 0 {
            format!("{h}h")
        } else {
            format!("{h}h{}m", m % 60)
        }
    } else if h < 48 {
        format!("{h}h")
    } else if h < 24 * 8 {
        if h % 24 == 0 {
            format!("{d}d")
        } else {
            format!("{d}d{}h", h % 24)
        }
    } else if h < 24 * 365 * 2 {
        format!("{d}d")
    } else if h < 24 * 365 * 8 {
        let y = d / 365;
        if d % 365 == 0 {
            format!("{y}y")
        } else {
            format!("{y}y{}d", d % 365)
        }
    } else {
        format!("{}y", d / 365)
    }
}

fn age(timestamp: Option<&str>) -> Value {
    let Some(t) = timestamp.and_then(|t| t.parse::<jiff::Timestamp>().ok()) else {
        return json!("<unknown>");
    };
    json!(human_duration(
        jiff::Timestamp::now().as_second() - t.as_second()
    ))
}

struct Column {
    name: String,
    type_: String,
    path: Option<String>,
    priority: i64,
    description: String,
}

fn columns(rt: &ResourceType) -> Vec<Column> {
    let mut cols = vec![Column {
        name: "Name".into(),
        type_: "string".into(),
        path: Some(".metadata.name".into()),
        priority: 0,
        description: "Name must be unique within a namespace.".into(),
    }];
    if rt.printer_columns.is_empty() {
        cols.push(Column {
            name: "Age".into(),
            type_: "date".into(),
            path: Some(".metadata.creationTimestamp".into()),
            priority: 0,
            description: "CreationTimestamp is a timestamp representing the server time when this object was created.".into(),
        });
    } else {
        cols.extend(rt.printer_columns.iter().map(|c| Column {
            name: c.name.clone(),
            type_: c.type_.clone(),
            path: Some(c.json_path.clone()),
            priority: c.priority,
            description: c.description.clone(),
        }));
    }
    cols
}

fn cells(cols: &[Column], object: &Value) -> Vec<Value> {
    cols.iter()
        .map(|c| {
            let found = c
                .path
                .as_deref()
                .map(|p| json_path(object, p))
                .unwrap_or_default();
            let first = found.first();
            match (c.type_.as_str(), first) {
                ("date", v) => age(v.and_then(Value::as_str)),
                (_, None) | (_, Some(Value::Null)) => Value::Null,
                ("string", Some(Value::String(s))) => json!(s),
                ("string", Some(v)) => {
                    if found.len() > 1 {
                        json!(
                            found
                                .iter()
                                .map(|x| x
                                    .as_str()
                                    .map(String::from)
                                    .unwrap_or_else(|| x.to_string()))
                                .collect::<Vec<_>>()
                                .join(",")
                        )
                    } else {
                        json!(v.to_string())
                    }
                }
                (_, Some(v)) => v.clone(),
            }
        })
        .collect()
}

fn row(cols: &[Column], object: &Value) -> Value {
    json!({
        "cells": cells(cols, object),
        "object": {
            "kind": "PartialObjectMetadata",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": object.get("metadata").cloned().unwrap_or(json!({})),
        }
    })
}

/// A Table of `objects`.
pub fn table(rt: &ResourceType, objects: &[Value], resource_version: &str) -> Value {
    let cols = columns(rt);
    let definitions: Vec<Value> = cols
        .iter()
        .map(|c| {
            json!({
                "name": c.name,
                "type": if c.type_ == "date" { "string" } else { c.type_.as_str() },
                "format": if c.name == "Name" { "name" } else { "" },
                "description": c.description,
                "priority": c.priority,
            })
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": definitions,
        "rows": objects.iter().map(|o| row(&cols, o)).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_path_supports_fields_indexes_wildcards_and_filters() {
        let o = json!({"status": {"conditions": [{"type": "Accepted", "status": "True"}, {"type": "Ready", "status": "False"}]}, "spec": {"tools": ["a", "b"]}});
        assert_eq!(
            json_path(&o, ".status.conditions[?(@.type==\"Ready\")].status"),
            vec![json!("False")]
        );
        assert_eq!(json_path(&o, ".spec.tools[1]"), vec![json!("b")]);
        assert_eq!(
            json_path(&o, ".status.conditions[*].type"),
            vec![json!("Accepted"), json!("Ready")]
        );
        assert!(json_path(&o, ".spec.missing").is_empty());
    }

    #[test]
    fn ages_read_like_kubectl() {
        assert_eq!(human_duration(45), "45s");
        assert_eq!(human_duration(312), "5m12s");
        assert_eq!(human_duration(3 * 3600), "3h");
        assert_eq!(human_duration(4 * 86400), "4d");
    }
}
