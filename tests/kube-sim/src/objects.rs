//! Reads and writes of objects: list, get, create, update, patch
//! (merge / JSON / server-side apply), delete with finalizers, and the
//! side effects of built-in kinds (CRDs register types, Namespaces own
//! their objects, Secrets fold `stringData`).

use crate::errors::ApiError;
use crate::patch::{self, Writer};
use crate::registry::{ResourceType, types_from_crd};
use crate::selectors::{FieldSelector, LabelSelector};
use crate::state::Inner;
use crate::validation::{Cause, FieldValidation, Outcome};
use base64::Engine;
use serde_json::{Map, Value, json};
use std::collections::HashMap;

/// Query parameters of a request.
#[derive(Debug, Clone, Default)]
pub struct Params(pub HashMap<String, String>);

impl Params {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .get(key)
            .map(String::as_str)
            .filter(|s| !s.is_empty())
    }

    pub fn flag(&self, key: &str) -> bool {
        matches!(self.get(key), Some("true") | Some("1"))
    }

    fn dry_run(&self) -> bool {
        self.get("dryRun").is_some()
    }
}

/// What a request addresses.
#[derive(Debug, Clone)]
pub struct Target {
    pub rt: ResourceType,
    pub namespace: Option<String>,
    pub subresource: Option<String>,
}

impl Target {
    fn ns(&self) -> String {
        if self.rt.namespaced {
            self.namespace.clone().unwrap_or_default()
        } else {
            String::new()
        }
    }

    fn status(&self) -> bool {
        self.subresource.as_deref() == Some("status")
    }
}

/// The outcome of a write, for the HTTP layer.
#[derive(Debug)]
pub struct Written {
    pub code: u16,
    pub object: Value,
    pub warnings: Vec<String>,
    /// The resourceVersion to announce to watches, if anything changed.
    pub changed: Option<u64>,
}

pub fn now() -> String {
    jiff::Timestamp::from_second(jiff::Timestamp::now().as_second())
        .map(|t| t.to_string())
        .unwrap_or_default()
}

fn meta(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = json!({});
    }
    match obj.get_mut("metadata").and_then(Value::as_object_mut) {
        Some(m) => m,
        None => unreachable_meta(),
    }
}

#[allow(clippy::panic)]
fn unreachable_meta() -> ! {
    // `meta` has just inserted an object; this cannot happen.
    panic!("metadata is an object")
}

fn meta_str<'a>(obj: &'a Value, key: &str) -> Option<&'a str> {
    obj.get("metadata")?.get(key)?.as_str()
}

/// Sets `apiVersion` and `kind` as the requested version spells them.
pub fn present(rt: &ResourceType, mut obj: Value) -> Value {
    if let Some(m) = obj.as_object_mut() {
        m.insert("apiVersion".into(), Value::String(rt.api_version()));
        m.insert("kind".into(), Value::String(rt.kind.clone()));
    }
    obj
}

fn not_found(t: &Target, name: &str) -> ApiError {
    ApiError::not_found(&t.rt.group, &t.rt.plural, name)
}

fn require_namespace(inner: &Inner, t: &Target) -> Result<(), ApiError> {
    if !t.rt.namespaced {
        return Ok(());
    }
    let ns = t.ns();
    if ns.is_empty() {
        return Err(ApiError::bad_request(
            "the server could not find the requested resource: a namespace is required",
        ));
    }
    if inner
        .store
        .get(
            &(String::new(), "namespaces".into()),
            &(String::new(), ns.clone()),
        )
        .is_none()
    {
        return Err(ApiError::not_found("", "namespaces", &ns));
    }
    Ok(())
}

fn field_allowed(rt: &ResourceType, path: &str) -> bool {
    path == "metadata.name"
        || path == "metadata.namespace"
        || rt.selectable_fields.iter().any(|f| f == path)
        || (!rt.is_custom()
            && matches!(
                (rt.kind.as_str(), path),
                ("Secret", "type")
                    | (
                        "Event",
                        "involvedObject.kind"
                            | "involvedObject.name"
                            | "involvedObject.namespace"
                            | "involvedObject.uid"
                            | "reason"
                            | "type"
                            | "regarding.name"
                            | "regarding.kind"
                    )
                    | ("Namespace", "status.phase")
            ))
}

