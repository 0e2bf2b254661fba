//! The pure middle of a bundle pass: from what was read ([`Input`]: the
//! objects in scope, the Secrets they reference, the gateways' Leases and
//! what the loop remembers), [`plan`] compiles everything and returns
//! what to write ([`Plan`]): the bundle Secret if its revision changed,
//! the status of every object whose status changed, each with the Events
//! that announce it, and what to count. No client, no clock, no IO: the
//! tests build plain structs (the way linkerd's policy controller tests
//! its status index), and [`super::apply`] does the writing.
//!
//! Each object's status and Events are planned under
//! [`crate::guard::isolated`]: a panic on one object (a bug) is reported
//! as a [`Failure`], that policy's status says `StatusFailed`, and every
//! other object is planned as usual.

use crate::events::PlannedEvent;
use crate::gateways::{History, Reports};
use crate::guard::isolated;
use crate::status::{Served, failed_policy_status, grant_status, policy_status};
use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::runtime::events::EventType;
use palisade_crds::bundle_secret::{self, BundleSecretError};
use palisade_crds::{
    AIPolicy, AIPolicyStatus, CompileError, CompileInput, GrantReport, GrantState, ObjectRef,
    PolicyReport, Secrets, ToolGrant, ToolGrantStatus, compile,
};
use palisade_policy::PolicyBundle;
use std::collections::{BTreeMap, HashMap};

/// What one pass works from.
#[derive(Clone, Copy)]
pub struct Input<'a> {
    /// The AIPolicies and ToolGrants in scope.
    pub policies: &'a [AIPolicy],
    pub grants: &'a [ToolGrant],
    /// The values of the Secret keys the policies reference.
    pub secrets: &'a Secrets,
    /// The platform's rules for provider URLs.
    pub egress: &'a palisade_policy::Egress,
    /// The gateways' reports.
    pub gateways: &'a [Lease],
    /// The bundle being served: the source of last known good policies.
    pub previous: Option<&'a PolicyBundle>,
    /// The revision the bundle Secret holds, as far as this loop knows.
    pub written_revision: Option<&'a str>,
    /// The revisions this loop wrote, in order.
    pub history: &'a History,
    /// Where the bundle Secret lives.
    pub namespace: &'a str,
    pub secret_name: &'a str,
    pub now: Timestamp,
    /// The bytes one compiled policy may take in the bundle.
    pub policy_budget: usize,
}

impl std::fmt::Debug for Input<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not the Secrets: they are credentials.
        f.debug_struct("Input")
            .field("policies", &self.policies.len())
            .field("grants", &self.grants.len())
            .field("gateways", &self.gateways.len())
            .field("written_revision", &self.written_revision)
            .field("now", &self.now)
            .finish_non_exhaustive()
    }
}

/// What one pass writes and counts.
#[derive(Debug)]
pub struct Plan {
    /// The bundle served after this pass, if it could be encoded: the
    /// next pass's last known good.
    pub bundle: Option<PolicyBundle>,
    /// The bundle Secret to write: only when its revision changed.
    pub secret: Option<BundleWrite>,
    /// Every status that changes, with the Events that announce it
    /// (published first).
    pub statuses: Vec<StatusUpdate>,
    /// What the metrics say about this pass.
    pub counts: Counts,
    /// Objects whose status could not be planned.
    pub failures: Vec<Failure>,
    /// When the next active grant expires (the loop wakes up then).
    pub next_expiry: Option<Timestamp>,
}

/// The bundle Secret, and the revision it carries.
pub struct BundleWrite {
    pub revision: String,
    /// Holds provider credentials: never printed.
    pub secret: Secret,
}

impl std::fmt::Debug for BundleWrite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BundleWrite")
            .field("revision", &self.revision)
            .finish_non_exhaustive()
    }
}

/// A status to write.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusUpdate {
    pub object: ObjectRef,
    pub status: Status,
    /// Published before the status is written.
    pub events: Vec<PlannedEvent>,
}

/// The status of an AIPolicy or a ToolGrant.
#[derive(Debug, Clone, PartialEq)]
pub enum Status {
    Policy(AIPolicyStatus),
    Grant(ToolGrantStatus),
}

/// An object whose status could not be planned (its planning panicked).
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub object: ObjectRef,
    pub panic: String,
}

