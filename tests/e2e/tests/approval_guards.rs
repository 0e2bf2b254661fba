//! What the API server itself enforces on Approvals once the chart is
//! installed — the CRD's own rules, the chart's admission policy (on the
//! `approvals/status` subresource too) and its ResourceQuota — checked
//! against the real kube-apiserver with kubectl, as the users and the
//! chart's ServiceAccounts. One control plane serves every test here.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use palisade_e2e::{ControlPlane, SYSTEM_NS, User, approval_manifest};
use serde_json::{Value, json};
use std::path::Path;
use std::process::Output;
use std::sync::OnceLock;

/// The namespace the chart's Approval quota is installed in, and its size.
const QUOTA_NS: &str = "quota-test";
const QUOTA: usize = 3;

/// The control plane with the chart installed (defaults, but for a small
/// Approval quota in [`QUOTA_NS`]) and its admission policies in force.
fn cluster() -> &'static ControlPlane {
    static CLUSTER: OnceLock<ControlPlane> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        let cp = ControlPlane::start("approval-guards");
        cp.apply(&format!(
            "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {SYSTEM_NS}}}\n"
        ));
        cp.namespace(QUOTA_NS);
        let values =
            json!({"approvals": {"quota": {"namespaces": [QUOTA_NS], "maxApprovals": QUOTA}}});
        let release = palisade_e2e::helm_install(&cp, &values)
            .unwrap_or_else(|e| panic!("helm install: {e}"));
        assert_eq!(release["status"], "deployed", "{release}");
        palisade_e2e::wait_for_approval_admission(&cp, true);
        cp
    })
}

/// `kubectl patch approval NAME -n clinic --type=merge -p PATCH`, on the
/// status subresource when `status`.
fn patch(cp: &ControlPlane, as_: &Path, name: &str, status: bool, patch: &Value) -> Output {
    let patch = patch.to_string();
    cp.kubectl_as(
        as_,
        &palisade_e2e::approval_patch_args(name, &patch, status),
    )
}

fn refused(out: &Output, why: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "accepted, expected refusal: {why}");
    assert!(
        stderr.contains(why),
        "refused, but not because {why:?}: {stderr}"
    );
}

