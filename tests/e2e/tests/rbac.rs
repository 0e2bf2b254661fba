//! The chart's RBAC against what the binaries really ask the API server
//! for. The chart is installed into the real API server; the operator (with
//! leader election and a short approval retention) and two gateways run
//! with tokens of the chart's ServiceAccounts through every flow — compile,
//! status, Events, kill switch, approvals created / watched / consumed /
//! expired / collected, TokenReview, a security alert's Event and the
//! quarantine it imposes — so a
//! permission the chart forgot
//! fails the flow. Then the API server's audit log is checked against the
//! rendered default chart: no request of theirs was refused, every rule was
//! used (nothing granted for nothing, except the few listed with why), and
//! what must not be granted is refused.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use palisade_e2e::{GATEWAY_USER, Harness, OPERATOR_USER, Options, SYSTEM_NS};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

/// Rules a flow needs that the audit log cannot show.
const NOT_OBSERVABLE: &[(&str, &str, &str, &str)] = &[
    // Server-side apply of an object that does not exist yet is also
    // authorized as `create` (the audit log records the patch).
    ("operator", "create", "", "secrets"),
    ("gateway", "create", "coordination.k8s.io", "leases"),
    // kube-runtime's recorder patches an Event when it repeats (a series).
    ("operator", "patch", "events.k8s.io", "events"),
    ("gateway", "patch", "events.k8s.io", "events"),
];

/// One request from the API server's audit log.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Access {
    user: String,
    verb: String,
    group: String,
    /// `resource` or `resource/subresource`.
    resource: String,
    namespace: Option<String>,
    name: Option<String>,
    code: u64,
}

