//! The Helm chart rendered and linted with the real Helm v4 library
//! (PyPI `helm-python-sdk`, installed into a virtualenv under `target/`):
//! the approval guard rails render as shipped — the same CEL that
//! `crds/tests/admission.rs` evaluates — and follow their values.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::Value;
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
    // Kubernetes 1.34 API schemas, strictly (no unknown fields).
    for (case, problems) in out["invalid"].as_object().unwrap() {
        assert!(
            problems.as_array().unwrap().is_empty(),
            "{case}: {problems:#}"
        );
    }
    assert_eq!(
        out["invalid"].as_object().unwrap().len(),
        5,
        "4 value sets and the CRDs"
    );

    // --- The approval guard rails, exactly as the CEL tests evaluate them.
    let admission = template(&out["cases"]["default"], "approval-admission.yaml");
    assert_eq!(
        kinds(&admission),
        [
            "ClusterRole",
            "MutatingAdmissionPolicy",
            "MutatingAdmissionPolicyBinding",
            "ValidatingAdmissionPolicy",
            "ValidatingAdmissionPolicyBinding"
        ]
    );
    let tested = template_documents();
    for kind in [
        "ValidatingAdmissionPolicy",
        "MutatingAdmissionPolicy",
        "ClusterRole",
    ] {
        let rendered = admission.iter().find(|d| d["kind"] == kind).unwrap();
        let raw = tested.iter().find(|d| d["kind"] == kind).unwrap();
        assert_eq!(
            rendered, raw,
            "{kind} renders differently from the tested template"
        );
    }
    let binding = admission
        .iter()
        .find(|d| d["kind"] == "ValidatingAdmissionPolicyBinding")
        .unwrap();
    assert_eq!(binding["spec"]["validationActions"][0], "Deny");
    assert_eq!(
        kinds(&template(
            &out["cases"]["no_mutating_policy"],
            "approval-admission.yaml"
        )),
        [
            "ClusterRole",
            "ValidatingAdmissionPolicy",
            "ValidatingAdmissionPolicyBinding"
        ]
    );
    assert_eq!(
        kinds(&template(
            &out["cases"]["no_admission"],
            "approval-admission.yaml"
        )),
        ["ClusterRole"]
    );

    // --- Defaults: two operators with leader election, two gateways,
    // locked-down containers, the audit DSN from a Secret, a PDB, network
    // policies; nothing optional.
    let all = documents(&out["cases"]["default"]);
    let operator = find(&all, "Deployment", "palisade-operator");
    assert_eq!(operator["spec"]["replicas"], 2);
    let args = operator["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .unwrap();
    assert!(!args.iter().any(|a| a == "--no-leader-election"));
    let gateway = find(&all, "Deployment", "palisade-gateway");
    assert_eq!(gateway["spec"]["replicas"], 2);
    for d in [operator, gateway] {
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
    }
    assert_eq!(
        gateway["spec"]["template"]["spec"]["serviceAccountName"],
        "palisade-gateway"
    );
    find(&all, "PodDisruptionBudget", "palisade-gateway");
    find(&all, "NetworkPolicy", "palisade-gateway");
    find(&all, "NetworkPolicy", "palisade-operator");
    find(&all, "ClusterRoleBinding", "palisade-operator");
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
    // The gateway never holds the approve verb, and reads only its Secret.
    let gw_roles: Vec<&Value> = all
        .iter()
        .filter(|d| {
            (d["kind"] == "ClusterRole" || d["kind"] == "Role")
                && d["metadata"]["name"] == "palisade-gateway"
        })
        .collect();
    for role in &gw_roles {
        for rule in role["rules"].as_array().unwrap() {
            assert!(
                !rule["verbs"]
                    .as_array()
                    .unwrap()
                    .contains(&Value::from("approve"))
            );
            if rule["resources"][0] == "secrets" {
                assert_eq!(rule["resourceNames"][0], "palisade-config");
            }
        }
    }

    // NOTES.txt tells the user the next commands.
    let notes = out["cases"]["default"]["palisade/templates/NOTES.txt"]
        .as_str()
        .unwrap();
    for step in [
        "kubectl apply -f examples/clinic-assistant.yaml",
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
    find(&all, "ServiceMonitor", "palisade");
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
    ] {
        assert!(titles.contains(&wanted), "{titles:?}");
    }
    find(&all, "Deployment", "palisade-postgres");
    find(&all, "Deployment", "palisade-ollama");
    let audit = gateway["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "PALISADE_AUDIT_URL")
        .unwrap()
        .clone();
    assert_eq!(
        audit["value"],
        "postgres://palisade:$(PALISADE_POSTGRES_PASSWORD)@palisade-postgres:5432/palisade"
    );
    let operator = find(&all, "Deployment", "palisade-operator");
    assert!(
        operator["spec"]["template"]["spec"]["containers"][0]["args"]
            .as_array()
            .unwrap()
            .contains(&Value::from("--no-leader-election"))
    );
    let bindings: Vec<&str> = all
        .iter()
        .filter(|d| d["kind"] == "RoleBinding" && d["metadata"]["name"] == "palisade-operator")
        .map(|d| d["metadata"]["namespace"].as_str().unwrap())
        .collect();
    assert_eq!(
        bindings,
        ["clinic", "billing", "palisade-system"],
        "per-namespace read access, no ClusterRoleBinding"
    );
    assert!(
        !all.iter()
            .any(|d| d["kind"] == "ClusterRoleBinding"
                && d["metadata"]["name"] == "palisade-operator")
    );

    // --- Wrong values fail at install with a message naming the field.
    for (case, needle) in [
        ("replicas_not_a_number", "/gateway/replicas"),
        ("misspelt_key", "replicaz"),
        ("cidr_without_prefix", "/networkPolicy/apiServerCIDR"),
        ("bad_retention", "/approvals/retention"),
        (
            "no_audit_database",
            "postgres.external.secretName is required",
        ),
    ] {
        let message = out["refused"][case]
            .as_str()
            .unwrap_or_else(|| panic!("{case} was accepted"));
        assert!(message.contains(needle), "{case}: {message}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chart_installs_into_the_api_server_with_the_helm_library() {
    let sim = palisade_kube_sim::KubeSim::start().await.unwrap();
    let dir = palisade_audit_suite::temp_dir("helm-install");
    let kubeconfig = dir.join("kubeconfig");
    sim.write_kubeconfig(&kubeconfig).unwrap();
    let kubectl = |args: &[&str]| {
        let out = std::process::Command::new("kubectl")
            .args(args)
            .env("KUBECONFIG", &kubeconfig)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "kubectl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    std::fs::write(
        dir.join("ns.yaml"),
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: palisade-system}\n",
    )
    .unwrap();
    kubectl(&["apply", "-f", dir.join("ns.yaml").to_str().unwrap()]);

    let venv = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("helm-venv");
    let python = palisade_fake_upstreams::python::python_with(&venv, palisade_e2e::HELM_PACKAGES);
    let kc = kubeconfig.clone();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(python)
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/chart/install.py"))
            .arg(&kc)
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../charts/palisade"
            ))
            .arg("palisade-system")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "helm install: {}",
        String::from_utf8_lossy(&out.stderr)
    );

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
        "palisade-system",
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
    let guard = kubectl(&[
        "get",
        "validatingadmissionpolicies",
        "-o",
        "jsonpath={.items[*].metadata.name}",
    ]);
    assert_eq!(guard, "palisade-approval-guard");
    let sa = kubectl(&[
        "get",
        "deployment",
        "palisade-gateway",
        "-n",
        "palisade-system",
        "-o",
        "jsonpath={.spec.template.spec.serviceAccountName}",
    ]);
    assert_eq!(sa, "palisade-gateway");
    // The installed CRDs take the example.
    std::fs::write(
        dir.join("clinic.yaml"),
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: clinic}\n",
    )
    .unwrap();
    kubectl(&["apply", "-f", dir.join("clinic.yaml").to_str().unwrap()]);
    kubectl(&[
        "apply",
        "-f",
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../examples/clinic-assistant.yaml"
        ),
    ]);
    assert!(kubectl(&["get", "aipolicies", "-n", "clinic"]).contains("clinic-assistant"));
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
    assert_eq!(values["approvals"]["admission"]["stampDecider"], true);
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
