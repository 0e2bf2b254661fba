//! Tool and routing decisions against policies of 10, 100 and 1,000 rules,
//! and routing of 1 KiB, 16 KiB and 100 KiB prompts against 100 keywords.
//! Targets (docs/benchmarks.md): ≤ 2 µs per tool decision at 100 rules,
//! ≤ 20 µs routing a 16 KiB prompt against 100 keywords.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use palisade_policy::*;
use std::hint::black_box;

fn providers() -> Vec<Provider> {
    ["local", "cloud"]
        .into_iter()
        .map(|name| Provider {
            name: name.into(),
            kind: ProviderKind::OpenAi,
            base_url: "http://127.0.0.1:1".into(),
            api_key: None,
            default_model: Some("m".into()),
            timeout_ms: 1000,
            tool_calling: Default::default(),
        })
        .collect()
}

/// `n` tool rules: a realistic mix of exact names, prefix globs, denies,
/// approvals and a CEL condition every tenth rule. The benchmarked tool
/// `tool_{n/2+1}` is decided by an `Allow`/`RequireApproval` rule in the
/// middle of the list, without a condition; `with_cel_condition` asks for
/// `tool_50`, whose rule has one.
fn tool_policy(n: usize) -> PolicyBundle {
    let rules = (0..n)
        .map(|i| ToolRule {
            rule: format!("rule-{i}"),
            tools: vec![if i % 3 == 0 {
                format!("tool_{i}*")
            } else {
                format!("tool_{i}")
            }],
            action: match i % 4 {
                0 if i % 10 != 0 => Outcome::Deny,
                1 => Outcome::RequireApproval,
                _ => Outcome::Allow,
            },
            when: (i % 10 == 0)
                .then(|| Condition::compile("has(args.amount) && args.amount < 100").unwrap()),
        })
        .collect();
    let policy = Policy {
        namespace: "bench".into(),
        name: "p".into(),
        generation: 1,
        suspend: false,
        enforcement: Enforcement::Enforce,
        agents: (0..20)
            .map(|i| Agent {
                name: format!("agent-{i}"),
                service_account: None,
                api_key_sha256: None,
                suspended: false,
                quarantine: None,
            })
            .collect(),
        models: NameGlobs::any(),
        providers: providers(),
        routing: Routing::new(vec![], "cloud".into(), None).unwrap(),
        tools: ToolRules::new(Outcome::Deny, rules).unwrap(),
        approvals: ApprovalSettings::with_ttl(900),
        audit: AuditSettings::default(),
        limits: Default::default(),
        runnable: Default::default(),
        security: Default::default(),
        mcp_servers: Vec::new(),
    };
    PolicyBundle::new(vec![policy], vec![], vec![]).unwrap()
}

/// Routing with `keywords` keywords spread over 10 rules, plus a length
/// rule and a model rule.
fn routing_policy(keywords: usize) -> PolicyBundle {
    let per_rule = keywords.div_ceil(10);
    let mut rules: Vec<RouteRule> = (0..10)
        .map(|r| RouteRule {
            rule: format!("kw-{r}"),
            keywords: (0..per_rule).map(|k| keyword(r * per_rule + k)).collect(),
            patterns: vec![],
            max_prompt_chars: None,
            min_prompt_chars: None,
            models: None,
            agents: None,
            provider: "local".into(),
            model: None,
        })
        .collect();
    rules.push(RouteRule {
        rule: "short".into(),
        keywords: vec![],
        patterns: vec![],
        max_prompt_chars: Some(200),
        min_prompt_chars: None,
        models: None,
        agents: None,
        provider: "local".into(),
        model: None,
    });
    let policy = Policy {
        namespace: "bench".into(),
        name: "p".into(),
        generation: 1,
        suspend: false,
        enforcement: Enforcement::Enforce,
        agents: vec![Agent {
            name: "agent".into(),
            service_account: None,
            api_key_sha256: None,
            suspended: false,
            quarantine: None,
        }],
        models: NameGlobs::any(),
        providers: providers(),
        routing: Routing::new(rules, "cloud".into(), Some("local".into())).unwrap(),
        tools: ToolRules::new(Outcome::Deny, vec![]).unwrap(),
        approvals: ApprovalSettings::with_ttl(900),
        audit: AuditSettings::default(),
        limits: Default::default(),
        runnable: Default::default(),
        security: Default::default(),
        mcp_servers: Vec::new(),
    };
    PolicyBundle::new(vec![policy], vec![], vec![]).unwrap()
}

/// Keyword `i`: a made-up word of common English syllables, so keywords
/// share their bytes with ordinary text and no prefilter can skip it.
fn keyword(i: usize) -> String {
    const SYLLABLES: [&str; 16] = [
        "re", "con", "ta", "mi", "pro", "ven", "sul", "dar", "ex", "ol", "tan", "ci", "mor", "pe",
        "lu", "ster",
    ];
    let mut w = String::new();
    let mut n = i + 17;
    while n > 0 {
        w.push_str(SYLLABLES[n % 16]);
        n /= 16;
    }
    w.push_str("ism");
    w
}

/// Ordinary English prose of `bytes` bytes that contains none of the
/// keywords: the worst case, every byte must be scanned.
fn prompt(bytes: usize) -> String {
    const TEXT: &str = "Please summarise the notes from this morning's consultation and draft a short, \
        friendly letter that explains the next steps, the follow-up appointment on Tuesday, the \
        results we are still waiting for, and what to do if the symptoms return before then. \
        Keep the tone warm but precise, mention the opening hours of the reception desk, and \
        remind them to bring their previous reports, a list of current medicines and any questions. ";
    let mut s = String::with_capacity(bytes + TEXT.len());
    while s.len() < bytes {
        s.push_str(TEXT);
    }
    s.truncate(bytes);
    s
}

