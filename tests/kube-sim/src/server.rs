//! HTTP routing: discovery, OpenAPI, and the resource paths
//! `/api/v1/...` and `/apis/{group}/{version}/...`, namespaced or not,
//! with `/status` subresources.

use crate::auth;
use crate::errors::ApiError;
use crate::objects::{self, Params, Target, Written};
use crate::openapi;
use crate::state::State;
use crate::table;
use crate::watch;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State as AxumState};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;

/// The API server as an axum router.
pub fn router(state: Arc<State>) -> Router {
    Router::new().fallback(handle).with_state(state)
}

fn json_response(code: u16, value: &Value, warnings: &[String]) -> Response {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::OK);
    let mut response = (status, value.to_string()).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    for w in warnings {
        if let Ok(v) = HeaderValue::from_str(&format!("299 - \"{}\"", w.replace('"', "\\\""))) {
            headers.append(header::WARNING, v);
        }
    }
    response
}

fn table_response(value: Value) -> Response {
    let mut response = json_response(200, &value, &[]);
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(table::CONTENT_TYPE),
    );
    response
}

fn ok(value: Value) -> Response {
    json_response(200, &value, &[])
}

async fn handle(
    AxumState(state): AxumState<Arc<State>>,
    method: Method,
    uri: Uri,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().trim_end_matches('/');
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let params = Params(query);
    match segments.as_slice() {
        ["version"] => ok(json!({
            "major": "1", "minor": "34", "gitVersion": "v1.34.0-kube-sim", "gitCommit": "",
            "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z", "goVersion": "n/a",
            "compiler": "rustc", "platform": "linux/amd64"
        })),
        ["healthz"] | ["readyz"] | ["livez"] => (StatusCode::OK, "ok").into_response(),
        ["api"] => {
            ok(json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}))
        }
        ["apis"] => ok(state.lock().registry.api_group_list()),
        ["apis", group] => match state.lock().registry.api_group(group) {
            Some(v) => ok(v),
            None => ApiError::no_such_path().into_response(),
        },
        ["api", version] => discovery(&state, "", version),
        ["apis", group, version] => discovery(&state, group, version),
        ["openapi", "v3"] => {
            let inner = state.lock();
            ok(openapi::index(&inner.registry, inner.store.current_rv()))
        }
        ["openapi", "v3", "api", version] => openapi_document(&state, "", version),
        ["openapi", "v3", "apis", group, version] => openapi_document(&state, group, version),
        ["api", version, rest @ ..] => {
            resource(&state, &method, &headers, &params, "", version, rest, body).await
        }
        ["apis", group, version, rest @ ..] => {
            resource(
                &state, &method, &headers, &params, group, version, rest, body,
            )
            .await
        }
        _ => ApiError::no_such_path().into_response(),
    }
}

fn discovery(state: &State, group: &str, version: &str) -> Response {
    match state.lock().registry.api_resource_list(group, version) {
        Some(v) => ok(v),
        None => ApiError::no_such_path().into_response(),
    }
}

fn openapi_document(state: &State, group: &str, version: &str) -> Response {
    match openapi::document(&state.lock().registry, group, version) {
        Some(v) => ok(v),
        None => ApiError::no_such_path().into_response(),
    }
}

/// `(namespace, plural, name, subresource)` of a resource path.
type ResourcePath<'a> = (Option<&'a str>, &'a str, Option<&'a str>, Option<&'a str>);

/// Splits `[namespaces/{ns}/]{plural}[/{name}[/{sub}]]`.
fn split_resource<'a>(rest: &[&'a str]) -> Option<ResourcePath<'a>> {
    match rest {
        ["namespaces", ns, plural, tail @ ..] if !matches!(*plural, "status" | "finalize") => {
            match tail {
                [] => Some((Some(ns), plural, None, None)),
                [name] => Some((Some(ns), plural, Some(name), None)),
                [name, sub] => Some((Some(ns), plural, Some(name), Some(sub))),
                _ => None,
            }
        }
        [plural] => Some((None, plural, None, None)),
        [plural, name] => Some((None, plural, Some(name), None)),
        [plural, name, sub] => Some((None, plural, Some(name), Some(sub))),
        _ => None,
    }
}

fn requester(state: &State, headers: &HeaderMap) -> Option<crate::state::UserInfo> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))?;
    auth::user_for_token(state, token.trim())
}

/// The field manager of a write that names none: the user agent's
/// program name, as the API server derives it.
fn default_manager(headers: &HeaderMap) -> String {
    headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .and_then(|ua| ua.split('/').next())
        .filter(|s| !s.is_empty())
        .unwrap_or("unknown")
        .to_string()
}

fn parse_body(body: &Bytes) -> Result<Value, ApiError> {
    if body.is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(format!(
            "the body of the request could not be decoded as JSON: {e}"
        ))
    })
}

