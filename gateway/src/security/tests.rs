//! The watch's heuristics with a clock of the test's own.

use super::*;
use serde_json::json;

fn call<'a>(tool: &'a str, args: Option<&'a Value>, outcome: Outcome) -> Observed<'a> {
    Observed {
        namespace: "clinic",
        agent: "intake",
        policy: Some("clinic-assistant"),
        tool,
        arguments: args,
        digest: "sha256:aa",
        outcome,
        request_id: "r-1",
        approval: None,
    }
}

fn kinds(alerts: &[Alert]) -> Vec<AlertKind> {
    alerts.iter().map(|a| a.kind).collect()
}

#[test]
fn attack_shapes_in_arguments_are_raised_naming_where_not_what() {
    let watch = SecurityWatch::default();
    let s = SecuritySettings::default();
    let args = json!({"path": "../../etc/passwd", "q": "x' OR 1=1 --"});
    let (alerts, _) = watch.tool_call(
        &s,
        &call("read_file", Some(&args), Outcome::Deny),
        Instant::now(),
    );
    assert_eq!(
        kinds(&alerts),
        [AlertKind::PathTraversal, AlertKind::SqlInjection]
    );
    assert_eq!(alerts[0].detail, "argument path looks like path traversal");
    assert!(
        !alerts.iter().any(|a| a.detail.contains("passwd")),
        "{alerts:?}"
    );
    // Off in the policy: nothing.
    let off = SecuritySettings {
        argument_shapes: false,
        ..s.clone()
    };
    let (alerts, _) = watch.tool_call(
        &off,
        &call("read_file", Some(&args), Outcome::Deny),
        Instant::now(),
    );
    assert!(alerts.is_empty(), "{alerts:?}");
}

#[test]
fn a_burst_of_denials_is_raised_once_per_cooldown() {
    let watch = SecurityWatch::default();
    let s = SecuritySettings::default(); // 10 in 60 s, cooldown 60 s
    let t0 = Instant::now();
    let mut raised = Vec::new();
    for i in 0..25u64 {
        let (alerts, held_back) = watch.tool_call(
            &s,
            &call("rm", None, Outcome::Deny),
            t0 + Duration::from_secs(i),
        );
        raised.push((i, kinds(&alerts), held_back));
    }
    let at: Vec<u64> = raised
        .iter()
        .filter(|(_, k, _)| k.contains(&AlertKind::DenialBurst))
        .map(|(i, _, _)| *i)
        .collect();
    assert_eq!(
        at,
        [9],
        "the 10th denial raises it, the next 15 are held back: {raised:?}"
    );
    assert!(raised[20].2.contains(&AlertKind::DenialBurst));
    // Slow denials never add up to a burst.
    let slow = SecurityWatch::default();
    for i in 0..30u64 {
        let (alerts, _) = slow.tool_call(
            &s,
            &call("rm", None, Outcome::Deny),
            t0 + Duration::from_secs(i * 7),
        );
        assert!(!kinds(&alerts).contains(&AlertKind::DenialBurst), "at {i}");
    }
}

#[test]
fn the_same_held_call_again_and_again_is_raised() {
    let watch = SecurityWatch::default();
    let s = SecuritySettings::default(); // 3 in 600 s
    let t0 = Instant::now();
    let held: Vec<Vec<AlertKind>> = (0..3u64)
        .map(|i| {
            kinds(
                &watch
                    .tool_call(
                        &s,
                        &call("send_email", None, Outcome::RequireApproval),
                        t0 + Duration::from_secs(i),
                    )
                    .0,
            )
        })
        .collect();
    assert_eq!(held, [vec![], vec![], vec![AlertKind::RepeatedHeldCall]]);
}

#[test]
fn using_an_approval_is_not_asking_again() {
    // Held once, then run with its approval, then a replay of it: one
    // held call, not three (seen in the console's browser test).
    let watch = SecurityWatch::default();
    let s = SecuritySettings::default(); // 3 in 600 s
    let t0 = Instant::now();
    let held = call("send_email", None, Outcome::RequireApproval);
    let used = Observed {
        approval: Some("intake-3f9c"),
        ..call("send_email", None, Outcome::RequireApproval)
    };
    let raised: Vec<AlertKind> = [held, used, used]
        .iter()
        .enumerate()
        .flat_map(|(i, c)| kinds(&watch.tool_call(&s, c, t0 + Duration::from_secs(i as u64)).0))
        .collect();
    assert_eq!(raised, []);
}

#[test]
fn a_tool_never_called_is_raised_once_the_agent_is_known() {
    let watch = SecurityWatch::default();
    let s = SecuritySettings {
        new_tool_after: 5,
        ..SecuritySettings::default()
    };
    let t0 = Instant::now();
    // Learning: its first five decisions teach it the agent's tools.
    for (i, tool) in ["search", "calendar", "search", "calendar", "read"]
        .iter()
        .enumerate()
    {
        let (alerts, _) = watch.tool_call(
            &s,
            &call(tool, None, Outcome::Allow),
            t0 + Duration::from_secs(i as u64),
        );
        assert!(alerts.is_empty(), "{tool}: {alerts:?}");
    }
    let (alerts, _) = watch.tool_call(&s, &call("search", None, Outcome::Allow), t0);
    assert!(alerts.is_empty());
    let (alerts, _) = watch.tool_call(&s, &call("drop_database", None, Outcome::Allow), t0);
    assert_eq!(kinds(&alerts), [AlertKind::NewTool]);
    assert_eq!(alerts[0].tool.as_deref(), Some("drop_database"));
    // Known now.
    let (alerts, _) = watch.tool_call(
        &s,
        &call("drop_database", None, Outcome::Allow),
        t0 + Duration::from_secs(120),
    );
    assert!(alerts.is_empty(), "{alerts:?}");
}

#[test]
fn a_jump_in_tokens_is_raised_against_the_agents_own_average() {
    let watch = SecurityWatch::default();
    let s = SecuritySettings::default(); // ×10, after 20 requests, ≥ 1000 tokens
    let who = ("clinic", "intake", Some("clinic-assistant"));
    let t0 = Instant::now();
    for i in 0..20u64 {
        let (alerts, _) = watch.tokens(&s, who, 400, "r", t0 + Duration::from_secs(i));
        assert!(alerts.is_empty());
    }
    let (alerts, _) = watch.tokens(&s, who, 3_000, "r-small", t0);
    assert!(alerts.is_empty(), "7.5 times is no jump: {alerts:?}");
    let (alerts, _) = watch.tokens(&s, who, 50_000, "r-big", t0);
    assert_eq!(kinds(&alerts), [AlertKind::TokenJump]);
    assert_eq!(alerts[0].request_id, "r-big");
    assert!(
        alerts[0].detail.starts_with("50000 tokens"),
        "{}",
        alerts[0].detail
    );
    // Another agent has its own history.
    let (alerts, _) = watch.tokens(&s, ("clinic", "scheduler", None), 50_000, "r", t0);
    assert!(alerts.is_empty());
}

#[test]
fn alerts_switched_off_raise_nothing() {
    let watch = SecurityWatch::default();
    let s = SecuritySettings {
        enabled: false,
        ..SecuritySettings::default()
    };
    let args = json!({"path": "../../etc/passwd"});
    for _ in 0..20 {
        let (alerts, held) =
            watch.tool_call(&s, &call("rm", Some(&args), Outcome::Deny), Instant::now());
        assert!(alerts.is_empty() && held.is_empty());
    }
}
