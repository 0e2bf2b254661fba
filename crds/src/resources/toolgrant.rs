//! `ToolGrant` (short name `tg`): a time-boxed, reviewable exception to a
//! namespace's policy.

use super::conditions_schema;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A time-boxed exception: lets some agents of this namespace use some
/// tools (outright or after approval) until `expiresAt`, for a stated
/// reason. An explicit `Deny` rule of the policy still wins; kill switches
/// always win.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "palisade.dev",
    version = "v1alpha1",
    kind = "ToolGrant",
    plural = "toolgrants",
    singular = "toolgrant",
    shortname = "tg",
    namespaced,
    doc = r#"A ToolGrant is a time-boxed, reviewable exception to the AIPolicy of its namespace: some agents may use some tools (outright or after approval) until expiresAt."#,
    status = "ToolGrantStatus",
    printcolumn = r#"{"name":"Agent","type":"string","jsonPath":".spec.agents"}"#,
    printcolumn = r#"{"name":"Tools","type":"string","jsonPath":".spec.tools"}"#,
    printcolumn = r#"{"name":"Action","type":"string","jsonPath":".spec.action"}"#,
    printcolumn = r#"{"name":"Expires","type":"string","jsonPath":".spec.expiresAt"}"#,
    printcolumn = r#"{"name":"State","type":"string","jsonPath":".status.state"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ToolGrantSpec {
    /// Agent names (or globs) in this namespace the grant covers.
    #[schemars(length(min = 1, max = 64), inner(length(min = 1, max = 63)))]
    pub agents: Vec<String>,
    /// Tool-name globs the grant covers.
    #[schemars(length(min = 1, max = 64), inner(length(min = 1, max = 253)))]
    pub tools: Vec<String>,
    /// `Allow`, or `RequireApproval` to let the calls through only after a
    /// human approves each one. A grant never denies.
    pub action: GrantAction,
    /// Optional CEL condition over `args`, `tool` and `agent`, as in
    /// AIPolicy tool rules; the grant applies only when it is true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 4096))]
    pub when: Option<String>,
    /// When the grant stops applying (RFC 3339). Required: every exception
    /// ends.
    pub expires_at: Time,
    /// Why the exception exists (ticket, incident, approver), for reviewers.
    #[schemars(length(min = 1, max = 1024))]
    pub reason: String,
}

/// What a grant permits.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum GrantAction {
    Allow,
    RequireApproval,
}

/// What the operator reports about a grant.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ToolGrantStatus {
    /// The generation the operator last processed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Active` (in force), `Expired` (past `expiresAt`) or `Invalid` (does
    /// not compile; see `message`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<GrantState>,
    /// Why the grant is invalid, naming the field and the fix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Standard conditions (`Accepted`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
}

/// Lifecycle of a grant.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum GrantState {
    Active,
    Expired,
    Invalid,
}