/// Label and field selectors from the query.
pub fn selectors(
    rt: &ResourceType,
    params: &Params,
) -> Result<(LabelSelector, FieldSelector), ApiError> {
    let labels = LabelSelector::parse(params.get("labelSelector").unwrap_or(""))
        .map_err(ApiError::bad_request)?;
    let fields = FieldSelector::parse(params.get("fieldSelector").unwrap_or(""), &|p| {
        field_allowed(rt, p)
    })
    .map_err(ApiError::bad_request)?;
    Ok((labels, fields))
}

pub fn list(inner: &Inner, t: &Target, params: &Params) -> Result<Value, ApiError> {
    let (labels, fields) = selectors(&t.rt, params)?;
    let ns = if t.rt.namespaced {
        t.namespace.as_deref()
    } else {
        None
    };
    let items: Vec<Value> = inner
        .store
        .list(&t.rt.storage_key(), ns)
        .into_iter()
        .filter(|o| labels.matches(o) && fields.matches(o))
        .map(|o| present(&t.rt, o.clone()))
        .collect();
    Ok(json!({
        "kind": format!("{}List", t.rt.kind),
        "apiVersion": t.rt.api_version(),
        "metadata": {"resourceVersion": inner.store.current_rv().to_string()},
        "items": items,
    }))
}

pub fn get(inner: &Inner, t: &Target, name: &str) -> Result<Value, ApiError> {
    inner
        .store
        .get(&t.rt.storage_key(), &(t.ns(), name.to_string()))
        .map(|o| present(&t.rt, o.clone()))
        .ok_or_else(|| not_found(t, name))
}

/// How managedFields are maintained for a write.
pub enum Managed<'a> {
    /// An ordinary write by this manager.
    Update(Writer<'a>),
    /// Server-side apply already computed them.
    Applied,
}

fn random_suffix() -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    id.bytes()
        .take(5)
        .map(|b| ALPHABET[b as usize % ALPHABET.len()] as char)
        .collect()
}

pub fn create(
    inner: &mut Inner,
    t: &Target,
    mut body: Value,
    params: &Params,
    manager: &str,
) -> Result<Written, ApiError> {
    if !body.is_object() {
        return Err(ApiError::bad_request(
            "the request body must be a JSON object",
        ));
    }
    if let Some(kind) = body.get("kind").and_then(Value::as_str)
        && kind != t.rt.kind
    {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({}) does not match the expected API version ({}) or kind {kind:?} is not {:?}",
            body.get("apiVersion").and_then(Value::as_str).unwrap_or(""),
            t.rt.api_version(),
            t.rt.kind
        )));
    }
    require_namespace(inner, t)?;
    if t.rt.namespaced
        && let Some(ns) = meta_str(&body, "namespace")
        && ns != t.ns()
    {
        return Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        ));
    }
    let name = match (meta_str(&body, "name"), meta_str(&body, "generateName")) {
        (Some(n), _) if !n.is_empty() => n.to_string(),
        (_, Some(g)) if !g.is_empty() => format!("{g}{}", random_suffix()),
        _ => {
            return Err(ApiError::invalid(
                &t.rt.kind,
                &t.rt.group,
                "",
                &[Cause {
                    reason: "FieldValueRequired",
                    field: "metadata.name".into(),
                    message: "Required value: name or generateName is required".into(),
                }],
            ));
        }
    };
    let key = (t.ns(), name.clone());
    if inner.store.get(&t.rt.storage_key(), &key).is_some() {
        return Err(ApiError::already_exists(&t.rt.group, &t.rt.plural, &name));
    }
    {
        let m = meta(&mut body);
        m.insert("name".into(), json!(name));
        if t.rt.namespaced {
            m.insert("namespace".into(), json!(t.ns()));
        } else {
            m.remove("namespace");
        }
        m.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
        m.insert("creationTimestamp".into(), json!(now()));
        for server_owned in [
            "resourceVersion",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "managedFields",
            "generation",
            "selfLink",
        ] {
            m.remove(server_owned);
        }
    }
    if t.rt.status_subresource
        && (t.rt.is_custom() || t.rt.kind == "Namespace")
        && let Some(o) = body.as_object_mut()
    {
        o.remove("status");
    }
    let writer = Writer {
        manager,
        api_version: &t.rt.api_version(),
        subresource: None,
        now: &now(),
    };
    let body = present(&t.rt, body);
    commit(inner, t, &name, None, body, Managed::Update(writer), params)
}

