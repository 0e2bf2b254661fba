//! The compiler: diagnostics name the object, the field and the fix; one
//! bad policy never breaks the others; a policy that stops compiling keeps
//! its last good generation.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use jiff::Timestamp;
use palisade_crds::{AIPolicy, Compilation, CompileInput, GrantState, Secrets, ToolGrant, compile};
use palisade_policy::{Egress, Outcome, PolicyBundle, ReasonCode, ToolCall};
use serde_json::json;

fn now() -> Timestamp {
    "2026-11-22T12:00:00Z".parse().unwrap()
}

/// A valid policy named `name` for `agents`, with `extra` merged into its spec.
fn policy(
    name: &str,
    generation: i64,
    created: &str,
    agents: &[&str],
    extra: serde_json::Value,
) -> AIPolicy {
    let mut spec = json!({
        "agents": agents.iter().map(|a| json!({"name": a, "serviceAccount": a})).collect::<Vec<_>>(),
        "providers": [
            {"name": "local", "type": "ollama", "baseUrl": "http://ollama.ollama.svc:11434", "defaultModel": "llama3.1"},
            {"name": "cloud", "type": "openai", "baseUrl": "https://api.openai.com",
             "credentialsSecretRef": {"name": "openai", "key": "apiKey"}}
        ],
        "routing": {"defaultProvider": "cloud", "rules": [{"name": "phi", "keywords": ["patient"], "provider": "local"}]},
        "tools": {"rules": [{"tools": ["sql_query"], "action": "Allow"}]}
    });
    for (k, v) in extra.as_object().unwrap() {
        spec[k] = v.clone();
    }
    serde_json::from_value(json!({
        "apiVersion": "palisade.dev/v1alpha1", "kind": "AIPolicy",
        "metadata": {"name": name, "namespace": "clinic", "generation": generation, "creationTimestamp": created},
        "spec": spec
    }))
    .unwrap()
}

fn grant(name: &str, expires: &str, extra: serde_json::Value) -> ToolGrant {
    let mut spec = json!({"agents": ["intake"], "tools": ["export_csv"], "action": "Allow", "expiresAt": expires, "reason": "INC-1"});
    for (k, v) in extra.as_object().unwrap() {
        spec[k] = v.clone();
    }
    serde_json::from_value(json!({
        "apiVersion": "palisade.dev/v1alpha1", "kind": "ToolGrant",
        "metadata": {"name": name, "namespace": "clinic", "generation": 1}, "spec": spec
    }))
    .unwrap()
}

fn secrets() -> Secrets {
    let mut s = Secrets::default();
    s.insert("clinic", "openai", "apiKey", "sk-live");
    s.allow_as_credentials("clinic", "openai");
    s.insert("clinic", "intake-key", "key", "agent-secret");
    s
}

fn run(
    policies: &[AIPolicy],
    grants: &[ToolGrant],
    previous: Option<&PolicyBundle>,
) -> Compilation {
    compile(CompileInput {
        policies,
        grants,
        secrets: &secrets(),
        egress: &Egress::default(),
        previous,
        now: now(),
        policy_budget: None,
    })
    .unwrap()
}

fn only_diagnostic(c: &Compilation) -> String {
    let all: Vec<String> = c.errors().map(ToString::to_string).collect();
    assert_eq!(all.len(), 1, "{all:#?}");
    all[0].clone()
}

fn tool(bundle: &PolicyBundle, agent: &str, tool: &str) -> palisade_policy::Decision {
    bundle
        .evaluate_tool(
            &ToolCall {
                namespace: "clinic",
                agent,
                tool,
                arguments: &json!({}),
            },
            now(),
        )
        .decision
}

const T0: &str = "2026-01-01T00:00:00Z";
const T1: &str = "2026-02-01T00:00:00Z";