/// The gauges of a pass, and what went wrong with the bundle.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counts {
    /// AIPolicies by state: `accepted`, `serving_previous`, `invalid`.
    pub policies: BTreeMap<&'static str, i64>,
    /// ToolGrants by state: `active`, `expired`, `invalid`.
    pub grants: BTreeMap<&'static str, i64>,
    /// Compressed size of the bundle, when it could be encoded.
    pub bundle_bytes: Option<usize>,
    /// The bundle was over the size limit of one object.
    pub bundle_too_large: bool,
}

/// Compiles everything and plans the writes. Fails only when the compiled
/// policies do not form a consistent bundle: then nothing is written and
/// the served configuration stays.
pub fn plan(input: &Input<'_>) -> Result<Plan, CompileError> {
    let compilation = compile(CompileInput {
        policies: input.policies,
        grants: input.grants,
        secrets: input.secrets,
        egress: input.egress,
        previous: input.previous,
        now: input.now,
        policy_budget: Some(input.policy_budget),
    })?;
    let mut counts = Counts::default();
    for r in &compilation.policies {
        let state = match (r.accepted(), r.served_generation) {
            (true, _) => "accepted",
            (false, Some(_)) => "serving_previous",
            (false, None) => "invalid",
        };
        *counts.policies.entry(state).or_default() += 1;
    }
    for g in &compilation.grants {
        *counts.grants.entry(grant_state(g.state)).or_default() += 1;
    }
    let next_expiry = compilation
        .bundle
        .grants()
        .iter()
        .map(|g| g.expires_at)
        .min();

    let (served, secret) =
        match bundle_secret::encode(&compilation.bundle, input.namespace, input.secret_name) {
            Err(e) => {
                counts.bundle_too_large = matches!(e, BundleSecretError::TooLarge { .. });
                (Served::Failed(e.to_string()), None)
            }
            Ok(secret) => {
                counts.bundle_bytes = secret
                    .data
                    .as_ref()
                    .and_then(|d| d.get(bundle_secret::BUNDLE_KEY))
                    .map(|b| b.0.len());
                let revision = compilation.bundle.revision().to_owned();
                let write =
                    (input.written_revision != Some(revision.as_str())).then(|| BundleWrite {
                        revision: revision.clone(),
                        secret,
                    });
                (Served::Revision(revision), write)
            }
        };
    let writing = secret.as_ref().map(|w| w.revision.as_str());
    let reports = Reports::new(input.gateways, input.history, writing, input.now);

    let mut failures = Vec::new();
    let mut statuses = plan_each(
        &compilation.policies,
        input.policies,
        |r| &r.object,
        |r, p| policy_update(r, p, &served, &reports, input.now),
        |r, p| failed_policy_update(r, p, input.now),
        &mut failures,
    );
    statuses.extend(plan_each(
        &compilation.grants,
        input.grants,
        |r| &r.object,
        |r, g| grant_update(r, g, input.now),
        |_, _| None,
        &mut failures,
    ));
    let bundle = matches!(served, Served::Revision(_)).then_some(compilation.bundle);
    Ok(Plan {
        bundle,
        secret,
        statuses,
        counts,
        failures,
        next_expiry,
    })
}

fn grant_state(state: GrantState) -> &'static str {
    match state {
        GrantState::Active => "active",
        GrantState::Expired => "expired",
        GrantState::Invalid => "invalid",
    }
}

/// Plans the update of the object of each report (if it is still among
/// `objects`), each under [`isolated`]: a panic is recorded in `failures`
/// and `fallback` says what to write instead, if anything.
fn plan_each<R, K: ResourceExt>(
    reports: &[R],
    objects: &[K],
    object_of: impl Fn(&R) -> &ObjectRef,
    plan_one: impl Fn(&R, &K) -> Option<StatusUpdate>,
    fallback: impl Fn(&R, &K) -> Option<StatusUpdate>,
    failures: &mut Vec<Failure>,
) -> Vec<StatusUpdate> {
    let by_name: HashMap<(String, String), &K> = objects
        .iter()
        .map(|o| ((o.namespace().unwrap_or_default(), o.name_any()), o))
        .collect();
    let mut updates = Vec::new();
    for report in reports {
        let object_ref = object_of(report);
        let key = (object_ref.namespace.clone(), object_ref.name.clone());
        let Some(&object) = by_name.get(&key) else {
            continue;
        };
        let update = isolated(|| plan_one(report, object)).unwrap_or_else(|panic| {
            failures.push(Failure {
                object: object_ref.clone(),
                panic,
            });
            fallback(report, object)
        });
        updates.extend(update);
    }
    updates
}

