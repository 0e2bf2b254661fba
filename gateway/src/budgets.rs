//! `spec.limits` enforced: requests and tokens per minute, tokens per day
//! and streams open at once, for each agent and for each policy's agents
//! together (fixed UTC windows: a minute starts at :00, a day at
//! midnight).
//!
//! A request is admitted while every budget it falls under has room: a
//! request counts at once; its tokens count once its provider has
//! reported them (a stream's at its end), so an admitted request may take
//! a token budget past its limit, by at most the tokens of the requests
//! under way when it ran out. A refusal says which limit and when it
//! frees (`Retry-After`).
//!
//! With PostgreSQL ([`Budgets::shared`]) the replicas share the request
//! and token budgets: each leases a share of a window ([`LEASE_SHARE`] of
//! the limit, at least 1) and spends it without asking the database again,
//! and all leases together never pass the limit (`palisade_audit::budget`).
//! Only a request whose replica's share is spent waits for a lease. A
//! share left unspent when its window ends is not used by anyone; while
//! the database cannot be reached a replica counts as if alone. Open
//! streams take a shared place each (`stream_slots`), renewed while they
//! are open (docs/policy.md#limits).

use palisade_audit::Store;
use palisade_policy::{LimitSet, Policy, ReasonCode};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// Now, as the budgets see it (injectable, for tests that cross a day).
pub type Clock = Arc<dyn Fn() -> jiff::Timestamp + Send + Sync>;

/// A replica leases this share of a limit at a time (at least 1).
pub const LEASE_SHARE: u64 = 10;

/// The counts of every agent and policy with limits.
#[derive(Clone)]
pub struct Budgets {
    clock: Clock,
    counts: Arc<Mutex<HashMap<Scope, Counts>>>,
    /// Where the replicas' leases are kept, if they share budgets.
    shared: Option<Store>,
    /// This replica's name among those sharing open-stream places.
    holder: Arc<str>,
}

impl std::fmt::Debug for Budgets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Budgets")
            .field("shared", &self.shared.is_some())
            .finish_non_exhaustive()
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

impl Scope {
    /// The shared counters' name of this scope's `what` budget.
    fn budget(&self, what: &str) -> String {
        format!(
            "{}/{}/{}/{what}",
            self.namespace,
            self.policy,
            self.agent.as_deref().unwrap_or("*")
        )
    }
}

/// What a budget counts: requests a minute, tokens a minute, tokens a day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Requests,
    MinuteTokens,
    DayTokens,
}

impl Kind {
    const ALL: [Kind; 3] = [Kind::Requests, Kind::MinuteTokens, Kind::DayTokens];

    fn limit(self, set: &LimitSet) -> Option<u64> {
        match self {
            Kind::Requests => set.requests_per_minute,
            Kind::MinuteTokens => set.tokens_per_minute,
            Kind::DayTokens => set.tokens_per_day,
        }
    }

    /// The reason code and field name of its limit.
    fn names(self) -> (ReasonCode, &'static str) {
        match self {
            Kind::Requests => (ReasonCode::LimitRequestsPerMinute, "requestsPerMinute"),
            Kind::MinuteTokens => (ReasonCode::LimitTokensPerMinute, "tokensPerMinute"),
            Kind::DayTokens => (ReasonCode::LimitTokensPerDay, "tokensPerDay"),
        }
    }

    /// Its window's length in seconds.
    fn window(self) -> i64 {
        match self {
            Kind::DayTokens => 86_400,
            _ => 60,
        }
    }
}

/// One budget's window: where it starts (minute or day number), what this
/// process counted in it, and (shared) what it leased and has not spent.
#[derive(Debug, Default, Clone, Copy)]
struct Window {
    start: i64,
    used: u64,
    leased: i64,
}

/// One scope's windows and open streams.
#[derive(Debug, Default)]
struct Counts {
    windows: [Window; 3],
    streams: u32,
}

