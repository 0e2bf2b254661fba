//! The chart's RBAC against what the binaries really ask the API server
//! for. The operator (with leader election and a short approval retention)
//! and two gateways run as their chart ServiceAccounts through every flow —
//! compile, status, Events, kill switch, approvals created / watched /
//! consumed / expired / collected, TokenReview — and kube-sim's access log
//! is checked against the rendered default chart: every request must be
//! allowed by the ServiceAccount's rules (nothing missing), and every rule
//! must have been used (nothing unused), except the few listed with why.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use palisade_e2e::{GATEWAY_USER, Harness, INTAKE_TOKEN, OPERATOR_USER, Options, SYSTEM_NS};
use palisade_kube_sim::Access;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

/// Rules a flow needs on a real cluster that kube-sim's log cannot show.
const NOT_OBSERVABLE: &[(&str, &str, &str, &str)] = &[
    // Server-side apply of an object that does not exist yet is also
    // authorized as `create` on a real API server (kube-sim logs a patch).
    ("operator", "create", "", "secrets"),
    ("gateway", "create", "coordination.k8s.io", "leases"),
    // kube-runtime's recorder patches an Event when it repeats (a series).
    ("operator", "patch", "events.k8s.io", "events"),
];

/// One RBAC rule with where it applies (`None`: every namespace).
#[derive(Debug)]
struct Grant {
    namespace: Option<String>,
    groups: Vec<String>,
    resources: Vec<String>,
    verbs: Vec<String>,
    names: Vec<String>,
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| a.iter().map(|s| s.as_str().unwrap().to_owned()).collect())
        .unwrap_or_default()
}

/// The rules the chart grants to ServiceAccount `sa` of the release.
fn grants(docs: &[Value], sa: &str) -> Vec<Grant> {
    let role = |kind: &str, name: &str, ns: Option<&str>| {
        docs.iter()
            .find(|d| {
                d["kind"] == kind
                    && d["metadata"]["name"] == name
                    && (ns.is_none() || d["metadata"]["namespace"].as_str() == ns)
            })
            .unwrap_or_else(|| panic!("{kind} {name} is bound but not rendered"))
    };
    let mut out = Vec::new();
    for b in docs
        .iter()
        .filter(|d| d["kind"] == "ClusterRoleBinding" || d["kind"] == "RoleBinding")
    {
        let bound = b["subjects"].as_array().unwrap().iter().any(|s| {
            s["kind"] == "ServiceAccount" && s["name"] == sa && s["namespace"] == SYSTEM_NS
        });
        if !bound {
            continue;
        }
        let binding_ns = b["metadata"]["namespace"].as_str();
        let kind = b["roleRef"]["kind"].as_str().unwrap();
        let name = b["roleRef"]["name"].as_str().unwrap();
        let r = role(kind, name, if kind == "Role" { binding_ns } else { None });
        for rule in r["rules"].as_array().unwrap() {
            out.push(Grant {
                namespace: if b["kind"] == "RoleBinding" {
                    binding_ns.map(String::from)
                } else {
                    None
                },
                groups: strings(&rule["apiGroups"]),
                resources: strings(&rule["resources"]),
                verbs: strings(&rule["verbs"]),
                names: strings(&rule["resourceNames"]),
            });
        }
    }
    out
}

