//! The console in a cluster (issue 27), on the real control plane with
//! the chart's RBAC (`gateway.console.enabled`): the overview lists every
//! gateway replica with the revision its report Lease says, the decisions
//! of both replicas (the shared PostgreSQL audit), and a held call's page
//! gives the `kubectl` command that decides it; run as printed by someone
//! the RBAC lets decide, the agent's repeat is allowed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use palisade_e2e::{AUDITOR_TOKEN, Harness, Options, User};
use serde_json::json;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_console_shows_every_replica_and_the_kubectl_command_that_decides() {
    let h = Harness::start_with(
        "console",
        Options {
            console: true,
            ..Options::default()
        },
    )
    .await;
    let page = |i: usize, path: &'static str| {
        let req = h
            .http
            .get(h.gateways[i].url(path))
            .bearer_auth(AUDITOR_TOKEN);
        async move {
            let r = req.send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    // Both replicas, each with the revision it reported.
    let overview = h
        .until(
            "both replicas in the overview",
            Duration::from_secs(20),
            async || {
                let (status, body) = page(0, "/console").await;
                assert_eq!(status, 200, "{body}");
                (body.contains("gateway-a (this one)") && body.contains("gateway-b"))
                    .then_some(body)
            },
        )
        .await;
    let (_, ready) = h.get(0, AUDITOR_TOKEN, "/readyz").await;
    let revision = ready["revision"].as_str().unwrap();
    assert_eq!(
        overview
            .matches(&format!("<code>{revision}</code>"))
            .count(),
        3,
        "this replica's line and both reports: {overview}"
    );
    assert!(overview.contains("clinic/clinic-assistant"), "{overview}");

    // A held call on replica b shows on replica a, with its command.
    let (status, held) = h
        .tool_call(
            1,
            &h.intake,
            &json!({"tool": "send_email", "arguments": {"to": "patient@example.com"}}),
        )
        .await;
    assert_eq!(status, 202, "{held}");
    let name = held["approval"]["name"].as_str().unwrap().to_owned();
    let (_, approvals) = page(0, "/console/approvals").await;
    let command = format!("kubectl palisade approve {name} -n clinic --reason &quot;...&quot;");
    assert!(approvals.contains(&command), "{approvals}");
    assert!(
        !approvals.contains("class=\"approve\""),
        "decided with kubectl here: {approvals}"
    );
    let (_, decisions) = page(0, "/console/decisions?agent=intake").await;
    assert!(decisions.contains("send_email"), "{decisions}");

    // The command, as printed, run by the approver (kubectl runs the
    // plugin).
    let printed = approvals
        .split("<pre class=\"command\">")
        .nth(1)
        .unwrap()
        .split("</pre>")
        .next()
        .unwrap()
        .replace("&quot;", "\"");
    let words: Vec<String> = printed
        .split_whitespace()
        .map(|w| w.trim_matches('"').to_owned())
        .collect();
    assert_eq!(words[0], "kubectl", "{printed}");
    let args: Vec<&str> = words[1..].iter().map(String::as_str).collect();
    let out = h.kubectl_plugin(User::Approver, &args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (status, used) = h
        .tool_call(
            1,
            &h.intake,
            &json!({"tool": "send_email", "arguments": {"to": "patient@example.com"}, "approval": name}),
        )
        .await;
    assert_eq!(
        (status, &used["decision"]),
        (200, &json!("Allow")),
        "{used}"
    );
    let (_, after) = page(0, "/console/approvals").await;
    assert!(!after.contains(&name), "{after}");
}
