//! The committed CRD manifests are exactly what the Rust types generate,
//! and their CEL rules say what the docs promise.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use kube::CustomResourceExt;
use palisade_crds::{AIPolicy, Approval, ToolGrant, manifests::crd_manifests};
use serde_json::json;
use std::path::Path;

#[test]
fn committed_crd_manifests_match_the_rust_types() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for dir in ["crds", "charts/palisade/crds"] {
        for (file, expected) in crd_manifests().unwrap() {
            let path = root.join(dir).join(&file);
            let committed = std::fs::read_to_string(&path).unwrap_or_else(|e| {
                panic!(
                    "{dir}/{file} is missing ({e}); run `cargo run -p palisade-crds --bin crdgen`"
                )
            });
            assert!(
                committed == expected,
                "{dir}/{file} differs from the Rust types; run `cargo run -p palisade-crds --bin crdgen` and commit the result"
            );
        }
    }
}

#[test]
fn every_kind_is_served_at_the_api_version_manifests_are_written_with() {
    use kube::Resource;
    assert_eq!(
        [
            AIPolicy::api_version(&()),
            ToolGrant::api_version(&()),
            Approval::api_version(&()),
        ],
        [palisade_crds::resources::API_VERSION; 3]
    );
}

#[test]
fn crds_have_the_short_names_and_printer_columns_people_use() {
    let aip = AIPolicy::crd();
    assert_eq!(aip.spec.names.short_names, Some(vec!["aip".to_string()]));
    let columns = |crd: &k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition| {
        crd.spec.versions[0]
            .additional_printer_columns
            .iter()
            .flatten()
            .map(|c| c.name.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        columns(&aip),
        [
            "Enforcement",
            "Suspended",
            "Agents",
            "Ready",
            "Gateways",
            "Served",
            "Age"
        ]
    );
    assert_eq!(
        columns(&ToolGrant::crd()),
        ["Agent", "Tools", "Action", "Expires", "State"]
    );
    assert_eq!(
        columns(&Approval::crd()),
        ["Agent", "Tool", "Phase", "Decided-By", "Expires", "Age"]
    );
    assert_eq!(
        ToolGrant::crd().spec.names.short_names,
        Some(vec!["tg".to_string()])
    );
    assert_eq!(
        Approval::crd().spec.names.short_names,
        Some(vec!["appr".to_string()])
    );
    for crd in [aip, ToolGrant::crd(), Approval::crd()] {
        assert_eq!(crd.spec.scope, "Namespaced");
        assert!(
            crd.spec.versions[0]
                .subresources
                .as_ref()
                .unwrap()
                .status
                .is_some()
        );
    }
}

fn schema_of(
    crd: k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
) -> serde_json::Value {
    serde_json::to_value(
        crd.spec.versions[0]
            .schema
            .as_ref()
            .unwrap()
            .open_api_v3_schema
            .as_ref()
            .unwrap(),
    )
    .unwrap()
}

fn validate(
    schema: &serde_json::Value,
    object: serde_json::Value,
    old: Option<serde_json::Value>,
) -> Result<(), String> {
    kube::core::cel::Validator::new()
        .validate(schema, &object, old.as_ref())
        .map_err(|e| format!("{e:?}"))
}

fn policy(routing: serde_json::Value) -> serde_json::Value {
    json!({
        "apiVersion": "palisade.dev/v1alpha1", "kind": "AIPolicy",
        "metadata": {"name": "p", "namespace": "clinic"},
        "spec": {
            "agents": [{"name": "intake", "serviceAccount": "intake"}],
            "providers": [{"name": "local", "type": "ollama", "baseUrl": "http://ollama:11434"}],
            "routing": routing
        }
    })
}

#[test]
fn the_aipolicy_cel_rules_reject_routes_to_undefined_providers() {
    let schema = schema_of(AIPolicy::crd());
    validate(&schema, policy(json!({"defaultProvider": "local", "rules": [{"keywords": ["x"], "provider": "local"}]})), None).unwrap();
    let err = validate(&schema, policy(json!({"defaultProvider": "local", "rules": [{"keywords": ["x"], "provider": "on-prem"}]})), None).unwrap_err();
    assert!(
        err.contains("every spec.routing.rules[].provider must name one of spec.providers"),
        "{err}"
    );
    let err = validate(&schema, policy(json!({"defaultProvider": "cloud"})), None).unwrap_err();
    assert!(
        err.contains("spec.routing.defaultProvider must name one of spec.providers"),
        "{err}"
    );
    let err = validate(
        &schema,
        policy(json!({"defaultProvider": "local", "rules": [{"provider": "local"}]})),
        None,
    )
    .unwrap_err();
    assert!(
        err.contains("a routing rule needs at least one criterion"),
        "{err}"
    );
}

#[test]
fn the_aipolicy_cel_rules_require_an_identity_for_every_agent() {
    let schema = schema_of(AIPolicy::crd());
    let mut p = policy(json!({"defaultProvider": "local"}));
    p["spec"]["agents"] = json!([{"name": "ghost"}]);
    let err = validate(&schema, p, None).unwrap_err();
    assert!(err.contains("an agent needs an identity"), "{err}");
}

fn approval(decision: Option<&str>, reason: Option<&str>) -> serde_json::Value {
    let mut spec = json!({
        "agent": "intake", "tool": "send_email",
        "argumentsPreview": "{\n  \"to\": \"x\"\n}", "argumentsTruncated": false,
        "argumentsDigest": format!("sha256:{}", "a".repeat(64)),
        "requestId": "req-1", "policy": "clinic-assistant", "policyGeneration": 1,
        "requestedAt": "2026-11-22T12:00:00Z", "expiresAt": "2026-11-22T12:30:00Z"
    });
    if let Some(d) = decision {
        spec["decision"] = json!(d);
    }
    if let Some(r) = reason {
        spec["reason"] = json!(r);
    }
    json!({"apiVersion": "palisade.dev/v1alpha1", "kind": "Approval", "metadata": {"name": "a", "namespace": "clinic"}, "spec": spec})
}

#[test]
fn an_approval_decision_is_final_once_made() {
    let schema = schema_of(Approval::crd());
    validate(&schema, approval(None, None), None).unwrap();
    validate(
        &schema,
        approval(Some("Approved"), Some("ok")),
        Some(approval(None, None)),
    )
    .unwrap();
    let err = validate(
        &schema,
        approval(Some("Denied"), Some("ok")),
        Some(approval(Some("Approved"), Some("ok"))),
    )
    .unwrap_err();
    assert!(err.contains("spec.decision is final once made"), "{err}");
    let err = validate(
        &schema,
        approval(None, None),
        Some(approval(Some("Approved"), None)),
    )
    .unwrap_err();
    assert!(err.contains("spec.decision is final once made"), "{err}");
    let err = validate(
        &schema,
        approval(Some("Approved"), Some("changed")),
        Some(approval(Some("Approved"), Some("ok"))),
    )
    .unwrap_err();
    assert!(err.contains("spec.reason cannot change"), "{err}");
}

#[test]
fn an_approvals_request_cannot_be_rewritten_and_must_expire_after_it_was_made() {
    let schema = schema_of(Approval::crd());
    let mut other_tool = approval(Some("Approved"), None);
    other_tool["spec"]["tool"] = json!("bulk_export");
    let err = validate(&schema, other_tool, Some(approval(None, None))).unwrap_err();
    assert!(
        err.contains("the request an Approval describes cannot change"),
        "{err}"
    );
    let mut backwards = approval(None, None);
    backwards["spec"]["expiresAt"] = json!("2026-11-22T11:00:00Z");
    let err = validate(&schema, backwards, None).unwrap_err();
    assert!(
        err.contains("spec.expiresAt must be after spec.requestedAt"),
        "{err}"
    );
}

#[test]
fn what_an_approval_shows_and_what_it_is_bound_to_cannot_change_after_creation() {
    let schema = schema_of(Approval::crd());
    let mut old = approval(None, None);
    old["spec"]["rule"] = json!("email-needs-a-human");
    let decided = || {
        let mut a = old.clone();
        a["spec"]["decision"] = json!("Approved");
        a
    };
    validate(&schema, decided(), Some(old.clone())).unwrap();
    let shows = "what an Approval shows of the arguments cannot change";
    let bound = "the request an Approval describes cannot change";
    for (field, value, why) in [
        (
            "argumentsPreview",
            json!("{\"to\": \"someone-else\"}"),
            shows,
        ),
        ("argumentsTruncated", json!(true), shows),
        ("arguments", json!({"to": "someone-else"}), shows),
        (
            "argumentsDigest",
            json!(format!("sha256:{}", "b".repeat(64))),
            bound,
        ),
        ("policyGeneration", json!(2), bound),
        ("rule", json!("another-rule"), bound),
    ] {
        let mut changed = decided();
        changed["spec"][field] = value;
        let err = validate(&schema, changed, Some(old.clone())).unwrap_err();
        assert!(err.contains(why), "{field}: {err}");
    }
    let mut removed = decided();
    removed["spec"].as_object_mut().unwrap().remove("rule");
    let err = validate(&schema, removed, Some(old.clone())).unwrap_err();
    assert!(err.contains(bound), "{err}");
}
