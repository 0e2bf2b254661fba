//! The Helm chart rendered and linted with the real Helm v4 library
//! (PyPI `helm-python-sdk`, installed into a virtualenv under `target/`):
//! the approval guard rails render as shipped and follow their values and
//! the cluster's capabilities; and installed into the real API server
//! (`tests/control-plane`), with and without MutatingAdmissionPolicy.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use palisade_control_plane::Options;
use palisade_e2e::{ControlPlane, SYSTEM_NS, User};
use serde_json::{Value, json};
use std::path::PathBuf;

fn render() -> Value {
    palisade_e2e::render_chart(&PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("helm-venv"))
}

fn documents(case: &Value) -> Vec<Value> {
    palisade_e2e::rendered_documents(case)
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

/// The documents one template rendered to.
fn template(case: &Value, path: &str) -> Vec<Value> {
    documents(&serde_json::json!({ "x": case[format!("palisade/templates/{path}")] }))
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

#[test]
fn the_chart_renders_lints_and_refuses_wrong_values() {
    /// Every document of every kind `kind` named `name` (any namespace).
    fn all_named<'a>(docs: &'a [Value], kind: &str, name: &str) -> Vec<&'a Value> {
        docs.iter()
            .filter(|d| d["kind"] == kind && d["metadata"]["name"] == name)
            .collect()
    }
    /// Namespaces of the RoleBindings, and names of the
    /// ClusterRoleBindings, that bind ClusterRole `role`.
    fn bound(docs: &[Value], role: &str) -> (Vec<String>, Vec<String>) {
        let binds = |kind: &str| -> Vec<String> {
            docs.iter()
                .filter(|d| {
                    d["kind"] == kind
                        && d["roleRef"]["kind"] == "ClusterRole"
                        && d["roleRef"]["name"] == role
                })
                .map(|d| {
                    let m = &d["metadata"];
                    m[if kind == "RoleBinding" {
                        "namespace"
                    } else {
                        "name"
                    }]
                    .as_str()
                    .unwrap()
                    .to_owned()
                })
                .collect()
        };
        (binds("RoleBinding"), binds("ClusterRoleBinding"))
    }
    fn args(deployment: &Value) -> Vec<String> {
        deployment["spec"]["template"]["spec"]["containers"][0]["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_owned())
            .collect()
    }
    fn strings(v: &Value) -> Vec<&str> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap())
            .collect()
    }
    /// The TCP ports a NetworkPolicy lets its pods reach `cidr` on.
    fn egress_ports(policy: &Value, cidr: &str) -> Vec<i64> {
        policy["spec"]["egress"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|rule| rule["to"][0]["ipBlock"]["cidr"] == cidr)
            .flat_map(|rule| rule["ports"].as_array().unwrap().iter())
            .map(|p| p["port"].as_i64().unwrap())
            .collect()
    }

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

    // --- Every rendered object (and the CRDs) is valid against the
    // Kubernetes 1.37 API schemas, strictly (no unknown fields).
    for (case, problems) in out["invalid"].as_object().unwrap() {
        assert!(
            problems.as_array().unwrap().is_empty(),
            "{case}: {problems:#}"
        );
    }
    assert_eq!(
        out["invalid"].as_object().unwrap().len(),
        16,
        "15 value sets and the CRDs"
    );
    // No case renders two objects Helm would have to create under the
    // same name (an install fails on the second).
    for (case, rendered) in out["cases"].as_object().unwrap() {
        let mut seen = std::collections::BTreeSet::new();
        for d in documents(rendered) {
            let key = format!(
                "{} {}/{}",
                d["kind"].as_str().unwrap(),
                d["metadata"]["namespace"].as_str().unwrap_or(""),
                d["metadata"]["name"].as_str().unwrap()
            );
            assert!(seen.insert(key.clone()), "{case}: {key} rendered twice");
        }
    }

    // --- The approval guard rails, exactly as written in the template.
    // The decider stamp (a MutatingAdmissionPolicy) renders only where
    // the cluster serves that API: Helm's own capabilities (helm template
    // or lint without a cluster) serve none.
    let admission = |case: &str| template(&out["cases"][case], "approval-admission.yaml");
    let guard_only = [
        "ClusterRole",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    ];
    let with_stamp = [
        "ClusterRole",
        "MutatingAdmissionPolicy",
        "MutatingAdmissionPolicyBinding",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    ];
    assert_eq!(kinds(&admission("default")), guard_only);
    for (case, version) in [
        // 1.36+: v1, preferred where v1beta1 is served too.
        ("mutating_v1", "admissionregistration.k8s.io/v1"),
        // 1.34-1.35 with the feature gate: v1beta1, also when required.
        ("mutating_v1beta1", "admissionregistration.k8s.io/v1beta1"),
        (
            "mutating_v1beta1_required",
            "admissionregistration.k8s.io/v1beta1",
        ),
    ] {
        let docs = admission(case);
        assert_eq!(kinds(&docs), with_stamp, "{case}");
        for kind in ["MutatingAdmissionPolicy", "MutatingAdmissionPolicyBinding"] {
            let d = docs.iter().find(|d| d["kind"] == kind).unwrap();
            assert_eq!(d["apiVersion"], version, "{case}: {kind}");
        }
    }
    let admission_v1 = admission("mutating_v1");
    let tested = template_documents();
    for kind in [
        "ValidatingAdmissionPolicy",
        "MutatingAdmissionPolicy",
        "ClusterRole",
    ] {
        let rendered = admission_v1.iter().find(|d| d["kind"] == kind).unwrap();
        let raw = tested.iter().find(|d| d["kind"] == kind).unwrap();
        // The mutating policy's apiVersion is the one templated part.
        assert_eq!(
            (
                &rendered["kind"],
                &rendered["metadata"],
                &rendered["spec"],
                &rendered["rules"]
            ),
            (&raw["kind"], &raw["metadata"], &raw["spec"], &raw["rules"]),
            "{kind} renders differently from the template's text"
        );
    }
    let binding = find(
        &admission_v1,
        "MutatingAdmissionPolicyBinding",
        "palisade-approval-decider",
    );
    assert_eq!(binding["spec"]["policyName"], "palisade-approval-decider");
    let binding = find(
        &admission_v1,
        "ValidatingAdmissionPolicyBinding",
        "palisade-approval-guard",
    );
    assert_eq!(binding["spec"]["validationActions"][0], "Deny");
    // stampDecider false: never, even where the API is served.
    assert_eq!(kinds(&admission("no_mutating_policy")), guard_only);
    assert_eq!(kinds(&admission("no_admission")), ["ClusterRole"]);
    // NOTES.txt says whether deciders must name themselves.
    let notes = |case: &str| {
        out["cases"][case]["palisade/templates/NOTES.txt"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert!(
        notes("default").contains("kubectl palisade approve NAME"),
        "{}",
        notes("default")
    );
    assert!(
        notes("mutating_v1").contains("stamped from the request (MutatingAdmissionPolicy v1)"),
        "{}",
        notes("mutating_v1")
    );

    // --- Defaults: two operators with leader election, two gateways,
    // locked-down containers, the audit DSN from a Secret, a PDB, network
    // policies; nothing optional.
    let all = documents(&out["cases"]["default"]);
    let operator = find(&all, "Deployment", "palisade-operator");
    assert_eq!(operator["spec"]["replicas"], 2);
    assert!(!args(operator).iter().any(|a| a == "--no-leader-election"));
    // The per-policy size budget, at the operator's own default.
    assert!(
        args(operator).contains(&format!(
            "--policy-size-budget={}",
            palisade_crds::bundle_secret::DEFAULT_POLICY_BUDGET
        )),
        "{:?}",
        args(operator)
    );
    let gateway = find(&all, "Deployment", "palisade-gateway");
    assert_eq!(gateway["spec"]["replicas"], 2);
    for d in [operator, gateway] {
        assert!(
            !args(d).iter().any(|a| a.starts_with("--watch-namespaces")),
            "cluster-wide by default"
        );
        // Providers: the well-known APIs over https and in-cluster
        // services, credentials never over plain http.
        assert!(
            args(d).contains(&"--allowed-provider-urls=https://api.openai.com,https://api.anthropic.com,http://*.svc,http://*.svc.cluster.local".to_owned()),
            "{:?}",
            args(d)
        );
        assert!(!args(d).contains(&"--allow-plaintext-credentials".to_owned()));
        let pod = &d["spec"]["template"]["spec"];
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
        let c = &pod["containers"][0];
        let sc = &c["securityContext"];
        assert_eq!(
            (
                &sc["allowPrivilegeEscalation"],
                &sc["readOnlyRootFilesystem"],
                &sc["runAsNonRoot"],
                &sc["seccompProfile"]["type"]
            ),
            (
                &Value::Bool(false),
                &Value::Bool(true),
                &Value::Bool(true),
                &Value::from("RuntimeDefault")
            ),
            "{}",
            d["metadata"]["name"]
        );
        let audit = c["env"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == "PALISADE_AUDIT_URL")
            .unwrap();
        assert_eq!(
            audit["valueFrom"]["secretKeyRef"]["name"],
            "palisade-audit-dsn"
        );
        // The audit chain's key: a file from its own Secret, never in the
        // database.
        let key_file = c["env"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == "PALISADE_AUDIT_KEY_FILE")
            .unwrap_or_else(|| panic!("{}: no PALISADE_AUDIT_KEY_FILE", d["metadata"]["name"]));
        assert_eq!(key_file["value"], "/etc/palisade/audit-key/key");
        assert!(
            c["volumeMounts"]
                .as_array()
                .unwrap()
                .iter()
                .any(|m| m["name"] == "audit-key"
                    && m["mountPath"] == "/etc/palisade/audit-key"
                    && m["readOnly"] == true)
        );
        assert!(
            pod["volumes"]
                .as_array()
                .unwrap()
                .iter()
                .any(|v| v["name"] == "audit-key"
                    && v["secret"]["secretName"] == "palisade-audit-key")
        );
    }
    let key = find(&all, "Secret", "palisade-audit-key");
    assert_eq!(
        key["metadata"]["annotations"]["helm.sh/resource-policy"],
        "keep"
    );
    assert!(key["data"]["key"].as_str().unwrap().len() >= 64);
    // The migration Job: as the tables' owner, granting the runtime role
    // (the gateways' and the operator's DSN) SELECT and INSERT only.
    let migrate = find(&all, "Job", "palisade-audit-migrate-1");
    let c = &migrate["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        strings(&c["args"]),
        [
            "audit",
            "migrate",
            "--url=$(PALISADE_AUDIT_OWNER_URL)",
            "--runtime-role=palisade_writer"
        ]
    );
    assert_eq!(
        c["env"][0]["valueFrom"]["secretKeyRef"],
        json!({"name": "palisade-audit-dsn", "key": "ownerUrl"})
    );
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(
        gateway["spec"]["template"]["spec"]["serviceAccountName"],
        "palisade-gateway"
    );
    find(&all, "PodDisruptionBudget", "palisade-gateway");
    // The API server on 443 (managed clusters) and 6443 (kubeadm, kind).
    for name in ["palisade-gateway", "palisade-operator"] {
        let policy = find(&all, "NetworkPolicy", name);
        assert_eq!(
            egress_ports(policy, "0.0.0.0/0")[..2],
            [443, 6443],
            "{name}"
        );
    }
    let narrowed = documents(&out["cases"]["no_guards"]);
    assert_eq!(
        egress_ports(
            find(&narrowed, "NetworkPolicy", "palisade-operator"),
            "0.0.0.0/0"
        ),
        [6443]
    );
    // Cluster-wide bindings, the operator's and the gateway's.
    assert_eq!(
        bound(&all, "palisade-operator"),
        (vec![], vec!["palisade-operator".to_owned()])
    );
    assert_eq!(
        bound(&all, "palisade-gateway"),
        (vec![], vec!["palisade-gateway".to_owned()])
    );
    for absent in [
        "HorizontalPodAutoscaler",
        "ServiceMonitor",
        "ConfigMap",
        "PersistentVolumeClaim",
        "StatefulSet",
    ] {
        assert!(
            !all.iter().any(|d| d["kind"] == absent),
            "{absent} rendered by default"
        );
    }
    // The gateway never holds the approve verb, reads only its Secret,
    // reviews tokens cluster-wide (TokenReview is not namespaced) from a
    // role of its own, and may create and patch Leases (not get, update
    // or delete them).
    let gw_roles: Vec<&Value> = all
        .iter()
        .filter(|d| {
            (d["kind"] == "ClusterRole" || d["kind"] == "Role")
                && d["metadata"]["name"]
                    .as_str()
                    .unwrap()
                    .starts_with("palisade-gateway")
        })
        .collect();
    assert_eq!(gw_roles.len(), 3, "approvals, tokenreviews, own namespace");
    for role in &gw_roles {
        for rule in role["rules"].as_array().unwrap() {
            assert!(!strings(&rule["verbs"]).contains(&"approve"));
            if rule["resources"][0] == "secrets" {
                assert_eq!(rule["resourceNames"][0], "palisade-config");
            }
            if rule["resources"][0] == "leases" {
                assert_eq!(strings(&rule["verbs"]), ["create", "patch"]);
            }
            if rule["resources"][0] == "tokenreviews" {
                assert_eq!(role["metadata"]["name"], "palisade-gateway-tokenreviews");
                assert_eq!(role["rules"].as_array().unwrap().len(), 1);
            }
        }
    }
    assert_eq!(
        bound(&all, "palisade-gateway-tokenreviews"),
        (vec![], vec!["palisade-gateway-tokenreviews".to_owned()])
    );

    // The gateway's Leases: RBAC cannot name a prefix, so a
    // ValidatingAdmissionPolicy (v1) holds the gateway to its own report
    // Lease, palisade-gateway-<pod name from its bound token>.
    let guard = find(
        &all,
        "ValidatingAdmissionPolicy",
        "palisade-gateway-lease-guard",
    );
    assert_eq!(guard["apiVersion"], "admissionregistration.k8s.io/v1");
    let spec = &guard["spec"];
    assert_eq!(spec["failurePolicy"], "Fail");
    assert_eq!(
        spec["matchConstraints"]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
        "palisade-system"
    );
    let rule = &spec["matchConstraints"]["resourceRules"][0];
    assert_eq!(
        (
            strings(&rule["apiGroups"]),
            strings(&rule["resources"]),
            strings(&rule["operations"])
        ),
        (
            vec!["coordination.k8s.io"],
            vec!["leases"],
            vec!["CREATE", "UPDATE"]
        )
    );
    assert_eq!(
        spec["matchConditions"][0]["expression"],
        "request.userInfo.username == 'system:serviceaccount:palisade-system:palisade-gateway'"
    );
    assert!(
        spec["variables"][0]["expression"]
            .as_str()
            .unwrap()
            .contains("request.userInfo.extra['authentication.kubernetes.io/pod-name'][0]")
    );
    let checks: Vec<&str> = spec["validations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["expression"].as_str().unwrap())
        .collect();
    assert_eq!(
        checks,
        [
            "request.name != 'palisade-operator'",
            "variables.pod != '' ? request.name == 'palisade-gateway-' + variables.pod : request.name.startsWith('palisade-gateway-')",
        ]
    );
    // The operator's leader Lease is outside the prefix anyway.
    assert!(!"palisade-operator".starts_with("palisade-gateway-"));
    assert!(
        spec["validations"][1]["messageExpression"]
            .as_str()
            .unwrap()
            .contains("may write only its own Lease palisade-gateway-")
    );
    let guard_binding = find(
        &all,
        "ValidatingAdmissionPolicyBinding",
        "palisade-gateway-lease-guard",
    );
    assert_eq!(
        guard_binding["spec"]["policyName"],
        "palisade-gateway-lease-guard"
    );
    assert_eq!(
        strings(&guard_binding["spec"]["validationActions"]),
        ["Deny"]
    );

    // Namespace editors and viewers get Palisade's resources through the
    // built-in roles, never the approve verb.
    let edit = find(&all, "ClusterRole", "palisade-edit");
    assert_eq!(
        edit["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-edit"],
        "true"
    );
    assert_eq!(
        strings(&edit["rules"][0]["resources"]),
        ["aipolicies", "toolgrants"]
    );
    assert_eq!(
        strings(&edit["rules"][0]["verbs"]),
        [
            "get",
            "list",
            "watch",
            "create",
            "update",
            "patch",
            "delete",
            "deletecollection"
        ]
    );
    assert_eq!(strings(&edit["rules"][1]["resources"]), ["approvals"]);
    assert_eq!(
        strings(&edit["rules"][1]["verbs"]),
        ["get", "list", "watch"]
    );
    assert_eq!(edit["rules"].as_array().unwrap().len(), 2);
    let view = find(&all, "ClusterRole", "palisade-view");
    assert_eq!(
        view["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-view"],
        "true"
    );
    assert_eq!(
        strings(&view["rules"][0]["resources"]),
        ["aipolicies", "toolgrants", "approvals"]
    );
    assert_eq!(
        strings(&view["rules"][0]["verbs"]),
        ["get", "list", "watch"]
    );
    assert_eq!(view["rules"].as_array().unwrap().len(), 1);
    // Both guards are values that default on.
    for (kind, name) in [
        ("ValidatingAdmissionPolicy", "palisade-gateway-lease-guard"),
        (
            "ValidatingAdmissionPolicyBinding",
            "palisade-gateway-lease-guard",
        ),
        ("ClusterRole", "palisade-edit"),
        ("ClusterRole", "palisade-view"),
    ] {
        assert!(all_named(&narrowed, kind, name).is_empty(), "{kind} {name}");
    }

    // NOTES.txt tells the user the next commands.
    let notes = notes("default");
    for step in [
        "kubectl label secret openai-credentials -n clinic palisade.dev/credentials=true",
        "kubectl apply -f - <<'EOF'",
        "kubectl get aipolicies -A -w",
        "kubectl get approvals -n clinic",
        "palisade-audit-dsn",
    ] {
        assert!(notes.contains(step), "NOTES.txt lacks {step:?}:\n{notes}");
    }

    // --- Every option on.
    let all = documents(&out["cases"]["everything"]);
    let gateway = find(&all, "Deployment", "palisade-gateway");
    assert!(
        gateway["spec"]["replicas"].is_null(),
        "the HPA owns replicas"
    );
    find(&all, "HorizontalPodAutoscaler", "palisade-gateway");
    let monitor = find(&all, "ServiceMonitor", "palisade");
    // It scrapes the gateways' and the operator's metrics ports: not the
    // Service agents call, nor the bundled PostgreSQL or Ollama (same
    // labels; Ollama's port is named http too).
    let selector = &monitor["spec"]["selector"];
    let scraped: Vec<&str> = all
        .iter()
        .filter(|d| d["kind"] == "Service")
        .filter(|s| {
            let labels = &s["metadata"]["labels"];
            selector["matchLabels"]
                .as_object()
                .unwrap()
                .iter()
                .all(|(k, v)| &labels[k] == v)
                && selector["matchExpressions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .all(|e| {
                        assert_eq!(e["operator"], "In");
                        e["values"]
                            .as_array()
                            .unwrap()
                            .contains(&labels[e["key"].as_str().unwrap()])
                    })
        })
        .map(|s| s["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        scraped,
        ["palisade-operator-metrics", "palisade-gateway-metrics"]
    );
    let dashboard = find(&all, "ConfigMap", "palisade-dashboard");
    let json: Value =
        serde_json::from_str(dashboard["data"]["palisade.json"].as_str().unwrap()).unwrap();
    let titles: Vec<&str> = json["panels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["title"].as_str().unwrap())
        .collect();
    for wanted in [
        "Denials by reason",
        "Approvals pending",
        "Kill-switch hits",
        "Audit queue depth and spool bytes",
        "Tokens per second by agent and model",
        "Tokens in the last 24 hours by agent, provider and model",
    ] {
        assert!(titles.contains(&wanted), "{titles:?}");
    }
    let variables: Vec<&str> = json["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(variables, ["datasource", "namespace", "agent"]);
    find(&all, "Deployment", "palisade-postgres");
    find(&all, "Deployment", "palisade-ollama");
    let env_of = |deployment: &Value, name: &str| {
        deployment["spec"]["template"]["spec"]["containers"][0]["env"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .unwrap_or_else(|| panic!("no {name} in {deployment}"))
            .clone()
    };
    // Both binaries log as the chart's logFormat says (text by default).
    let operator = find(&all, "Deployment", "palisade-operator");
    for d in [gateway, operator] {
        assert_eq!(env_of(d, "PALISADE_LOG_FORMAT")["value"], "text");
    }
    let audit = env_of(gateway, "PALISADE_AUDIT_URL");
    assert_eq!(
        audit["value"],
        "postgres://palisade_writer:$(PALISADE_POSTGRES_WRITER_PASSWORD)@palisade-postgres:5432/palisade"
    );
    let migrate =
        &find(&all, "Job", "palisade-audit-migrate-1")["spec"]["template"]["spec"]["containers"][0];
    assert!(
        strings(&migrate["args"])
            .contains(&"--runtime-password-env=PALISADE_POSTGRES_WRITER_PASSWORD")
    );
    let owner = migrate["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "PALISADE_AUDIT_OWNER_URL")
        .unwrap();
    assert_eq!(
        owner["value"],
        "postgres://palisade:$(PALISADE_POSTGRES_PASSWORD)@palisade-postgres:5432/palisade"
    );
    let operator = find(&all, "Deployment", "palisade-operator");
    assert!(args(operator).contains(&"--no-leader-election".to_owned()));
    // operator.watchNamespaces: both binaries are told, and both get
    // RoleBindings in exactly those namespaces and no ClusterRoleBinding
    // for what they do there. Token reviews stay cluster-wide.
    for d in [operator, gateway] {
        assert!(
            args(d).contains(&"--watch-namespaces=clinic,billing".to_owned()),
            "{}: {:?}",
            d["metadata"]["name"],
            args(d)
        );
        for flag in [
            "--allowed-provider-urls=https://llm.corp.example,http://*.svc",
            "--allow-plaintext-credentials",
        ] {
            assert!(args(d).contains(&flag.to_owned()), "{flag}: {:?}", args(d));
        }
    }
    for role in ["palisade-operator", "palisade-gateway"] {
        assert_eq!(
            bound(&all, role),
            (vec!["clinic".to_owned(), "billing".to_owned()], vec![]),
            "{role}: per-namespace access, no ClusterRoleBinding"
        );
    }
    assert_eq!(
        bound(&all, "palisade-gateway-tokenreviews"),
        (vec![], vec!["palisade-gateway-tokenreviews".to_owned()])
    );
    // Each still has its own Role in the release namespace.
    for name in ["palisade-operator", "palisade-gateway"] {
        let own: Vec<&str> = all_named(&all, "RoleBinding", name)
            .iter()
            .map(|b| b["metadata"]["namespace"].as_str().unwrap())
            .collect();
        assert_eq!(own, ["palisade-system"], "{name}");
    }
    // The release namespace may be one of the watched ones.
    let all = documents(&out["cases"]["watching_the_release_namespace"]);
    for role in ["palisade-operator", "palisade-gateway"] {
        assert_eq!(bound(&all, role).0, ["palisade-system", "clinic"], "{role}");
    }

    // --- The gateway's listener and TokenReview settings; TLS from a Secret.
    let default_gateway = find(
        &documents(&out["cases"]["default"]),
        "Deployment",
        "palisade-gateway",
    )
    .clone();
    let default_args = args(&default_gateway);
    for arg in [
        "--max-connections=1024",
        "--max-in-flight-body-bytes=67108864",
        "--token-reviews-per-second=20",
        "--token-review-burst=40",
    ] {
        assert!(
            default_args.iter().any(|a| a == arg),
            "{arg} not in {default_args:?}"
        );
    }
    assert!(
        !default_args
            .iter()
            .any(|a| a.starts_with("--tls") || a.starts_with("--token-audience")),
        "{default_args:?}"
    );
    let pod = &default_gateway["spec"]["template"]["spec"];
    assert_eq!(
        pod["containers"][0]["readinessProbe"]["httpGet"]["scheme"],
        "HTTP"
    );
    let all = documents(&out["cases"]["gateway_tls_and_token_audience"]);
    let gateway = find(&all, "Deployment", "palisade-gateway");
    let gateway_args = args(gateway);
    for arg in [
        "--max-connections=300",
        "--max-in-flight-body-bytes=16777216",
        "--token-audience=palisade",
        "--token-reviews-per-second=5",
        "--token-review-burst=10",
        "--tls-cert=/etc/palisade/tls/tls.crt",
        "--tls-key=/etc/palisade/tls/tls.key",
    ] {
        assert!(
            gateway_args.iter().any(|a| a == arg),
            "{arg} not in {gateway_args:?}"
        );
    }
    let pod = &gateway["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    for probe in ["livenessProbe", "readinessProbe"] {
        assert_eq!(container[probe]["httpGet"]["scheme"], "HTTPS", "{probe}");
    }
    let tls_volume = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "tls")
        .unwrap();
    assert_eq!(tls_volume["secret"]["secretName"], "palisade-gateway-tls");
    assert!(
        container["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["name"] == "tls"
                && m["mountPath"] == "/etc/palisade/tls"
                && m["readOnly"] == true)
    );
    assert_eq!(pod["securityContext"]["fsGroup"], 65532);
    let notes = out["cases"]["gateway_tls_and_token_audience"]["palisade/templates/NOTES.txt"]
        .as_str()
        .unwrap();
    assert!(
        notes.contains("serviceAccountToken: {audience: palisade"),
        "{notes}"
    );
    assert!(notes.contains("https://"), "{notes}");
    tool_volumes_are_mounted_in_every_gateway_pod(&out);
    // --- A ResourceQuota on Approvals where the agents are: in the listed
    // namespaces, else the watched ones; none where no namespace is known,
    // and the notes say so.
    let notes_of = |case: &str| {
        out["cases"][case]["palisade/templates/NOTES.txt"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let quotas = |case: &str| -> Vec<(String, String)> {
        documents(&out["cases"][case])
            .iter()
            .filter(|d| d["kind"] == "ResourceQuota")
            .map(|d| {
                assert_eq!(d["metadata"]["name"], "palisade-approvals");
                let hard = &d["spec"]["hard"]["count/approvals.palisade.dev"];
                let ns = d["metadata"]["namespace"].as_str().unwrap();
                (ns.to_owned(), hard.as_str().unwrap().to_owned())
            })
            .collect()
    };
    let pairs = |v: &[(&str, &str)]| -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
            .collect()
    };
    assert_eq!(quotas("default"), []);
    assert!(
        notes_of("default").contains("No ResourceQuota on Approvals was installed"),
        "{}",
        notes_of("default")
    );
    assert_eq!(
        quotas("everything"),
        pairs(&[("clinic", "1000"), ("billing", "1000")])
    );
    assert_eq!(
        quotas("approval_quota_namespaces"),
        pairs(&[("team-a", "50"), ("team-b", "50")])
    );
    assert!(
        notes_of("approval_quota_namespaces")
            .contains("At most 50 Approvals per namespace in team-a, team-b")
    );
    assert_eq!(quotas("no_approval_quota"), []);

    // --- Wrong values fail at install with a message naming the field.
    for (case, needle) in [
        ("replicas_not_a_number", "/gateway/replicas"),
        ("misspelt_key", "replicaz"),
        ("cidr_without_prefix", "/networkPolicy/apiServerCIDR"),
        ("bad_retention", "/approvals/retention"),
        ("approval_quota_of_nothing", "/approvals/quota/maxApprovals"),
        (
            "no_audit_database",
            "postgres.external.secretName is required",
        ),
        // Required, on a cluster that serves no MutatingAdmissionPolicy.
        (
            "stamp_decider_required_without_the_api",
            "approvals.admission.stampDecider is true, but this cluster serves no MutatingAdmissionPolicy API",
        ),
        (
            "stamp_decider_not_auto_or_boolean",
            "/approvals/admission/stampDecider",
        ),
        // The old single port is refused, pointing at the list.
        ("old_api_server_port", "/networkPolicy/apiServerPort"),
        ("old_api_server_port", "networkPolicy.apiServerPorts"),
        ("no_api_server_ports", "/networkPolicy/apiServerPorts"),
        (
            "api_server_port_out_of_range",
            "/networkPolicy/apiServerPorts/1",
        ),
        ("tls_without_a_secret", "/gateway/tls"),
        (
            "body_budget_below_one_body",
            "/gateway/maxInFlightBodyBytes",
        ),
        (
            "token_audience_with_a_comma",
            "/gateway/tokenReview/audiences/0",
        ),
        (
            "provider_url_without_scheme",
            "/providers/allowedBaseUrls/0",
        ),
        ("tool_volume_without_a_mount_path", "/gateway/toolVolumes/0"),
        ("tool_volume_without_a_mount_path", "mountPath"),
        (
            "tool_volume_over_the_spool",
            "/gateway/toolVolumes/0/mountPath",
        ),
        (
            "tool_volume_with_two_sources",
            "/gateway/toolVolumes/0/volume",
        ),
    ] {
        let message = out["refused"][case]
            .as_str()
            .unwrap_or_else(|| panic!("{case} was accepted"));
        assert!(message.contains(needle), "{case}: {message}");
    }
}

/// `gateway.toolVolumes`: each volume in the pod as `tool-<name>`, mounted
/// read-only unless it says otherwise, and the pod's fsGroup set so the
/// gateway can read them.
fn tool_volumes_are_mounted_in_every_gateway_pod(out: &Value) {
    let all = documents(&out["cases"]["tool_volumes"]);
    let pod = &find(&all, "Deployment", "palisade-gateway")["spec"]["template"]["spec"];
    let volume = |name: &str| {
        pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no volume {name}: {pod}"))
            .clone()
    };
    assert_eq!(
        volume("tool-clinic-data"),
        json!({"name": "tool-clinic-data", "persistentVolumeClaim": {"claimName": "clinic-data"}})
    );
    assert_eq!(
        volume("tool-notes"),
        json!({"name": "tool-notes", "emptyDir": {"sizeLimit": "1Gi"}})
    );
    let mounts: Vec<(String, String, bool)> = pod["containers"][0]["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["name"].as_str().unwrap().starts_with("tool-"))
        .map(|m| {
            (
                m["name"].as_str().unwrap().to_owned(),
                m["mountPath"].as_str().unwrap().to_owned(),
                m["readOnly"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        mounts,
        [
            (
                "tool-clinic-data".into(),
                "/var/lib/palisade/tools/clinic".into(),
                true
            ),
            (
                "tool-notes".into(),
                "/var/lib/palisade/tools/notes".into(),
                false
            ),
        ]
    );
    assert_eq!(pod["securityContext"]["fsGroup"], 65532);
    assert_eq!(out["invalid"]["tool_volumes"], json!([]));
    // Without tool volumes (or TLS), no fsGroup.
    let default = documents(&out["cases"]["default"]);
    let plain = &find(&default, "Deployment", "palisade-gateway")["spec"]["template"]["spec"];
    assert!(plain["securityContext"].get("fsGroup").is_none(), "{plain}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chart_installs_into_the_api_server_with_the_helm_library() {
    // A 1.37 API server serves MutatingAdmissionPolicy (v1): the default
    // install puts everything in place, the decider stamp included.
    let cp = tokio::task::spawn_blocking(|| ControlPlane::start("helm-install"))
        .await
        .unwrap();
    install(&cp, json!({}));
    palisade_e2e::wait_for_approval_admission(&cp, true);
    let kubectl = |args: &[&str]| cp.kubectl_ok(User::Admin, args);
    // What landed: the CRDs (served: kubectl knows the kinds), the two
    // Deployments, their ServiceAccounts, RBAC, and the approval guard.
    let crds = kubectl(&["get", "crd", "-o", "jsonpath={.items[*].metadata.name}"]);
    for crd in [
        "aipolicies.palisade.dev",
        "toolgrants.palisade.dev",
        "approvals.palisade.dev",
    ] {
        assert!(crds.contains(crd), "{crds}");
    }
    let deployments = kubectl(&[
        "get",
        "deployments",
        "-n",
        SYSTEM_NS,
        "-o",
        "jsonpath={.items[*].metadata.name}",
    ]);
    assert_eq!(deployments, "palisade-gateway palisade-operator");
    let roles = kubectl(&[
        "get",
        "clusterroles",
        "-o",
        "jsonpath={.items[*].metadata.name}",
    ]);
    for role in ["palisade-approver", "palisade-gateway", "palisade-operator"] {
        assert!(roles.split_whitespace().any(|r| r == role), "{roles}");
    }
    let guards = kubectl(&[
        "get",
        "validatingadmissionpolicies",
        "-o",
        "jsonpath={.items[*].metadata.name}",
    ]);
    assert!(
        guards
            .split_whitespace()
            .any(|g| g == "palisade-approval-guard"),
        "{guards}"
    );
    let stamp = kubectl(&[
        "get",
        "mutatingadmissionpolicies",
        "-o",
        "jsonpath={.items[*].metadata.name}",
    ]);
    assert_eq!(stamp, "palisade-approval-decider");
    let sa = kubectl(&[
        "get",
        "deployment",
        "palisade-gateway",
        "-n",
        SYSTEM_NS,
        "-o",
        "jsonpath={.spec.template.spec.serviceAccountName}",
    ]);
    assert_eq!(sa, "palisade-gateway");
    // The installed CRDs take the example, from a namespace editor.
    cp.kubectl_ok(
        User::Editor,
        &[
            "apply",
            "-f",
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../examples/clinic-assistant.yaml"
            ),
        ],
    );
    assert!(kubectl(&["get", "aipolicies", "-n", "clinic"]).contains("clinic-assistant"));
    // The first policy the NOTES give, as pasted (with a cloud provider,
    // and with the bundled Ollama), is taken by the installed CRDs.
    let rendered = render();
    for case in ["default", "everything"] {
        let notes = rendered["cases"][case]["palisade/templates/NOTES.txt"]
            .as_str()
            .unwrap();
        let start = notes.find("<<'EOF'\n").unwrap() + "<<'EOF'\n".len();
        let end = start + notes[start..].find("\nEOF\n").unwrap();
        let path =
            std::env::temp_dir().join(format!("notes-policy-{case}-{}.yaml", std::process::id()));
        std::fs::write(&path, &notes[start..end]).unwrap();
        cp.kubectl_ok(User::Editor, &["apply", "-f", path.to_str().unwrap()]);
        let provider = kubectl(&[
            "get",
            "aipolicy",
            "first-policy",
            "-n",
            "clinic",
            "-o",
            "jsonpath={.spec.routing.defaultProvider}",
        ]);
        assert_eq!(
            provider,
            if case == "default" { "cloud" } else { "local" },
            "{notes}"
        );
        // Only what the chart ships or the repository holds, said so.
        assert!(!notes.contains("-f examples/"), "{notes}");
    }
    drop(cp);

    // Most clusters before 1.36 serve no MutatingAdmissionPolicy: the
    // default install (stampDecider auto) still succeeds, leaving the stamp
    // out, and the validating guard alone makes deciders write their own
    // name; asking for the stamp explicitly fails, naming the value.
    let cp = tokio::task::spawn_blocking(|| {
        ControlPlane::start_with(
            "helm-install-no-map",
            Options {
                without_mutating_admission_policy: true,
                ..Options::default()
            },
        )
    })
    .await
    .unwrap();
    cp.apply(&format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {SYSTEM_NS}}}\n"
    ));
    let required = palisade_e2e::helm_install(
        &cp,
        &json!({"approvals": {"admission": {"stampDecider": true}}}),
    )
    .expect_err("stampDecider: true installed without the API");
    assert!(
        required.contains("approvals.admission.stampDecider is true"),
        "{required}"
    );
    install(&cp, json!({}));
    palisade_e2e::wait_for_approval_admission(&cp, false);
    let guards = cp.kubectl_ok(
        User::Admin,
        &["get", "validatingadmissionpolicies", "-o", "name"],
    );
    assert!(guards.contains("palisade-approval-guard"), "{guards}");
    // Approvals are created undecided: one born approved is refused.
    let approval = |name: &str, extra: &str| palisade_e2e::approval_manifest("clinic", name, extra);
    let path = cp.dir().join("born-approved.yaml");
    std::fs::write(
        &path,
        approval("born-approved", ", decision: Approved, decidedBy: approver"),
    )
    .unwrap();
    let born = cp.kubectl(User::Admin, &["create", "-f", path.to_str().unwrap()]);
    assert!(!born.status.success(), "an Approval was created decided");
    assert!(
        String::from_utf8_lossy(&born.stderr).contains("an Approval is created undecided"),
        "{}",
        String::from_utf8_lossy(&born.stderr)
    );
    // An approver must then write their own name (as kubectl-palisade
    // does): another's, or none, is refused by the guard.
    cp.apply(&approval("held", ""));
    let decide = |by: Option<&str>| {
        let mut spec = json!({"decision": "Approved", "reason": "ok"});
        if let Some(by) = by {
            spec["decidedBy"] = json!(by);
        }
        let patch = json!({ "spec": spec }).to_string();
        cp.kubectl(
            User::Approver,
            &[
                "patch",
                "approval",
                "held",
                "-n",
                "clinic",
                "--type=merge",
                "-p",
                &patch,
            ],
        )
    };
    for forged in [None, Some("mallory")] {
        let out = decide(forged);
        assert!(!out.status.success(), "decidedBy {forged:?} was accepted");
        assert!(
            String::from_utf8_lossy(&out.stderr)
                .contains("spec.decidedBy must be the deciding user"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = decide(Some("approver"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `helm install palisade charts/palisade -n palisade-system` with `values`
/// into `cp`; fails the test with Helm's message if it fails.
fn install(cp: &ControlPlane, values: Value) {
    cp.apply(&format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {SYSTEM_NS}}}\n"
    ));
    let release = palisade_e2e::helm_install(cp, &values)
        .unwrap_or_else(|e| panic!("helm install with {values}: {e}"));
    assert_eq!(release["status"], "deployed", "{release}");
}

/// The kind path cannot run here (no container engine); check what can be:
/// the cluster config enables what the chart's defaults need, the script
/// parses, and what it builds exists.
#[test]
fn the_kind_config_and_script_fit_the_chart() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let config: Value =
        serde_yaml::from_str(&std::fs::read_to_string(format!("{root}/kind-config.yaml")).unwrap())
            .unwrap();
    assert_eq!(config["kind"], "Cluster");
    // values.yaml stamps decidedBy with a MutatingAdmissionPolicy (v1beta1).
    let values: Value = serde_yaml::from_str(
        &std::fs::read_to_string(format!("{root}/charts/palisade/values.yaml")).unwrap(),
    )
    .unwrap();
    assert_eq!(values["approvals"]["admission"]["stampDecider"], "auto");
    assert_eq!(config["featureGates"]["MutatingAdmissionPolicy"], true);
    assert_eq!(
        config["runtimeConfig"]["admissionregistration.k8s.io/v1beta1"],
        "true"
    );
    let syntax = std::process::Command::new("bash")
        .args(["-n", &format!("{root}/tests/kind/up.sh")])
        .status()
        .unwrap();
    assert!(syntax.success());
    let script = std::fs::read_to_string(format!("{root}/tests/kind/up.sh")).unwrap();
    for bin in ["gateway", "operator"] {
        assert!(script.contains("deploy/Dockerfile.$bin"));
        let dockerfile =
            std::fs::read_to_string(format!("{root}/deploy/Dockerfile.{bin}")).unwrap();
        assert!(
            dockerfile.contains(&format!("-p palisade-{bin} --bin palisade-{bin}")),
            "{bin}"
        );
        assert!(
            dockerfile.contains("USER 65532:65532"),
            "{bin} runs as root"
        );
    }
}
