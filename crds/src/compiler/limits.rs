//! `spec.limits`: each limit at least 1 (the API server checks it too; a
//! standalone file is checked only here).

use super::Diags;
use crate::resources::{LimitSetSpec, LimitsSpec};
use palisade_policy::{LimitSet, Limits};

pub(super) fn compile_limits(d: &mut Diags<'_>, spec: Option<&LimitsSpec>) -> Option<Limits> {
    let Some(spec) = spec else {
        return Some(Limits::default());
    };
    let agent = compile_set(d, "spec.limits.agent", spec.agent.as_ref());
    let policy = compile_set(d, "spec.limits.policy", spec.policy.as_ref());
    Some(Limits {
        agent: agent?,
        policy: policy?,
    })
}

fn compile_set(d: &mut Diags<'_>, field: &str, set: Option<&LimitSetSpec>) -> Option<LimitSet> {
    let Some(set) = set else {
        return Some(LimitSet::default());
    };
    let mut ok = true;
    for (name, value) in [
        ("requestsPerMinute", set.requests_per_minute),
        ("tokensPerMinute", set.tokens_per_minute),
        ("tokensPerDay", set.tokens_per_day),
        ("concurrentStreams", set.concurrent_streams.map(u64::from)),
    ] {
        if value == Some(0) {
            d.push(
                format!("{field}.{name}"),
                "a limit of 0 refuses every request",
                format!("set {name} to at least 1, or leave it out for no limit (spec.suspend stops every request)"),
            );
            ok = false;
        }
    }
    ok.then_some(LimitSet {
        requests_per_minute: set.requests_per_minute,
        tokens_per_minute: set.tokens_per_minute,
        tokens_per_day: set.tokens_per_day,
        concurrent_streams: set.concurrent_streams,
    })
}