/// The update of `status`, if it differs from what `object` has.
fn changed<S: PartialEq>(
    existing: Option<&S>,
    status: S,
    object: &ObjectRef,
    wrap: fn(S) -> Status,
    events: impl FnOnce() -> Vec<PlannedEvent>,
) -> Option<StatusUpdate> {
    (existing != Some(&status)).then(|| StatusUpdate {
        object: object.clone(),
        status: wrap(status),
        events: events(),
    })
}

fn policy_update(
    report: &PolicyReport,
    object: &AIPolicy,
    served: &Served,
    reports: &Reports<'_>,
    now: Timestamp,
) -> Option<StatusUpdate> {
    let mut status = policy_status(report, object.status.as_ref(), served, now);
    // Gateways that applied the served revision and reported within
    // GATEWAY_FRESHNESS (they renew their report periodically).
    status.gateways_applied = match (served, &status.served_revision) {
        (Served::Revision(_), Some(r)) => Some(reports.applied_since(r)),
        _ => None,
    };
    changed(
        object.status.as_ref(),
        status,
        &report.object,
        Status::Policy,
        || policy_events(object, report),
    )
}

/// Events for a policy's new generation: `Compiled`, or `Invalid` /
/// `TooLarge` with the first problem; then `Suspended` if it suspends the
/// policy (served over the last good generation when it does not compile).
fn policy_events(object: &AIPolicy, report: &PolicyReport) -> Vec<PlannedEvent> {
    let observed = object.status.as_ref().and_then(|s| s.observed_generation);
    if observed == Some(report.generation) {
        return Vec::new();
    }
    let mut events = if report.accepted() {
        vec![PlannedEvent::about(
            object,
            EventType::Normal,
            "Compiled",
            format!("generation {} compiled", report.generation),
        )]
    } else {
        let first = report
            .diagnostics
            .first()
            .map(|d| d.short())
            .unwrap_or_default();
        vec![PlannedEvent::about(
            object,
            EventType::Warning,
            report.refusal(),
            first,
        )]
    };
    let stopped = match report.served_generation {
        Some(g) if g != report.generation => {
            format!(" (on top of generation {g}, which is still served)")
        }
        Some(_) => String::new(),
        // Nothing is served: its agents are denied anyway.
        None => return events,
    };
    if object.spec.suspend {
        events.push(PlannedEvent::about(
            object,
            EventType::Warning,
            "Suspended",
            format!("spec.suspend is true: every agent of this policy is stopped{stopped}"),
        ));
    }
    events
}

/// What a policy whose planning panicked gets instead.
fn failed_policy_update(
    report: &PolicyReport,
    object: &AIPolicy,
    now: Timestamp,
) -> Option<StatusUpdate> {
    let status = failed_policy_status(report, object.status.as_ref(), now);
    changed(
        object.status.as_ref(),
        status,
        &report.object,
        Status::Policy,
        || {
            vec![PlannedEvent::about(
                object,
                EventType::Warning,
                crate::status::STATUS_FAILED,
                format!(
                    "the operator could not compute the status of generation {}; its log says why",
                    report.generation
                ),
            )]
        },
    )
}

fn grant_update(report: &GrantReport, object: &ToolGrant, now: Timestamp) -> Option<StatusUpdate> {
    let status = grant_status(report, object.status.as_ref(), now);
    let was_active = object.status.as_ref().and_then(|s| s.state) == Some(GrantState::Active);
    changed(
        object.status.as_ref(),
        status,
        &report.object,
        Status::Grant,
        || {
            (report.state == GrantState::Expired && was_active)
                .then(|| {
                    PlannedEvent::about(
                        object,
                        EventType::Normal,
                        "GrantExpired",
                        format!("expired at {}", object.spec.expires_at.0),
                    )
                })
                .into_iter()
                .collect()
        },
    )
}

#[cfg(test)]
mod tests;
