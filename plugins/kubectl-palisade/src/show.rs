//! What the plugin prints: the approvals table and one approval in full.
//! Pure (an instant in, text out), so it is unit-tested.

use jiff::Timestamp;
use kube::ResourceExt;
use palisade_crds::{Approval, ApprovalPhase};
use std::fmt::Write;

const NONE: &str = "<none>";

/// `NAME NAMESPACE AGENT TOOL PHASE EXPIRES DECIDED-BY REQUEST`, columns
/// padded like kubectl's; the phase as of `now` (an undecided approval
/// past its deadline is `Expired` even before the operator says so).
pub fn table(items: &[Approval], pending_only: bool, now: Timestamp) -> String {
    let mut rows = vec![
        [
            "NAME",
            "NAMESPACE",
            "AGENT",
            "TOOL",
            "PHASE",
            "EXPIRES",
            "DECIDED-BY",
            "REQUEST",
        ]
        .map(str::to_owned),
    ];
    for a in items {
        let phase = a.phase_at(now);
        if pending_only && phase != ApprovalPhase::Pending {
            continue;
        }
        rows.push([
            a.name_any(),
            a.namespace().unwrap_or_default(),
            a.spec.call.agent.clone(),
            a.spec.call.tool.clone(),
            phase.as_str().to_owned(),
            a.spec.expires_at.0.to_string(),
            a.spec.decided_by.clone().unwrap_or_else(|| NONE.into()),
            a.spec.call.request_id.clone(),
        ]);
    }
    let widths: Vec<usize> = (0..8)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        let _ = writeln!(out, "{}", line.join("   ").trim_end());
    }
    out
}

/// One approval: what is held, by which rule, the (redacted) arguments,
/// where it stands, and the commands to decide it while it can be.
pub fn describe(a: &Approval, now: Timestamp) -> String {
    let call = a.spec.held_call();
    let name = a.name_any();
    let namespace = a.namespace().unwrap_or_default();
    let phase = a.phase_at(now);
    let status = a.status.clone().unwrap_or_default();
    let mut out = String::new();
    let mut field = |label: &str, value: String| {
        let _ = writeln!(out, "{:<19}{value}", format!("{label}:"));
    };
    field("Name", name.clone());
    field("Namespace", namespace.clone());
    let expires = a.spec.expires_at.0;
    field(
        "Phase",
        match phase {
            ApprovalPhase::Pending => format!(
                "Pending (decide before {expires}, {} from now)",
                remaining(now, expires)
            ),
            other => other.as_str().to_owned(),
        },
    );
    field(
        "Agent",
        match &call.requested_by {
            Some(who) => format!("{} ({who})", call.agent),
            None => call.agent.clone(),
        },
    );
    field("Tool", call.tool.clone());
    field(
        "Policy",
        format!("{} (generation {})", call.policy, call.policy_generation),
    );
    field(
        "Rule",
        call.rule.clone().unwrap_or_else(|| "(a ToolGrant)".into()),
    );
    field(
        "Requested",
        format!("{} (request {})", a.spec.requested_at.0, call.request_id),
    );
    field("Expires", expires.to_string());
    if let Some(decision) = a.spec.decision {
        let who = a.spec.decided_by.as_deref().unwrap_or("an unrecorded user");
        let when = status
            .decided_at
            .as_ref()
            .map(|t| format!(" at {}", t.0))
            .unwrap_or_default();
        let why = a.spec.reason.as_deref().unwrap_or("");
        field(
            "Decision",
            format!("{} by {who}{when}: {why:?}", decision.as_str()),
        );
    }
    if let Some(at) = &status.consumed_at {
        let by = status.consumed_by.as_deref().unwrap_or("a gateway");
        field("Used", format!("{} by {by}", at.0));
    }
    field("Arguments digest", call.arguments_digest.clone());
    let _ = writeln!(
        out,
        "Arguments (redacted{}):",
        if call.arguments_truncated {
            ", cut"
        } else {
            ""
        }
    );
    for line in call.arguments_preview.lines() {
        let _ = writeln!(out, "  {line}");
    }
    if phase == ApprovalPhase::Pending {
        let _ = writeln!(out, "Decide:");
        for verb in ["approve", "deny"] {
            let _ = writeln!(
                out,
                "  kubectl palisade {verb} {name} -n {namespace} --reason \"...\""
            );
        }
    }
    out
}

