//! `POST /v1/security/quarantines/{namespace}/{agent}/lift`: a standalone
//! operator lifts an agent's quarantine (`spec.security.quarantineOn`,
//! [`crate::security::quarantine`]); the agent's requests are decided
//! again at once. In a cluster a quarantine is an annotation on the
//! AIPolicy, removed with kubectl (`404` here says how).

use crate::error::GatewayError;
use crate::security::quarantine::{self, Quarantines};
use crate::state::AppState;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, header};
use serde_json::{Value, json};

/// How a cluster's quarantine of `agent` is lifted.
pub fn kubectl_lift(namespace: &str, policy: &str, agent: &str) -> String {
    format!(
        "kubectl annotate aipolicy {policy} -n {namespace} {}-",
        palisade_crds::quarantine::annotation_key(agent)
    )
}

/// Lifts it as `operator`; the answer says whether there was one.
pub async fn lift_as(
    state: &AppState,
    namespace: &str,
    agent: &str,
    operator: &str,
) -> Result<Value, GatewayError> {
    if !matches!(state.quarantines, Some(Quarantines::Local { .. })) {
        return Err(GatewayError::QuarantineNotHere(format!(
            "in a cluster a quarantine is an annotation on the AIPolicy: {}",
            kubectl_lift(namespace, "POLICY", agent)
        )));
    }
    let by = format!("operator:{operator}");
    let lifted = quarantine::lift(state, (namespace, agent), &by)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "the quarantine could not be lifted");
            GatewayError::AuditQueryUnavailable
        })?;
    if !lifted {
        return Err(GatewayError::QuarantineNotHere(format!(
            "agent {namespace}/{agent} is not quarantined"
        )));
    }
    tracing::warn!(%namespace, %agent, operator, "quarantine lifted");
    Ok(json!({"namespace": namespace, "agent": agent, "lifted": true, "liftedBy": by}))
}

/// `POST /v1/security/quarantines/{namespace}/{agent}/lift` (operator
/// token).
pub async fn lift(
    State(state): State<AppState>,
    Path((namespace, agent)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Json<Value>, GatewayError> {
    let operator = match state.auth.operator(&headers) {
        Some(name) => name.to_owned(),
        None if headers.contains_key(header::AUTHORIZATION) => {
            return Err(GatewayError::OperatorOnly);
        }
        None => return Err(GatewayError::Unauthenticated),
    };
    Ok(Json(lift_as(&state, &namespace, &agent, &operator).await?))
}
