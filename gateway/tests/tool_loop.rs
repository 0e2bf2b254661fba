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
    let log = common::sdk_checks(
        python,
        script,
        (&config, &["--allow-plaintext-credentials"]),
        KEY,
    )
    .await;

    // The gateway logged its work, and no canary.
    assert!(log.contains("DEBUG") || log.contains("debug"), "{log}");
    assert!(!log.contains("CANARY"), "{log}");
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
    state.audit.caught_up().await;
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

/// A model without tool support, behind a provider with `toolCalling:
/// Prompt`: the clinic's gateway in process.
async fn prompted(name: &str, script: Script) -> (Clinic, common::tools::Served) {
    let clinic = Clinic::open(name).await;
    let served = clinic
        .serve_edited(script, |p| {
            p.replace("type: openai,", "type: openai, toolCalling: Prompt,")
        })
        .await;
    (clinic, served)
}

fn block(calls: Value) -> Script {
    Script::Text(format!("Checking.\n<tool_calls>\n{calls}\n</tool_calls>"))
}

#[tokio::test]
async fn a_model_without_tool_support_calls_tools_through_the_prompt() {
    let (_clinic, served) = prompted(
        "prompted",
        Script::Sequence(vec![
            block(
                json!([{"name": "sql_query", "arguments": {"database": "clinic", "query": "SELECT name FROM patients"}}]),
            ),
            Script::Text("Ann".into()),
        ]),
    )
    .await;
    let (status, _, body) = common::post_json(
        &served.state,
        "/v1/chat/completions",
        KEY,
        &ask(&["sql_query"]),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["choices"][0]["message"]["content"], "Ann", "{body}");
    let trace = &body["palisade"]["toolLoop"];
    assert_eq!(
        trace["calls"][0]["execution"]["reasonCode"],
        "tool.executed"
    );
    let sent = served.model.received();
    assert_eq!(sent.len(), 2);
    // The model never saw `tools`: they were in its system prompt.
    assert!(sent[0].body.get("tools").is_none(), "{}", sent[0].body);
    let system = sent[0].body["messages"][0]["content"].as_str().unwrap();
    assert!(system.contains("<tool_calls>") && system.contains("\"name\":\"sql_query\""));
    // Its call and the result came back to it as text.
    let messages = sent[1].body["messages"].as_array().unwrap();
    let last = messages.last().unwrap();
    assert_eq!(last["role"], "user");
    let result = last["content"].as_str().unwrap();
    assert!(
        result.starts_with("<tool_result id=\"call_prompt_0\">") && result.contains("Ann"),
        "{result}"
    );
    assert!(
        messages[messages.len() - 2]["content"]
            .as_str()
            .unwrap()
            .contains("<tool_calls>")
    );
}

/// Sends a chat request and reads the whole body as text.
async fn post_raw(state: &palisade_gateway::state::AppState, body: &Value) -> (u16, String) {
    let req = axum::http::Request::post("/v1/chat/completions")
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {KEY}"))
        .body(axum::body::Body::from(body.to_string()))
        .unwrap();
    let resp = tower::ServiceExt::oneshot(palisade_gateway::router::app(state.clone()), req)
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, String::from_utf8(bytes.to_vec()).unwrap())
}

#[tokio::test]
async fn a_malformed_prompted_call_is_retried_once_then_reported_streamed_and_not() {
    // Malformed, then right: the client gets the call (its own tool,
    // gated as ever), streamed.
    let (_clinic, served) = prompted(
        "prompted-retry",
        Script::Sequence(vec![
            Script::Text("<tool_calls>{\"name\": \"get_weather\"".into()),
            block(json!([{"name": "get_weather", "arguments": {"city": "Oslo"}}])),
        ]),
    )
    .await;
    let weather = json!({"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}});
    let mut request = json!({"model": "gpt-4o", "stream": true, "messages": [{"role": "user", "content": "weather?"}], "tools": [weather]});
    let (status, sse) = post_raw(&served.state, &request).await;
    assert_eq!(status, 200, "{sse}");
    assert!(
        sse.contains(r#""name":"get_weather","arguments":"{\"city\":\"Oslo\"}""#),
        "{sse}"
    );
    assert!(sse.contains(r#""finish_reason":"tool_calls""#), "{sse}");
    assert!(sse.ends_with("data: [DONE]\n\n"), "{sse}");
    let sent = served.model.received();
    assert_eq!(sent.len(), 2);
    let correction = sent[1].body["messages"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert!(
        correction["content"]
            .as_str()
            .unwrap()
            .contains("could not be read: the block has no closing </tool_calls>"),
        "{correction}"
    );

    // Malformed twice: reported, nothing called.
    served.model.set_script(Script::Sequence(vec![
        Script::Text("<tool_calls>{oops</tool_calls>".into()),
        block(json!([{"name": "rm", "arguments": {}}])),
    ]));
    request["stream"] = json!(false);
    let (status, _, body) =
        common::post_json(&served.state, "/v1/chat/completions", KEY, &request).await;
    assert_eq!(status, 200, "{body}");
    let message = &body["choices"][0]["message"];
    assert!(message.get("tool_calls").is_none(), "{body}");
    assert!(
        message["content"].as_str().unwrap().contains(
            "could not be read twice (there is no tool \"rm\"; the tools are get_weather)"
        ),
        "{body}"
    );
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
}
