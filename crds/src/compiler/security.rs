//! `spec.security.alerts` → [`SecuritySettings`]: the defaults for what
//! is left out, durations read, nothing that makes every call an alert.

use super::Diags;
use crate::resources::{AlertKindName, AlertsSpec, BurstSpec, SecuritySpec};
use palisade_policy::{AlertKind, Burst, SecuritySettings};
use std::time::Duration;

pub(super) fn compile_security(
    d: &mut Diags<'_>,
    spec: Option<&SecuritySpec>,
) -> Option<SecuritySettings> {
    let defaults = SecuritySettings::default();
    let Some(SecuritySpec {
        alerts,
        quarantine_on,
    }) = spec
    else {
        return Some(defaults);
    };
    let AlertsSpec {
        enabled,
        argument_shapes,
        denial_burst,
        repeated_held_call,
        new_tool_after,
        token_jump,
        cooldown,
    } = alerts;
    let field = "spec.security.alerts";
    let denial = burst(
        d,
        &format!("{field}.denialBurst"),
        denial_burst.as_ref(),
        defaults.denial_burst,
    );
    let held = burst(
        d,
        &format!("{field}.repeatedHeldCall"),
        repeated_held_call.as_ref(),
        defaults.repeated_held_call,
    );
    let cooldown = d.duration(
        &format!("{field}.cooldown"),
        cooldown.as_deref(),
        Duration::from_secs(defaults.cooldown_secs),
        "1m",
    );
    let jump = token_jump.clone().unwrap_or_default();
    Some(SecuritySettings {
        enabled: enabled.unwrap_or(defaults.enabled),
        argument_shapes: argument_shapes.unwrap_or(defaults.argument_shapes),
        denial_burst: denial?,
        repeated_held_call: held?,
        new_tool_after: new_tool_after.unwrap_or(defaults.new_tool_after),
        token_jump_factor: jump.factor.map_or(defaults.token_jump_factor, f64::from),
        token_jump_min_requests: jump
            .min_requests
            .unwrap_or(defaults.token_jump_min_requests),
        token_jump_min_tokens: jump.min_tokens.unwrap_or(defaults.token_jump_min_tokens),
        cooldown_secs: cooldown?.as_secs().max(1),
        quarantine_on: quarantine_on.iter().map(|k| kind(*k)).collect(),
    })
}

fn burst(
    d: &mut Diags<'_>,
    field: &str,
    spec: Option<&BurstSpec>,
    default: Burst,
) -> Option<Burst> {
    let Some(spec) = spec else {
        return Some(default);
    };
    if spec.count == 0 {
        d.push(
            format!("{field}.count"),
            "a count of 0 would alert on nothing at all",
            "use at least 1 (or spec.security.alerts.enabled: false to turn alerts off)",
        );
        return None;
    }
    let window = d.duration(
        &format!("{field}.window"),
        Some(&spec.window),
        Duration::ZERO,
        "1m",
    )?;
    Some(Burst {
        count: spec.count,
        window_secs: window.as_secs().max(1),
    })
}

fn kind(name: AlertKindName) -> AlertKind {
    match name {
        AlertKindName::PathTraversal => AlertKind::PathTraversal,
        AlertKindName::SqlInjection => AlertKind::SqlInjection,
        AlertKindName::DenialBurst => AlertKind::DenialBurst,
        AlertKindName::RepeatedHeldCall => AlertKind::RepeatedHeldCall,
        AlertKindName::NewTool => AlertKind::NewTool,
        AlertKindName::TokenJump => AlertKind::TokenJump,
    }
}
