//! Security alerts over the decision stream, per agent (issue 27): attack
//! shapes in tool arguments (`palisade_policy::argument_shapes`), bursts of
//! denials, the same call held again and again, a tool the agent never
//! called before, a sudden jump in tokens. Thresholds are the deciding
//! policy's (`spec.security.alerts`, [`SecuritySettings`]).
//!
//! [`SecurityWatch`] keeps each agent's recent history in this process
//! (bounded: declared agents only, a few hundred entries each) and says
//! which alerts a decision raises; the same alert for the same agent is
//! raised at most once per cooldown. [`report`] records and announces
//! them. Pure apart from the clock it is handed, so it is unit-tested.

pub mod quarantine;
pub mod report;

use palisade_policy::{AlertKind, Outcome, SecuritySettings, argument_shapes};
use serde_json::Value;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Tools remembered per agent, and distinct held calls tracked: past
/// these, the oldest are forgotten (an agent cannot grow the gateway).
const MAX_TOOLS: usize = 512;
const MAX_HELD: usize = 256;

/// One alert raised.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    pub kind: AlertKind,
    pub namespace: String,
    pub agent: String,
    /// The deciding policy.
    pub policy: Option<String>,
    pub tool: Option<String>,
    pub argument_digest: Option<String>,
    /// The request that raised it.
    pub request_id: String,
    /// What was seen, never an argument's value.
    pub detail: String,
}

/// A decided tool call, as the watch sees it.
#[derive(Debug, Clone, Copy)]
pub struct Observed<'a> {
    pub namespace: &'a str,
    pub agent: &'a str,
    pub policy: Option<&'a str>,
    pub tool: &'a str,
    pub arguments: Option<&'a Value>,
    pub digest: &'a str,
    pub outcome: Outcome,
    pub request_id: &'a str,
    /// The approval the call names (a use of one, not a new request).
    pub approval: Option<&'a str>,
}

/// Every agent's history, in this process, by namespace then agent (so
/// a known agent is found without building a key).
#[derive(Debug, Default)]
pub struct SecurityWatch {
    agents: Mutex<HashMap<String, HashMap<String, History>>>,
}

/// `agent`'s history in `namespace`, made on first sight: keys are
/// copied only then, not for every decision. (Always `Some`: the
/// borrow checker cannot see an entry looked up right after its insert.)
fn history<'a>(
    agents: &'a mut HashMap<String, HashMap<String, History>>,
    namespace: &str,
    agent: &str,
) -> Option<&'a mut History> {
    if !agents.contains_key(namespace) {
        agents.insert(namespace.to_owned(), HashMap::new());
    }
    let in_namespace = agents.get_mut(namespace)?;
    if !in_namespace.contains_key(agent) {
        in_namespace.insert(agent.to_owned(), History::default());
    }
    in_namespace.get_mut(agent)
}

/// One agent's recent decisions, as the heuristics need them.
#[derive(Debug, Default)]
struct History {
    decisions: u64,
    tools: HashSet<String>,
    denials: VecDeque<Instant>,
    held: HashMap<String, VecDeque<Instant>>,
    token_requests: u64,
    token_average: f64,
    raised: HashMap<AlertKind, Instant>,
}