fn allows(g: &Grant, a: &Access) -> bool {
    (g.namespace.is_none() || g.namespace == a.namespace)
        && g.groups.contains(&a.group)
        && g.resources.contains(&a.resource)
        && g.verbs.contains(&a.verb)
        && (g.names.is_empty()
            || a.verb != "create" && a.name.as_ref().is_some_and(|n| g.names.contains(n)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_charts_rbac_is_exactly_what_the_binaries_use() {
    let h = Harness::start_with(
        "rbac",
        Options {
            leader_election: true,
            approval_retention: "1s",
        },
    )
    .await;
    // Approvals: held, long-polled, approved, consumed, replayed, denied;
    // then collected after the retention.
    let call = json!({"tool": "send_email", "arguments": {"to": "a@clinic.example"}});
    let (status, held) = h.tool_call(0, INTAKE_TOKEN, &call).await;
    assert_eq!(status, 202, "{held}");
    let name = held["approval"]["name"].as_str().unwrap().to_string();
    let (status, _) = h
        .get(1, INTAKE_TOKEN, &format!("/v1/approvals/{name}?wait=1s"))
        .await;
    assert_eq!(status, 200);
    h.kubectl_ok(&[
        "patch",
        "approval",
        &name,
        "-n",
        "clinic",
        "--type=merge",
        "-p",
        r#"{"spec":{"decision":"Approved","reason":"ok","decidedBy":"alice"}}"#,
    ]);
    let mut using = call.clone();
    using["approval"] = json!(name);
    let (status, _) = h.tool_call(0, INTAKE_TOKEN, &using).await;
    assert_eq!(status, 200);
    let (status, _) = h.tool_call(1, INTAKE_TOKEN, &using).await;
    assert_eq!(status, 403);
    // A kill switch flip (the operator rewrites the Secret, gateways apply).
    h.patch_policy("merge", r#"{"spec":{"suspend":true}}"#);
    h.until(
        "the kill switch lands",
        Duration::from_secs(5),
        async || {
            let (status, _) = h
                .tool_call(1, INTAKE_TOKEN, &json!({"tool": "calendar_read"}))
                .await;
            (status == 403).then_some(())
        },
    )
    .await;
    h.until(
        "the approval is collected",
        Duration::from_secs(15),
        async || {
            let out = h.kubectl_ok(&["get", "approvals", "-n", "clinic", "-o", "name"]);
            out.trim().is_empty().then_some(())
        },
    )
    .await;

    // The leader renews its Lease every 5 s (get + update).
    h.until(
        "the leader renews its Lease",
        Duration::from_secs(12),
        async || {
            h.sim
                .access_log()
                .iter()
                .any(|a| a.user == OPERATOR_USER && a.verb == "update" && a.resource == "leases")
                .then_some(())
        },
    )
    .await;

    let venv = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("helm-venv");
    let rendered = tokio::task::spawn_blocking(move || palisade_e2e::render_chart(&venv))
        .await
        .unwrap();
    let docs = palisade_e2e::rendered_documents(&rendered["cases"]["default"]);
    let log = h.sim.access_log();
    for (component, user, sa) in [
        ("operator", OPERATOR_USER, "palisade-operator"),
        ("gateway", GATEWAY_USER, "palisade-gateway"),
    ] {
        let rules = grants(&docs, sa);
        let used: BTreeSet<&Access> = log.iter().filter(|a| a.user == user).collect();
        assert!(!used.is_empty(), "{component} made no requests as {user}");
        let missing: Vec<String> = used
            .iter()
            .filter(|a| !rules.iter().any(|g| allows(g, a)))
            .map(|a| {
                format!(
                    "{} {}/{} ns={:?} name={:?}",
                    a.verb, a.group, a.resource, a.namespace, a.name
                )
            })
            .collect();
        assert!(
            missing.is_empty(),
            "{component} needs what the chart does not grant:\n{}",
            missing.join("\n")
        );
        let mut unused = Vec::new();
        for g in &rules {
            for group in &g.groups {
                for resource in &g.resources {
                    for verb in &g.verbs {
                        let hit = used.iter().any(|a| {
                            &a.group == group
                                && &a.resource == resource
                                && &a.verb == verb
                                && (g.namespace.is_none() || g.namespace == a.namespace)
                        });
                        let excused = NOT_OBSERVABLE.contains(&(
                            component,
                            verb.as_str(),
                            group.as_str(),
                            resource.as_str(),
                        ));
                        if !hit && !excused {
                            unused
                                .push(format!("{verb} {group}/{resource} (ns {:?})", g.namespace));
                        }
                    }
                }
            }
        }
        assert!(
            unused.is_empty(),
            "the chart grants {component} what it never uses:\n{}",
            unused.join("\n")
        );
    }
}
