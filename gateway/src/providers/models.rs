//! The models a provider offers, from its protocol's own list: OpenAI's
//! (and any compatible server's) and Anthropic's `GET /v1/models`,
//! Ollama's `GET /api/tags`.

use super::{Api, Upstream, UpstreamError, credentials, parse};
use palisade_policy::{Provider, ProviderKind};
use serde::Deserialize;

/// One model a provider lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub id: String,
    /// Unix seconds, where the provider says (0 otherwise).
    pub created: i64,
}

/// OpenAI's list (`{"object": "list", "data": [{"id", "created"}]}`) and
/// Anthropic's (`{"data": [{"id", "created_at"}], "has_more"}`).
#[derive(Deserialize)]
struct ModelList {
    data: Vec<Model>,
}

#[derive(Deserialize)]
struct Model {
    id: String,
    created: Option<i64>,
    created_at: Option<jiff::Timestamp>,
}

/// Ollama's `{"models": [{"name": "llama3.1:8b", "modified_at"}]}`.
#[derive(Deserialize)]
struct Tags {
    models: Vec<Tag>,
}

#[derive(Deserialize)]
struct Tag {
    name: String,
    modified_at: Option<jiff::Timestamp>,
}

impl Upstream<'_> {
    /// The models `provider` lists (Anthropic's first 1,000).
    pub async fn models(&self, provider: &Provider) -> Result<Vec<Listed>, UpstreamError> {
        let answer = self
            .get(provider, Api::Models, &credentials(provider))
            .await?;
        let bytes = answer.bytes().await?;
        let seconds = |t: Option<jiff::Timestamp>| t.map_or(0, |t| t.as_second());
        Ok(match provider.kind {
            ProviderKind::OpenAi | ProviderKind::Anthropic => parse::<ModelList>(&bytes)?
                .data
                .into_iter()
                .map(|m| Listed {
                    created: m.created.unwrap_or_else(|| seconds(m.created_at)),
                    id: m.id,
                })
                .collect(),
            ProviderKind::Ollama => parse::<Tags>(&bytes)?
                .models
                .into_iter()
                .map(|t| Listed {
                    created: seconds(t.modified_at),
                    id: t.name,
                })
                .collect(),
        })
    }
}