impl SecurityWatch {
    /// The alerts a decided tool call raises (after cooldowns), and the
    /// kinds held back by one.
    pub fn tool_call(
        &self,
        settings: &SecuritySettings,
        call: &Observed<'_>,
        now: Instant,
    ) -> (Vec<Alert>, Vec<AlertKind>) {
        if !settings.enabled {
            return Default::default();
        }
        let mut seen: Vec<(AlertKind, String)> = Vec::new();
        if settings.argument_shapes
            && let Some(args) = call.arguments
        {
            for (kind, at) in argument_shapes(args) {
                let what = match kind {
                    AlertKind::PathTraversal => "path traversal",
                    _ => "SQL injection",
                };
                seen.push((kind, format!("argument {at} looks like {what}")));
            }
        }
        let mut agents = self.agents.lock().unwrap_or_else(|p| p.into_inner());
        let Some(h) = history(&mut agents, call.namespace, call.agent) else {
            return Default::default();
        };
        h.decisions += 1;
        let learning =
            settings.new_tool_after == 0 || h.decisions <= u64::from(settings.new_tool_after);
        if !h.tools.contains(call.tool) {
            if !learning {
                seen.push((
                    AlertKind::NewTool,
                    format!(
                        "first call of this tool after {} decisions",
                        h.decisions - 1
                    ),
                ));
            }
            if h.tools.len() >= MAX_TOOLS {
                h.tools.clear();
            }
            h.tools.insert(call.tool.to_owned());
        }
        match call.outcome {
            Outcome::Deny => {
                let burst = settings.denial_burst;
                let n = within(&mut h.denials, now, burst.window_secs);
                if n >= burst.count as usize {
                    seen.push((
                        AlertKind::DenialBurst,
                        format!(
                            "{n} denials in {} s (threshold {})",
                            burst.window_secs, burst.count
                        ),
                    ));
                }
            }
            // A call naming its approval uses one; it asks for nothing.
            Outcome::RequireApproval if call.approval.is_none() => {
                let burst = settings.repeated_held_call;
                if h.held.len() >= MAX_HELD && !h.held.contains_key(call.digest) {
                    h.held.retain(|_, times| {
                        times.back().is_some_and(|t| {
                            now.duration_since(*t) < Duration::from_secs(burst.window_secs)
                        })
                    });
                    if h.held.len() >= MAX_HELD {
                        h.held.clear();
                    }
                }
                let key = format!("{}\u{0}{}", call.tool, call.digest);
                let n = within(h.held.entry(key).or_default(), now, burst.window_secs);
                if n >= burst.count as usize {
                    seen.push((
                        AlertKind::RepeatedHeldCall,
                        format!(
                            "the same call held {n} times in {} s (threshold {})",
                            burst.window_secs, burst.count
                        ),
                    ));
                }
            }
            Outcome::Allow | Outcome::RequireApproval => {}
        }
        let alert = |(kind, detail): (AlertKind, String)| Alert {
            kind,
            namespace: call.namespace.to_owned(),
            agent: call.agent.to_owned(),
            policy: call.policy.map(str::to_owned),
            tool: Some(call.tool.to_owned()),
            argument_digest: Some(call.digest.to_owned()),
            request_id: call.request_id.to_owned(),
            detail,
        };
        let (raised, held_back) = cool(h, settings, seen, now);
        (raised.into_iter().map(alert).collect(), held_back)
    }

    /// The alert a routed request's tokens raise, if any: many times the
    /// agent's average, once it has one.
    pub fn tokens(
        &self,
        settings: &SecuritySettings,
        (namespace, agent, policy): (&str, &str, Option<&str>),
        total: u64,
        request_id: &str,
        now: Instant,
    ) -> (Vec<Alert>, Vec<AlertKind>) {
        if !settings.enabled {
            return Default::default();
        }
        let mut agents = self.agents.lock().unwrap_or_else(|p| p.into_inner());
        let Some(h) = history(&mut agents, namespace, agent) else {
            return Default::default();
        };
        let mut seen = Vec::new();
        let average = h.token_average;
        if h.token_requests >= u64::from(settings.token_jump_min_requests)
            && total >= settings.token_jump_min_tokens
            && total as f64 > settings.token_jump_factor * average.max(1.0)
        {
            seen.push((
                AlertKind::TokenJump,
                format!(
                    "{total} tokens, {:.0} times the agent's average of {average:.0}",
                    total as f64 / average.max(1.0)
                ),
            ));
        }
        // The running mean of every request's tokens.
        h.token_requests += 1;
        h.token_average += (total as f64 - average) / h.token_requests as f64;
        let (raised, held_back) = cool(h, settings, seen, now);
        let alerts = raised
            .into_iter()
            .map(|(kind, detail)| Alert {
                kind,
                namespace: namespace.to_owned(),
                agent: agent.to_owned(),
                policy: policy.map(str::to_owned),
                tool: None,
                argument_digest: None,
                request_id: request_id.to_owned(),
                detail,
            })
            .collect();
        (alerts, held_back)
    }
}

/// Adds `now` to `times`, drops what fell out of the window, and says how
/// many are in it.
fn within(times: &mut VecDeque<Instant>, now: Instant, window_secs: u64) -> usize {
    times.push_back(now);
    let window = Duration::from_secs(window_secs);
    while times
        .front()
        .is_some_and(|t| now.duration_since(*t) >= window)
    {
        times.pop_front();
    }
    times.len()
}

/// Splits `seen` into the alerts to raise and the kinds still cooling
/// down (raised for this agent less than `cooldown_secs` ago).
fn cool(
    h: &mut History,
    settings: &SecuritySettings,
    seen: Vec<(AlertKind, String)>,
    now: Instant,
) -> (Vec<(AlertKind, String)>, Vec<AlertKind>) {
    let cooldown = Duration::from_secs(settings.cooldown_secs);
    let mut held_back = Vec::new();
    let raised = seen
        .into_iter()
        .filter(|(kind, _)| {
            let cooling = h
                .raised
                .get(kind)
                .is_some_and(|at| now.duration_since(*at) < cooldown);
            if cooling {
                held_back.push(*kind);
            } else {
                h.raised.insert(*kind, now);
            }
            !cooling
        })
        .collect();
    (raised, held_back)
}

#[cfg(test)]
mod tests;