#[test]
fn a_valid_policy_compiles_with_its_credentials_resolved() {
    let c = run(&[policy("p", 1, T0, &["intake"], json!({}))], &[], None);
    assert_eq!(c.errors().count(), 0);
    let p = c.bundle.policy("clinic", "p").unwrap();
    assert_eq!(
        p.provider("cloud")
            .unwrap()
            .api_key
            .as_ref()
            .unwrap()
            .expose(),
        "sk-live"
    );
    assert_eq!(c.policies[0].served_generation, Some(1));
    assert_eq!(
        tool(&c.bundle, "intake", "sql_query").outcome,
        Outcome::Allow
    );
}

#[test]
fn an_agent_api_key_reaches_the_bundle_only_as_its_sha256() {
    let p = policy(
        "p",
        1,
        T0,
        &[],
        json!({"agents": [{"name": "intake", "apiKeySecretRef": {"name": "intake-key", "key": "key"}}]}),
    );
    let c = run(&[p], &[], None);
    let json = serde_json::to_string(&c.bundle).unwrap();
    assert!(!json.contains("agent-secret"));
    assert_eq!(
        c.bundle.policy("clinic", "p").unwrap().agents[0]
            .api_key_sha256
            .as_deref(),
        Some(palisade_policy::api_key_digest("agent-secret").as_str())
    );
}

#[test]
fn a_bad_regex_is_a_diagnostic_naming_the_pattern() {
    let p = policy(
        "p",
        1,
        T0,
        &["intake"],
        json!({"routing": {"defaultProvider": "cloud", "rules": [{"patterns": ["ok", "(unclosed"], "provider": "local"}]}}),
    );
    let d = only_diagnostic(&run(&[p], &[], None));
    assert!(
        d.starts_with(
            "AIPolicy clinic/p: spec.routing.rules[0].patterns[1]: invalid regular expression"
        ),
        "{d}"
    );
    assert!(d.contains("fix:"), "{d}");
}

#[test]
fn a_routing_pattern_too_costly_to_match_is_a_diagnostic_naming_the_pattern() {
    // Valid, and within the old 16 MiB limit, but matching it costs about
    // a second per MiB of prompt, on every chat request.
    let p = policy(
        "p",
        1,
        T0,
        &["intake"],
        json!({"routing": {"defaultProvider": "cloud", "rules": [
            {"patterns": [r"\b\d{3}-\d{2}-\d{4}\b", r"(?i)(\w+\s*){200}zzz"], "provider": "local"}
        ]}}),
    );
    let d = only_diagnostic(&run(&[p], &[], None));
    assert!(
        d.starts_with("AIPolicy clinic/p: spec.routing.rules[0].patterns[1]: "),
        "{d}"
    );
    assert!(d.contains("size limit"), "{d}");
    assert!(d.contains("fix:"), "{d}");
}

#[test]
fn a_bad_cel_condition_is_a_diagnostic_naming_the_rule() {
    let p = policy(
        "p",
        1,
        T0,
        &["intake"],
        json!({"tools": {"rules": [{"tools": ["pay"], "action": "Allow", "when": "args.amount <"}]}}),
    );
    let d = only_diagnostic(&run(&[p], &[], None));
    assert!(
        d.starts_with(
            "AIPolicy clinic/p: spec.tools.rules[0].when: CEL expression does not compile"
        ),
        "{d}"
    );
}

#[test]
fn a_cel_condition_that_could_run_away_is_a_diagnostic_naming_the_rule() {
    let p = policy(
        "p",
        1,
        T0,
        &["intake"],
        json!({"tools": {"rules": [
            {"tools": ["pay"], "action": "Allow", "when": "has(args.amount) && args.amount < 100"},
            {"tools": ["mail"], "action": "Allow", "when": "args.to.exists(x, args.blocked.exists(y, x == y))"}
        ]}}),
    );
    let d = only_diagnostic(&run(&[p], &[], None));
    assert!(
        d.starts_with("AIPolicy clinic/p: spec.tools.rules[1].when: CEL expression is too costly"),
        "{d}"
    );
    assert!(d.contains("fix:"), "{d}");
}

