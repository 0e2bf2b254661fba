//! The operator as people watch it: `kubectl apply` the example, `kubectl
//! get` shows it Ready and served by both gateways; an invalid edit applied
//! with kubectl is refused in status and an Event while the previous
//! generation keeps serving.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use palisade_e2e::{Harness, INTAKE_TOKEN, code};
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
    // The operator publishes events.k8s.io/v1 Events (kube-sim serves that
    // API; a real cluster shows them in `kubectl get events` too).
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
            INTAKE_TOKEN,
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
