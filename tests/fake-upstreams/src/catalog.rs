//! The fake's model lists and embeddings, in each protocol's shape:
//! OpenAI's and Anthropic's `GET /v1/models`, Ollama's `GET /api/tags`;
//! OpenAI's `POST /v1/embeddings` (floats, or base64 when asked, as
//! OpenAI does) and Ollama's `POST /api/embed`. A text's vector is
//! `[characters, words, 1.0]`, so a test can tell which text it is.

use crate::{Inner, play_failures, receive};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};

/// The vector the fake gives `text`.
pub fn vector_of(text: &str) -> Vec<f32> {
    vec![
        text.chars().count() as f32,
        text.split_whitespace().count() as f32,
        1.0,
    ]
}

fn models(inner: &Mutex<Inner>) -> Vec<String> {
    inner
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .models
        .clone()
}

/// OpenAI's (and Anthropic's, which has `created_at` and paging fields
/// beside the same `data`) model list.
pub(crate) async fn list_models(
    State(inner): State<Arc<Mutex<Inner>>>,
    headers: HeaderMap,
) -> Response {
    let script = receive(&inner, "models", &headers, &Value::Null);
    if let Some(failed) = play_failures(&script).await {
        return failed;
    }
    let data: Vec<Value> = models(&inner)
        .into_iter()
        .map(|id| json!({"id": id, "object": "model", "created": 1_700_000_000, "created_at": "2023-11-14T22:13:20Z", "owned_by": "fake", "type": "model"}))
        .collect();
    axum::Json(json!({"object": "list", "data": data, "has_more": false})).into_response()
}

/// Ollama's `GET /api/tags`.
pub(crate) async fn ollama_tags(
    State(inner): State<Arc<Mutex<Inner>>>,
    headers: HeaderMap,
) -> Response {
    let script = receive(&inner, "ollama-tags", &headers, &Value::Null);
    if let Some(failed) = play_failures(&script).await {
        return failed;
    }
    let tags: Vec<Value> = models(&inner)
        .into_iter()
        .map(|name| json!({"name": name, "model": name, "modified_at": "2024-05-01T10:00:00Z", "size": 1}))
        .collect();
    axum::Json(json!({"models": tags})).into_response()
}

/// The texts of an `input` (a string or an array of strings).
fn texts(input: &Value) -> Vec<String> {
    match input {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a
            .iter()
            .map(|v| v.as_str().unwrap_or("").to_owned())
            .collect(),
        _ => Vec::new(),
    }
}

/// OpenAI's `POST /v1/embeddings`.
pub(crate) async fn embeddings(
    State(inner): State<Arc<Mutex<Inner>>>,
    headers: HeaderMap,
    axum::Json(body): axum::Json<Value>,
) -> Response {
    let script = receive(&inner, "openai-embeddings", &headers, &body);
    if let Some(failed) = play_failures(&script).await {
        return failed;
    }
    let base64 = body["encoding_format"].as_str() == Some("base64");
    let data: Vec<Value> = texts(&body["input"])
        .iter()
        .enumerate()
        .map(|(index, text)| {
            let v = vector_of(text);
            let embedding = if base64 {
                let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                json!(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(v)
            };
            json!({"object": "embedding", "index": index, "embedding": embedding})
        })
        .collect();
    axum::Json(json!({
        "object": "list", "data": data, "model": body["model"],
        "usage": {"prompt_tokens": 3, "total_tokens": 3}
    }))
    .into_response()
}

/// Ollama's `POST /api/embed`.
pub(crate) async fn ollama_embed(
    State(inner): State<Arc<Mutex<Inner>>>,
    headers: HeaderMap,
    axum::Json(body): axum::Json<Value>,
) -> Response {
    let script = receive(&inner, "ollama-embed", &headers, &body);
    if let Some(failed) = play_failures(&script).await {
        return failed;
    }
    let embeddings: Vec<Vec<f32>> = texts(&body["input"]).iter().map(|t| vector_of(t)).collect();
    axum::Json(json!({"model": body["model"], "embeddings": embeddings, "prompt_eval_count": 4}))
        .into_response()
}