#[test]
fn an_unknown_provider_is_a_diagnostic_listing_the_known_ones() {
    let p = policy(
        "p",
        1,
        T0,
        &["intake"],
        json!({"routing": {"defaultProvider": "on-prem"}}),
    );
    let d = only_diagnostic(&run(&[p], &[], None));
    assert_eq!(
        d,
        "AIPolicy clinic/p: spec.routing.defaultProvider: names provider \"on-prem\", which spec.providers does not define (fix: name one of: local, cloud)"
    );
}

#[test]
fn a_missing_secret_is_a_diagnostic_with_the_kubectl_command_to_fix_it() {
    let p = policy(
        "p",
        1,
        T0,
        &["intake"],
        json!({"providers": [
            {"name": "cloud", "type": "openai", "baseUrl": "https://api.openai.com", "credentialsSecretRef": {"name": "nope", "key": "apiKey"}},
            {"name": "local", "type": "ollama", "baseUrl": "http://ollama.ollama.svc:11434"}
        ]}),
    );
    let d = only_diagnostic(&run(&[p], &[], None));
    assert!(
        d.contains("spec.providers[0].credentialsSecretRef: Secret clinic/nope does not exist"),
        "{d}"
    );
    assert!(
        d.contains("kubectl create secret generic nope -n clinic --from-literal=apiKey=..."),
        "{d}"
    );
}

#[test]
fn credentials_in_a_base_url_are_refused_without_being_echoed() {
    let p = policy(
        "p",
        1,
        T0,
        &["intake"],
        json!({"providers": [
            {"name": "local", "type": "ollama", "baseUrl": "http://ollama.ollama.svc:11434"},
            {"name": "cloud", "type": "openai", "baseUrl": "https://bob:s3cr3t-key@llm.example.com/v1"}
        ]}),
    );
    let d = only_diagnostic(&run(&[p], &[], None));
    assert!(
        d.contains("spec.providers[1].baseUrl: holds credentials (user:password@host)"),
        "{d}"
    );
    assert!(d.contains("credentialsSecretRef"), "{d}");
    assert!(!d.contains("s3cr3t-key"), "the password is echoed: {d}");
    // An @ in the path is not userinfo.
    let fine = policy(
        "q",
        1,
        T0,
        &["intake"],
        json!({"providers": [
            {"name": "local", "type": "ollama", "baseUrl": "http://ollama.ollama.svc:11434/team@x"},
            {"name": "cloud", "type": "openai", "baseUrl": "https://api.openai.com",
             "credentialsSecretRef": {"name": "openai", "key": "apiKey"}}
        ]}),
    );
    let c = run(&[fine], &[], None);
    assert_eq!(
        c.errors().count(),
        0,
        "{:?}",
        c.errors().collect::<Vec<_>>()
    );
}

/// A policy in `namespace` whose one agent `bot` authenticates with the
/// key in Secret `bot-key` of that namespace.
fn keyed_policy(namespace: &str, name: &str, created: &str) -> AIPolicy {
    let mut p = policy(
        name,
        1,
        created,
        &[],
        json!({"agents": [{"name": "bot", "apiKeySecretRef": {"name": "bot-key", "key": "key"}}]}),
    );
    p.metadata.namespace = Some(namespace.into());
    p
}

fn run_with_keys(policies: &[AIPolicy], keys: &[(&str, &str)]) -> Compilation {
    let mut secrets = Secrets::default();
    for (namespace, key) in keys {
        secrets.insert(namespace, "openai", "apiKey", "sk-live");
        secrets.allow_as_credentials(namespace, "openai");
        secrets.insert(namespace, "bot-key", "key", *key);
    }
    compile(CompileInput {
        policies,
        grants: &[],
        secrets: &secrets,
        egress: &Egress::default(),
        previous: None,
        now: now(),
        policy_budget: None,
    })
    .unwrap()
}

