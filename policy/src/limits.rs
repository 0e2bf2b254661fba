//! `spec.limits` compiled: how much each agent of a policy, and all of
//! them together, may use — requests and tokens per minute, tokens per
//! day, streams open at once. The gateway keeps the counts
//! (`gateway/src/budgets.rs`); this is what it counts against.

use serde::{Deserialize, Serialize};

/// One set of limits; each unset one does not apply.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LimitSet {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_per_minute: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_per_minute: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_per_day: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrent_streams: Option<u32>,
}

impl LimitSet {
    /// Whether any limit is set.
    pub fn any(&self) -> bool {
        *self != Self::default()
    }
}

/// A policy's limits: for each of its agents on its own, and for all of
/// them together.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Limits {
    #[serde(default)]
    pub agent: LimitSet,
    #[serde(default)]
    pub policy: LimitSet,
}