/// `12m 5s`, `45s`: how long until `then`.
fn remaining(now: Timestamp, then: Timestamp) -> String {
    let secs = then.as_second().saturating_sub(now.as_second()).max(0);
    match (secs / 3600, secs % 3600 / 60, secs % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, s) => format!("{m}m {s}s"),
        (h, m, _) => format!("{h}h {m}m"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use palisade_crds::{ApprovalDecision, ApprovalSpec, HeldCall};

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap_or(Timestamp::UNIX_EPOCH)
    }

    fn approval(name: &str, decision: Option<ApprovalDecision>) -> Approval {
        let mut a = Approval::new(
            name,
            ApprovalSpec {
                call: HeldCall {
                    agent: "intake".into(),
                    tool: "send_email".into(),
                    arguments_preview:
                        "{\n  \"to\": \"a@clinic.example\",\n  \"ssn\": \"[REDACTED]\"\n}".into(),
                    arguments_truncated: false,
                    arguments_digest: format!("sha256:{}", "0".repeat(64)),
                    request_id: "r-1".into(),
                    policy: "clinic-assistant".into(),
                    policy_generation: 3,
                    rule: Some("emails-need-approval".into()),
                    requested_by: Some("system:serviceaccount:clinic:intake".into()),
                },
                arguments: None,
                requested_at: Time(t("2026-11-22T10:00:00Z")),
                expires_at: Time(t("2026-11-22T10:15:00Z")),
                decision,
                reason: decision.map(|_| "patient asked".into()),
                decided_by: decision.map(|_| "alice".into()),
            },
        );
        a.metadata.namespace = Some("clinic".into());
        a
    }

    #[test]
    fn show_says_what_is_held_by_which_rule_and_how_to_decide() {
        let now = t("2026-11-22T10:02:55Z");
        let text = describe(&approval("intake-0a1b", None), now);
        for expected in [
            "Pending (decide before 2026-11-22T10:15:00Z, 12m 5s from now)",
            "intake (system:serviceaccount:clinic:intake)",
            "Rule:              emails-need-approval",
            "clinic-assistant (generation 3)",
            "\"ssn\": \"[REDACTED]\"",
            "kubectl palisade approve intake-0a1b -n clinic --reason",
        ] {
            assert!(text.contains(expected), "{expected:?} missing:\n{text}");
        }
        let decided = describe(&approval("x", Some(ApprovalDecision::Approved)), now);
        assert!(
            decided.contains("Approved by alice: \"patient asked\""),
            "{decided}"
        );
        assert!(!decided.contains("Decide:"), "{decided}");
    }

    #[test]
    fn the_table_lines_up_and_pending_hides_the_decided() {
        let now = t("2026-11-22T10:01:00Z");
        let items = [
            approval("intake-long-name-0a1b", None),
            approval("b", Some(ApprovalDecision::Denied)),
        ];
        let all = table(&items, false, now);
        let lines: Vec<&str> = all.lines().collect();
        assert_eq!(lines.len(), 3, "{all}");
        let col = lines[0].find("NAMESPACE").unwrap();
        assert_eq!(lines[1].find("clinic"), Some(col), "{all}");
        assert!(
            lines[2].contains("Denied") && lines[2].contains("alice"),
            "{all}"
        );
        let pending = table(&items, true, now);
        assert_eq!(pending.lines().count(), 2, "{pending}");
        assert!(pending.contains("<none>"), "{pending}");
        // Past the deadline an undecided one is not pending any more.
        assert_eq!(
            table(&items, true, t("2026-11-22T10:16:00Z"))
                .lines()
                .count(),
            1
        );
    }
}
