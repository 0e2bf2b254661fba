//! TokenReview, SubjectAccessReview and SelfSubjectAccessReview, answered
//! from fixtures a test sets up ([`crate::KubeSim::add_token`],
//! [`crate::KubeSim::allow`]). Nothing else is authenticated or
//! authorized: the server has no RBAC.

use crate::state::{State, UserInfo};
use serde_json::{Value, json};

/// The user a bearer token maps to, if a fixture says so.
pub fn user_for_token(state: &State, token: &str) -> Option<UserInfo> {
    state.fixtures().tokens.get(token).cloned()
}

fn user_json(u: &UserInfo) -> Value {
    json!({"username": u.username, "uid": u.uid, "groups": u.groups})
}

pub fn token_review(state: &State, mut review: Value) -> Value {
    let token = review
        .pointer("/spec/token")
        .and_then(Value::as_str)
        .unwrap_or("");
    let audiences = review.pointer("/spec/audiences").cloned();
    review["status"] = match user_for_token(state, token) {
        Some(u) => {
            let mut status = json!({"authenticated": true, "user": user_json(&u)});
            if let Some(a) = audiences {
                status["audiences"] = a;
            }
            status
        }
        None => json!({"authenticated": false, "error": "invalid bearer token"}),
    };
    review
}

fn decide(state: &State, user: &str, groups: &[String], attrs: &Value) -> bool {
    let s = |k: &str| attrs.get(k).and_then(Value::as_str).unwrap_or("");
    let resource = if s("subresource").is_empty() {
        s("resource").to_string()
    } else {
        format!("{}/{}", s("resource"), s("subresource"))
    };
    state.fixtures().rules.iter().any(|r| {
        r.matches(
            user,
            groups,
            s("verb"),
            s("group"),
            &resource,
            s("namespace"),
        )
    })
}

pub fn subject_access_review(state: &State, mut review: Value) -> Value {
    let user = review
        .pointer("/spec/user")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let groups: Vec<String> = review
        .pointer("/spec/groups")
        .and_then(Value::as_array)
        .map(|g| {
            g.iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    let attrs = review
        .pointer("/spec/resourceAttributes")
        .cloned()
        .unwrap_or(json!({}));
    let allowed = decide(state, &user, &groups, &attrs);
    review["status"] = json!({"allowed": allowed, "reason": if allowed { "allowed by kube-sim fixture" } else { "no kube-sim fixture allows it" }});
    review
}

pub fn self_subject_access_review(
    state: &State,
    requester: Option<&UserInfo>,
    mut review: Value,
) -> Value {
    let attrs = review
        .pointer("/spec/resourceAttributes")
        .cloned()
        .unwrap_or(json!({}));
    let allowed = match requester {
        Some(u) => decide(state, &u.username, &u.groups, &attrs),
        None => false,
    };
    review["status"] = json!({"allowed": allowed});
    review
}
