//! The contract between the operator and the gateways: the Secret (it
//! carries provider credentials) holding the compiled bundle as gzip'd JSON,
//! with its revision in an annotation. The operator encodes, gateways decode.
//! What the gateways report back is in [`crate::gateway_report`].

use crate::labels;
use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use palisade_policy::PolicyBundle;
use serde_json::json;
use std::io::{Read, Write};

/// The Secret's name unless the installation says otherwise (the
/// operator's and the gateway's `--secret-name`).
pub const DEFAULT_SECRET_NAME: &str = "palisade-config";
/// Key of the bundle in the Secret's data.
pub const BUNDLE_KEY: &str = "bundle.json.gz";
/// Annotation with the bundle's revision.
pub const REVISION_ANNOTATION: &str = "palisade.dev/revision";
/// Refuse to write more than this (the API server's limit is 1 MiB).
pub const MAX_BYTES: usize = 900 * 1024;
/// The bytes one compiled policy may take in the bundle (its JSON, before
/// compression) unless the operator is told otherwise
/// (`--policy-size-budget`, chart value `operator.policySizeBudget`): a
/// policy over it is refused on its own, so one tenant cannot push the
/// bundle past [`MAX_BYTES`] and stop it being written for everyone.
/// Real policies take a few kB; even incompressible ones this size leave
/// room for several in one Secret.
pub const DEFAULT_POLICY_BUDGET: usize = 128 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum BundleSecretError {
    #[error(
        "the compiled configuration is {size} bytes compressed, over the {MAX_BYTES}-byte limit for one object; split policies across installations or trim keyword lists"
    )]
    TooLarge { size: usize },
    #[error("the Secret has no {BUNDLE_KEY}")]
    Missing,
    #[error("cannot decode the bundle: {0}")]
    Decode(String),
}

/// The Secret for `bundle`, or `TooLarge`.
pub fn encode(
    bundle: &PolicyBundle,
    namespace: &str,
    name: &str,
) -> Result<Secret, BundleSecretError> {
    let json = serde_json::to_vec(bundle).map_err(|e| BundleSecretError::Decode(e.to_string()))?;
    let mut gz = GzEncoder::new(Vec::new(), Compression::best());
    gz.write_all(&json)
        .map_err(|e| BundleSecretError::Decode(e.to_string()))?;
    let compressed = gz
        .finish()
        .map_err(|e| BundleSecretError::Decode(e.to_string()))?;
    if compressed.len() > MAX_BYTES {
        return Err(BundleSecretError::TooLarge {
            size: compressed.len(),
        });
    }
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {labels::MANAGED_BY: labels::OPERATOR, labels::PART_OF: labels::PALISADE},
            "annotations": {REVISION_ANNOTATION: bundle.revision()},
        },
        "type": "Opaque",
        "data": {BUNDLE_KEY: ByteString(compressed)},
    }))
    .map_err(|e| BundleSecretError::Decode(e.to_string()))
}

/// The bundle a Secret holds (re-validated on load).
pub fn decode(secret: &Secret) -> Result<PolicyBundle, BundleSecretError> {
    let data = secret
        .data
        .as_ref()
        .and_then(|d| d.get(BUNDLE_KEY))
        .ok_or(BundleSecretError::Missing)?;
    let mut json = Vec::new();
    GzDecoder::new(&data.0[..])
        .read_to_end(&mut json)
        .map_err(|e| BundleSecretError::Decode(e.to_string()))?;
    serde_json::from_slice(&json).map_err(|e| BundleSecretError::Decode(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bundle_round_trips_through_its_secret() {
        let bundle = PolicyBundle::empty();
        let secret = encode(&bundle, "palisade-system", DEFAULT_SECRET_NAME).unwrap();
        assert_eq!(
            secret.metadata.annotations.as_ref().unwrap()[REVISION_ANNOTATION],
            bundle.revision()
        );
        assert_eq!(decode(&secret).unwrap().revision(), bundle.revision());
        let labels = secret.metadata.labels.unwrap();
        assert_eq!(labels[crate::labels::MANAGED_BY], "palisade-operator");
        assert_eq!(labels[crate::labels::PART_OF], "palisade");
    }
}
