//! A chart that fits real clusters (issue 27): scheduling and identity
//! values land in both Deployments, the gateway is reachable through an
//! Ingress or an HTTPRoute on its API port only, its metrics are on a
//! port of their own that only the scrapers may reach, the alerts parse
//! and use metrics Palisade exports, and wrong values are refused naming
//! the field. Rendered with the real Helm library (tests/e2e/chart/render.py).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use palisade_e2e::{helm_venv, render_chart, rendered_documents};
use serde_json::{Value, json};

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect()
}

/// Every metric name the binaries register, from their sources.
fn exported_metrics() -> String {
    [
        include_str!("../../../gateway/src/metrics.rs"),
        include_str!("../../../audit/src/metrics.rs"),
        include_str!("../../../operator/src/metrics.rs"),
    ]
    .concat()
}

#[test]
fn the_chart_fits_real_clusters() {
    let out = render_chart(&helm_venv());
    assert_eq!(
        out["invalid"]["fits_real_clusters"],
        json!([]),
        "{}",
        out["invalid"]
    );
    let all = rendered_documents(&out["cases"]["fits_real_clusters"]);

    // --- Scheduling, identity, extra env and flags.
    let gateway = find(&all, "Deployment", "palisade-gateway");
    let template = &gateway["spec"]["template"];
    let pod = &template["spec"];
    assert_eq!(pod["imagePullSecrets"], json!([{"name": "regcred"}]));
    assert_eq!(pod["nodeSelector"], json!({"pool": "gateways"}));
    assert_eq!(pod["tolerations"][0]["key"], "dedicated");
    assert_eq!(pod["priorityClassName"], "platform-critical");
    assert!(pod["affinity"]["podAntiAffinity"].is_object(), "{pod}");
    assert_eq!(
        pod["topologySpreadConstraints"][0]["topologyKey"],
        "topology.kubernetes.io/zone"
    );
    assert_eq!(
        template["metadata"]["annotations"]["example.com/team"],
        "platform"
    );
    let labels = &template["metadata"]["labels"];
    assert_eq!(
        (&labels["team"], &labels["app.kubernetes.io/component"]),
        (&json!("platform"), &json!("gateway"))
    );
    let container = &pod["containers"][0];
    let args = strings(&container["args"]);
    assert_eq!(
        args.last().map(String::as_str),
        Some("--token-review-burst=80"),
        "after the chart's own: {args:?}"
    );
    // The console, with the auditor token it logs in with, and the Leases
    // its replicas' table reads.
    assert!(args.contains(&"--console".to_owned()), "{args:?}");
    let role = find(&all, "Role", "palisade-gateway");
    assert!(
        role["rules"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["resources"] == json!(["leases"]) && r["verbs"] == json!(["list"])),
        "{role}"
    );
    assert!(
        args.contains(&"--metrics-listen=0.0.0.0:9100".to_owned()),
        "{args:?}"
    );
    assert!(
        container["env"]
            .as_array()
            .unwrap()
            .contains(&json!({"name": "RUST_LOG", "value": "info,palisade=debug"}))
    );
    assert!(
        container["ports"]
            .as_array()
            .unwrap()
            .contains(&json!({"name": "metrics", "containerPort": 9100}))
    );

    let operator = &find(&all, "Deployment", "palisade-operator")["spec"]["template"]["spec"];
    assert_eq!(operator["nodeSelector"], json!({"pool": "system"}));
    assert_eq!(operator["imagePullSecrets"], json!([{"name": "regcred"}]));
    assert!(
        operator["tolerations"].is_null(),
        "only what was given: {operator}"
    );
    assert!(
        operator["containers"][0]["env"]
            .as_array()
            .unwrap()
            .contains(&json!({"name": "RUST_LOG", "value": "debug"}))
    );
    assert_eq!(
        find(&all, "ServiceAccount", "palisade-gateway")["metadata"]["annotations"]["eks.amazonaws.com/role-arn"],
        "arn:aws:iam::1:role/palisade"
    );
    assert_eq!(
        find(&all, "ServiceAccount", "palisade-operator")["metadata"]["annotations"]["iam.gke.io/gcp-service-account"],
        "palisade@p.iam.gserviceaccount.com"
    );
    // Every pod the chart runs pulls with the same Secret.
    for (kind, name) in [
        ("Deployment", "palisade-postgres"),
        ("Job", "palisade-audit-migrate-1"),
    ] {
        let spec = &find(&all, kind, name)["spec"]["template"]["spec"];
        assert_eq!(
            spec["imagePullSecrets"],
            json!([{"name": "regcred"}]),
            "{kind} {name}"
        );
    }

    // --- From outside: the API port only.
    let ingress = find(&all, "Ingress", "palisade-gateway");
    assert_eq!(ingress["spec"]["ingressClassName"], "nginx");
    assert_eq!(ingress["spec"]["tls"][0]["secretName"], "palisade-tls");
    let rule = &ingress["spec"]["rules"][0];
    assert_eq!(rule["host"], "palisade.example.com");
    assert_eq!(
        rule["http"]["paths"][0]["backend"]["service"],
        json!({"name": "palisade-gateway", "port": {"number": 8080}})
    );
    let route = find(&all, "HTTPRoute", "palisade-gateway");
    assert_eq!(route["spec"]["parentRefs"][0]["sectionName"], "https");
    assert_eq!(
        route["spec"]["rules"][0]["backendRefs"][0],
        json!({"name": "palisade-gateway", "port": 8080})
    );

    // --- Metrics apart: their own Service and port, reachable only from
    // the monitoring namespace; the Service agents call has no such port.
    let api = find(&all, "Service", "palisade-gateway");
    assert_eq!(api["spec"]["ports"].as_array().unwrap().len(), 1, "{api}");
    let metrics = find(&all, "Service", "palisade-gateway-metrics");
    assert_eq!(
        metrics["spec"]["ports"][0],
        json!({"name": "metrics", "port": 9100, "targetPort": "metrics"})
    );
    let policy = find(&all, "NetworkPolicy", "palisade-gateway");
    let ingress_rules = policy["spec"]["ingress"].as_array().unwrap();
    let scrape = ingress_rules
        .iter()
        .find(|r| r["ports"][0]["port"] == 9100)
        .unwrap();
    assert_eq!(
        scrape["from"],
        json!([{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}])
    );
    let monitor = find(&all, "ServiceMonitor", "palisade");
    let ports: Vec<&Value> = monitor["spec"]["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["port"])
        .collect();
    assert_eq!(ports, [&json!("metrics")], "{monitor}");

    // --- Alerts: each parses as PromQL and uses only exported metrics.
    let rule = find(&all, "PrometheusRule", "palisade");
    assert_eq!(
        rule["metadata"]["labels"]["release"],
        "kube-prometheus-stack"
    );
    let alerts = rule["spec"]["groups"][0]["rules"].as_array().unwrap();
    let names: Vec<&str> = alerts
        .iter()
        .map(|a| a["alert"].as_str().unwrap())
        .collect();
    for expected in [
        "PalisadeApprovalsNearExpiry",
        "PalisadeAuditDatabaseDown",
        "PalisadeGatewaysServeDifferentConfigurations",
        "PalisadeDenialBurst",
    ] {
        assert!(names.contains(&expected), "{expected} missing: {names:?}");
    }
    let sources = exported_metrics();
    let metric = regex::Regex::new(r"palisade_[a-z_]+").unwrap();
    for alert in alerts {
        let expr = alert["expr"].as_str().unwrap();
        promql_parser::parser::parse(expr)
            .unwrap_or_else(|e| panic!("{}: {e}: {expr}", alert["alert"]));
        for name in metric.find_iter(expr) {
            assert!(
                sources.contains(&format!("\"{}\"", name.as_str())),
                "{} uses {}, which nothing exports",
                alert["alert"],
                name.as_str()
            );
        }
        let summary = alert["annotations"]["summary"].as_str().unwrap();
        assert!(!summary.is_empty());
    }
    let burst = alerts
        .iter()
        .find(|a| a["alert"] == "PalisadeDenialBurst")
        .unwrap();
    assert!(burst["expr"].as_str().unwrap().ends_with("> 20"), "{burst}");
    assert!(
        burst["annotations"]["summary"]
            .as_str()
            .unwrap()
            .contains("{{ $labels.agent }}"),
        "{burst}"
    );

    // --- The defaults: metrics on 9090, nothing exposed.
    let default = rendered_documents(&out["cases"]["default"]);
    let args = strings(
        &find(&default, "Deployment", "palisade-gateway")["spec"]["template"]["spec"]["containers"]
            [0]["args"],
    );
    assert!(
        args.contains(&"--metrics-listen=0.0.0.0:9090".to_owned()),
        "{args:?}"
    );
    assert!(
        !args.iter().any(|a| a.starts_with("--audit-read-token-env")),
        "{args:?}"
    );
    assert!(!default.iter().any(|d| d["kind"] == "Ingress"
        || d["kind"] == "HTTPRoute"
        || d["kind"] == "PrometheusRule"));

    // --- Wrong values, refused naming the field.
    for (case, needle) in [
        ("pod_label_of_the_chart", "/gateway/podLabels"),
        ("ingress_without_hosts", "/gateway/ingress/hosts"),
        ("route_without_a_gateway", "/gateway/httpRoute/parentRefs"),
        ("metrics_on_the_api_port", "/gateway/metricsPort"),
        ("extra_arg_not_a_flag", "/operator/extraArgs/0"),
        ("misspelt_ingress_key", "host"),
        ("pull_secret_as_a_string", "/imagePullSecrets/0"),
        (
            "console_without_an_auditor_token",
            "gateway.console.enabled needs gateway.auditorToken.secretName",
        ),
        ("console_misspelt", "enable"),
    ] {
        let message = out["refused"][case]
            .as_str()
            .unwrap_or_else(|| panic!("{case} was accepted"));
        assert!(message.contains(needle), "{case}: {message}");
    }
}