#[test]
fn an_api_key_two_policies_use_stays_with_the_older_one_and_the_newer_is_refused() {
    // The older policy's namespace sorts after the newer one's: age decides,
    // not the alphabet.
    let older = keyed_policy("zeta", "team-z", T0);
    let newer = keyed_policy("alpha", "team-a", T1);
    let c = run_with_keys(
        &[newer, older],
        &[("zeta", "shared-key"), ("alpha", "shared-key")],
    );
    let d = only_diagnostic(&c);
    assert!(
        d.starts_with("AIPolicy alpha/team-a: spec.agents[0].apiKeySecretRef: "),
        "{d}"
    );
    assert!(
        d.contains("AIPolicy zeta/team-z"),
        "names the other policy: {d}"
    );
    assert!(d.contains("fix:"), "{d}");
    assert!(!d.contains("shared-key"), "the key is echoed: {d}");
    // Only the older policy is served: requests with the key are its agent's.
    assert!(c.bundle.policy("zeta", "team-z").is_some());
    assert!(c.bundle.policy("alpha", "team-a").is_none());
    let refused = c
        .policies
        .iter()
        .find(|r| r.object.name == "team-a")
        .unwrap();
    assert_eq!(refused.served_generation, None);
    // Reports keep their order: by namespace.
    let order: Vec<&str> = c
        .policies
        .iter()
        .map(|r| r.object.namespace.as_str())
        .collect();
    assert_eq!(order, ["alpha", "zeta"]);
    // Distinct keys: both compile.
    let c = run_with_keys(
        &[
            keyed_policy("zeta", "team-z", T0),
            keyed_policy("alpha", "team-a", T1),
        ],
        &[("zeta", "key-z"), ("alpha", "key-a")],
    );
    assert_eq!(c.errors().count(), 0);
}

#[test]
fn two_agents_of_one_policy_cannot_share_an_api_key() {
    let p = policy(
        "p",
        1,
        T0,
        &[],
        json!({"agents": [
            {"name": "intake", "apiKeySecretRef": {"name": "intake-key", "key": "key"}},
            {"name": "billing", "apiKeySecretRef": {"name": "intake-key", "key": "key"}}
        ]}),
    );
    let d = only_diagnostic(&run(&[p], &[], None));
    assert!(
        d.starts_with("AIPolicy clinic/p: spec.agents[1].apiKeySecretRef: "),
        "{d}"
    );
    assert!(d.contains("\"intake\""), "names the other agent: {d}");
}

#[test]
fn a_duplicate_agent_stays_with_the_older_policy() {
    let older = policy("older", 1, T0, &["intake"], json!({}));
    let newer = policy("newer", 1, T1, &["intake", "billing"], json!({}));
    let c = run(&[newer, older], &[], None);
    let d = only_diagnostic(&c);
    assert!(d.starts_with("AIPolicy clinic/newer: spec.agents[0].name: agent \"intake\" is already governed by AIPolicy \"older\""), "{d}");
    assert_eq!(
        tool(&c.bundle, "intake", "sql_query").policy.unwrap().name,
        "older"
    );
    // The newer policy never compiled, so its other agent is denied, not ungoverned.
    assert_eq!(
        tool(&c.bundle, "billing", "sql_query").reason_code,
        ReasonCode::PolicyInvalid
    );
}

#[test]
fn one_bad_policy_never_breaks_the_others() {
    let good = policy("good", 1, T0, &["intake"], json!({}));
    let bad = policy(
        "bad",
        1,
        T0,
        &["billing"],
        json!({"routing": {"defaultProvider": "nowhere"}}),
    );
    let c = run(&[bad, good], &[], None);
    assert_eq!(c.errors().count(), 1);
    assert_eq!(
        tool(&c.bundle, "intake", "sql_query").outcome,
        Outcome::Allow
    );
    assert_eq!(
        tool(&c.bundle, "billing", "sql_query").reason_code,
        ReasonCode::PolicyInvalid
    );
    let bad_report = c.policies.iter().find(|r| r.object.name == "bad").unwrap();
    assert!(!bad_report.accepted());
    assert_eq!(bad_report.served_generation, None);
}

