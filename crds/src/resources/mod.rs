//! The three custom resources of group `palisade.dev/v1alpha1`. Every field
//! carries a doc comment because it becomes `kubectl explain`.

mod aipolicy;
mod approval;
mod mcp;
mod security;
mod tool_run;
mod toolgrant;

pub use aipolicy::*;
pub use approval::*;
pub use mcp::*;
pub use security::*;
pub use tool_run::*;
pub use toolgrant::*;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// `apiVersion` as written in manifests. The `#[kube(group, version)]`
/// attributes of the three kinds take literals only, so the same string is
/// spelled there too; a test checks the kinds agree with this constant.
pub const API_VERSION: &str = "palisade.dev/v1alpha1";

/// A key in a Secret in the same namespace as the resource that names it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Name of the Secret, in the same namespace as this resource.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key within the Secret's data.
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// Conditions keyed by `type` (a list-map, so server-side apply merges them
/// per condition).
pub(crate) fn conditions_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let mut schema =
        generator.subschema_for::<Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition>>();
    schema.insert("x-kubernetes-list-type".into(), "map".into());
    schema.insert(
        "x-kubernetes-list-map-keys".into(),
        serde_json::json!(["type"]),
    );
    schema
}

/// A list of objects keyed by their `name` field.
pub(crate) fn list_map_by_name<T: JsonSchema>(
    generator: &mut schemars::SchemaGenerator,
) -> schemars::Schema {
    let mut schema = generator.subschema_for::<Vec<T>>();
    schema.insert("x-kubernetes-list-type".into(), "map".into());
    schema.insert(
        "x-kubernetes-list-map-keys".into(),
        serde_json::json!(["name"]),
    );
    schema
}
