//! The Helm chart rendered and linted with the real Helm v4 library
//! (PyPI `helm-python-sdk`, installed into a virtualenv under `target/`):
//! the approval guard rails render as shipped — the same CEL that
//! `crds/tests/admission.rs` evaluates — and follow their values.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::Value;
use std::path::PathBuf;

fn render() -> Value {
    let venv = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("helm-venv");
    let python =
        palisade_fake_upstreams::python::python_with(&venv, "helm-python-sdk>=0.2", "helm_python");
    let out = std::process::Command::new(python)
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/chart/render.py"))
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../charts/palisade"
        ))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Every rendered document of a case.
fn documents(case: &Value) -> Vec<Value> {
    case.as_object()
        .unwrap()
        .values()
        .flat_map(|manifest| {
            serde_yaml::Deserializer::from_str(manifest.as_str().unwrap())
                .map(|d| serde::Deserialize::deserialize(d).unwrap())
                .filter(|v: &Value| !v.is_null())
                .collect::<Vec<_>>()
        })
        .collect()
}

fn kinds(docs: &[Value]) -> Vec<String> {
    let mut k: Vec<String> = docs
        .iter()
        .map(|d| d["kind"].as_str().unwrap().to_owned())
        .collect();
    k.sort();
    k
}

/// The template as the CEL tests read it: directives removed.
fn template_documents() -> Vec<Value> {
    let text = include_str!("../../../charts/palisade/templates/approval-admission.yaml");
    let mut plain = String::new();
    let mut rest = text;
    while let Some(open) = rest.find("{{") {
        plain.push_str(&rest[..open]);
        rest = &rest[open + rest[open..].find("}}").unwrap() + 2..];
    }
    plain.push_str(rest);
    serde_yaml::Deserializer::from_str(&plain)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .filter(|v: &Value| !v.is_null())
        .collect()
}

#[test]
fn the_approval_guard_rails_render_as_tested_and_follow_their_values() {
    let out = render();
    let lint = &out["lint"];
    assert!(
        lint["errors"].as_array().unwrap().is_empty(),
        "helm lint: {lint}"
    );
    assert!(
        lint["messages"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["severity"].as_i64() < Some(2)),
        "helm lint warnings: {lint}"
    );

    let default = documents(&out["cases"]["default"]);
    assert_eq!(
        kinds(&default),
        [
            "ClusterRole",
            "MutatingAdmissionPolicy",
            "MutatingAdmissionPolicyBinding",
            "ValidatingAdmissionPolicy",
            "ValidatingAdmissionPolicyBinding"
        ]
    );
    // What Helm renders is exactly what the CEL tests evaluated.
    let tested = template_documents();
    for kind in [
        "ValidatingAdmissionPolicy",
        "MutatingAdmissionPolicy",
        "ClusterRole",
    ] {
        let rendered = default.iter().find(|d| d["kind"] == kind).unwrap();
        let raw = tested.iter().find(|d| d["kind"] == kind).unwrap();
        assert_eq!(
            rendered, raw,
            "{kind} renders differently from the tested template"
        );
    }
    let binding = default
        .iter()
        .find(|d| d["kind"] == "ValidatingAdmissionPolicyBinding")
        .unwrap();
    assert_eq!(binding["spec"]["validationActions"][0], "Deny");

    assert_eq!(
        kinds(&documents(&out["cases"]["no_mutating_policy"])),
        [
            "ClusterRole",
            "ValidatingAdmissionPolicy",
            "ValidatingAdmissionPolicyBinding"
        ]
    );
    assert_eq!(
        kinds(&documents(&out["cases"]["no_admission"])),
        ["ClusterRole"]
    );
}
