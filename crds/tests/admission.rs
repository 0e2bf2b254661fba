//! The chart's approval guard rails (`charts/palisade/templates/
//! approval-admission.yaml`), evaluated with the `cel` crate against
//! fixture admission requests. The API server runs them in a real cluster;
//! kube-sim runs no admission, so this is where their logic is checked.
//! The `authorizer` is a fixture that answers from a list of grants, with
//! the same call chain as the API server's
//! (`authorizer.group(..).resource(..).namespace(..).name(..).check(verb).allowed()`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use cel::extractors::This;
use cel::{Context, Program, Value};
use serde_json::{Value as Json, json};
use std::sync::Arc;

const TEMPLATE: &str = include_str!("../../charts/palisade/templates/approval-admission.yaml");

/// The policy documents, with the template's directives (`{{ ... }}`,
/// comments included) removed: every optional part is on.
fn documents() -> Vec<Json> {
    let mut plain = String::new();
    let mut rest = TEMPLATE;
    while let Some(open) = rest.find("{{") {
        plain.push_str(&rest[..open]);
        let close = rest[open..]
            .find("}}")
            .expect("an unclosed template directive");
        rest = &rest[open + close + 2..];
    }
    plain.push_str(rest);
    serde_yaml::Deserializer::from_str(&plain)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .filter(|v: &Json| !v.is_null())
        .collect()
}

fn kind(kind: &str) -> Json {
    documents().into_iter().find(|d| d["kind"] == kind).unwrap()
}

