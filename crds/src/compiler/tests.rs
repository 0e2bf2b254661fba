//! The compiler's own seams, tested from inside: a panic on one object.

use super::*;
use serde_json::json;

fn policy(name: &str, generation: i64) -> AIPolicy {
    serde_json::from_value(json!({
        "apiVersion": "palisade.dev/v1alpha1", "kind": "AIPolicy",
        "metadata": {"name": name, "namespace": "clinic", "generation": generation},
        "spec": {
            "agents": [{"name": format!("{name}-agent"), "serviceAccount": name}],
            "providers": [{"name": "local", "type": "ollama", "baseUrl": "http://ollama.ai.svc:11434"}],
            "routing": {"defaultProvider": "local"},
        }
    }))
    .unwrap()
}

fn input<'a>(
    policies: &'a [AIPolicy],
    secrets: &'a Secrets,
    previous: Option<&'a PolicyBundle>,
) -> CompileInput<'a> {
    CompileInput {
        policies,
        grants: &[],
        secrets,
        egress: Box::leak(Box::default()),
        previous,
        now: "2026-11-22T12:00:00Z".parse().unwrap(),
        policy_budget: None,
    }
}

/// A bug that shows on policy `b` only.
fn panics_on_b(
    p: &AIPolicy,
    object: &ObjectRef,
    secrets: &Secrets,
    egress: &Egress,
) -> Result<Policy, Vec<Diagnostic>> {
    assert_ne!(object.name, "b", "a bug that shows on b only");
    compile_policy(p, object, secrets, egress)
}

/// Issue 23: a panic while compiling one policy (a bug) refuses that
/// generation alone: the others are compiled, and the policy keeps its
/// last good generation, kill switches included.
#[test]
fn a_panic_while_compiling_one_policy_leaves_the_others_compiled() {
    let secrets = Secrets::default();
    let first = compile(input(&[policy("b", 1)], &secrets, None)).unwrap();

    let mut b = policy("b", 2);
    b.spec.suspend = true;
    let policies = [policy("a", 1), b, policy("c", 1)];
    let c = compile_with(input(&policies, &secrets, Some(&first.bundle)), panics_on_b).unwrap();

    let served: Vec<(&str, i64, bool)> = c
        .bundle
        .policies()
        .iter()
        .map(|p| (p.name.as_str(), p.generation, p.suspend))
        .collect();
    assert_eq!(served, [("a", 1, false), ("b", 1, true), ("c", 1, false)]);
    let report = c.policies.iter().find(|r| r.object.name == "b").unwrap();
    assert_eq!(
        (report.served_generation, report.accepted()),
        (Some(1), false)
    );
    let message = report.diagnostics[0].to_string();
    assert!(
        message.contains("the compiler failed on this generation")
            && message.contains("a bug that shows on b only"),
        "{message}"
    );
}

/// Issue 27: a quarantine annotation suspends its agent in the served
/// generation — the newest, or the last good one when the newest does not
/// compile — and the report names it; an annotation for an agent the
/// policy does not list changes nothing.
#[test]
fn a_quarantine_annotation_suspends_its_agent_whichever_generation_is_served() {
    let secrets = Secrets::default();
    let q = crate::quarantine::Quarantine {
        kind: "sql_injection".into(),
        since: "2026-12-06T21:00:00Z".parse().unwrap(),
        detail: "argument query looks like SQL injection".into(),
        request_id: "req-9".into(),
        by: "gateway-a".into(),
    };
    let annotate = |p: &mut AIPolicy| {
        p.metadata.annotations = Some(
            [
                (
                    crate::quarantine::annotation_key("b-agent"),
                    serde_json::to_string(&q).unwrap(),
                ),
                (
                    crate::quarantine::annotation_key("ghost"),
                    "by hand".to_owned(),
                ),
            ]
            .into(),
        );
    };
    let mut b = policy("b", 1);
    annotate(&mut b);
    let c = compile(input(std::slice::from_ref(&b), &secrets, None)).unwrap();
    let agent = c.bundle.policies()[0].agent("b-agent").unwrap();
    assert_eq!(agent.quarantine.as_deref(), Some(q.why().as_str()));
    let report = &c.policies[0];
    assert_eq!(report.quarantined, [("b-agent".to_owned(), q.why())]);

    // Generation 2 does not compile: generation 1 is served, quarantined.
    let first = compile(input(&[policy("b", 1)], &secrets, None)).unwrap();
    let mut broken = policy("b", 2);
    broken.spec.routing.default_provider = "nowhere".into();
    annotate(&mut broken);
    let c = compile(input(&[broken], &secrets, Some(&first.bundle))).unwrap();
    let served = &c.bundle.policies()[0];
    assert_eq!(served.generation, 1);
    assert!(served.agent("b-agent").unwrap().quarantine.is_some());
}

/// Issue 28: `spec.mcpServers` compiles to the servers agents reach at
/// `/mcp/{name}`; a URL with credentials in it, a name given twice,
/// credentials over plain http://, or a credentials Secret that does not
/// exist are refused naming the field.
#[test]
fn mcp_servers_compile_and_bad_ones_name_their_field() {
    let secrets = Secrets::default();
    let mut p = policy("a", 1);
    p.spec.mcp_servers = serde_json::from_value(json!([
        {"name": "files", "url": "http://files-mcp.tools.svc:8000/mcp", "timeout": "5s"}
    ]))
    .unwrap();
    let c = compile(input(std::slice::from_ref(&p), &secrets, None)).unwrap();
    let server = c.bundle.policies()[0].mcp_server("files").unwrap();
    assert_eq!(
        (server.url.as_str(), server.timeout_ms),
        ("http://files-mcp.tools.svc:8000/mcp", 5000)
    );

    p.spec.mcp_servers = serde_json::from_value(json!([
        {"name": "files", "url": "http://user:pw@files/mcp"},
        {"name": "files", "url": "http://files.tools.svc/mcp", "credentialsSecretRef": {"name": "nope", "key": "token"}}
    ]))
    .unwrap();
    let c = compile(input(std::slice::from_ref(&p), &secrets, None)).unwrap();
    let fields: Vec<String> = c.policies[0]
        .diagnostics
        .iter()
        .map(|d| d.field.clone())
        .collect();
    assert_eq!(
        fields,
        [
            "spec.mcpServers[0].url",
            "spec.mcpServers[1].name",
            // Credentials over plain http:// are refused like a provider's.
            "spec.mcpServers[1].url",
            "spec.mcpServers[1].credentialsSecretRef"
        ],
        "{:?}",
        c.policies[0].diagnostics
    );
}
