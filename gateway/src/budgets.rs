//! `spec.limits` enforced: requests and tokens per minute, tokens per day
//! and streams open at once, for each agent and for each policy's agents
//! together, counted in this process (fixed UTC windows: a minute starts
//! at :00, a day at midnight).
//!
//! A request is admitted while every budget it falls under has room: a
//! request counts at once; its tokens count once its provider has
//! reported them (a stream's at its end), so an admitted request may take
//! a budget past its limit, by at most the tokens of the requests under
//! way when it ran out. A refusal says which limit and when it frees
//! (`Retry-After`). Several gateway replicas each count their own
//! requests (docs/policy.md#limits).

use palisade_policy::{LimitSet, Policy, ReasonCode};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// Now, as the budgets see it (injectable, for tests that cross a day).
pub type Clock = Arc<dyn Fn() -> jiff::Timestamp + Send + Sync>;

/// The counts of every agent and policy with limits.
#[derive(Clone)]
pub struct Budgets {
    clock: Clock,
    counts: Arc<Mutex<HashMap<Scope, Counts>>>,
}

impl std::fmt::Debug for Budgets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Budgets").finish_non_exhaustive()
    }
}

impl Default for Budgets {
    fn default() -> Self {
        Self::with_clock(Arc::new(jiff::Timestamp::now))
    }
}

/// Whose budget: one agent of a policy, or (no agent) all of them.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Scope {
    namespace: String,
    policy: String,
    agent: Option<String>,
}

/// One scope's counts in the current minute and day.
#[derive(Debug, Default)]
struct Counts {
    minute: i64,
    requests: u64,
    minute_tokens: u64,
    day: i64,
    day_tokens: u64,
    streams: u32,
}

impl Counts {
    /// Starts new windows where `now` is past the counted ones.
    fn roll(&mut self, minute: i64, day: i64) {
        if self.minute != minute {
            (self.minute, self.requests, self.minute_tokens) = (minute, 0, 0);
        }
        if self.day != day {
            (self.day, self.day_tokens) = (day, 0);
        }
    }
}

/// Why a request is not admitted: the limit's reason code, the field that
/// sets it, and the seconds until it frees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverLimit {
    pub code: ReasonCode,
    pub field: String,
    pub limit: u64,
    pub retry_after: u64,
}

/// An admitted request: its tokens are charged to its budgets, and, for a
/// stream, its place among the open streams is held until this is dropped.
#[derive(Debug)]
pub struct Admission {
    budgets: Budgets,
    scopes: Vec<Scope>,
    stream: bool,
}

