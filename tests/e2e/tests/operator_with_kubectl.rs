//! The operator as people watch it: `kubectl apply` the example, `kubectl
//! get` shows it Ready and served by both gateways; an invalid edit applied
//! with kubectl is refused in status and an Event while the previous
//! generation keeps serving. With `operator.watchNamespaces`, only those
//! namespaces are read, with no cluster-wide permission.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use palisade_e2e::{GATEWAY_USER, Harness, OPERATOR_USER, Options, User, code};
use serde_json::json;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn apply_watch_status_and_an_invalid_edit_through_kubectl() {
    let h = Harness::start("kubectl").await;
    let table = h
        .until(
            "kubectl get shows it Ready",
            Duration::from_secs(10),
            async || {
                let out = h.kubectl_ok(&["get", "aipolicies", "-n", "clinic"]);
                out.lines()
                    .any(|l| l.starts_with("clinic-assistant") && l.contains("True"))
                    .then_some(out)
            },
        )
        .await;
    assert!(table.starts_with("NAME"), "{table}");
    let served = h.policy_field("{.status.servedGeneration}");
    assert_eq!(served, "1");
    h.until(
        "both gateways report it",
        Duration::from_secs(10),
        async || {
            let n = h.policy_field("{.status.gatewaysApplied}");
            (n == "2").then_some(())
        },
    )
    .await;
    // What the README and the chart's NOTES tell people to watch: READY
    // True, then GATEWAYS = the gateway replicas.
    let table = h.kubectl_ok(&["get", "aipolicies", "-n", "clinic"]);
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    let row: Vec<&str> = table
        .lines()
        .find(|l| l.starts_with("clinic-assistant"))
        .unwrap()
        .split_whitespace()
        .collect();
    let column = |name: &str| {
        row[header
            .iter()
            .position(|h| *h == name)
            .unwrap_or_else(|| panic!("no {name} column: {table}"))]
    };
    assert_eq!(
        (column("READY"), column("GATEWAYS")),
        ("True", "2"),
        "{table}"
    );

    let manifest = std::fs::read_to_string(h.dir.join("clinic-assistant.yaml")).unwrap();
    // The API server itself refuses what the CRD's CEL rules catch.
    let path = h.dir.join("unknown-provider.yaml");
    std::fs::write(
        &path,
        manifest.replace("defaultProvider: cloud", "defaultProvider: on-prem"),
    )
    .unwrap();
    let out = h.kubectl(&["apply", "-f", path.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("spec.routing.defaultProvider must name one of spec.providers")
    );
    // What only the compiler can see (a regular expression that does not
    // compile) is accepted by the API server and refused by the operator.
    h.apply_yaml(
        "broken",
        &manifest.replace(r"'\b\d{3}-\d{2}-\d{4}\b'", "'(unclosed'"),
    );
    let message = h
        .until("Accepted=False with the diagnostic", Duration::from_secs(10), async || {
            let out = h.policy_field("{.status.conditions[?(@.type==\"Accepted\")].status}|{.status.conditions[?(@.type==\"Accepted\")].message}");
            out.strip_prefix("False|").map(String::from)
        })
        .await;
    assert!(
        message.contains("spec.routing.rules[1].patterns[0]") && message.contains("unclosed group"),
        "{message}"
    );
    assert!(
        message.contains("generation 1 is still served"),
        "{message}"
    );
    // The operator publishes events.k8s.io/v1 Events.
    h.until("an Invalid event", Duration::from_secs(10), async || {
        let events = h.kubectl_ok(&[
            "get",
            "events.events.k8s.io",
            "-n",
            "clinic",
            "-o",
            "jsonpath={.items[*].reason}",
        ]);
        events
            .split_whitespace()
            .any(|r| r == "Invalid")
            .then_some(())
    })
    .await;
    // The gateways still serve generation 1.
    let (status, body) = h
        .tool_call(
            0,
            &h.intake,
            &json!({"tool": "calendar_read", "arguments": {}}),
        )
        .await;
    assert_eq!(
        (status, code(&body)),
        (200, "tool.allowed_by_rule"),
        "{body}"
    );
    let describe = h.kubectl_ok(&[
        "get",
        "aipolicy",
        "clinic-assistant",
        "-n",
        "clinic",
        "-o",
        "wide",
    ]);
    assert!(describe.contains("False"), "{describe}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_watch_namespaces_only_those_namespaces_are_read_and_nothing_cluster_wide() {
    let h = Harness::start_with(
        "watch-namespaces",
        Options {
            watch_namespaces: vec!["clinic"],
            ..Options::default()
        },
    )
    .await;
    // The same policy in a namespace the installation does not watch.
    h.cp.namespace("billing");
    let manifest = std::fs::read_to_string(h.dir.join("clinic-assistant.yaml"))
        .unwrap()
        .replace("namespace: clinic", "namespace: billing");
    let path = h.dir.join("billing.yaml");
    std::fs::write(&path, manifest).unwrap();
    h.cp.kubectl_ok(User::Editor, &["apply", "-f", path.to_str().unwrap()]);

    // A change in the watched namespace is compiled and served...
    h.patch_policy("merge", r#"{"spec":{"suspend":true}}"#);
    h.until(
        "the kill switch lands",
        Duration::from_secs(10),
        async || {
            let (status, body) = h
                .tool_call(0, &h.intake, &json!({"tool": "calendar_read"}))
                .await;
            (status == 403 && code(&body) == "kill_switch.policy").then_some(())
        },
    )
    .await;
    // ...and held calls become Approvals the operator tracks there.
    let (status, held) = h
        .tool_call(
            1,
            &h.intake,
            &json!({"tool": "send_email", "arguments": {"to": "a@b.c"}}),
        )
        .await;
    assert_eq!(status, 403, "suspended: {held}");
    h.patch_policy("merge", r#"{"spec":{"suspend":false}}"#);
    let name = h
        .until(
            "a held call gets an Approval",
            Duration::from_secs(10),
            async || {
                let (status, body) = h
                    .tool_call(
                        1,
                        &h.intake,
                        &json!({"tool": "send_email", "arguments": {"to": "a@b.c"}}),
                    )
                    .await;
                (status == 202).then(|| body["approval"]["name"].as_str().unwrap().to_owned())
            },
        )
        .await;
    h.until(
        "the operator marks it Pending",
        Duration::from_secs(10),
        async || {
            let phase = h.kubectl_ok(&[
                "get",
                "approval",
                &name,
                "-n",
                "clinic",
                "-o",
                "jsonpath={.status.phase}",
            ]);
            (phase == "Pending").then_some(())
        },
    )
    .await;
    // The policy elsewhere is never read: no status, ever.
    let billing = h.kubectl_ok(&[
        "get",
        "aipolicy",
        "clinic-assistant",
        "-n",
        "billing",
        "-o",
        "jsonpath={.status}",
    ]);
    assert_eq!(
        billing, "",
        "a policy outside the watched namespaces was reconciled"
    );

    // Neither binary asked for anything cluster-wide it was not granted:
    // the API server refused none of their requests, and they listed
    // policies, grants and approvals only in `clinic`.
    let log = h.cp.audit_log();
    for user in [OPERATOR_USER, GATEWAY_USER] {
        let theirs: Vec<&serde_json::Value> = log
            .iter()
            .filter(|e| e["user"]["username"] == user)
            .collect();
        assert!(!theirs.is_empty(), "{user} made no requests");
        for e in &theirs {
            assert_ne!(e["responseStatus"]["code"], 403, "{user} was refused: {e}");
            if e["objectRef"]["apiGroup"] == "palisade.dev" {
                assert_eq!(e["objectRef"]["namespace"], "clinic", "{user}: {e}");
            }
        }
    }
}
