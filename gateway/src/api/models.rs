//! `GET /v1/models`: the models the calling agent may ask for, in
//! OpenAI's list shape — every model its policy's providers list
//! ([`crate::providers::models`]) that the policy's `models.allow`
//! matches, each once (the first provider listing it owns it), plus each
//! provider's `defaultModel` when allowed. A provider that cannot be
//! listed is left out (and logged); the others are still answered. A
//! kill switch or a missing policy refuses the listing like any request.
//! Listing is not a decision: it is not audited.

use crate::api::routed::upstream;
use crate::auth::Agent;
use crate::error::GatewayError;
use crate::providers::models::Listed;
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use futures_util::future::join_all;
use serde_json::json;
use std::collections::HashSet;

/// `GET /v1/models`.
pub async fn list(
    State(state): State<AppState>,
    Agent { who, snapshot }: Agent,
) -> Result<Response, GatewayError> {
    let policy = snapshot
        .bundle
        .model_access(&who.namespace, &who.agent)
        .map_err(|d| GatewayError::Refused {
            code: d.reason_code,
            message: format!("listing models refused ({})", d.reason_code),
            details: json!({"reasonCode": d.reason_code.as_str(), "rule": d.rule, "policy": d.policy}),
        })?;
    let upstream = upstream(&state, &snapshot);
    let lists = join_all(policy.providers.iter().map(|p| upstream.models(p))).await;
    let mut seen = HashSet::new();
    let mut data = Vec::new();
    for (provider, listed) in policy.providers.iter().zip(lists) {
        let mut models = listed.unwrap_or_else(|error| {
            tracing::warn!(provider = %provider.name, %error, "cannot list the provider's models; /v1/models leaves them out");
            Vec::new()
        });
        if let Some(default) = &provider.default_model {
            models.push(Listed {
                id: default.clone(),
                created: 0,
            });
        }
        for m in models {
            if policy.allows_model(&m.id) && seen.insert(m.id.clone()) {
                data.push(json!({
                    "id": m.id,
                    "object": "model",
                    "created": m.created,
                    "owned_by": provider.name,
                }));
            }
        }
    }
    Ok(Json(json!({"object": "list", "data": data})).into_response())
}