fn bench_tool(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    bundle: &PolicyBundle,
    tool: &str,
    args: &serde_json::Value,
    now: jiff::Timestamp,
) {
    group.bench_function(name, |b| {
        b.iter(|| {
            let call = ToolCall {
                namespace: "bench",
                agent: "agent-7",
                tool,
                arguments: args,
            };
            black_box(bundle.evaluate_tool(black_box(&call), now).decision)
        })
    });
}

fn tool_decisions(c: &mut Criterion) {
    let mut group = c.benchmark_group("tool_decision");
    let args = serde_json::json!({"to": "someone@example.com", "amount": 42});
    let now = jiff::Timestamp::now();
    for n in [10, 100, 1000] {
        let bundle = tool_policy(n);
        let tool = format!("tool_{}", n / 2 + 1);
        bench_tool(
            &mut group,
            &format!("rules/{n}"),
            &bundle,
            &tool,
            &args,
            now,
        );
    }
    let bundle = tool_policy(100);
    bench_tool(
        &mut group,
        "rules/100/with_cel_condition",
        &bundle,
        "tool_50",
        &args,
        now,
    );
    for (label, cel) in [
        ("tool_only", "tool == 'tool_50'"),
        ("args_compare", "args.amount < 100"),
        (
            "args_has_and_compare",
            "has(args.amount) && args.amount < 100",
        ),
        (
            "args_matches",
            "args.to.lowerAscii().matches('^[a-z.]+@example[.]com$')",
        ),
    ] {
        let mut bundle = tool_policy(1);
        let rule = ToolRule {
            rule: "r".into(),
            tools: vec!["tool_50".into()],
            action: Outcome::Allow,
            when: Some(Condition::compile(cel).unwrap()),
        };
        let mut policy = bundle.policies()[0].clone();
        policy.tools = ToolRules::new(Outcome::Deny, vec![rule]).unwrap();
        bundle = PolicyBundle::new(vec![policy], vec![], vec![]).unwrap();
        bench_tool(
            &mut group,
            &format!("cel/{label}"),
            &bundle,
            "tool_50",
            &args,
            now,
        );
    }
    bench_ten_conditions(&mut group, now);
    group.finish();
}

/// One call decided by ten rules whose CEL conditions all read `args` (the
/// first nine do not hold), with arguments the size of a real e-mail: the
/// per-call cost of evaluating conditions, where converting the arguments
/// to CEL values once per condition used to dominate.
fn bench_ten_conditions(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    now: jiff::Timestamp,
) {
    let mut rules: Vec<ToolRule> = (0..9)
        .map(|i| ToolRule {
            rule: format!("r{i}"),
            tools: vec!["send_email".into()],
            action: Outcome::Allow,
            when: Some(Condition::compile(&format!("args.amount == {i}")).unwrap()),
        })
        .collect();
    rules.push(ToolRule {
        rule: "r9".into(),
        tools: vec!["send_email".into()],
        action: Outcome::Allow,
        when: Some(
            Condition::compile("args.to.endsWith('@clinic.example') && size(args.cc) < 20")
                .unwrap(),
        ),
    });
    let mut policy = tool_policy(1).policies()[0].clone();
    policy.tools = ToolRules::new(Outcome::Deny, rules).unwrap();
    let bundle = PolicyBundle::new(vec![policy], vec![], vec![]).unwrap();
    let args = serde_json::json!({
        "to": "dr@clinic.example",
        "amount": 42,
        "subject": "Follow-up appointment",
        "body": prompt(2048),
        "cc": (0..10).map(|i| format!("nurse{i}@clinic.example")).collect::<Vec<_>>(),
        "attachments": (0..5).map(|i| serde_json::json!({"name": format!("report-{i}.pdf"), "bytes": 1000 * i})).collect::<Vec<_>>(),
    });
    bench_tool(
        group,
        "cel/10_conditions",
        &bundle,
        "send_email",
        &args,
        now,
    );
}

fn routing_decisions(c: &mut Criterion) {
    let mut group = c.benchmark_group("routing_decision");
    for keywords in [10, 100, 1000] {
        let bundle = routing_policy(keywords);
        for kib in [1, 16, 100] {
            let text = prompt(kib * 1024);
            let probe = ChatRequest {
                namespace: "bench",
                agent: "agent",
                model: "gpt-4o",
                prompt: &text,
                provider_text: &text,
            };
            assert_eq!(
                bundle.evaluate_chat(&probe).decision.decision.reason_code,
                ReasonCode::RoutingDefault,
                "the prompt must match no keyword"
            );
            group.throughput(Throughput::Bytes(text.len() as u64));
            group.bench_with_input(
                BenchmarkId::new(format!("keywords_{keywords}"), format!("{kib}KiB")),
                &text,
                |b, text| {
                    b.iter(|| {
                        let req = ChatRequest {
                            namespace: "bench",
                            agent: "agent",
                            model: "gpt-4o",
                            prompt: text,
                            provider_text: text,
                        };
                        black_box(bundle.evaluate_chat(black_box(&req)).decision)
                    })
                },
            );
        }
    }
    group.finish();
    let mut group = c.benchmark_group("fingerprint");
    let text = prompt(16 * 1024);
    group.throughput(Throughput::Bytes(text.len() as u64));
    group.bench_function("prompt_16KiB", |b| {
        b.iter(|| black_box(PromptFingerprint::of(black_box(&text))))
    });
    group.finish();
}

criterion_group!(benches, tool_decisions, routing_decisions);
criterion_main!(benches);