impl Counts {
    fn window(&mut self, kind: Kind, now: i64) -> &mut Window {
        let w = &mut self.windows[kind as usize];
        let start = now.div_euclid(kind.window());
        if w.start != start {
            *w = Window {
                start,
                ..Window::default()
            };
        }
        w
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
    /// Shared open-stream places held (given back when this is dropped).
    places: Vec<String>,
}

impl Budgets {
    pub fn with_clock(clock: Clock) -> Self {
        Self {
            clock,
            counts: Arc::default(),
            shared: None,
            holder: Arc::from(format!("gateway-{}", uuid::Uuid::now_v7().simple())),
        }
    }

    /// These budgets, shared with the other replicas through `store` when
    /// it can (PostgreSQL).
    pub fn shared(mut self, store: Store) -> Self {
        self.shared = store.shares_budgets().then_some(store);
        // Keeps this replica's open-stream places counted while it holds
        // them (a replica that dies stops counting after a minute).
        if let (Some(store), Ok(runtime)) = (&self.shared, tokio::runtime::Handle::try_current()) {
            let (store, holder, clock) = (store.clone(), self.holder.clone(), self.clock.clone());
            runtime.spawn(async move {
                let mut every = tokio::time::interval(std::time::Duration::from_secs(20));
                loop {
                    every.tick().await;
                    let now = clock().as_millisecond();
                    if let Err(e) = store.renew_streams(&holder, now).await {
                        tracing::warn!(error = %e, "cannot renew this replica's open-stream places");
                    }
                }
            });
        }
        self
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Scope, Counts>> {
        self.counts.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn now(&self) -> i64 {
        (self.clock)().as_second()
    }

    /// The room left in `kind`'s window: the limit less what this process
    /// counted, or, shared, what it leased and has not spent.
    fn room(&self, w: &Window, limit: u64) -> i64 {
        match self.shared {
            Some(_) => w.leased,
            None => {
                i64::try_from(limit).unwrap_or(i64::MAX) - i64::try_from(w.used).unwrap_or(i64::MAX)
            }
        }
    }

    /// Shared budgets: leases a share of `kind`'s window for `scope` if
    /// this replica has none left (covering what it overspent).
    async fn lease(&self, store: &Store, scope: &Scope, kind: Kind, limit: u64) {
        let now = self.now();
        let (start, leased) = {
            let mut counts = self.lock();
            let w = *counts.entry(scope.clone()).or_default().window(kind, now);
            (w.start, w.leased)
        };
        if leased >= 1 {
            return;
        }
        let share = i64::try_from((limit / LEASE_SHARE).max(1)).unwrap_or(i64::MAX);
        let want = share.saturating_add(-leased.min(0));
        let name = scope.budget(&format!("{kind:?}"));
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let granted = match store
            .lease_budget(&name, start, kind.window(), want, limit)
            .await
        {
            Ok(g) => g,
            Err(e) => {
                tracing::warn!(budget = %name, error = %e, "cannot lease a share of a limit; counting as if alone");
                want
            }
        };
        let mut counts = self.lock();
        let w = counts.entry(scope.clone()).or_default().window(kind, now);
        if w.start == start {
            w.leased = w.leased.saturating_add(granted);
        }
    }

    /// Whether every budget of `scopes` has room for one more request
    /// (and stream) now, counting this process's windows.
    fn check(
        &self,
        scopes: &[(Scope, &LimitSet, &str)],
        now: i64,
        streamed: bool,
        over_streams: &dyn Fn(&str, u32) -> OverLimit,
    ) -> Result<(), OverLimit> {
        let mut counts = self.lock();
        for (scope, set, field) in scopes {
            let c = counts.entry(scope.clone()).or_default();
            // The day first: its refusal waits longest.
            for kind in [Kind::DayTokens, Kind::MinuteTokens, Kind::Requests] {
                let Some(limit) = kind.limit(set) else {
                    continue;
                };
                if self.room(c.window(kind, now), limit) < 1 {
                    let (code, name) = kind.names();
                    let len = kind.window();
                    return Err(OverLimit {
                        code,
                        field: format!("{field}.{name}"),
                        limit,
                        retry_after: (len - now.rem_euclid(len)) as u64,
                    });
                }
            }
            if let Some(l) = set
                .concurrent_streams
                .filter(|l| streamed && c.streams >= *l)
            {
                return Err(over_streams(field, l));
            }
        }
        Ok(())
    }

    /// Admits one request of `agent` under `policy` (a stream when
    /// `streamed`), counting it; or says which limit it is over. `None`
    /// when the policy sets no limits (nothing to count).
    pub async fn admit(
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
        if let Some(store) = &self.shared {
            for (scope, set, _) in &scopes {
                for kind in Kind::ALL {
                    if let Some(limit) = kind.limit(set) {
                        self.lease(store, scope, kind, limit).await;
                    }
                }
            }
        }
        let now = self.now();
        let over_streams = |field: &str, limit: u32| OverLimit {
            code: ReasonCode::LimitConcurrentStreams,
            field: format!("{field}.concurrentStreams"),
            limit: u64::from(limit),
            retry_after: 1,
        };
        self.check(&scopes, now, streamed, &over_streams)?;
        // Shared: a place among every replica's open streams.
        let mut places = Vec::new();
        if let (Some(store), true) = (&self.shared, streamed) {
            let now_ms = (self.clock)().as_millisecond();
            for (scope, set, field) in &scopes {
                let Some(limit) = set.concurrent_streams else {
                    continue;
                };
                let name = scope.budget("Streams");
                match store
                    .open_stream(&name, &self.holder, i64::from(limit), now_ms)
                    .await
                {
                    Ok(true) => places.push(name),
                    Ok(false) => {
                        for taken in &places {
                            let _ = store.close_stream(taken, &self.holder, now_ms).await;
                        }
                        return Err(over_streams(field, limit));
                    }
                    Err(e) => {
                        tracing::warn!(budget = %name, error = %e, "cannot take a shared stream place; counting as if alone");
                    }
                }
            }
        }
        // Counted under the lock that checks the room once more: two
        // requests checked at once never both take the last one.
        let full = {
            let mut counts = self.lock();
            let mut full = None;
            for (scope, set, field) in &scopes {
                if let Some(limit) = set.requests_per_minute {
                    let c = counts.entry(scope.clone()).or_default();
                    if self.room(c.window(Kind::Requests, now), limit) < 1 {
                        full = Some(OverLimit {
                            code: ReasonCode::LimitRequestsPerMinute,
                            field: format!("{field}.requestsPerMinute"),
                            limit,
                            retry_after: (60 - now.rem_euclid(60)) as u64,
                        });
                    }
                }
            }
            if full.is_none() {
                for (scope, _, _) in &scopes {
                    let c = counts.entry(scope.clone()).or_default();
                    let w = c.window(Kind::Requests, now);
                    w.used += 1;
                    w.leased -= 1;
                    c.streams += u32::from(streamed);
                }
            }
            full
        };
        if let Some(over) = full {
            if let Some(store) = &self.shared {
                let now_ms = (self.clock)().as_millisecond();
                for taken in &places {
                    let _ = store.close_stream(taken, &self.holder, now_ms).await;
                }
            }
            return Err(over);
        }
        Ok(Some(Admission {
            budgets: self.clone(),
            scopes: scopes.into_iter().map(|(s, _, _)| s).collect(),
            stream: streamed,
            places,
        }))
    }
}

impl Admission {
    /// Charges `tokens` (input and output) to every budget the request
    /// falls under, in the windows current now.
    pub fn charge(&self, tokens: u64) {
        let now = self.budgets.now();
        let spent = i64::try_from(tokens).unwrap_or(i64::MAX);
        let mut counts = self.budgets.lock();
        for scope in &self.scopes {
            let c = counts.entry(scope.clone()).or_default();
            for kind in [Kind::MinuteTokens, Kind::DayTokens] {
                let w = c.window(kind, now);
                w.used = w.used.saturating_add(tokens);
                w.leased = w.leased.saturating_sub(spent);
            }
        }
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        if let (Some(store), Ok(runtime), false) = (
            &self.budgets.shared,
            tokio::runtime::Handle::try_current(),
            self.places.is_empty(),
        ) {
            let (store, holder) = (store.clone(), self.budgets.holder.clone());
            let places = std::mem::take(&mut self.places);
            let now_ms = (self.budgets.clock)().as_millisecond();
            runtime.spawn(async move {
                for place in places {
                    if let Err(e) = store.close_stream(&place, &holder, now_ms).await {
                        tracing::warn!(budget = %place, error = %e, "cannot give back a shared stream place (it stops counting after a minute)");
                    }
                }
            });
        }
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

    #[tokio::test]
    async fn requests_per_minute_free_at_the_next_minute_and_each_agent_has_its_own() {
        let now = Arc::new(Mutex::new(1_800_000_030)); // :30 past a minute
        let b = at(now.clone());
        let p = policy(Limits {
            agent: LimitSet {
                requests_per_minute: Some(2),
                ..LimitSet::default()
            },
            ..Limits::default()
        });
        assert!(b.admit(&p, "a", false).await.unwrap().is_some());
        assert!(b.admit(&p, "a", false).await.is_ok());
        let over = b.admit(&p, "a", false).await.unwrap_err();
        assert_eq!(over.code, ReasonCode::LimitRequestsPerMinute);
        assert_eq!(over.field, "spec.limits.agent.requestsPerMinute");
        assert_eq!(over.retry_after, 30);
        assert!(
            b.admit(&p, "b", false).await.is_ok(),
            "b has its own budget"
        );
        *now.lock().unwrap() += 30;
        assert!(b.admit(&p, "a", false).await.is_ok(), "a new minute");
    }

    #[tokio::test]
    async fn a_day_of_tokens_runs_out_for_the_whole_policy_and_comes_back_at_midnight() {
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
        b.admit(&p, "a", false).await.unwrap().unwrap().charge(600);
        // Admitted while budget is left; this one overshoots.
        b.admit(&p, "b", false).await.unwrap().unwrap().charge(600);
        let over = b.admit(&p, "a", false).await.unwrap_err();
        assert_eq!(over.code, ReasonCode::LimitTokensPerDay);
        assert_eq!(over.retry_after, 3_600);
        *now.lock().unwrap() = midnight;
        assert!(b.admit(&p, "a", false).await.is_ok(), "the next day");
    }

    #[tokio::test]
    async fn a_stream_holds_its_place_until_it_ends() {
        let b = Budgets::default();
        let p = policy(Limits {
            agent: LimitSet {
                concurrent_streams: Some(1),
                ..LimitSet::default()
            },
            ..Limits::default()
        });
        let open = b.admit(&p, "a", true).await.unwrap();
        assert_eq!(
            b.admit(&p, "a", true).await.unwrap_err().code,
            ReasonCode::LimitConcurrentStreams
        );
        assert!(
            b.admit(&p, "a", false).await.is_ok(),
            "a whole answer is not a stream"
        );
        drop(open);
        assert!(b.admit(&p, "a", true).await.is_ok());
        assert!(
            b.admit(&policy(Limits::default()), "a", true)
                .await
                .unwrap()
                .is_none(),
            "no limits, nothing counted"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn requests_admitted_at_once_never_pass_the_limit() {
        let b = at(Arc::new(Mutex::new(1_800_000_000)));
        let p = Arc::new(policy(Limits {
            policy: LimitSet {
                requests_per_minute: Some(10),
                ..LimitSet::default()
            },
            ..Limits::default()
        }));
        let tasks: Vec<_> = (0..64)
            .map(|i| {
                let (b, p) = (b.clone(), p.clone());
                tokio::spawn(async move {
                    b.admit(&p, if i % 2 == 0 { "a" } else { "b" }, false)
                        .await
                        .is_ok()
                })
            })
            .collect();
        let mut admitted = 0;
        for t in tasks {
            admitted += usize::from(t.await.unwrap());
        }
        assert_eq!(admitted, 10, "admitted against a limit of 10");
    }
}
