//! A minimal OpenAPI v3 surface: the index at `/openapi/v3` and one
//! document per group/version. Custom resources carry their CRD schema (so
//! `kubectl explain` and kubectl's client-side validation work); built-in
//! kinds get a permissive schema with their group/version/kind.

use crate::registry::Registry;
use serde_json::{Map, Value, json};

fn path_of(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// `GET /openapi/v3`.
pub fn index(registry: &Registry, revision: u64) -> Value {
    let mut paths = Map::new();
    for t in registry.types() {
        let p = path_of(&t.group, &t.version);
        paths.entry(p.clone()).or_insert_with(
            || json!({"serverRelativeURL": format!("/openapi/v3/{p}?hash={revision:016X}")}),
        );
    }
    json!({"paths": paths})
}

/// Reverse-DNS schema name, as the API server names definitions.
fn definition_name(group: &str, version: &str, kind: &str) -> String {
    if group.is_empty() {
        return format!("io.k8s.api.core.{version}.{kind}");
    }
    let reversed: Vec<&str> = group.split('.').rev().collect();
    format!("{}.{version}.{kind}", reversed.join("."))
}

/// `GET /openapi/v3/apis/{group}/{version}` (or `api/v1`).
pub fn document(registry: &Registry, group: &str, version: &str) -> Option<Value> {
    let mut schemas = Map::new();
    let mut paths = Map::new();
    let mut any = false;
    for t in registry
        .types()
        .iter()
        .filter(|t| t.group == group && t.version == version)
    {
        any = true;
        let gvk = json!([{"group": t.group, "version": t.version, "kind": t.kind}]);
        // kubectl looks for the PATCH operation of a kind and its
        // fieldValidation parameter to decide that the server validates.
        let query = |name: &str| json!({"name": name, "in": "query", "schema": {"type": "string", "uniqueItems": true}});
        let item_path = if t.namespaced {
            format!(
                "/{}/namespaces/{{namespace}}/{}/{{name}}",
                path_of(&t.group, &t.version),
                t.plural
            )
        } else {
            format!("/{}/{}/{{name}}", path_of(&t.group, &t.version), t.plural)
        };
        let reference = json!({"$ref": format!("#/components/schemas/{}", definition_name(&t.group, &t.version, &t.kind))});
        let operation = |action: &str| {
            json!({
                "operationId": format!("{action}{}", t.kind),
                "parameters": [query("dryRun"), query("fieldManager"), query("fieldValidation"), query("force")],
                "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": reference}}}},
                "x-kubernetes-action": action,
                "x-kubernetes-group-version-kind": {"group": t.group, "version": t.version, "kind": t.kind}
            })
        };
        paths.insert(
            item_path,
            json!({"patch": operation("patch"), "put": operation("put")}),
        );
        let mut schema = match &t.schema {
            Some(s) => s.raw().clone(),
            None => json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}),
        };
        if let Some(p) = schema
            .as_object_mut()
            .map(|m| m.entry("properties").or_insert_with(|| json!({})))
            .and_then(Value::as_object_mut)
        {
            p.entry("apiVersion").or_insert_with(|| json!({"type": "string", "description": "APIVersion defines the versioned schema of this representation of an object."}));
            p.entry("kind").or_insert_with(|| json!({"type": "string", "description": "Kind is a string value representing the REST resource this object represents."}));
            p.entry("metadata").or_insert_with(|| json!({"allOf": [{"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}], "description": "Standard object's metadata."}));
        }
        if let Some(m) = schema.as_object_mut() {
            m.insert("x-kubernetes-group-version-kind".into(), gvk.clone());
            m.entry("type").or_insert_with(|| json!("object"));
        }
        schemas.insert(definition_name(&t.group, &t.version, &t.kind), schema);
        schemas.insert(
            definition_name(&t.group, &t.version, &format!("{}List", t.kind)),
            json!({
                "type": "object",
                "x-kubernetes-group-version-kind": [{"group": t.group, "version": t.version, "kind": format!("{}List", t.kind)}],
                "properties": {
                    "apiVersion": {"type": "string"},
                    "kind": {"type": "string"},
                    "items": {"type": "array", "items": {"$ref": format!("#/components/schemas/{}", definition_name(&t.group, &t.version, &t.kind))}},
                    "metadata": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
                }
            }),
        );
    }
    if !any {
        return None;
    }
    schemas.insert(
        "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta".into(),
        json!({
            "type": "object",
            "description": "ObjectMeta is metadata that all persisted resources must have.",
            "properties": {
                "name": {"type": "string", "description": "Name must be unique within a namespace."},
                "namespace": {"type": "string", "description": "Namespace defines the space within which each name must be unique."},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}, "description": "Map of string keys and values for organizing and categorizing objects."},
                "annotations": {"type": "object", "additionalProperties": {"type": "string"}, "description": "Unstructured key value map stored with a resource."},
                "generateName": {"type": "string"},
                "finalizers": {"type": "array", "items": {"type": "string"}},
                "ownerReferences": {"type": "array", "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}},
                "uid": {"type": "string"},
                "resourceVersion": {"type": "string"},
                "generation": {"type": "integer", "format": "int64"},
                "creationTimestamp": {"type": "string", "format": "date-time"},
                "deletionTimestamp": {"type": "string", "format": "date-time"},
                "deletionGracePeriodSeconds": {"type": "integer", "format": "int64"},
                "managedFields": {"type": "array", "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}
            }
        }),
    );
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.34.0"},
        "paths": paths,
        "components": {"schemas": schemas}
    }))
}
