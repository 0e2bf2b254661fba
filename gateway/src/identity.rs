//! Who is calling: a bearer API key, hashed and compared in constant time
//! against every agent key of the current configuration. (Kubernetes
//! ServiceAccount tokens via TokenReview come with the cluster source.)

use crate::error::ApiError;
use crate::snapshot::Snapshot;
use axum::http::{HeaderMap, header};
use sha2::{Digest, Sha256};

/// An authenticated agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub namespace: String,
    pub agent: String,
}

fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let mut diff = 0u8;
    for (x, y) in a.iter().zip(b.iter()) {
        diff |= x ^ y;
    }
    diff == 0
}

/// The agent whose key the request carries, or 401.
pub fn authenticate(snapshot: &Snapshot, headers: &HeaderMap) -> Result<Identity, ApiError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(ApiError::unauthorized)?;
    let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
    // Compare against every key so timing does not say which one matched.
    let mut found = None;
    for k in &snapshot.keys {
        if constant_time_eq(&k.sha256, &digest) && found.is_none() {
            found = Some(Identity {
                namespace: k.namespace.clone(),
                agent: k.agent.clone(),
            });
        }
    }
    found.ok_or_else(ApiError::unauthorized)
}
