//! Tokens and requests per agent, provider and model over a time range,
//! on both backends (PostgreSQL's SUM of a BIGINT is NUMERIC: the totals
//! must still read back as whole numbers).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use palisade_audit::event::Chain;
use palisade_audit::{AuditDecision, AuditEvent, EventKind, Migrations, Store, Usage, UsageFilter};
use palisade_audit_suite::Backends;

/// A row of `kind` for `agent`, routed to `provider`/`model` (none for a
/// refusal), with `tokens` (input, output, cached), at minute `minute`.
fn row(
    kind: EventKind,
    agent: &str,
    routed: Option<(&str, &str)>,
    tokens: Option<(i64, i64, i64)>,
    minute: i64,
) -> AuditEvent {
    let mut e = AuditEvent::new(kind, "r", "clinic", agent, AuditDecision::Allow);
    e.time = jiff::Timestamp::from_second(1_800_000_000 + minute * 60).unwrap();
    e.provider = routed.map(|r| r.0.to_owned());
    e.model = routed.map(|r| r.1.to_owned());
    if let Some((i, o, c)) = tokens {
        (e.input_tokens, e.output_tokens, e.cached_tokens) = (Some(i), Some(o), Some(c));
    }
    e
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_adds_up_requests_and_tokens_per_agent_provider_and_model() {
    use EventKind::{Chat, Embedding, ToolCall};
    let cloud = Some(("cloud", "gpt-4o"));
    let events = [
        row(Chat, "intake", cloud, Some((100, 20, 80)), 0),
        // A stream: its row has no tokens, its usage row does.
        row(Chat, "intake", cloud, None, 1),
        row(EventKind::Usage, "intake", cloud, Some((50, 5, 0)), 1),
        row(
            Embedding,
            "intake",
            Some(("local", "nomic-embed-text")),
            Some((7, 0, 0)),
            2,
        ),
        // Refused (no provider), a tool call: not requests that used tokens.
        row(Chat, "intake", None, None, 3),
        row(ToolCall, "intake", None, None, 3),
        row(Chat, "billing", cloud, Some((1, 1, 0)), 4),
        // Outside the range asked for below.
        row(Chat, "intake", cloud, Some((1_000, 1_000, 0)), 90),
    ];
    let backends = Backends::start();
    for (backend, url) in backends.urls("usage") {
        let store = Store::open(&url, Migrations::Apply).await.unwrap();
        let mut chain = Chain::new("w-usage");
        let rows: Vec<_> = events.iter().cloned().map(|e| chain.link(e)).collect();
        store.insert(&rows).await.unwrap();
        let filter = UsageFilter {
            since: Some(jiff::Timestamp::from_second(1_800_000_000).unwrap()),
            until: Some(jiff::Timestamp::from_second(1_800_000_000 + 60 * 60).unwrap()),
            ..UsageFilter::default()
        };
        let total =
            |agent: &str, provider: &str, model: &str, requests, tokens: (i64, i64, i64)| Usage {
                namespace: "clinic".into(),
                agent: agent.into(),
                provider: provider.into(),
                model: model.into(),
                requests,
                input_tokens: tokens.0,
                output_tokens: tokens.1,
                cached_tokens: tokens.2,
            };
        assert_eq!(
            store.usage(&filter).await.unwrap(),
            [
                total("billing", "cloud", "gpt-4o", 1, (1, 1, 0)),
                total("intake", "cloud", "gpt-4o", 2, (150, 25, 80)),
                total("intake", "local", "nomic-embed-text", 1, (7, 0, 0)),
            ],
            "{backend}"
        );
        let billing = UsageFilter {
            agent: Some("billing".into()),
            ..filter.clone()
        };
        assert_eq!(store.usage(&billing).await.unwrap().len(), 1, "{backend}");
        let everything = store.usage(&UsageFilter::default()).await.unwrap();
        assert_eq!(
            everything[1].input_tokens, 1_150,
            "{backend}: no range, every row"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denials_are_counted_per_reason_code_most_frequent_first() {
    let deny = |codes: &[&str], minute: i64| {
        let mut e = AuditEvent::new(EventKind::ToolCall, "r", "clinic", "a", AuditDecision::Deny);
        e.time = jiff::Timestamp::from_second(1_800_000_000 + minute * 60).unwrap();
        e.reason_codes = codes.iter().map(|c| (*c).to_owned()).collect();
        e
    };
    let mut allowed = deny(&["rule.allow"], 1);
    allowed.decision = AuditDecision::Allow.as_str().to_owned();
    let events = [
        deny(&["rule.deny"], 1),
        deny(&["rule.deny"], 2),
        deny(&["kill_switch.agent", "rule.deny"], 3),
        deny(&["kill_switch.agent"], 4),
        deny(&["default.deny"], 5),
        // Before the range: not counted.
        deny(&["default.deny"], -10),
        allowed,
    ];
    let backends = Backends::start();
    for (backend, url) in backends.urls("denials") {
        let store = Store::open(&url, Migrations::Apply).await.unwrap();
        let mut chain = Chain::new("w-denials");
        let rows: Vec<_> = events.iter().cloned().map(|e| chain.link(e)).collect();
        store.insert(&rows).await.unwrap();
        let since = jiff::Timestamp::from_second(1_800_000_000).unwrap();
        assert_eq!(
            store.denials_by_reason(since).await.unwrap(),
            [
                ("rule.deny".to_owned(), 3),
                ("kill_switch.agent".to_owned(), 2),
                ("default.deny".to_owned(), 1),
            ],
            "{backend}"
        );
    }
}