#[test]
fn a_policy_whose_new_generation_is_invalid_keeps_serving_its_last_good_one() {
    let v1 = policy("p", 1, T0, &["intake"], json!({}));
    let first = run(&[v1], &[], None);
    let v2 = policy(
        "p",
        2,
        T0,
        &["intake"],
        json!({"tools": {"rules": [{"tools": ["sql_query"], "action": "Deny", "when": "bad ("}]}}),
    );
    let second = run(&[v2], &[], Some(&first.bundle));
    let report = &second.policies[0];
    assert_eq!(
        (
            report.generation,
            report.served_generation,
            report.accepted()
        ),
        (2, Some(1), false)
    );
    let d = tool(&second.bundle, "intake", "sql_query");
    assert_eq!(
        (d.outcome, d.policy.unwrap().generation),
        (Outcome::Allow, 1)
    );
    // Fixing it serves the new generation.
    let v3 = policy(
        "p",
        3,
        T0,
        &["intake"],
        json!({"tools": {"rules": [{"tools": ["sql_query"], "action": "Deny"}]}}),
    );
    let third = run(&[v3], &[], Some(&second.bundle));
    assert_eq!(
        tool(&third.bundle, "intake", "sql_query").reason_code,
        ReasonCode::ToolDeniedByRule
    );
}

#[test]
fn grants_are_active_expired_or_invalid() {
    let p = policy("p", 1, T0, &["intake"], json!({}));
    let grants = [
        grant("active", "2026-12-01T00:00:00Z", json!({})),
        grant("expired", "2026-11-01T00:00:00Z", json!({})),
        grant(
            "invalid",
            "2026-12-01T00:00:00Z",
            json!({"when": "args.x ==", "tools": ["ok", "bad["]}),
        ),
    ];
    let c = run(&[p], &grants, None);
    let states: Vec<(String, GrantState)> = c
        .grants
        .iter()
        .map(|g| (g.object.name.clone(), g.state))
        .collect();
    assert_eq!(
        states,
        [
            ("active".into(), GrantState::Active),
            ("expired".into(), GrantState::Expired),
            ("invalid".into(), GrantState::Invalid)
        ]
    );
    let expired = c.grants[1].diagnostics[0].to_string();
    assert!(expired.starts_with("warning: ToolGrant clinic/expired: spec.expiresAt: the grant expired at 2026-11-01T00:00:00Z"), "{expired}");
    let invalid: Vec<String> = c.grants[2]
        .diagnostics
        .iter()
        .map(|d| d.field.clone())
        .collect();
    assert_eq!(invalid, ["spec.tools[1]", "spec.when"]);
    assert_eq!(
        c.bundle.grants().len(),
        1,
        "only the active grant is in the bundle"
    );
    assert_eq!(
        tool(&c.bundle, "intake", "export_csv").reason_code,
        ReasonCode::ToolAllowedByGrant
    );
}

#[test]
fn compiling_the_same_input_twice_gives_the_same_revision() {
    let input = [
        policy("a", 1, T0, &["intake"], json!({})),
        policy("b", 1, T0, &["billing"], json!({})),
    ];
    assert_eq!(
        run(&input, &[], None).bundle.revision(),
        run(&input, &[], None).bundle.revision()
    );
}

#[test]
fn rule_names_must_be_unique_because_decisions_cite_them() {
    let p = policy(
        "p",
        1,
        T0,
        &["intake"],
        json!({"tools": {"rules": [{"name": "r", "tools": ["a"], "action": "Allow"}, {"name": "r", "tools": ["b"], "action": "Deny"}]}}),
    );
    let d = only_diagnostic(&run(&[p], &[], None));
    assert!(
        d.contains("spec.tools.rules[1].name: rule name \"r\" is used twice"),
        "{d}"
    );
}

/// Compiles `p` alone with `secrets` under `egress`.
fn compile_under(p: AIPolicy, secrets: &Secrets, egress: &Egress) -> Compilation {
    compile(CompileInput {
        policies: &[p],
        grants: &[],
        secrets,
        egress,
        previous: None,
        now: now(),
        policy_budget: None,
    })
    .unwrap()
}

