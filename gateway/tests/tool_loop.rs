//! The server-side tool loop of `/v1/chat/completions`: the official
//! `openai` SDK drives the real gateway binary, whose fake providers play
//! models that call tools Palisade runs — allowed, denied, held, with
//! arguments that are not JSON, mixed with a tool the client runs, and a
//! model that never stops calling (stopped at the policy's limit), streamed
//! and not. In process: a held call's approval lets exactly that call run
//! once, every step and every call is audited, and a kill switch cuts the
//! loop.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::tools::{Clinic, KEY, OPERATOR};
use palisade_audit::Filter;
use palisade_fake_upstreams::{FakeOpenAi, Script};
use serde_json::{Value, json};

fn calls(calls: &[(&str, Value)]) -> Script {
    Script::ToolCalls(
        calls
            .iter()
            .map(|(n, a)| ((*n).to_owned(), a.clone()))
            .collect(),
    )
}

fn sql_patients() -> Script {
    calls(&[(
        "sql_query",
        json!({"database": "clinic", "query": "SELECT id, name FROM patients"}),
    )])
}

/// A model that looks a patient up in two rounds, then answers.
fn two_rounds() -> Script {
    Script::Sequence(vec![
        sql_patients(),
        calls(&[
            ("lookup", json!({"id": 1})),
            ("delete_record", json!({"id": 1})),
        ]),
        Script::Text("Ann is patient 1".into()),
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_openai_sdk_gets_answers_from_the_tool_loop_streamed_and_not() {
    let clinic = Clinic::open("loop-sdk").await;
    let plain = FakeOpenAi::start(Script::Text("plain".into()))
        .await
        .unwrap();
    let looping = FakeOpenAi::start(two_rounds()).await.unwrap();
    let streamed = FakeOpenAi::start(two_rounds()).await.unwrap();
    let forever = FakeOpenAi::start(sql_patients()).await.unwrap();
    let held = FakeOpenAi::start(Script::Sequence(vec![
        calls(&[(
            "write_file",
            json!({"root": "notes", "path": "plan.md", "content": "x"}),
        )]),
        Script::Text("never asked".into()),
    ]))
    .await
    .unwrap();
    let malformed = FakeOpenAi::start(Script::Sequence(vec![
        Script::RawToolCalls(vec![("sql_query".into(), "{not json".into())]),
        Script::Text("sorry".into()),
    ]))
    .await
    .unwrap();
    let mixed = FakeOpenAi::start(calls(&[
        (
            "sql_query",
            json!({"database": "clinic", "query": "SELECT 1"}),
        ),
        ("get_weather", json!({"city": "Oslo"})),
    ]))
    .await
    .unwrap();
    let urls: Vec<(&str, String)> = [
        ("plain", &plain),
        ("loop", &looping),
        ("loop-stream", &streamed),
        ("forever", &forever),
        ("held", &held),
        ("malformed", &malformed),
        ("mixed", &mixed),
    ]
    .iter()
    .map(|(n, f)| (*n, f.base_url()))
    .collect();
    let providers: Vec<(&str, &str)> = urls.iter().map(|(n, u)| (*n, u.as_str())).collect();
    let config = clinic.write_policy(&providers);
    let python = common::openai_python().await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sdk/openai_tool_loop.py");
    common::sdk_checks(
        python,
        script,
        (&config, &["--allow-plaintext-credentials"]),
        KEY,
    )
    .await;

    // The model was shown the policy's schemas (not the client's bare
    // names) next to the client's own tool, and asked for whole answers.
    let sent = looping.received();
    assert_eq!(sent.len(), 3, "one request a step");
    let tools = &sent[0].body["tools"];
    let names: Vec<&str> = tools
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "get_weather",
            "sql_query",
            "write_file",
            "lookup",
            "delete_record"
        ]
    );
    assert_eq!(
        tools[1]["function"]["parameters"]["properties"]["database"]["enum"],
        json!(["clinic"])
    );
    assert!(sent.iter().all(|r| r.body.get("stream").is_none()));
    // Each result went back to the model: the rows, then the lookup
    // (sanitized) and the refusal.
    let last = |i: usize| sent[i].body["messages"].as_array().unwrap().clone();
    let step2 = last(1);
    assert_eq!(step2.len(), 3, "{step2:?}");
    assert_eq!(step2[2]["role"], "tool");
    assert_eq!(step2[2]["tool_call_id"], "call_0");
    assert!(
        step2[2]["content"].as_str().unwrap().contains("Ann"),
        "{step2:?}"
    );
    let step3 = last(2);
    assert_eq!(step3.len(), 6, "{step3:?}");
    assert!(step3[4]["content"].as_str().unwrap().contains("[REDACTED"));
    assert!(
        step3[5]["content"]
            .as_str()
            .unwrap()
            .contains("blocked by policy (tool.denied_by_rule, rule no-deletes)"),
        "{step3:?}"
    );
    // No canary reached any model; the lookup got the policy's credential
    // once (each loop called it once; delete_record never ran).
    for fake in [&looping, &streamed, &forever, &held, &malformed, &mixed] {
        for r in fake.received() {
            assert!(!r.body.to_string().contains("CANARY"), "{}", r.body);
        }
    }
    assert_eq!(clinic.tool_calls.lock().unwrap().len(), 2);
    // The model that never stops was asked 4 times: 3 rounds, then stopped.
    assert_eq!(forever.received().len(), 4);
    // The held call was not run, and the loop did not go on.
    assert_eq!(held.received().len(), 1);
    assert!(!clinic.root.join("plan.md").exists());
    // The malformed call was reported to the model.
    let told = malformed.received()[1].body["messages"][2]["content"].clone();
    assert!(
        told.as_str().unwrap().contains("tool.arguments_invalid"),
        "{told}"
    );
}

/// A gateway in process over the clinic, with `script` as its model.
async fn in_process(
    name: &str,
    script: Script,
) -> (
    Clinic,
    FakeOpenAi,
    palisade_gateway::state::AppState,
    palisade_audit::Store,
) {
    let clinic = Clinic::open(name).await;
    let served = clinic.serve(script).await;
    (clinic, served.model, served.state, served.store)
}

fn ask(tools: &[&str]) -> Value {
    let tools: Vec<Value> = tools
        .iter()
        .map(|n| json!({"type": "function", "function": {"name": n}}))
        .collect();
    json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "go"}], "tools": tools})
}

