//! What a raised alert becomes: a count in
//! `palisade_security_alerts_total{kind}`, an audit row of its own kind
//! (`security_alert`, decision `Alert`, reason `alert.<kind>`, the
//! triggering request's id, what was seen in `detail`), a warning in the
//! log, and in a cluster a Warning Event `SecurityAlert` on the deciding
//! AIPolicy. None of them carries an argument's value. Recording does not
//! hold up the decision: the row is queued like a buffered chat event.

use super::{Alert, Observed, quarantine};
use crate::state::AppState;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType};
use palisade_audit::{AuditDecision, AuditEvent, EventKind};
use palisade_policy::{AlertKind, SecuritySettings};
use std::time::Instant;

/// Where a cluster's alerts are announced (Events on their AIPolicy).
#[derive(Clone)]
pub struct EventSink(pub kube::runtime::events::Recorder);

impl std::fmt::Debug for EventSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EventSink")
    }
}

/// Watches a decided tool call and reports what it raises.
pub fn tool_call(state: &AppState, settings: &SecuritySettings, call: &Observed<'_>) {
    let (alerts, held_back) = state.security.tool_call(settings, call, Instant::now());
    report(state, settings, alerts, &held_back);
}

/// Watches a routed request's tokens and reports what they raise.
pub fn tokens(
    state: &AppState,
    settings: &SecuritySettings,
    who: (&str, &str, Option<&str>),
    total: u64,
    request_id: &str,
) {
    let (alerts, held_back) =
        state
            .security
            .tokens(settings, who, total, request_id, Instant::now());
    report(state, settings, alerts, &held_back);
}

fn report(
    state: &AppState,
    settings: &SecuritySettings,
    alerts: Vec<Alert>,
    held_back: &[AlertKind],
) {
    for kind in held_back {
        state
            .metrics
            .security_alerts_held_back
            .with_label_values(&[kind.as_str()])
            .inc();
    }
    for alert in alerts {
        state
            .metrics
            .security_alerts
            .with_label_values(&[alert.kind.as_str()])
            .inc();
        tracing::warn!(
            namespace = %alert.namespace,
            agent = %alert.agent,
            kind = alert.kind.as_str(),
            tool = alert.tool.as_deref().unwrap_or(""),
            request_id = %alert.request_id,
            detail = %alert.detail,
            "security alert"
        );
        if let Err(e) = state.audit.record(row(&alert)) {
            tracing::warn!(error = %e, kind = alert.kind.as_str(), "security alert not audited");
        }
        if settings.quarantine_on.contains(&alert.kind)
            && let Some(quarantines) = &state.quarantines
            && !quarantined(state, &alert)
        {
            quarantine::impose(quarantines, &alert, &state.config, &state.metrics);
        }
        if let (Some(EventSink(recorder)), Some(policy)) = (&state.events, &alert.policy) {
            let recorder = recorder.clone();
            let regarding = ObjectReference {
                api_version: Some(palisade_crds::API_VERSION.into()),
                kind: Some("AIPolicy".into()),
                namespace: Some(alert.namespace.clone()),
                name: Some(policy.clone()),
                ..Default::default()
            };
            let event = Event {
                type_: EventType::Warning,
                reason: "SecurityAlert".into(),
                note: Some(note(&alert)),
                action: "Decide".into(),
                secondary: None,
            };
            tokio::spawn(async move {
                if let Err(e) = recorder.publish(&event, &regarding).await {
                    tracing::warn!(error = %e, "cannot publish the security alert's Event");
                }
            });
        }
    }
}

/// Whether the alert's agent is quarantined already (in the served
/// configuration).
fn quarantined(state: &AppState, alert: &Alert) -> bool {
    state.config.load().as_ref().is_some_and(|s| {
        s.bundle
            .policy_for(&alert.namespace, &alert.agent)
            .is_some_and(|(_, agent)| agent.quarantine.is_some())
    })
}

/// The alert's audit row.
fn row(alert: &Alert) -> AuditEvent {
    let mut e = AuditEvent::new(
        EventKind::SecurityAlert,
        &alert.request_id,
        &alert.namespace,
        &alert.agent,
        AuditDecision::Alert,
    );
    e.policy = alert.policy.clone();
    e.tool = alert.tool.clone();
    e.argument_digest = alert.argument_digest.clone();
    e.reason_codes = vec![alert.kind.reason_code()];
    e.detail = Some(alert.detail.clone());
    e
}

/// The Event's note: `agent intake: alert.denial_burst: 10 denials in
/// 60 s (threshold 10) (tool rm, request r-1)`.
fn note(alert: &Alert) -> String {
    let tool = alert
        .tool
        .as_deref()
        .map(|t| format!("tool {t}, "))
        .unwrap_or_default();
    format!(
        "agent {}: {}: {} ({tool}request {})",
        alert.agent,
        alert.kind.reason_code(),
        alert.detail,
        alert.request_id
    )
}