/// [`compile_under`]'s errors; the policy is served exactly when there
/// are none.
fn diagnostics_under(p: AIPolicy, secrets: &Secrets, egress: &Egress) -> Vec<String> {
    let c = compile_under(p, secrets, egress);
    let served = c.bundle.policy("clinic", "p").is_some();
    let errors: Vec<String> = c.errors().map(ToString::to_string).collect();
    assert_eq!(served, errors.is_empty(), "{errors:#?}");
    errors
}

#[test]
fn a_credentials_secret_must_be_opted_in_by_its_label() {
    let p = policy("p", 1, T0, &["intake"], json!({}));
    let mut unlabelled = Secrets::default();
    unlabelled.insert("clinic", "openai", "apiKey", "sk-live");
    let d = diagnostics_under(p.clone(), &unlabelled, &Egress::default());
    assert_eq!(d.len(), 1, "{d:#?}");
    assert!(
        d[0].starts_with("AIPolicy clinic/p: spec.providers[1].credentialsSecretRef: Secret clinic/openai is not labelled palisade.dev/credentials: \"true\""),
        "{}",
        d[0]
    );
    assert!(
        d[0].contains("kubectl label secret openai -n clinic palisade.dev/credentials=true"),
        "{}",
        d[0]
    );
    assert!(!d[0].contains("sk-live"), "{}", d[0]);
    // The same Secret, labelled by its owner.
    assert!(diagnostics_under(p.clone(), &secrets(), &Egress::default()).is_empty());
    // A label on another Secret of the same name elsewhere does not count.
    let mut elsewhere = unlabelled.clone();
    elsewhere.allow_as_credentials("billing", "openai");
    assert_eq!(
        diagnostics_under(p, &elsewhere, &Egress::default()).len(),
        1
    );
}

#[test]
fn provider_urls_must_be_on_the_platforms_allow_list() {
    let with_cloud = |url: &str| {
        policy(
            "p",
            1,
            T0,
            &["intake"],
            json!({"providers": [
                {"name": "local", "type": "ollama", "baseUrl": "http://ollama.ollama.svc:11434"},
                {"name": "cloud", "type": "openai", "baseUrl": url,
                 "credentialsSecretRef": {"name": "openai", "key": "apiKey"}}
            ]}),
        )
    };
    // The author's own host, or an address inside the cluster's network.
    for url in [
        "https://collector.evil.example",
        "http://169.254.169.254/latest/meta-data",
        "https://api.openai.com.evil.example",
    ] {
        let d = diagnostics_under(with_cloud(url), &secrets(), &Egress::default());
        assert_eq!(d.len(), 1, "{url}: {d:#?}");
        assert!(
            d[0].contains("spec.providers[1].baseUrl: ")
                && d[0].contains("is not on the platform's allow-list of provider URLs (https://api.openai.com, https://api.anthropic.com, http://*.svc, http://*.svc.cluster.local)")
                && d[0].contains("providers.allowedBaseUrls"),
            "{url}: {}",
            d[0]
        );
    }
    // An in-cluster provider over plain HTTP: allowed, but not with a key.
    let plain = with_cloud("http://vllm.ai.svc.cluster.local:8000/v1");
    let d = diagnostics_under(plain.clone(), &secrets(), &Egress::default());
    assert_eq!(d.len(), 1, "{d:#?}");
    assert!(
        d[0].contains("is plain http:// and the provider has credentials")
            && d[0].contains("providers.allowPlaintextCredentials"),
        "{}",
        d[0]
    );
    let lenient = Egress::from_flag(None, true).unwrap();
    assert!(diagnostics_under(plain, &secrets(), &lenient).is_empty());
    // The admin's own list.
    let own = Egress::from_flag(Some("https://llm.corp.example, http://*.svc"), false).unwrap();
    assert!(
        diagnostics_under(with_cloud("https://llm.corp.example/v1"), &secrets(), &own).is_empty()
    );
    assert_eq!(
        diagnostics_under(with_cloud("https://api.openai.com"), &secrets(), &own).len(),
        1
    );
}

