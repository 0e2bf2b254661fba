//! The chart's `helm test` (issue 27), on the real control plane: its
//! ServiceAccount and AIPolicy, rendered by the real Helm library, are
//! applied as Helm would apply the hooks, and the test Pod's command
//! (`palisade-gateway smoke` with the Pod's own arguments) runs against a
//! gateway replica with a token of that ServiceAccount. No kubelet runs
//! Pods here, so the Pod's process is run directly; everything it talks
//! to is real.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use palisade_e2e::{Harness, SYSTEM_NS, binary, helm_venv, render_chart, rendered_documents};
use serde_json::Value;
use std::process::Command;

/// The test hook's objects, by kind.
fn hook(docs: &[Value], kind: &str) -> Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["annotations"]["helm.sh/hook"] == "test")
        .unwrap_or_else(|| panic!("no test hook {kind}"))
        .clone()
}

/// The Pod's arguments with its in-cluster URL and token path replaced
/// by the harness gateway's and a file holding `token`.
fn args_against(pod: &Value, h: &Harness, token: &std::path::Path, timeout: &str) -> Vec<String> {
    pod["spec"]["containers"][0]["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .map(|a| match a.split_once('=') {
            Some(("--url", _)) => format!("--url={}", h.gateways[0].url("")),
            Some(("--token-file", _)) => format!("--token-file={}", token.display()),
            Some(("--timeout", _)) => format!("--timeout={timeout}"),
            _ => a.to_owned(),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn helm_test_passes_once_the_gateway_decides_and_fails_when_it_does_not() {
    let rendered = render_chart(&helm_venv());
    // Rendered with the provider allow-list the harness's operator has.
    let docs = rendered_documents(&rendered["cases"]["as_the_harness_runs"]);
    let (account, policy, pod) = (
        hook(&docs, "ServiceAccount"),
        hook(&docs, "AIPolicy"),
        hook(&docs, "Pod"),
    );
    assert_eq!(pod["metadata"]["namespace"], SYSTEM_NS);
    assert_eq!(
        pod["spec"]["serviceAccountName"],
        account["metadata"]["name"]
    );
    assert_eq!(pod["spec"]["restartPolicy"], "Never");
    let args = &pod["spec"]["containers"][0]["args"];
    assert_eq!(args[0], "smoke");
    assert!(
        args.as_array()
            .unwrap()
            .iter()
            .any(|a| a == "--url=http://palisade-gateway.palisade-system.svc:8080"),
        "{args}"
    );

    let h = Harness::start("helm-test").await;
    let dir = h.dir.clone();
    for (name, doc) in [("hook-account", &account), ("hook-policy", &policy)] {
        h.apply_yaml(name, &serde_yaml::to_string(doc).unwrap());
    }
    let account_name = account["metadata"]["name"].as_str().unwrap();
    let token = dir.join("helm-test.token");
    std::fs::write(&token, h.cp.token(SYSTEM_NS, account_name)).unwrap();

    // As the Pod runs it: it waits for the policy to reach the gateway.
    let gateway = binary("palisade-gateway");
    let out = tokio::task::spawn_blocking({
        let args = args_against(&pod, &h, &token, "60");
        let gateway = gateway.clone();
        move || Command::new(gateway).args(args).output().unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "helm test failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.starts_with("ok: ")
            && stdout.contains("403 tool.denied_by_rule (rule helm-test-never)"),
        "{stdout}"
    );

    // A gateway that would let the call through fails the test, saying so.
    let name = policy["metadata"]["name"].as_str().unwrap();
    h.kubectl_ok(&[
        "patch",
        "aipolicy",
        name,
        "-n",
        SYSTEM_NS,
        "--type=json",
        "-p",
        r#"[{"op": "replace", "path": "/spec/tools/rules/0/action", "value": "Allow"}]"#,
    ]);
    let agent = std::fs::read_to_string(&token).unwrap();
    h.until(
        "the gateway serves the change",
        std::time::Duration::from_secs(15),
        async || {
            let body = serde_json::json!({"tool": "palisade_helm_test", "arguments": {}});
            (h.tool_call(0, &agent, &body).await.0 == 200).then_some(())
        },
    )
    .await;
    let out = tokio::task::spawn_blocking({
        let args = args_against(&pod, &h, &token, "8");
        move || Command::new(gateway).args(args).output().unwrap()
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("not as expected after 8 s")
            && stderr.contains("expected tool.denied_by_rule"),
        "{stderr}"
    );
}
