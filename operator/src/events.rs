//! Events (`events.k8s.io`) about the objects the operator reconciles.
//! The loops plan them as plain values ([`PlannedEvent`], its note
//! already cut to size on a character boundary) and [`publish`] sends
//! them; a failure to publish is logged, never fatal.

use crate::text::{EVENT_NOTE_BYTES, cut_to};
use k8s_openapi::api::core::v1::ObjectReference;
use kube::Resource;
use kube::runtime::events::{Event, EventType, Recorder};

/// An Event to publish.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedEvent {
    /// The object it is about.
    pub regarding: ObjectReference,
    pub type_: EventType,
    /// Short, `PascalCase`: `Compiled`, `Invalid`, `Approved`, ...
    pub reason: &'static str,
    /// What happened, for `kubectl describe` (at most
    /// [`EVENT_NOTE_BYTES`]).
    pub note: String,
}

impl PlannedEvent {
    /// An Event about `object`; `note` is cut to size.
    pub fn about<K: Resource<DynamicType = ()>>(
        object: &K,
        type_: EventType,
        reason: &'static str,
        mut note: String,
    ) -> Self {
        cut_to(&mut note, EVENT_NOTE_BYTES);
        Self {
            regarding: object.object_ref(&()),
            type_,
            reason,
            note,
        }
    }
}

/// Publishes `event` (failures are logged, never fatal).
pub async fn publish(recorder: &Recorder, event: &PlannedEvent) {
    let ev = Event {
        type_: event.type_,
        reason: event.reason.into(),
        note: Some(event.note.clone()),
        action: "Reconcile".into(),
        secondary: None,
    };
    if let Err(e) = recorder.publish(&ev, &event.regarding).await {
        tracing::warn!(error = %e, reason = event.reason, "cannot publish event");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use palisade_crds::AIPolicy;

    #[test]
    fn a_note_is_cut_on_a_character_boundary() {
        let mut policy: AIPolicy = serde_json::from_value(serde_json::json!({
            "apiVersion": "palisade.dev/v1alpha1", "kind": "AIPolicy",
            "metadata": {"name": "p", "namespace": "ns"},
            "spec": {"providers": [], "routing": {"defaultProvider": "x"}}
        }))
        .unwrap();
        policy.metadata.uid = Some("u-1".into());
        // 1 + 2 × 600 bytes: byte 1,000 falls inside an é.
        let note = format!("x{}", "é".repeat(600));
        let event = PlannedEvent::about(&policy, EventType::Warning, "Invalid", note.clone());
        assert_eq!(event.note.len(), 999);
        assert!(note.starts_with(&event.note));
        assert_eq!(
            (
                event.regarding.kind.as_deref(),
                event.regarding.uid.as_deref()
            ),
            (Some("AIPolicy"), Some("u-1"))
        );
    }
}
