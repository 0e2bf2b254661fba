//! Sensitive-content routing over HTTP: the rules see every text the
//! provider would see (not only the last user message), normalised; and a
//! regulated policy sends nothing to the cloud unless a rule says so.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use axum::body::Body;
use axum::http::Request;
use palisade_fake_upstreams::{FakeOpenAi, Script};
use palisade_gateway::router::app;
use palisade_gateway::state::AppState;
use palisade_policy::Egress;
use serde_json::{Value, json};
use tower::ServiceExt;

struct Setup {
    state: AppState,
    local: FakeOpenAi,
    cloud: FakeOpenAi,
}

/// Agent `a` (key `key-a`) routed by `routing` between `local` (Ollama)
/// and `cloud` (OpenAI), both fakes.
async fn setup(name: &str, routing: &str) -> Setup {
    let local = FakeOpenAi::start(Script::Text("local".into()))
        .await
        .unwrap();
    let cloud = FakeOpenAi::start(Script::Text("cloud".into()))
        .await
        .unwrap();
    let yaml = format!(
        r#"apiVersion: palisade.dev/v1alpha1
kind: AIPolicy
metadata: {{name: p, namespace: ns}}
spec:
  agents:
    - {{name: a, apiKeySecretRef: {{name: k, key: a}}}}
    - {{name: research, apiKeySecretRef: {{name: k, key: research}}}}
  providers:
    - {{name: local, type: ollama, baseUrl: "{local}", defaultModel: llama3.1}}
    - {{name: cloud, type: openai, baseUrl: "{cloud}"}}
  routing:
{routing}---
apiVersion: v1
kind: Secret
metadata: {{name: k, namespace: ns}}
stringData: {{a: key-a, research: key-research}}
"#,
        local = local.base_url(),
        cloud = cloud.base_url(),
    );
    let state =
        common::standalone_config(&format!("routing-{name}"), &yaml, Egress::any_url(true)).await;
    Setup {
        state,
        local,
        cloud,
    }
}

/// The provider and reasons a chat request of `key` was routed with.
async fn routed(s: &Setup, key: &str, body: Value) -> (String, String) {
    let req = Request::post("/v1/chat/completions")
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {key}"))
        .body(Body::from(body.to_string()))
        .unwrap();
    let resp = app(s.state.clone()).oneshot(req).await.unwrap();
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    };
    let got = (header("x-palisade-provider"), header("x-palisade-reasons"));
    assert_eq!(resp.status(), 200, "{got:?}");
    got
}

const PHI: &str = "    defaultProvider: cloud\n    rules:\n      - {name: phi, keywords: [date of birth, medical record], provider: local}\n";

#[tokio::test]
async fn sensitive_words_anywhere_the_provider_would_read_them_keep_a_request_local() {
    let s = setup("anywhere", PHI).await;
    let innocuous = json!({"role": "user", "content": "please go on"});
    for (what, request) in [
        (
            "a system message",
            json!({"model": "gpt-4o", "messages": [{"role": "system", "content": "Patient Date-of-Birth: 1970-01-01"}, innocuous]}),
        ),
        (
            "an earlier assistant message",
            json!({"model": "gpt-4o", "messages": [{"role": "assistant", "content": "Your medical\nrecord says..."}, innocuous]}),
        ),
        (
            "a content part",
            json!({"model": "gpt-4o", "messages": [{"role": "user", "content": [{"type": "text", "text": "ｍｅｄｉｃａｌ ｒｅｃｏｒｄ"}]}]}),
        ),
        (
            "an earlier tool call's arguments",
            json!({"model": "gpt-4o", "messages": [
                {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function",
                  "function": {"name": "lookup", "arguments": "{\"field\":\"date_of_birth\"}"}}]},
                {"role": "tool", "tool_call_id": "c1", "content": "1970-01-01"},
                innocuous
            ]}),
        ),
        (
            "a tool's description",
            json!({"model": "gpt-4o", "messages": [innocuous],
                   "tools": [{"type": "function", "function": {"name": "fetch", "description": "Fetches the medical rec\u{200B}ord of a person"}}]}),
        ),
        (
            "a message's name",
            json!({"model": "gpt-4o", "messages": [{"role": "user", "name": "DATE-OF-BIRTH", "content": "go on"}]}),
        ),
    ] {
        assert_eq!(
            routed(&s, "key-a", request).await,
            ("local".to_owned(), "routing.keyword".to_owned()),
            "{what}"
        );
    }
    assert_eq!(
        routed(
            &s,
            "key-a",
            json!({"model": "gpt-4o", "messages": [innocuous]})
        )
        .await,
        ("cloud".to_owned(), "routing.default".to_owned())
    );
    assert_eq!(
        s.cloud.received().len(),
        1,
        "only the innocuous request left"
    );
    assert_eq!(s.local.received().len(), 6);
}

#[tokio::test]
async fn a_regulated_policy_sends_to_the_cloud_only_what_a_rule_allows() {
    let regulated = "    cloud: AllowRulesOnly\n    defaultProvider: local\n    rules:\n      - {name: research-may-use-cloud, agents: [research], provider: cloud}\n      - {name: phi, keywords: [patient], provider: local}\n";
    let s = setup("regulated", regulated).await;
    let asking =
        |text: &str| json!({"model": "gpt-4o", "messages": [{"role": "user", "content": text}]});
    assert_eq!(
        routed(&s, "key-a", asking("summarise the meeting")).await,
        ("local".to_owned(), "routing.cloud_not_allowed".to_owned())
    );
    assert_eq!(
        routed(&s, "key-research", asking("summarise the paper")).await,
        ("cloud".to_owned(), "routing.agent".to_owned())
    );
    assert_eq!(
        routed(&s, "key-research", asking("summarise the patient's file")).await,
        (
            "local".to_owned(),
            "routing.keyword,routing.agent".to_owned()
        )
    );
    assert_eq!(s.cloud.received().len(), 1);
}