/// Replaces an object (PUT), or its status (PUT .../status).
pub fn update(
    inner: &mut Inner,
    t: &Target,
    name: &str,
    body: Value,
    params: &Params,
    manager: &str,
) -> Result<Written, ApiError> {
    if !body.is_object() {
        return Err(ApiError::bad_request(
            "the request body must be a JSON object",
        ));
    }
    if let Some(n) = meta_str(&body, "name")
        && n != name
    {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({n}) does not match the name on the URL ({name})"
        )));
    }
    let old = inner
        .store
        .get(&t.rt.storage_key(), &(t.ns(), name.to_string()))
        .cloned()
        .ok_or_else(|| not_found(t, name))?;
    check_precondition(t, name, &body, &old)?;
    let api_version = t.rt.api_version();
    let now = now();
    let writer = Writer {
        manager,
        api_version: &api_version,
        subresource: t.subresource.as_deref(),
        now: &now,
    };
    let body = present(&t.rt, body);
    commit(
        inner,
        t,
        name,
        Some(&old),
        body,
        Managed::Update(writer),
        params,
    )
}

fn check_precondition(t: &Target, name: &str, body: &Value, old: &Value) -> Result<(), ApiError> {
    if let Some(rv) = meta_str(body, "resourceVersion")
        && Some(rv) != meta_str(old, "resourceVersion")
    {
        return Err(ApiError::conflict(&t.rt.group, &t.rt.plural, name));
    }
    Ok(())
}