impl Budgets {
    pub fn with_clock(clock: Clock) -> Self {
        Self {
            clock,
            counts: Arc::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Scope, Counts>> {
        self.counts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `(minute, day, seconds to the next minute, seconds to the next day)`.
    fn windows(&self) -> (i64, i64, u64, u64) {
        let s = (self.clock)().as_second();
        let to = |len: i64| (len - s.rem_euclid(len)) as u64;
        (s.div_euclid(60), s.div_euclid(86_400), to(60), to(86_400))
    }

    /// Admits one request of `agent` under `policy` (a stream when
    /// `streamed`), counting it; or says which limit it is over. `None`
    /// when the policy sets no limits (nothing to count).
    pub fn admit(
        &self,
        policy: &Policy,
        agent: &str,
        streamed: bool,
    ) -> Result<Option<Admission>, OverLimit> {
        let scopes: Vec<(Scope, &LimitSet, &str)> = [
            (Some(agent), &policy.limits.agent, "spec.limits.agent"),
            (None, &policy.limits.policy, "spec.limits.policy"),
        ]
        .into_iter()
        .filter(|(_, set, _)| set.any())
        .map(|(agent, set, field)| {
            let scope = Scope {
                namespace: policy.namespace.clone(),
                policy: policy.name.clone(),
                agent: agent.map(str::to_owned),
            };
            (scope, set, field)
        })
        .collect();
        if scopes.is_empty() {
            return Ok(None);
        }
        let (minute, day, to_minute, to_day) = self.windows();
        let mut counts = self.lock();
        for (scope, set, field) in &scopes {
            let c = counts.entry(scope.clone()).or_default();
            c.roll(minute, day);
            let over = |code, name: &str, limit: u64, retry_after| OverLimit {
                code,
                field: format!("{field}.{name}"),
                limit,
                retry_after,
            };
            if let Some(l) = set.tokens_per_day.filter(|l| c.day_tokens >= *l) {
                return Err(over(
                    ReasonCode::LimitTokensPerDay,
                    "tokensPerDay",
                    l,
                    to_day,
                ));
            }
            if let Some(l) = set.tokens_per_minute.filter(|l| c.minute_tokens >= *l) {
                return Err(over(
                    ReasonCode::LimitTokensPerMinute,
                    "tokensPerMinute",
                    l,
                    to_minute,
                ));
            }
            if let Some(l) = set.requests_per_minute.filter(|l| c.requests >= *l) {
                return Err(over(
                    ReasonCode::LimitRequestsPerMinute,
                    "requestsPerMinute",
                    l,
                    to_minute,
                ));
            }
            if let Some(l) = set
                .concurrent_streams
                .filter(|l| streamed && c.streams >= *l)
            {
                return Err(over(
                    ReasonCode::LimitConcurrentStreams,
                    "concurrentStreams",
                    u64::from(l),
                    1,
                ));
            }
        }
        for (scope, _, _) in &scopes {
            let c = counts.entry(scope.clone()).or_default();
            c.requests += 1;
            c.streams += u32::from(streamed);
        }
        drop(counts);
        Ok(Some(Admission {
            budgets: self.clone(),
            scopes: scopes.into_iter().map(|(s, _, _)| s).collect(),
            stream: streamed,
        }))
    }
}

impl Admission {
    /// Charges `tokens` (input and output) to every budget the request
    /// falls under, in the windows current now.
    pub fn charge(&self, tokens: u64) {
        let (minute, day, _, _) = self.budgets.windows();
        let mut counts = self.budgets.lock();
        for scope in &self.scopes {
            let c = counts.entry(scope.clone()).or_default();
            c.roll(minute, day);
            c.minute_tokens = c.minute_tokens.saturating_add(tokens);
            c.day_tokens = c.day_tokens.saturating_add(tokens);
        }
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        if self.stream {
            let mut counts = self.budgets.lock();
            for scope in &self.scopes {
                if let Some(c) = counts.get_mut(scope) {
                    c.streams = c.streams.saturating_sub(1);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use palisade_policy::Limits;

    fn policy(limits: Limits) -> Policy {
        let yaml = r#"
apiVersion: palisade.dev/v1alpha1
kind: AIPolicy
metadata: {name: p}
spec:
  agents: [{name: a, serviceAccount: a}, {name: b, serviceAccount: b}]
  providers: [{name: local, type: ollama, baseUrl: "http://ollama:11434"}]
  routing: {defaultProvider: local}
"#;
        let bundle = crate::snapshot::bundle_of(yaml);
        let mut p = bundle.policies()[0].clone();
        p.limits = limits;
        p
    }

    /// Budgets whose clock a test moves.
    fn at(seconds: Arc<Mutex<i64>>) -> Budgets {
        Budgets::with_clock(Arc::new(move || {
            jiff::Timestamp::from_second(*seconds.lock().unwrap()).unwrap()
        }))
    }

    #[test]
    fn requests_per_minute_free_at_the_next_minute_and_each_agent_has_its_own() {
        let now = Arc::new(Mutex::new(1_800_000_030)); // :30 past a minute
        let b = at(now.clone());
        let p = policy(Limits {
            agent: LimitSet {
                requests_per_minute: Some(2),
                ..LimitSet::default()
            },
            ..Limits::default()
        });
        assert!(b.admit(&p, "a", false).unwrap().is_some());
        assert!(b.admit(&p, "a", false).is_ok());
        let over = b.admit(&p, "a", false).unwrap_err();
        assert_eq!(over.code, ReasonCode::LimitRequestsPerMinute);
        assert_eq!(over.field, "spec.limits.agent.requestsPerMinute");
        assert_eq!(over.retry_after, 30);
        assert!(b.admit(&p, "b", false).is_ok(), "b has its own budget");
        *now.lock().unwrap() += 30;
        assert!(b.admit(&p, "a", false).is_ok(), "a new minute");
    }

    #[test]
    fn a_day_of_tokens_runs_out_for_the_whole_policy_and_comes_back_at_midnight() {
        let midnight = 1_800_057_600; // a multiple of 86,400
        let now = Arc::new(Mutex::new(midnight - 3_600));
        let b = at(now.clone());
        let p = policy(Limits {
            policy: LimitSet {
                tokens_per_day: Some(1_000),
                ..LimitSet::default()
            },
            ..Limits::default()
        });
        b.admit(&p, "a", false).unwrap().unwrap().charge(600);
        // Admitted while budget is left; this one overshoots.
        b.admit(&p, "b", false).unwrap().unwrap().charge(600);
        let over = b.admit(&p, "a", false).unwrap_err();
        assert_eq!(over.code, ReasonCode::LimitTokensPerDay);
        assert_eq!(over.retry_after, 3_600);
        *now.lock().unwrap() = midnight;
        assert!(b.admit(&p, "a", false).is_ok(), "the next day");
    }

    #[test]
    fn a_stream_holds_its_place_until_it_ends() {
        let b = Budgets::default();
        let p = policy(Limits {
            agent: LimitSet {
                concurrent_streams: Some(1),
                ..LimitSet::default()
            },
            ..Limits::default()
        });
        let open = b.admit(&p, "a", true).unwrap();
        assert_eq!(
            b.admit(&p, "a", true).unwrap_err().code,
            ReasonCode::LimitConcurrentStreams
        );
        assert!(
            b.admit(&p, "a", false).is_ok(),
            "a whole answer is not a stream"
        );
        drop(open);
        assert!(b.admit(&p, "a", true).is_ok());
        assert!(
            b.admit(&policy(Limits::default()), "a", true)
                .unwrap()
                .is_none(),
            "no limits, nothing counted"
        );
    }
}