#[test]
fn cloud_routing_allow_rules_only_needs_a_local_default_and_fallback() {
    let regulated =
        |routing: serde_json::Value| policy("p", 1, T0, &["intake"], json!({"routing": routing}));
    let d = diagnostics_under(
        regulated(
            json!({"cloud": "AllowRulesOnly", "defaultProvider": "cloud", "fallbackProvider": "cloud"}),
        ),
        &secrets(),
        &Egress::default(),
    );
    assert_eq!(d.len(), 2, "{d:#?}");
    assert!(
        d[0].starts_with("AIPolicy clinic/p: spec.routing.defaultProvider: names provider \"cloud\", a cloud provider, while spec.routing.cloud is AllowRulesOnly")
            && d[0].contains("name a local provider (local)"),
        "{}",
        d[0]
    );
    assert!(d[1].contains("spec.routing.fallbackProvider"), "{}", d[1]);
    // Local default: accepted, and the bundle routes unmatched requests
    // there with routing.cloud_not_allowed.
    let ok = regulated(
        json!({"cloud": "AllowRulesOnly", "defaultProvider": "local",
        "rules": [{"name": "research", "agents": ["research"], "provider": "cloud"}]}),
    );
    let c = compile_under(ok, &secrets(), &Egress::default());
    assert_eq!(c.errors().count(), 0);
    let route = c
        .bundle
        .evaluate_chat(&palisade_policy::ChatRequest {
            namespace: "clinic",
            agent: "intake",
            model: "gpt-4o",
            prompt: "hi",
            provider_text: "hi",
        })
        .decision
        .route
        .unwrap();
    assert_eq!(
        (route.provider.as_str(), route.reasons.as_slice()),
        ("local", &[ReasonCode::RoutingCloudNotAllowed][..])
    );
    // An OpenAI-compatible server of one's own can be declared local.
    let own = policy(
        "p",
        1,
        T0,
        &["intake"],
        json!({"providers": [
            {"name": "vllm", "type": "openai", "baseUrl": "http://vllm.ai.svc:8000/v1", "location": "Local"}
        ], "routing": {"cloud": "AllowRulesOnly", "defaultProvider": "vllm"}}),
    );
    assert!(diagnostics_under(own, &secrets(), &Egress::default()).is_empty());
}

/// `toolCalling: Prompt` reaches the bundle; left out, a provider is
/// `Native` and its bundle JSON does not change.
#[test]
fn a_provider_for_models_without_tool_support_is_marked_prompt() {
    let with = |calling: serde_json::Value| {
        let mut provider =
            json!({"name": "small", "type": "ollama", "baseUrl": "http://ollama.ai.svc:11434"});
        if !calling.is_null() {
            provider["toolCalling"] = calling;
        }
        let p = policy(
            "p",
            1,
            T0,
            &["intake"],
            json!({"providers": [provider], "routing": {"defaultProvider": "small"}}),
        );
        compile_under(p, &secrets(), &Egress::default()).bundle
    };
    let prompt = with(json!("Prompt"));
    let provider = &prompt.policy("clinic", "p").unwrap().providers[0];
    assert_eq!(provider.tool_calling, palisade_policy::ToolCalling::Prompt);
    let native = serde_json::to_string(&with(serde_json::Value::Null)).unwrap();
    assert!(!native.contains("toolCalling"), "{native}");
    assert_eq!(
        native,
        serde_json::to_string(&with(json!("Native"))).unwrap()
    );
}