/// Who may do what: (user, verb, namespace).
type Grants = Vec<(&'static str, &'static str, &'static str)>;

struct Request {
    operation: &'static str,
    user: &'static str,
    object: Json,
    old: Option<Json>,
}

fn context(req: &Request, grants: Grants) -> Context<'static, 'static> {
    let mut ctx = Context::default();
    ctx.add_variable("object", req.object.clone()).unwrap();
    match &req.old {
        Some(old) => ctx.add_variable("oldObject", old.clone()).unwrap(),
        None => ctx.add_variable("oldObject", Value::Null).unwrap(),
    }
    ctx.add_variable(
        "request",
        json!({"operation": req.operation, "userInfo": {"username": req.user, "groups": []}}),
    )
    .unwrap();
    // The authorizer fixture: a string that accumulates the attributes of
    // the check; `check` answers from `grants`.
    ctx.add_variable("authorizer", format!("user={}", req.user))
        .unwrap();
    for attr in ["group", "resource", "namespace", "name"] {
        ctx.add_function(
            attr,
            move |This(this): This<Arc<String>>, v: Arc<String>| -> String {
                format!("{this};{attr}={v}")
            },
        )
        .unwrap();
    }
    let grants = Arc::new(grants);
    ctx.add_function(
        "check",
        move |This(this): This<Arc<String>>, verb: Arc<String>| -> bool {
            let get = |k: &str| {
                this.split(';')
                    .find_map(|p| p.strip_prefix(&format!("{k}=")))
                    .unwrap_or("")
                    .to_owned()
            };
            get("group") == "palisade.dev"
                && get("resource") == "approvals"
                && grants.iter().any(|(u, v, ns)| {
                    *u == get("user")
                        && *v == verb.as_str()
                        && (*ns == "*" || *ns == get("namespace"))
                })
        },
    )
    .unwrap();
    ctx.add_function("allowed", |This(this): This<bool>| -> bool { this })
        .unwrap();
    ctx
}

/// Runs the ValidatingAdmissionPolicy; returns the messages of the
/// validations that failed (empty: admitted).
fn admit(req: &Request, grants: Grants) -> Vec<String> {
    let vap = kind("ValidatingAdmissionPolicy");
    let mut ctx = context(req, grants);
    let mut variables = serde_json::Map::new();
    for v in vap["spec"]["variables"].as_array().unwrap() {
        let value = Program::compile(v["expression"].as_str().unwrap())
            .unwrap()
            .execute(&ctx)
            .unwrap();
        let Value::Bool(b) = value else {
            panic!("variable {} is not a bool", v["name"])
        };
        variables.insert(v["name"].as_str().unwrap().to_owned(), json!(b));
    }
    ctx.add_variable("variables", Json::Object(variables))
        .unwrap();
    let mut failed = Vec::new();
    for v in vap["spec"]["validations"].as_array().unwrap() {
        let expr = v["expression"].as_str().unwrap();
        match Program::compile(expr).unwrap().execute(&ctx) {
            Ok(Value::Bool(true)) => {}
            Ok(Value::Bool(false)) => {
                let message = match v["messageExpression"].as_str() {
                    Some(m) => match Program::compile(m).unwrap().execute(&ctx).unwrap() {
                        Value::String(s) => s.to_string(),
                        other => panic!("messageExpression gave {other:?}"),
                    },
                    None => v["message"].as_str().unwrap().to_owned(),
                };
                failed.push(message);
            }
            other => panic!("{expr} evaluated to {other:?}"),
        }
    }
    failed
}

fn approval(decision: Option<&str>, decided_by: Option<&str>) -> Json {
    let mut spec = json!({
        "agent": "intake", "tool": "send_email", "argumentsDigest": format!("sha256:{}", "a".repeat(64)),
        "requestId": "r-1", "policy": "clinic-assistant", "policyGeneration": 1,
        "requestedBy": "system:serviceaccount:clinic:intake-agent",
        "requestedAt": "2026-11-22T10:00:00Z", "expiresAt": "2026-11-22T10:15:00Z"
    });
    if let Some(d) = decision {
        spec["decision"] = json!(d);
    }
    if let Some(b) = decided_by {
        spec["decidedBy"] = json!(b);
    }
    json!({"apiVersion": "palisade.dev/v1alpha1", "kind": "Approval",
           "metadata": {"name": "intake-0a1b2c3d4e5f", "namespace": "clinic"}, "spec": spec})
}

fn decide(user: &'static str, decision: &str, decided_by: &str) -> Request {
    Request {
        operation: "UPDATE",
        user,
        object: approval(Some(decision), Some(decided_by)),
        old: Some(approval(None, None)),
    }
}

fn approver() -> Grants {
    vec![
        ("alice", "approve", "clinic"),
        (
            "system:serviceaccount:clinic:intake-agent",
            "patch",
            "clinic",
        ),
    ]
}

#[test]
fn an_approver_decides_and_is_recorded_as_herself() {
    assert_eq!(
        admit(&decide("alice", "Approved", "alice"), approver()),
        Vec::<String>::new()
    );
    assert_eq!(
        admit(&decide("alice", "Denied", "alice"), approver()),
        Vec::<String>::new()
    );
}

#[test]
fn without_the_approve_verb_nobody_decides_even_with_patch() {
    let failed = admit(
        &decide("mallory", "Approved", "mallory"),
        vec![("mallory", "patch", "clinic")],
    );
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(
        failed[0].contains("user mallory may not decide approvals in clinic"),
        "{failed:?}"
    );
    assert!(failed[0].contains("palisade-approver"));
    // The verb in another namespace does not count.
    let failed = admit(
        &decide("bob", "Approved", "bob"),
        vec![("bob", "approve", "billing")],
    );
    assert_eq!(failed.len(), 1, "{failed:?}");
}

#[test]
fn the_requesting_agent_never_decides_its_own_request() {
    let agent = "system:serviceaccount:clinic:intake-agent";
    let failed = admit(
        &decide(agent, "Approved", agent),
        vec![(agent, "approve", "*")],
    );
    assert_eq!(failed, ["an agent may never decide its own request"]);
}

#[test]
fn the_decider_is_the_authenticated_user_not_what_the_client_wrote() {
    let failed = admit(&decide("alice", "Approved", "the-ciso"), approver());
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(
        failed[0].starts_with("spec.decidedBy must be the deciding user (alice)"),
        "{failed:?}"
    );
    let mut missing = decide("alice", "Approved", "alice");
    missing.object["spec"]
        .as_object_mut()
        .unwrap()
        .remove("decidedBy");
    assert_eq!(admit(&missing, approver()).len(), 1);
}

#[test]
fn a_decision_and_its_decider_are_final() {
    let change = Request {
        operation: "UPDATE",
        user: "alice",
        object: approval(Some("Denied"), Some("alice")),
        old: Some(approval(Some("Approved"), Some("alice"))),
    };
    assert_eq!(
        admit(&change, approver()),
        ["a decision, and who made it, are final"]
    );
    let rewrite = Request {
        operation: "UPDATE",
        user: "alice",
        object: approval(Some("Approved"), Some("alice")),
        old: Some(approval(Some("Approved"), Some("bob"))),
    };
    assert_eq!(
        admit(&rewrite, approver()),
        ["a decision, and who made it, are final"]
    );
    // Re-applying the same decision is not a new decision.
    let same = Request {
        operation: "UPDATE",
        user: "carol",
        object: approval(Some("Approved"), Some("alice")),
        old: Some(approval(Some("Approved"), Some("alice"))),
    };
    assert_eq!(admit(&same, vec![]), Vec::<String>::new());
}

#[test]
fn approvals_are_created_undecided_and_pre_stamping_a_decider_is_refused() {
    let create = |decision: Option<&str>, by: Option<&str>| Request {
        operation: "CREATE",
        user: "system:serviceaccount:palisade-system:palisade-gateway",
        object: approval(decision, by),
        old: None,
    };
    assert_eq!(
        admit(&create(None, None), vec![]),
        Vec::<String>::new(),
        "the gateway creates it"
    );
    assert!(!admit(&create(Some("Approved"), Some("x")), vec![]).is_empty());
    let prestamp = Request {
        operation: "UPDATE",
        user: "alice",
        object: approval(None, Some("alice")),
        old: Some(approval(None, None)),
    };
    assert_eq!(
        admit(&prestamp, approver()),
        ["spec.decidedBy is recorded only together with a decision"]
    );
}

#[test]
fn the_mutating_policy_fires_only_on_a_new_decision_and_stamps_the_user() {
    let map = kind("MutatingAdmissionPolicy");
    let condition = map["spec"]["matchConditions"][0]["expression"]
        .as_str()
        .unwrap();
    let fires = |req: &Request| match Program::compile(condition)
        .unwrap()
        .execute(&context(req, vec![]))
        .unwrap()
    {
        Value::Bool(b) => b,
        other => panic!("{other:?}"),
    };
    assert!(fires(&decide("alice", "Approved", "anything")));
    let unrelated = Request {
        operation: "UPDATE",
        user: "alice",
        object: approval(Some("Approved"), Some("alice")),
        old: Some(approval(Some("Approved"), Some("alice"))),
    };
    assert!(!fires(&unrelated));
    // The mutation writes the request's user into spec.decidedBy (typed
    // object construction, evaluated by the API server; parsed here).
    let mutation = map["spec"]["mutations"][0]["applyConfiguration"]["expression"]
        .as_str()
        .unwrap();
    assert_eq!(
        mutation,
        "Object{spec: Object.spec{decidedBy: request.userInfo.username}}"
    );
    Program::compile(mutation).unwrap();
    assert_eq!(
        map["spec"]["matchConstraints"]["resourceRules"][0]["resources"][0], "approvals",
        "not approvals/status: gateways' consumption is untouched"
    );
}

#[test]
fn the_approver_role_grants_the_approve_verb() {
    let role = kind("ClusterRole");
    assert_eq!(role["metadata"]["name"], "palisade-approver");
    let verbs = role["rules"][0]["verbs"].as_array().unwrap();
    assert!(verbs.contains(&json!("approve")) && verbs.contains(&json!("patch")));
}
