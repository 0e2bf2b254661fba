//! The quarantine contract between the gateways and the operator: a
//! gateway that raises a security alert of a kind the policy's
//! `spec.security.quarantineOn` lists writes the annotation
//! `palisade.dev/quarantine.<agent>` on that AIPolicy (what, when, which
//! request, which replica, as JSON); the compiler turns every such
//! annotation into the agent's quarantine (a kill switch, reason code
//! `kill_switch.quarantine`) and the operator shows it in
//! `status.quarantined`. Only a human lifts it, by removing the annotation:
//! the chart's admission policy lets the gateways add these annotations and
//! nothing else. Both sides build and read the annotation here.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The annotation of agent `<agent>`'s quarantine is this prefix and its name.
pub const ANNOTATION_PREFIX: &str = "palisade.dev/quarantine.";

/// The annotation key quarantining `agent`.
pub fn annotation_key(agent: &str) -> String {
    format!("{ANNOTATION_PREFIX}{agent}")
}

/// What a quarantine annotation records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Quarantine {
    /// The alert's kind, e.g. `path_traversal`.
    pub kind: String,
    pub since: Timestamp,
    /// What the alert saw (never an argument's value).
    pub detail: String,
    /// The request that raised it.
    pub request_id: String,
    /// The gateway replica that raised it.
    pub by: String,
}

impl Quarantine {
    /// How decisions and the status say why.
    pub fn why(&self) -> String {
        format!(
            "alert.{} at {}: {} (request {})",
            self.kind, self.since, self.detail, self.request_id
        )
    }
}

/// Every agent an annotation quarantines, with why. An annotation whose
/// value does not read (edited by hand) still quarantines: its text, cut
/// short, is the why.
pub fn of_annotations(annotations: Option<&BTreeMap<String, String>>) -> Vec<(&str, String)> {
    annotations
        .into_iter()
        .flatten()
        .filter_map(|(key, value)| {
            let agent = key.strip_prefix(ANNOTATION_PREFIX)?;
            let why = match serde_json::from_str::<Quarantine>(value) {
                Ok(q) => q.why(),
                Err(_) => value.chars().take(200).collect(),
            };
            Some((agent, why))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_annotation_reads_back_and_a_hand_edited_one_still_quarantines() {
        let q = Quarantine {
            kind: "path_traversal".into(),
            since: "2026-12-06T21:00:00Z".parse().unwrap(),
            detail: "argument path looks like path traversal".into(),
            request_id: "req-1".into(),
            by: "gateway-a".into(),
        };
        let annotations = BTreeMap::from([
            (annotation_key("intake"), serde_json::to_string(&q).unwrap()),
            (annotation_key("billing"), "stopped by hand".to_owned()),
            ("other/annotation".to_owned(), "x".to_owned()),
        ]);
        let found = of_annotations(Some(&annotations));
        assert_eq!(
            found,
            [
                ("billing", "stopped by hand".to_owned()),
                (
                    "intake",
                    "alert.path_traversal at 2026-12-06T21:00:00Z: argument path looks like path traversal (request req-1)".to_owned()
                ),
            ]
        );
    }
}