#[allow(clippy::too_many_arguments)]
async fn resource(
    state: &Arc<State>,
    method: &Method,
    headers: &HeaderMap,
    params: &Params,
    group: &str,
    version: &str,
    rest: &[&str],
    body: Bytes,
) -> Response {
    let Some((namespace, plural, name, sub)) = split_resource(rest) else {
        return ApiError::no_such_path().into_response();
    };
    let rt = {
        let inner = state.lock();
        inner.registry.find(group, version, plural).cloned()
    };
    let Some(rt) = rt else {
        return ApiError::no_such_path().into_response();
    };
    if namespace.is_some() && !rt.namespaced {
        return ApiError::no_such_path().into_response();
    }
    if let Some(s) = sub
        && (s != "status" || !rt.status_subresource)
    {
        return ApiError::no_such_path().into_response();
    }
    let target = Target {
        rt: rt.clone(),
        namespace: namespace.map(String::from),
        subresource: sub.map(String::from),
    };
    let manager = params
        .get("fieldManager")
        .map(String::from)
        .unwrap_or_else(|| default_manager(headers));
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .to_string();

    let as_table = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(table::wants_table);
    if content_type.contains("protobuf") {
        return ApiError::new(
            415,
            "UnsupportedMediaType",
            "kube-sim speaks JSON only, not protobuf; send the object as JSON or YAML (e.g. kubectl create -f / apply -f)",
        )
        .into_response();
    }
    {
        let verb = match (method.clone(), name) {
            (Method::GET, Some(_)) => "get",
            (Method::GET, None) if params.flag("watch") => "watch",
            (Method::GET, None) => "list",
            (Method::POST, _) => "create",
            (Method::PUT, _) => "update",
            (Method::PATCH, _) => "patch",
            (Method::DELETE, Some(_)) => "delete",
            (Method::DELETE, None) => "deletecollection",
            _ => "unknown",
        };
        let selected = params
            .get("fieldSelector")
            .and_then(|f| f.strip_prefix("metadata.name="))
            .map(String::from);
        let access = crate::state::Access {
            user: requester(state, headers)
                .map(|u| u.username)
                .unwrap_or_else(|| "anonymous".into()),
            verb: verb.into(),
            group: group.into(),
            resource: match sub {
                Some(s) => format!("{plural}/{s}"),
                None => plural.to_string(),
            },
            namespace: namespace.map(String::from),
            name: name.map(String::from).or(selected),
        };
        state.fixtures().access_log.push(access);
    }
    if rt.review {
        if *method != Method::POST || name.is_some() {
            return ApiError::method_not_allowed(format!("{} only supports create", rt.plural))
                .into_response();
        }
        let review = match parse_body(&body) {
            Ok(v) => v,
            Err(e) => return e.into_response(),
        };
        let answer = match rt.kind.as_str() {
            "TokenReview" => auth::token_review(state, review),
            "SubjectAccessReview" => auth::subject_access_review(state, review),
            _ => {
                auth::self_subject_access_review(state, requester(state, headers).as_ref(), review)
            }
        };
        return json_response(201, &objects::present(&rt, answer), &[]);
    }

    let result: Result<Written, ApiError> = match (method.clone(), name) {
        (Method::GET, None) => {
            if params.flag("watch") {
                return watch::watch(Arc::clone(state), target, params, as_table);
            }
            let inner = state.lock();
            return match objects::list(&inner, &target, params) {
                Ok(v) if as_table => {
                    let items = v["items"].as_array().cloned().unwrap_or_default();
                    let rv = v["metadata"]["resourceVersion"].as_str().unwrap_or("");
                    table_response(table::table(&rt, &items, rv))
                }
                Ok(v) => ok(v),
                Err(e) => e.into_response(),
            };
        }
        (Method::GET, Some(n)) => {
            let inner = state.lock();
            return match objects::get(&inner, &target, n) {
                Ok(v) if as_table => {
                    let rv = v
                        .pointer("/metadata/resourceVersion")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string();
                    table_response(table::table(&rt, &[v], &rv))
                }
                Ok(v) => ok(v),
                Err(e) => e.into_response(),
            };
        }
        (Method::POST, None) => match parse_body(&body) {
            Ok(v) => objects::create(&mut state.lock(), &target, v, params, &manager),
            Err(e) => Err(e),
        },
        (Method::PUT, Some(n)) => match parse_body(&body) {
            Ok(v) => objects::update(&mut state.lock(), &target, n, v, params, &manager),
            Err(e) => Err(e),
        },
        (Method::PATCH, Some(n)) => objects::patch(
            &mut state.lock(),
            &target,
            n,
            &content_type,
            &body,
            params,
            &default_manager(headers),
        ),
        (Method::DELETE, Some(n)) => match parse_body(&body) {
            Ok(v) => objects::delete(&mut state.lock(), &target, n, &v, params),
            Err(e) => Err(e),
        },
        (Method::DELETE, None) => objects::delete_collection(&mut state.lock(), &target, params),
        _ => Err(ApiError::method_not_allowed(format!(
            "{method} is not supported here"
        ))),
    };
    match result {
        Ok(w) => {
            if let Some(rv) = w.changed {
                state.notify(rv);
            }
            json_response(w.code, &w.object, &w.warnings)
        }
        Err(e) => e.into_response(),
    }
}