/// PATCH with JSON patch, merge patch, strategic merge patch (built-in
/// kinds only, applied as a merge patch) or server-side apply.
pub fn patch(
    inner: &mut Inner,
    t: &Target,
    name: &str,
    content_type: &str,
    body: &[u8],
    params: &Params,
    default_manager: &str,
) -> Result<Written, ApiError> {
    let media = content_type.split(';').next().unwrap_or("").trim();
    let key = (t.ns(), name.to_string());
    let api_version = t.rt.api_version();
    let now = now();
    if media == "application/apply-patch+yaml" || media == "application/apply-patch+json" {
        let manager = params.get("fieldManager").ok_or_else(|| {
            ApiError::invalid(
                "PatchOptions",
                "meta.k8s.io",
                "",
                &[Cause {
                    reason: "FieldValueRequired",
                    field: "fieldManager".into(),
                    message: "Required value: is required for apply patch".into(),
                }],
            )
        })?;
        let applied: Value = serde_yaml::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?;
        if !applied.is_object() {
            return Err(ApiError::bad_request("an apply patch must be an object"));
        }
        if let Some(n) = meta_str(&applied, "name")
            && n != name
        {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({n}) does not match the name on the URL ({name})"
            )));
        }
        let existing = inner.store.get(&t.rt.storage_key(), &key).cloned();
        if existing.is_none() && t.status() {
            return Err(not_found(t, name));
        }
        if let Some(old) = &existing {
            check_precondition(t, name, &applied, old)?;
        }
        let writer = Writer {
            manager,
            api_version: &api_version,
            subresource: t.subresource.as_deref(),
            now: &now,
        };
        let schema = t.rt.schema.as_ref().map(|s| s.raw().clone());
        let mut applied = applied;
        if let Some(m) = applied.as_object_mut() {
            m.remove("apiVersion");
            m.remove("kind");
            if let Some(md) = m.get_mut("metadata").and_then(Value::as_object_mut) {
                for k in [
                    "name",
                    "namespace",
                    "resourceVersion",
                    "uid",
                    "managedFields",
                    "creationTimestamp",
                ] {
                    md.remove(k);
                }
                if md.is_empty() {
                    m.remove("metadata");
                }
            }
        }
        let base = match &existing {
            Some(o) => o.clone(),
            None => {
                require_namespace(inner, t)?;
                let mut fresh = json!({"metadata": {"name": name}});
                let m = meta(&mut fresh);
                if t.rt.namespaced {
                    m.insert("namespace".into(), json!(t.ns()));
                }
                m.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
                m.insert("creationTimestamp".into(), json!(now));
                fresh
            }
        };
        let merged = patch::server_side_apply(&base, &applied, &writer, params.flag("force"), schema.as_ref())
            .map_err(|conflicts| {
                let mut e = ApiError::new(409, "Conflict", patch::conflict_message(&conflicts));
                let causes: Vec<Value> = conflicts
                    .iter()
                    .map(|c| json!({"reason": "FieldManagerConflict", "message": format!("conflict with \"{}\" using {}", c.manager, c.api_version), "field": c.field}))
                    .collect();
                e.details = Some(json!({"name": name, "group": t.rt.group, "kind": t.rt.plural, "causes": causes}));
                e
            })?;
        let merged = present(&t.rt, merged);
        let mut written = commit(
            inner,
            t,
            name,
            existing.as_ref(),
            merged,
            Managed::Applied,
            params,
        )?;
        if existing.is_none() {
            written.code = 201;
        }
        return Ok(written);
    }

    let old = inner
        .store
        .get(&t.rt.storage_key(), &key)
        .cloned()
        .ok_or_else(|| not_found(t, name))?;
    let patch_doc: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
    let mut new = old.clone();
    match media {
        "application/json-patch+json" => patch::json_patch(&mut new, &patch_doc).map_err(|e| {
            ApiError::new(
                422,
                "Invalid",
                format!("the server rejected our request due to an error in our request: {e}"),
            )
        })?,
        "application/merge-patch+json" => {
            check_precondition(t, name, &patch_doc, &old)?;
            patch::merge_patch(&mut new, &patch_doc);
        }
        "application/strategic-merge-patch+json" if !t.rt.is_custom() => {
            check_precondition(t, name, &patch_doc, &old)?;
            patch::merge_patch(&mut new, &patch_doc);
        }
        other => return Err(ApiError::unsupported_media_type(other)),
    }
    let manager = params.get("fieldManager").unwrap_or(default_manager);
    let writer = Writer {
        manager,
        api_version: &api_version,
        subresource: t.subresource.as_deref(),
        now: &now,
    };
    commit(
        inner,
        t,
        name,
        Some(&old),
        new,
        Managed::Update(writer),
        params,
    )
}

/// Everything but `metadata` and `status`: what `generation` tracks.
fn spec_part(obj: &Value) -> Value {
    let mut v = obj.clone();
    if let Some(m) = v.as_object_mut() {
        for k in ["metadata", "status", "apiVersion", "kind"] {
            m.remove(k);
        }
    }
    v
}

/// The object as compared for no-op detection.
fn comparable(obj: &Value) -> Value {
    let mut v = obj.clone();
    if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("resourceVersion");
        if let Some(entries) = m.get_mut("managedFields").and_then(Value::as_array_mut) {
            for e in entries {
                if let Some(e) = e.as_object_mut() {
                    e.remove("time");
                }
            }
        }
    }
    if let Some(m) = v.as_object_mut() {
        m.remove("apiVersion");
    }
    v
}

fn fold_string_data(obj: &mut Value) {
    let Some(m) = obj.as_object_mut() else { return };
    let Some(Value::Object(string_data)) = m.remove("stringData") else {
        return;
    };
    let data = m.entry("data").or_insert_with(|| json!({}));
    if !data.is_object() {
        *data = json!({});
    }
    if let Some(d) = data.as_object_mut() {
        for (k, v) in string_data {
            let text = v
                .as_str()
                .map(String::from)
                .unwrap_or_else(|| v.to_string());
            d.insert(
                k,
                json!(base64::engine::general_purpose::STANDARD.encode(text)),
            );
        }
    }
}

