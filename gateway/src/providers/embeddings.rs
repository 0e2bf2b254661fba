//! Embeddings in OpenAI's shapes (`POST /v1/embeddings`): an OpenAI
//! (or compatible) provider gets the request as the client sent it with
//! the routed model, and its answer is passed on; Ollama's `POST
//! /api/embed` is translated both ways (`encoding_format: "base64"`, what
//! the official SDKs ask for by default, included). Anthropic has no
//! embeddings API ([`UpstreamError::Unsupported`]).

use super::openai::Rest;
use super::{Api, Upstream, UpstreamError, credentials, parse};
use axum::body::Bytes;
use base64::Engine;
use palisade_policy::{Provider, ProviderKind};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// A `POST /v1/embeddings` request: what the gateway reads, and every
/// other field (`dimensions`, `user`, ...) passed through.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EmbeddingsRequest {
    /// Replaced by the routed model when the request is sent on.
    #[serde(default, skip_serializing)]
    pub model: Option<String>,
    pub input: Input,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding_format: Option<String>,
    #[serde(flatten)]
    pub rest: Rest,
}

/// The text to embed: one string or several. (Token ids, which OpenAI
/// also takes, are refused: routing rules cannot read them.)
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Input {
    One(String),
    Many(Vec<String>),
}

impl Input {
    /// Every text, in order.
    pub fn texts(&self) -> Vec<&str> {
        match self {
            Input::One(s) => vec![s],
            Input::Many(v) => v.iter().map(String::as_str).collect(),
        }
    }
}

/// The request as sent on to an OpenAI-compatible provider.
#[derive(Serialize)]
struct Outgoing<'a> {
    model: &'a str,
    #[serde(flatten)]
    request: &'a EmbeddingsRequest,
}

/// Ollama's `POST /api/embed` request.
#[derive(Serialize)]
struct OllamaEmbed<'a> {
    model: &'a str,
    input: &'a Input,
}

/// Ollama's answer: one vector per input, and the tokens it read.
#[derive(Deserialize)]
struct OllamaEmbedded {
    embeddings: Vec<Vec<f32>>,
    #[serde(default)]
    prompt_eval_count: u64,
}

impl Upstream<'_> {
    /// Embeds `request`'s input with `model` on `provider`: OpenAI's
    /// `{"object": "list", "data": [...], "model", "usage"}` JSON.
    pub async fn embed(
        &self,
        provider: &Provider,
        model: &str,
        request: &EmbeddingsRequest,
    ) -> Result<Bytes, UpstreamError> {
        let headers = credentials(provider);
        match provider.kind {
            ProviderKind::OpenAi => {
                let body = Outgoing { model, request };
                let bytes = self
                    .post(provider, Api::Embeddings, &body, &headers)
                    .await?
                    .bytes()
                    .await?;
                // Passed on as it came, once it reads as JSON.
                parse::<serde::de::IgnoredAny>(&bytes)?;
                Ok(bytes)
            }
            ProviderKind::Ollama => {
                let body = OllamaEmbed {
                    model,
                    input: &request.input,
                };
                let answer = self
                    .post(provider, Api::Embeddings, &body, &headers)
                    .await?;
                let embedded: OllamaEmbedded = parse(&answer.bytes().await?)?;
                let base64 = request.encoding_format.as_deref() == Some("base64");
                Ok(Bytes::from(
                    openai_list(embedded, model, base64).to_string(),
                ))
            }
            ProviderKind::Anthropic => Err(UpstreamError::Unsupported(Api::Embeddings)),
        }
    }
}

/// Ollama's vectors as OpenAI's list; with `base64`, each vector as the
/// base64 of its little-endian `f32`s (what OpenAI sends for
/// `encoding_format: "base64"`).
fn openai_list(embedded: OllamaEmbedded, model: &str, base64: bool) -> Value {
    let data: Vec<Value> = embedded
        .embeddings
        .into_iter()
        .enumerate()
        .map(|(index, vector)| {
            let embedding = if base64 {
                let bytes: Vec<u8> = vector.iter().flat_map(|x| x.to_le_bytes()).collect();
                json!(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(vector)
            };
            json!({"object": "embedding", "index": index, "embedding": embedding})
        })
        .collect();
    let tokens = embedded.prompt_eval_count;
    json!({
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ollama_vectors_become_openais_list_as_floats_or_base64() {
        let embedded = || OllamaEmbedded {
            embeddings: vec![vec![0.5, -1.0], vec![2.0, 0.25]],
            prompt_eval_count: 7,
        };
        let floats = openai_list(embedded(), "nomic-embed-text", false);
        assert_eq!(floats["data"][1]["embedding"], json!([2.0, 0.25]));
        assert_eq!(floats["data"][1]["index"], 1);
        assert_eq!(floats["usage"]["prompt_tokens"], 7);
        assert_eq!(floats["model"], "nomic-embed-text");

        let encoded = openai_list(embedded(), "m", true);
        let text = encoded["data"][0]["embedding"].as_str().unwrap();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text)
            .unwrap();
        let back: Vec<f32> = bytes
            .chunks(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        assert_eq!(back, [0.5, -1.0]);
    }
}