/// `spec.tools.run`: what Palisade runs is compiled into the bundle, and
/// each mistake is a diagnostic naming the field and the fix.
#[test]
fn tools_palisade_runs_compile_and_their_mistakes_name_the_field() {
    let run = |run: serde_json::Value| {
        policy(
            "p",
            1,
            T0,
            &["intake"],
            json!({"tools": {"rules": [{"tools": ["sql_query"], "action": "Allow"}], "run": run}}),
        )
    };
    let mut s = secrets();
    s.insert(
        "clinic",
        "warehouse",
        "url",
        "postgres://reader:pw@db.clinic.svc/w",
    );
    s.allow_as_credentials("clinic", "warehouse");
    s.insert(
        "clinic",
        "unlabelled",
        "url",
        "postgres://reader:pw@db.clinic.svc/w",
    );
    let good = run(json!({
        "sqlQuery": {"databases": [
            {"name": "charts", "sqlitePath": "/var/lib/palisade/tools/charts.db"},
            {"name": "warehouse", "postgresSecretRef": {"name": "warehouse", "key": "url"}}
        ], "maxRows": 100, "timeout": "2s"},
        "files": {"roots": [{"name": "notes", "path": "/data/notes/", "access": "ReadWrite", "globs": ["*.md"]}]},
        "http": [{"name": "create_ticket", "url": "https://api.openai.com/tickets",
                  "credentialsSecretRef": {"name": "openai", "key": "apiKey"}}],
        "maxSteps": 3,
        "offer": "Always"
    }));
    let c = compile_under(good, &s, &Egress::default());
    let p = c.bundle.policy("clinic", "p").unwrap();
    let names: Vec<String> = p.runnable.all().map(|t| t.name().to_owned()).collect();
    assert_eq!(
        names,
        ["sql_query", "read_file", "write_file", "create_ticket"]
    );
    let sql = p.runnable.sql.as_ref().unwrap();
    assert_eq!((sql.max_rows, sql.timeout_ms), (100, 2000));
    assert_eq!(
        p.runnable.files.as_ref().unwrap().roots[0].path,
        "/data/notes"
    );
    assert_eq!(p.runnable.max_steps, 3);
    assert_eq!(p.runnable.offer, palisade_policy::ToolOffer::Always);
    assert!(p.runnable.results.sanitize, "sanitizing is on by default");
    let bundle_json = serde_json::to_string(&c.bundle).unwrap();
    let reloaded: PolicyBundle = serde_json::from_str(&bundle_json).unwrap();
    assert_eq!(
        reloaded.policy("clinic", "p").unwrap().runnable,
        p.runnable,
        "the bundle round-trips"
    );

    for (bad, field, fix) in [
        (
            json!({"files": {"roots": [{"name": "n", "path": "data/notes"}]}}),
            "spec.tools.run.files.roots[0].path",
            "absolute path without . or ..",
        ),
        (
            json!({"files": {"roots": [{"name": "n", "path": "/data/../etc"}]}}),
            "spec.tools.run.files.roots[0].path",
            "absolute path without . or ..",
        ),
        (
            json!({"files": {"roots": [{"name": "n", "path": "/a"}, {"name": "n", "path": "/b"}]}}),
            "spec.tools.run.files.roots[1].name",
            "its own name",
        ),
        (
            json!({"sqlQuery": {"databases": [{"name": "w", "postgresSecretRef": {"name": "unlabelled", "key": "url"}}]}}),
            "spec.tools.run.sqlQuery.databases[0].postgresSecretRef",
            "kubectl label secret unlabelled",
        ),
        (
            json!({"sqlQuery": {"databases": [{"name": "w"}]}}),
            "spec.tools.run.sqlQuery.databases[0]",
            "exactly one of sqlitePath and postgresSecretRef",
        ),
        (
            json!({"sqlQuery": {"databases": [{"name": "w", "sqlitePath": "/w.db"}], "timeout": "0s"}}),
            "spec.tools.run.sqlQuery.timeout",
            "use e.g. 5s",
        ),
        (
            json!({"http": [{"name": "t", "url": "http://169.254.169.254/latest"}]}),
            "spec.tools.run.http[0].url",
            "providers.allowedBaseUrls",
        ),
        (
            json!({"http": [{"name": "read_file", "url": "https://api.openai.com/x"}]}),
            "spec.tools.run.http[0].name",
            "another name",
        ),
    ] {
        let d = diagnostics_under(run(bad.clone()), &s, &Egress::default());
        assert_eq!(d.len(), 1, "{bad}: {d:#?}");
        assert!(d[0].contains(&format!("{field}:")), "{bad}: {}", d[0]);
        assert!(d[0].contains(fix), "{bad}: {}", d[0]);
        assert!(!d[0].contains("pw@"), "{}", d[0]);
    }
}