/// The common tail of every write: server-owned metadata, the status
/// subresource split, validation, generation, managedFields, finalizers,
/// no-op detection, resourceVersion, storage and side effects.
pub fn commit(
    inner: &mut Inner,
    t: &Target,
    name: &str,
    old: Option<&Value>,
    mut new: Value,
    managed: Managed<'_>,
    params: &Params,
) -> Result<Written, ApiError> {
    let rt = &t.rt;
    if let Some(old) = old {
        // Status subresource: each endpoint writes only its own part.
        if rt.status_subresource {
            if t.status() {
                let status = new.get("status").cloned();
                let mut only_status = old.clone();
                match status {
                    Some(s) => only_status["status"] = s,
                    None => {
                        if let Some(o) = only_status.as_object_mut() {
                            o.remove("status");
                        }
                    }
                }
                if let Some(mf) = new.pointer("/metadata/managedFields").cloned() {
                    meta(&mut only_status).insert("managedFields".into(), mf);
                }
                new = only_status;
            } else {
                match old.get("status") {
                    Some(s) => new["status"] = s.clone(),
                    None => {
                        if let Some(o) = new.as_object_mut() {
                            o.remove("status");
                        }
                    }
                }
            }
        }
        let keep: Vec<(&str, Value)> = [
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
        ]
        .into_iter()
        .filter_map(|k| {
            old.get("metadata")
                .and_then(|m| m.get(k))
                .map(|v| (k, v.clone()))
        })
        .collect();
        let m = meta(&mut new);
        for k in [
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
        ] {
            m.remove(k);
        }
        for (k, v) in keep {
            m.insert(k.into(), v);
        }
        if old.pointer("/metadata/deletionTimestamp").is_some() {
            // New finalizers cannot be added once deletion started.
            let before: Vec<Value> = old
                .pointer("/metadata/finalizers")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let after: Vec<Value> = new
                .pointer("/metadata/finalizers")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            if after.iter().any(|f| !before.contains(f)) {
                return Err(ApiError::invalid(
                    &rt.kind,
                    &rt.group,
                    name,
                    &[Cause {
                        reason: "FieldValueForbidden",
                        field: "metadata.finalizers".into(),
                        message: "Forbidden: no new finalizers can be added if the object is being deleted".into(),
                    }],
                ));
            }
        }
    }
    {
        let m = meta(&mut new);
        m.insert("name".into(), json!(name));
        if rt.namespaced {
            m.insert("namespace".into(), json!(t.ns()));
        }
    }
    if rt.kind == "Secret" && rt.group.is_empty() {
        fold_string_data(&mut new);
    }

    let mut warnings = Vec::new();
    if let Some(schema) = &rt.schema {
        let mode = FieldValidation::parse(params.get("fieldValidation"));
        match schema.validate(&mut new, old, mode) {
            Outcome::Valid { warnings: w } => warnings = w,
            Outcome::UnknownFields(fields) => {
                let list: Vec<String> = fields
                    .iter()
                    .map(|f| format!("unknown field \"{f}\""))
                    .collect();
                return Err(ApiError::bad_request(format!(
                    "strict decoding error: {}",
                    list.join(", ")
                )));
            }
            Outcome::Invalid(causes) => {
                return Err(ApiError::invalid(&rt.kind, &rt.group, name, &causes));
            }
        }
    }
    if rt.kind == "CustomResourceDefinition" && rt.group == "apiextensions.k8s.io" {
        prepare_crd(inner, &mut new, name)?;
    }

    let tracks_generation = rt.is_custom() || rt.status_subresource;
    if tracks_generation {
        let generation = match old {
            None => 1,
            Some(o) => {
                let g = o
                    .pointer("/metadata/generation")
                    .and_then(Value::as_i64)
                    .unwrap_or(1);
                if spec_part(o) != spec_part(&new) {
                    g + 1
                } else {
                    g
                }
            }
        };
        meta(&mut new).insert("generation".into(), json!(generation));
    }
    if rt.kind == "Namespace" && rt.group.is_empty() && new.pointer("/status/phase").is_none() {
        new["status"] = json!({"phase": "Active"});
    }
    if let Managed::Update(writer) = &managed {
        let schema = rt.schema.as_ref().map(|s| s.raw().clone());
        let empty = json!({"metadata": {}});
        let mut tracked = new.clone();
        patch::record_update(old.unwrap_or(&empty), &mut tracked, writer, schema.as_ref());
        new = tracked;
    }
    let new = present(rt, new);

    if let Some(old) = old
        && comparable(old) == comparable(&new)
    {
        return Ok(Written {
            code: 200,
            object: present(rt, old.clone()),
            warnings,
            changed: None,
        });
    }
    if params.dry_run() {
        return Ok(Written {
            code: if old.is_some() { 200 } else { 201 },
            object: new,
            warnings,
            changed: None,
        });
    }
    let key = (t.ns(), name.to_string());
    let finalizers_empty = new
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_none_or(Vec::is_empty);
    if new.pointer("/metadata/deletionTimestamp").is_some() && finalizers_empty {
        let mut new = new;
        let rv = inner.store.next_rv();
        meta(&mut new).insert("resourceVersion".into(), json!(rv.to_string()));
        inner.store.put(&rt.storage_key(), key.clone(), new, rv);
        let removed = inner
            .store
            .remove(&rt.storage_key(), &key)
            .unwrap_or(Value::Null);
        after_delete(inner, rt, name);
        let changed = Some(inner.store.current_rv());
        return Ok(Written {
            code: 200,
            object: present(rt, removed),
            warnings,
            changed,
        });
    }
    let mut new = new;
    let rv = inner.store.next_rv();
    meta(&mut new).insert("resourceVersion".into(), json!(rv.to_string()));
    inner.store.put(&rt.storage_key(), key, new.clone(), rv);
    if rt.kind == "CustomResourceDefinition" && rt.group == "apiextensions.k8s.io" {
        register_crd(inner, &new, name);
    }
    Ok(Written {
        code: if old.is_some() { 200 } else { 201 },
        object: new,
        warnings,
        changed: Some(rv),
    })
}