#[tokio::test]
async fn a_held_call_in_the_loop_runs_once_when_approved_and_every_step_is_audited() {
    let (clinic, _model, state, store) = in_process(
        "loop-held",
        Script::Sequence(vec![
            calls(&[
                ("read_file", json!({"root": "notes", "path": "visit.md"})),
                (
                    "write_file",
                    json!({"root": "notes", "path": "plan.md", "content": "rest"}),
                ),
            ]),
            Script::Text("unreachable".into()),
        ]),
    )
    .await;
    let mut request = ask(&["read_file", "write_file"]);
    request["tool_choice"] = json!("required");
    let (status, headers, body) =
        common::post_json(&state, "/v1/chat/completions", KEY, &request).await;
    assert_eq!(status, 200, "{body}");
    let request_id = headers["x-request-id"].to_str().unwrap().to_owned();
    let trace = &body["palisade"]["toolLoop"];
    assert_eq!(trace["stoppedBy"], "approval", "{body}");
    let held = &trace["calls"][1];
    let approval = held["approval"].as_str().unwrap();
    assert!(!clinic.root.join("plan.md").exists());

    // Every step and call is in the audit under the request's id: the
    // chat step, both decisions, the read's result.
    let rows: Vec<(String, String)> = store
        .query(&Filter::default())
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.event.request_id == request_id)
        .map(|r| (r.event.kind.as_str().to_owned(), r.event.decision.clone()))
        .collect();
    let mut rows_sorted = rows.clone();
    rows_sorted.sort();
    assert_eq!(
        rows_sorted,
        [
            ("chat".into(), "Allow".into()),
            ("tool_call".into(), "Allow".into()),
            ("tool_call".into(), "RequireApproval".into()),
            ("tool_result".into(), "Executed".into()),
        ],
        "{rows:?}"
    );

    // Approved, the call runs once through /v1/tool-calls with the
    // arguments the trace gave.
    // (The approval is recorded in the background: the operator may
    // have to wait a moment, as one polling it would.)
    let mut approved = 0;
    for _ in 0..100 {
        let approve = axum::http::Request::post(format!("/v1/approvals/{approval}/approve"))
            .header("authorization", format!("Bearer {OPERATOR}"))
            .body(axum::body::Body::empty())
            .unwrap();
        let app = palisade_gateway::router::app(state.clone());
        approved = tower::ServiceExt::oneshot(app, approve)
            .await
            .unwrap()
            .status()
            .as_u16();
        if approved != 404 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(approved, 200);
    let arguments: Value = serde_json::from_str(held["arguments"].as_str().unwrap()).unwrap();
    let run = json!({"tool": "write_file", "arguments": arguments, "approval": approval, "execute": true});
    let (status, _, body) = common::post_json(&state, "/v1/tool-calls", KEY, &run).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        std::fs::read_to_string(clinic.root.join("plan.md")).unwrap(),
        "rest"
    );
    let (status, _, body) = common::post_json(&state, "/v1/tool-calls", KEY, &run).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "approval.replay_refused");
}

#[tokio::test]
async fn a_forced_tool_choice_is_relaxed_after_a_round_and_a_kill_switch_cuts_the_loop() {
    let (clinic, model, state, _store) = in_process(
        "loop-kill",
        Script::Sequence(vec![sql_patients(), Script::Text("done".into())]),
    )
    .await;
    let mut request = ask(&["sql_query"]);
    request["tool_choice"] = json!({"type": "function", "function": {"name": "sql_query"}});
    let (status, _, body) = common::post_json(&state, "/v1/chat/completions", KEY, &request).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["choices"][0]["message"]["content"], "done");
    let sent = model.received();
    assert_eq!(sent[0].body["tool_choice"]["function"]["name"], "sql_query");
    assert_eq!(sent[1].body["tool_choice"], "auto");

    // The policy's kill switch: the next loop is refused before any model
    // or tool is reached.
    let path = clinic.dir.join("policy.yaml");
    let policy = std::fs::read_to_string(&path)
        .unwrap()
        .replace("spec:\n", "spec:\n  suspend: true\n");
    std::fs::write(&path, policy).unwrap();
    palisade_gateway::config::reload::load_into(&[path], &state.config, &state.metrics).unwrap();
    let before = model.received().len();
    let (status, _, body) = common::post_json(&state, "/v1/chat/completions", KEY, &request).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(model.received().len(), before);
}
