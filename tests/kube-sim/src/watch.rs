//! Watches: `?watch=true` streams ADDED / MODIFIED / DELETED events as
//! newline-delimited JSON, resumes from a resourceVersion, answers a
//! too-old one with a 410 `Expired` ERROR event, sends BOOKMARKs when asked,
//! supports `sendInitialEvents`, and honours `timeoutSeconds`. A MODIFIED
//! object that stops (or starts) matching the selectors is sent as DELETED
//! (or ADDED), as the API server does.

use crate::objects::{Params, Target, present, selectors};
use crate::selectors::{FieldSelector, LabelSelector};
use crate::state::State;
use crate::store::EventType;
use axum::body::{Body, Bytes};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

struct Filter {
    namespace: Option<String>,
    labels: LabelSelector,
    fields: FieldSelector,
}

impl Filter {
    fn matches(&self, namespace: &str, object: &Value) -> bool {
        self.namespace.as_deref().is_none_or(|n| n == namespace)
            && self.labels.matches(object)
            && self.fields.matches(object)
    }
}

/// Objects in watch events, as a one-row Table when the client asked.
fn shape(t: &Target, object: Value, as_table: bool) -> Value {
    if as_table {
        let rv = object
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        crate::table::table(&t.rt, &[object], &rv)
    } else {
        object
    }
}

fn line(kind: &str, object: &Value) -> Bytes {
    let mut s = json!({"type": kind, "object": object}).to_string();
    s.push('\n');
    Bytes::from(s)
}

fn bookmark(t: &Target, rv: u64, initial_end: bool) -> Bytes {
    let mut metadata = json!({"resourceVersion": rv.to_string()});
    if initial_end {
        metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    line(
        "BOOKMARK",
        &json!({"kind": t.rt.kind, "apiVersion": t.rt.api_version(), "metadata": metadata}),
    )
}

/// Starts a watch; the response streams until the client goes away or
/// `timeoutSeconds` passes.
pub fn watch(state: Arc<State>, t: Target, params: &Params, as_table: bool) -> Response {
    let (labels, fields) = match selectors(&t.rt, params) {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    let filter = Filter {
        namespace: if t.rt.namespaced {
            t.namespace.clone()
        } else {
            None
        },
        labels,
        fields,
    };
    let bookmarks = params.flag("allowWatchBookmarks");
    let send_initial = params.flag("sendInitialEvents");
    let timeout = params
        .get("timeoutSeconds")
        .and_then(|s| s.parse::<u64>().ok())
        .map(Duration::from_secs);
    let requested_rv = params.get("resourceVersion").map(String::from);

    let (tx, rx) = mpsc::channel::<Bytes>(256);
    let mut changes = state.changes.subscribe();
    tokio::spawn(async move {
        let type_key = t.rt.storage_key();
        // Where to start, and the initial state if the request asks for it.
        enum Start {
            Error(Value),
            From(u64, Vec<Value>),
        }
        let start = {
            let inner = state.lock();
            let current = inner.store.current_rv();
            let from = requested_rv
                .as_deref()
                .filter(|rv| *rv != "0")
                .map(|rv| rv.parse::<u64>());
            match from {
                Some(Ok(rv)) if !send_initial => {
                    if inner.store.events_after(rv, &type_key).is_none() {
                        Start::Error(json!({
                            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                            "message": format!("too old resource version: {rv} ({current})"),
                            "reason": "Expired", "code": 410
                        }))
                    } else {
                        Start::From(rv, Vec::new())
                    }
                }
                Some(Err(_)) => Start::Error(json!({
                    "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                    "message": "invalid resource version", "reason": "BadRequest", "code": 400
                })),
                _ => {
                    let ns = filter.namespace.as_deref();
                    let objects: Vec<Value> = inner
                        .store
                        .list(&type_key, ns)
                        .into_iter()
                        .filter(|o| filter.labels.matches(o) && filter.fields.matches(o))
                        .map(|o| present(&t.rt, o.clone()))
                        .collect();
                    Start::From(current, objects)
                }
            }
        };
        let (mut cursor, initial) = match start {
            Start::Error(status) => {
                let _ = tx.send(line("ERROR", &status)).await;
                return;
            }
            Start::From(rv, objects) => (rv, objects),
        };
        for object in initial {
            if tx
                .send(line("ADDED", &shape(&t, object, as_table)))
                .await
                .is_err()
            {
                return;
            }
        }
        if send_initial && bookmarks && tx.send(bookmark(&t, cursor, true)).await.is_err() {
            return;
        }
        let deadline = timeout.map(|d| tokio::time::Instant::now() + d);
        let interval = state.bookmark_interval();
        loop {
            let events = {
                let inner = state.lock();
                let events = inner.store.events_after(cursor, &type_key);
                let latest = inner.store.current_rv();
                (events, latest)
            };
            let (Some(events), latest) = events else {
                let status = json!({
                    "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                    "message": format!("too old resource version: {cursor}"), "reason": "Expired", "code": 410
                });
                let _ = tx.send(line("ERROR", &status)).await;
                return;
            };
            for e in events {
                let now_matches = filter.matches(&e.namespace, &e.object);
                let was_matching = e
                    .old
                    .as_ref()
                    .is_some_and(|o| filter.matches(&e.namespace, o));
                let kind = match (e.kind, was_matching, now_matches) {
                    (EventType::Modified, true, true) => Some("MODIFIED"),
                    (EventType::Modified, false, true) => Some("ADDED"),
                    (EventType::Modified, true, false) => Some("DELETED"),
                    (EventType::Modified, false, false) => None,
                    (other, _, true) => Some(other.as_str()),
                    (_, _, false) => None,
                };
                if let Some(kind) = kind
                    && tx
                        .send(line(
                            kind,
                            &shape(&t, present(&t.rt, e.object.clone()), as_table),
                        ))
                        .await
                        .is_err()
                {
                    return;
                }
                cursor = e.rv;
            }
            cursor = cursor.max(latest);
            let wait = match deadline {
                Some(d) => d
                    .saturating_duration_since(tokio::time::Instant::now())
                    .min(interval),
                None => interval,
            };
            if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
                return;
            }
            tokio::select! {
                changed = changes.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
                _ = tokio::time::sleep(wait) => {
                    if bookmarks && tx.send(bookmark(&t, cursor, false)).await.is_err() {
                        return;
                    }
                }
                _ = tx.closed() => return,
            }
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<Bytes, std::convert::Infallible>(b), rx))
    });
    let mut response = (StatusCode::OK, Body::from_stream(stream)).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    response
}