fn accepted(out: &Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn field(cp: &ControlPlane, name: &str, jsonpath: &str) -> String {
    cp.kubectl_ok(
        User::Admin,
        &[
            "get",
            "approval",
            name,
            "-n",
            "clinic",
            "-o",
            &format!("jsonpath={jsonpath}"),
        ],
    )
}

#[test]
fn the_status_of_an_approval_cannot_claim_a_decision_nor_undo_a_consumption() {
    let cp = cluster();
    // Admission binds every user, RBAC's superuser too: the cluster admin
    // writes the status here, as the gateways (which may patch it to
    // consume an approval) and the operator do.
    let admin = cp.kubeconfig(User::Admin);
    cp.apply(&approval_manifest("clinic", "status-guard", ""));

    // A status write cannot make an undecided approval look decided, nor
    // use it.
    let forged = json!({"status": {"phase": "Approved", "decidedBy": "mallory",
                                   "decidedAt": "2026-01-01T00:00:01Z"}});
    refused(
        &patch(cp, &admin, "status-guard", true, &forged),
        "status.decidedBy only repeats spec.decidedBy",
    );
    refused(
        &patch(
            cp,
            &admin,
            "status-guard",
            true,
            &json!({"status": {"decidedAt": "2026-01-01T00:00:01Z"}}),
        ),
        "status.decidedAt is recorded only once spec.decision is made",
    );
    refused(
        &patch(
            cp,
            &admin,
            "status-guard",
            true,
            &json!({"status": {"phase": "Approved"}}),
        ),
        "status.phase must agree with spec.decision",
    );
    let consume = json!({"status": {"phase": "Consumed", "consumedAt": "2026-01-01T00:00:02Z",
                                    "consumedBy": "gateway-a"}});
    refused(
        &patch(cp, &admin, "status-guard", true, &consume),
        "status.phase must agree with spec.decision",
    );
    refused(
        &patch(
            cp,
            &admin,
            "status-guard",
            true,
            &json!({"status": {"consumedAt": "2026-01-01T00:00:02Z", "consumedBy": "gateway-a"}}),
        ),
        "only an approved Approval can be consumed",
    );
    assert_eq!(field(cp, "status-guard", "{.status}"), "");

    // A human approves; the gateway consumes it, once and for good.
    accepted(&patch(
        cp,
        &cp.kubeconfig(User::Approver),
        "status-guard",
        false,
        &json!({"spec": {"decision": "Approved", "reason": "ok"}}),
    ));
    accepted(&patch(cp, &admin, "status-guard", true, &consume));
    for undo in [
        json!({"status": {"phase": "Approved", "consumedAt": null, "consumedBy": null}}),
        json!({"status": {"consumedAt": "2026-01-01T00:00:03Z"}}),
    ] {
        refused(
            &patch(cp, &admin, "status-guard", true, &undo),
            "a consumption is final",
        );
    }
    assert_eq!(
        field(cp, "status-guard", "{.status.phase} {.status.consumedBy}"),
        "Consumed gateway-a"
    );
}

#[test]
fn the_charts_resource_quota_caps_how_many_approvals_a_namespace_holds() {
    let cp = cluster();
    let quota: Value = serde_json::from_str(&cp.kubectl_ok(
        User::Admin,
        &[
            "get",
            "resourcequota",
            "palisade-approvals",
            "-n",
            QUOTA_NS,
            "-o",
            "json",
        ],
    ))
    .unwrap();
    let hard = &quota["spec"]["hard"];
    assert_eq!(hard, &json!({"count/approvals.palisade.dev": "3"}));
    // kube-controller-manager, which this control plane does not run,
    // would fill in the quota's status (what it allows and what is used);
    // do its part, then the API server's own quota admission counts every
    // Approval created.
    cp.kubectl_ok(
        User::Admin,
        &[
            "patch",
            "resourcequota",
            "palisade-approvals",
            "-n",
            QUOTA_NS,
            "--subresource=status",
            "--type=merge",
            "-p",
            &json!({"status": {"hard": hard, "used": {"count/approvals.palisade.dev": "0"}}})
                .to_string(),
        ],
    );
    let create = |i: usize| {
        let path = cp.dir().join(format!("quota-{i}.yaml"));
        std::fs::write(&path, approval_manifest(QUOTA_NS, &format!("held-{i}"), "")).unwrap();
        cp.kubectl(User::Admin, &["create", "-f", path.to_str().unwrap()])
    };
    for i in 0..QUOTA {
        accepted(&create(i));
    }
    refused(
        &create(QUOTA),
        "exceeded quota: palisade-approvals, requested: count/approvals.palisade.dev=1",
    );
}

#[test]
fn what_an_approval_shows_and_is_bound_to_cannot_be_rewritten_and_the_preview_is_bounded() {
    let cp = cluster();
    let approver = cp.kubeconfig(User::Approver);
    let preview = "{\n  \"to\": \"a@b.c\"\n}";
    let extra = format!(
        ", argumentsPreview: {}, argumentsTruncated: false, rule: email-needs-a-human",
        serde_json::to_string(preview).unwrap()
    );
    cp.apply(&approval_manifest("clinic", "preview-guard", &extra));
    assert_eq!(
        field(cp, "preview-guard", "{.spec.argumentsPreview}"),
        preview
    );

    let shows = "what an Approval shows of the arguments cannot change";
    let bound = "the request an Approval describes cannot change";
    for (spec, why) in [
        (
            json!({"argumentsPreview": "{\"to\": \"someone@else.example\"}"}),
            shows,
        ),
        (json!({"argumentsTruncated": true}), shows),
        (
            json!({"argumentsDigest": format!("sha256:{}", "b".repeat(64))}),
            bound,
        ),
        (json!({"policyGeneration": 2}), bound),
        (json!({"rule": "another-rule"}), bound),
    ] {
        let mut spec = spec;
        spec["decision"] = json!("Approved");
        refused(
            &patch(
                cp,
                &approver,
                "preview-guard",
                false,
                &json!({ "spec": spec }),
            ),
            why,
        );
    }
    assert_eq!(
        field(cp, "preview-guard", "{.spec.argumentsPreview}"),
        preview
    );
    accepted(&patch(
        cp,
        &approver,
        "preview-guard",
        false,
        &json!({"spec": {"decision": "Approved", "reason": "ok"}}),
    ));

    // The API server refuses a preview over 4096 characters.
    let long = format!(", argumentsPreview: '{}'", "x".repeat(4097));
    let path = cp.dir().join("long-preview.yaml");
    std::fs::write(&path, approval_manifest("clinic", "long-preview", &long)).unwrap();
    let out = cp.kubectl(User::Admin, &["create", "-f", path.to_str().unwrap()]);
    refused(&out, "spec.argumentsPreview: Too long");

    // An Approval written the old way (whole `arguments`, no preview) is
    // still served and can still be decided.
    let old = ", arguments: {to: a@b.c, ssn: '[REDACTED]'}";
    cp.apply(&approval_manifest("clinic", "old-style", old));
    assert_eq!(field(cp, "old-style", "{.spec.arguments.to}"), "a@b.c");
    accepted(&patch(
        cp,
        &approver,
        "old-style",
        false,
        &json!({"spec": {"decision": "Denied", "reason": "old"}}),
    ));
}