fn accesses(h: &Harness) -> Vec<Access> {
    let s = |v: &Value| v.as_str().map(String::from);
    h.cp.audit_log()
        .iter()
        .filter(|e| e["objectRef"]["resource"].is_string())
        .map(|e| {
            let o = &e["objectRef"];
            let resource = s(&o["resource"]).unwrap();
            Access {
                user: s(&e["user"]["username"]).unwrap_or_default(),
                verb: s(&e["verb"]).unwrap_or_default(),
                group: s(&o["apiGroup"]).unwrap_or_default(),
                resource: match s(&o["subresource"]) {
                    Some(sub) => format!("{resource}/{sub}"),
                    None => resource,
                },
                namespace: s(&o["namespace"]),
                name: s(&o["name"]),
                code: e["responseStatus"]["code"].as_u64().unwrap_or(0),
            }
        })
        .collect()
}

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
            ..Options::default()
        },
    )
    .await;
    // Approvals: held, long-polled, approved, consumed, replayed, denied;
    // then collected after the retention.
    let call = json!({"tool": "send_email", "arguments": {"to": "a@clinic.example"}});
    let (status, held) = h.tool_call(0, &h.intake, &call).await;
    assert_eq!(status, 202, "{held}");
    let name = held["approval"]["name"].as_str().unwrap().to_string();
    let (status, _) = h
        .get(1, &h.intake, &format!("/v1/approvals/{name}?wait=1s"))
        .await;
    assert_eq!(status, 200);
    h.cp.kubectl_ok(
        palisade_e2e::User::Approver,
        &[
            "patch",
            "approval",
            &name,
            "-n",
            "clinic",
            "--type=merge",
            "-p",
            r#"{"spec":{"decision":"Approved","reason":"ok"}}"#,
        ],
    );
    let mut using = call.clone();
    using["approval"] = json!(name);
    let (status, _) = h.tool_call(0, &h.intake, &using).await;
    assert_eq!(status, 200);
    let (status, _) = h.tool_call(1, &h.intake, &using).await;
    assert_eq!(status, 403);
    // A security alert: an Event on the policy, from the gateway; with
    // quarantineOn, the agent's quarantine (an annotation on the policy).
    let served = async |i: usize| {
        let (_, ready) = h.get(i, palisade_e2e::AUDITOR_TOKEN, "/readyz").await;
        ready["revision"].as_str().unwrap_or_default().to_owned()
    };
    let before = served(0).await;
    h.patch_policy(
        "merge",
        r#"{"spec":{"security":{"quarantineOn":["path_traversal"]}}}"#,
    );
    h.until("quarantineOn served", Duration::from_secs(10), async || {
        (served(0).await != before).then_some(())
    })
    .await;
    let (status, _) = h
        .tool_call(
            0,
            &h.intake,
            &json!({"tool": "calendar_read", "arguments": {"path": "../../etc/passwd"}}),
        )
        .await;
    assert_eq!(status, 200);
    h.until("the alert's Event", Duration::from_secs(10), async || {
        let out = h.kubectl_ok(&[
            "get",
            "events",
            "-n",
            "clinic",
            "--field-selector",
            "reason=SecurityAlert",
            "-o",
            "name",
        ]);
        (!out.trim().is_empty()).then_some(())
    })
    .await;
    h.until("the quarantine", Duration::from_secs(10), async || {
        let q = h.policy_field("{.status.quarantined[0].agent}");
        (q == "intake").then_some(())
    })
    .await;
    // A kill switch flip (the operator rewrites the Secret, gateways apply),
    // seen by the agent that is not quarantined.
    h.patch_policy("merge", r#"{"spec":{"suspend":true}}"#);
    h.until(
        "the kill switch lands",
        Duration::from_secs(5),
        async || {
            let (status, _) = h
                .tool_call(1, &h.scheduler, &json!({"tool": "calendar_read"}))
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
            accesses(&h)
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
    let log = accesses(&h);
    for (component, user, sa) in [
        ("operator", OPERATOR_USER, "palisade-operator"),
        ("gateway", GATEWAY_USER, "palisade-gateway"),
    ] {
        let rules = grants(&docs, sa);
        let used: BTreeSet<&Access> = log.iter().filter(|a| a.user == user).collect();
        assert!(!used.is_empty(), "{component} made no requests as {user}");
        let refused: Vec<String> = used
            .iter()
            .filter(|a| a.code == 403)
            .map(|a| {
                format!(
                    "{} {}/{} ns={:?} name={:?}",
                    a.verb, a.group, a.resource, a.namespace, a.name
                )
            })
            .collect();
        assert!(
            refused.is_empty(),
            "the API server refused {component}:\n{}",
            refused.join("\n")
        );
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

    // What is not granted is refused: the gateway (a token bound to its
    // pod, as the kubelet gives it) cannot take over the operator's leader
    // Lease nor another replica's report Lease, nor read any Secret but
    // its configuration; an agent cannot read Approvals.
    let gateway =
        h.cp.pod_kubeconfig(SYSTEM_NS, "palisade-gateway", "gateway-a");
    let refused = |kubeconfig: &std::path::Path, args: &[&str]| {
        let out = h.cp.kubectl_as(kubeconfig, args);
        assert!(
            !out.status.success(),
            "kubectl {} was allowed",
            args.join(" ")
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let steal = r#"{"spec":{"holderIdentity":"gateway-a"}}"#;
    for lease in ["palisade-operator", "palisade-gateway-gateway-b"] {
        let why = refused(
            &gateway,
            &[
                "patch",
                "lease",
                lease,
                "-n",
                SYSTEM_NS,
                "--type=merge",
                "-p",
                steal,
            ],
        );
        assert!(
            why.contains("forbidden") || why.contains("denied"),
            "{lease}: {why}"
        );
    }
    refused(
        &gateway,
        &["get", "secret", "openai-credentials", "-n", "clinic"],
    );
    refused(&gateway, &["get", "secrets", "-n", SYSTEM_NS]);
    refused(
        &gateway,
        &["get", "secret", "palisade-config", "-n", SYSTEM_NS],
    );
    let agent = h.cp.service_account_kubeconfig("clinic", "intake-agent");
    h.cp.namespace("billing");
    refused(&agent, &["get", "approvals", "-n", "billing"]);
    refused(&agent, &["get", "approvals", "-n", "clinic"]);
}