/// Checks a CRD and fills in the status a real API server reports once
/// the names are accepted and the type is served.
fn prepare_crd(inner: &Inner, crd: &mut Value, name: &str) -> Result<(), ApiError> {
    let types = types_from_crd(crd).map_err(|message| {
        let (field, msg) = message
            .split_once(": ")
            .unwrap_or(("spec", message.as_str()));
        ApiError::invalid(
            "CustomResourceDefinition",
            "apiextensions.k8s.io",
            name,
            &[Cause {
                reason: "FieldValueInvalid",
                field: field.to_string(),
                message: msg.to_string(),
            }],
        )
    })?;
    if let Some(first) = types.first()
        && let Some(existing) = inner
            .registry
            .find_group_resource(&first.group, &first.plural)
        && existing.crd.as_deref() != Some(name)
    {
        return Err(ApiError::bad_request(format!(
            "{} is already served",
            existing.qualified()
        )));
    }
    let now = now();
    let keep_time = |t: &str| {
        crd.pointer("/status/conditions")
            .and_then(Value::as_array)
            .and_then(|c| {
                c.iter()
                    .find(|c| c.get("type").and_then(Value::as_str) == Some(t))
            })
            .and_then(|c| c.get("lastTransitionTime").cloned())
            .unwrap_or_else(|| json!(now))
    };
    let stored: Vec<Value> = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .map(|v| {
            v.iter()
                .filter(|x| x.get("storage").and_then(Value::as_bool) == Some(true))
                .filter_map(|x| x.get("name").cloned())
                .collect()
        })
        .unwrap_or_default();
    let status = json!({
        "conditions": [
            {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found", "lastTransitionTime": keep_time("NamesAccepted")},
            {"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": "the initial names have been accepted", "lastTransitionTime": keep_time("Established")}
        ],
        "acceptedNames": crd.pointer("/spec/names").cloned().unwrap_or(json!({})),
        "storedVersions": stored,
    });
    crd["status"] = status;
    Ok(())
}

fn register_crd(inner: &mut Inner, crd: &Value, name: &str) {
    if let Ok(types) = types_from_crd(crd) {
        inner.registry.set_crd_types(name, types);
    }
}

fn after_delete(inner: &mut Inner, rt: &ResourceType, name: &str) {
    if rt.kind == "CustomResourceDefinition" && rt.group == "apiextensions.k8s.io" {
        let served: Vec<(String, String)> = inner
            .registry
            .types()
            .iter()
            .filter(|t| t.crd.as_deref() == Some(name))
            .map(ResourceType::storage_key)
            .collect();
        inner.registry.remove_crd(name);
        for key in served {
            inner.store.remove_type(&key);
        }
    }
    if rt.kind == "Namespace" && rt.group.is_empty() {
        for (type_key, key) in inner.store.keys_in_namespace(name) {
            inner.store.remove(&type_key, &key);
        }
    }
}

/// DELETE of one object: with finalizers it only gets a deletionTimestamp.
pub fn delete(
    inner: &mut Inner,
    t: &Target,
    name: &str,
    options: &Value,
    params: &Params,
) -> Result<Written, ApiError> {
    let key = (t.ns(), name.to_string());
    let old = inner
        .store
        .get(&t.rt.storage_key(), &key)
        .cloned()
        .ok_or_else(|| not_found(t, name))?;
    if let Some(pre) = options.get("preconditions") {
        let mismatch = |field: &str| {
            pre.get(field)
                .and_then(Value::as_str)
                .is_some_and(|want| Some(want) != meta_str(&old, field))
        };
        if mismatch("uid") || mismatch("resourceVersion") {
            return Err(ApiError::conflict(&t.rt.group, &t.rt.plural, name));
        }
    }
    if params.dry_run()
        || options
            .get("dryRun")
            .is_some_and(|d| d.as_array().is_some_and(|a| !a.is_empty()))
    {
        return Ok(Written {
            code: 200,
            object: present(&t.rt, old),
            warnings: Vec::new(),
            changed: None,
        });
    }
    let has_finalizers = old
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_some_and(|f| !f.is_empty());
    if has_finalizers {
        if old.pointer("/metadata/deletionTimestamp").is_some() {
            return Ok(Written {
                code: 202,
                object: present(&t.rt, old),
                warnings: Vec::new(),
                changed: None,
            });
        }
        let mut marked = old.clone();
        let m = meta(&mut marked);
        m.insert("deletionTimestamp".into(), json!(now()));
        m.insert("deletionGracePeriodSeconds".into(), json!(0));
        let rv = inner.store.next_rv();
        meta(&mut marked).insert("resourceVersion".into(), json!(rv.to_string()));
        inner
            .store
            .put(&t.rt.storage_key(), key, marked.clone(), rv);
        return Ok(Written {
            code: 202,
            object: present(&t.rt, marked),
            warnings: Vec::new(),
            changed: Some(rv),
        });
    }
    let removed = inner.store.remove(&t.rt.storage_key(), &key).unwrap_or(old);
    after_delete(inner, &t.rt, name);
    Ok(Written {
        code: 200,
        object: present(&t.rt, removed),
        warnings: Vec::new(),
        changed: Some(inner.store.current_rv()),
    })
}

/// DELETE of a collection, honouring selectors.
pub fn delete_collection(
    inner: &mut Inner,
    t: &Target,
    params: &Params,
) -> Result<Written, ApiError> {
    let listed = list(inner, t, params)?;
    let names: Vec<String> = listed["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|o| meta_str(o, "name").map(String::from))
                .collect()
        })
        .unwrap_or_default();
    let mut changed = None;
    for name in names {
        let w = delete(inner, t, &name, &Value::Null, params)?;
        changed = w.changed.or(changed);
    }
    let mut status = listed;
    status["metadata"] = json!({"resourceVersion": inner.store.current_rv().to_string()});
    status["items"] = json!([]);
    Ok(Written {
        code: 200,
        object: status,
        warnings: Vec::new(),
        changed,
    })
}
