//! [`plan`] with plain structs and no server: a world of objects as the
//! caches hold them, planned at a given instant; [`World::after`] applies
//! a plan the way the apply stage would, so a test can read as a
//! sequence of passes.

use super::*;
use serde_json::json;

const NOW: &str = "2026-11-22T10:00:00Z";

fn t(s: &str) -> Timestamp {
    s.parse().unwrap()
}

/// A valid policy in `clinic`, generation 1, with one agent.
fn policy(name: &str) -> AIPolicy {
    serde_json::from_value(json!({
        "apiVersion": "palisade.dev/v1alpha1", "kind": "AIPolicy",
        "metadata": {"name": name, "namespace": "clinic", "generation": 1, "uid": format!("uid-{name}")},
        "spec": {
            "agents": [{"name": format!("{name}-agent"), "serviceAccount": "agent"}],
            "providers": [{"name": "local", "type": "ollama", "baseUrl": "http://ollama.ollama.svc:11434", "defaultModel": "llama3.1:8b"}],
            "routing": {"defaultProvider": "local"},
        }
    }))
    .unwrap()
}

/// A grant for `clinic-assistant-agent` that expires at `expires_at`.
fn grant(name: &str, expires_at: &str) -> ToolGrant {
    serde_json::from_value(json!({
        "apiVersion": "palisade.dev/v1alpha1", "kind": "ToolGrant",
        "metadata": {"name": name, "namespace": "clinic", "generation": 1, "uid": format!("uid-{name}")},
        "spec": {"agents": ["clinic-assistant-agent"], "tools": ["fetch_lab_results"], "action": "Allow",
                 "expiresAt": expires_at, "reason": "CHG-1"}
    }))
    .unwrap()
}

/// Edits that read like what a user did to a policy.
trait Edit: Sized {
    fn edited(self, edit: impl FnOnce(&mut AIPolicy)) -> AIPolicy;

    /// A new generation (the API server bumps it on every spec change).
    fn at_generation(self, generation: i64) -> AIPolicy {
        self.edited(|p| p.metadata.generation = Some(generation))
    }

    fn suspended(self) -> AIPolicy {
        self.edited(|p| p.spec.suspend = true)
    }

    /// A tool rule whose only glob is `glob`.
    fn with_tool_glob(self, glob: &str) -> AIPolicy {
        self.edited(|p| {
            p.spec
                .tools
                .rules
                .push(serde_json::from_value(json!({"tools": [glob], "action": "Allow"})).unwrap())
        })
    }
}

impl Edit for AIPolicy {
    fn edited(mut self, edit: impl FnOnce(&mut AIPolicy)) -> AIPolicy {
        edit(&mut self);
        self
    }
}

/// What a pass reads, and what the loop remembers.
#[derive(Default)]
struct World {
    policies: Vec<AIPolicy>,
    grants: Vec<ToolGrant>,
    gateways: Vec<Lease>,
    secrets: Secrets,
    previous: Option<PolicyBundle>,
    written: Option<String>,
    history: History,
}

impl World {
    fn with(mut self, policy: AIPolicy) -> Self {
        self.policies.retain(|p| p.name_any() != policy.name_any());
        self.policies.push(policy);
        self
    }

    fn with_grant(mut self, grant: ToolGrant) -> Self {
        self.grants.push(grant);
        self
    }

    /// Gateway `instance` reports `revision`, renewed at `renewed`.
    fn with_gateway(mut self, instance: &str, revision: &str, renewed: &str) -> Self {
        let report = palisade_crds::gateway_report::report(instance, revision, t(renewed));
        self.gateways.push(report);
        self
    }

    /// A policy's edit: its status stays that of the generation before.
    fn edit(self, name: &str, edit: impl FnOnce(AIPolicy) -> AIPolicy) -> Self {
        let old = self.policy(name).clone();
        let status = old.status.clone();
        let mut new = edit(old);
        new.status = status;
        self.with(new)
    }

    fn policy(&self, name: &str) -> &AIPolicy {
        self.policies.iter().find(|p| p.name_any() == name).unwrap()
    }

    fn plan_at(&self, now: &str) -> Plan {
        plan(&Input {
            policies: &self.policies,
            grants: &self.grants,
            secrets: &self.secrets,
            egress: &palisade_policy::Egress::default(),
            gateways: &self.gateways,
            previous: self.previous.as_ref(),
            written_revision: self.written.as_deref(),
            history: &self.history,
            namespace: "palisade-system",
            secret_name: "palisade-config",
            now: t(now),
            policy_budget: palisade_crds::bundle_secret::DEFAULT_POLICY_BUDGET,
        })
        .unwrap()
    }

    /// The world once a pass at `now` is applied.
    fn applied_at(self, now: &str) -> Self {
        let plan = self.plan_at(now);
        self.after(plan)
    }

    /// The world once `plan` is applied: the Secret and statuses written.
    fn after(mut self, plan: Plan) -> Self {
        for update in plan.statuses {
            let name = &update.object.name;
            match update.status {
                Status::Policy(s) => {
                    let p = self.policies.iter_mut().find(|p| p.name_any() == *name);
                    p.unwrap().status = Some(s);
                }
                Status::Grant(s) => {
                    let g = self.grants.iter_mut().find(|g| g.name_any() == *name);
                    g.unwrap().status = Some(s);
                }
            }
        }
        if let Some(write) = plan.secret {
            self.history.push(&write.revision);
            self.written = Some(write.revision);
        }
        self.previous = plan.bundle.or(self.previous);
        self
    }
}

/// The only update of `name` in `plan`.
fn update<'p>(plan: &'p Plan, name: &str) -> &'p StatusUpdate {
    let mut of = plan.statuses.iter().filter(|u| u.object.name == name);
    let first = of.next().unwrap_or_else(|| panic!("no update of {name}"));
    assert!(of.next().is_none(), "two updates of {name}");
    first
}

fn policy_status_of<'p>(plan: &'p Plan, name: &str) -> &'p AIPolicyStatus {
    match &update(plan, name).status {
        Status::Policy(s) => s,
        Status::Grant(_) => panic!("{name} is a grant"),
    }
}

/// Conditions as (type, status, reason).
fn conditions(s: &AIPolicyStatus) -> Vec<(&str, &str, &str)> {
    s.conditions
        .iter()
        .map(|c| (c.type_.as_str(), c.status.as_str(), c.reason.as_str()))
        .collect()
}

/// Events as (type, reason, note).
fn events(update: &StatusUpdate) -> Vec<(EventType, &str, &str)> {
    update
        .events
        .iter()
        .map(|e| (e.type_, e.reason, e.note.as_str()))
        .collect()
}

/// The clinic's policy and a grant that expires at 11:00.
fn clinic() -> World {
    World::default()
        .with(policy("clinic-assistant"))
        .with_grant(grant("lab", "2026-11-22T11:00:00Z"))
}

#[test]
fn a_first_pass_writes_the_secret_every_status_and_a_compiled_event() {
    let plan = clinic().plan_at(NOW);

    let write = plan.secret.as_ref().expect("the Secret is written");
    let revision = plan.bundle.as_ref().unwrap().revision();
    assert_eq!(write.revision, revision);
    let meta = &write.secret.metadata;
    assert_eq!(
        (meta.namespace.as_deref(), meta.name.as_deref()),
        (Some("palisade-system"), Some("palisade-config"))
    );
    assert_eq!(
        bundle_secret::decode(&write.secret).unwrap().revision(),
        revision
    );

    let status = policy_status_of(&plan, "clinic-assistant");
    assert_eq!(
        conditions(status),
        [
            ("Accepted", "True", "Compiled"),
            ("Ready", "True", "Served")
        ]
    );
    assert_eq!(status.served_revision.as_deref(), Some(revision));
    assert_eq!(status.gateways_applied, Some(0), "nobody applied it yet");
    assert_eq!(
        events(update(&plan, "clinic-assistant")),
        [(EventType::Normal, "Compiled", "generation 1 compiled")]
    );
    let grant = update(&plan, "lab");
    assert!(matches!(&grant.status, Status::Grant(s) if s.state == Some(GrantState::Active)));
    assert!(grant.events.is_empty());

    assert_eq!(plan.counts.policies, BTreeMap::from([("accepted", 1)]));
    assert_eq!(plan.counts.grants, BTreeMap::from([("active", 1)]));
    assert!(plan.counts.bundle_bytes.is_some_and(|n| n > 0));
    assert_eq!(plan.next_expiry, Some(t("2026-11-22T11:00:00Z")));
    assert!(plan.failures.is_empty());
}

#[test]
fn a_pass_over_what_was_applied_writes_nothing() {
    let world = clinic().applied_at(NOW);
    let again = world.plan_at("2026-11-22T10:05:00Z");
    assert!(again.secret.is_none(), "same revision: no Secret write");
    assert_eq!(again.statuses, [], "no status write, no Event");
}

#[test]
fn an_invalid_generation_keeps_the_served_one_says_why_and_is_announced_once() {
    let world = World::default().with(policy("clinic-assistant"));
    let first = world.plan_at(NOW);
    let served = first.secret.as_ref().unwrap().revision.clone();
    let world = world.after(first).edit("clinic-assistant", |p| {
        p.at_generation(2).with_tool_glob("send_[email")
    });

    let plan = world.plan_at(NOW);
    assert!(
        plan.secret.is_none(),
        "generation 1 is still what is served"
    );
    let status = policy_status_of(&plan, "clinic-assistant");
    assert_eq!(
        conditions(status),
        [
            ("Accepted", "False", "Invalid"),
            ("Ready", "False", "ServingPrevious")
        ]
    );
    assert_eq!(
        (status.served_generation, status.served_revision.as_deref()),
        (Some(1), Some(served.as_str()))
    );
    let announced = events(update(&plan, "clinic-assistant"));
    assert_eq!(announced.len(), 1);
    let (type_, reason, note) = announced[0];
    assert_eq!((type_, reason), (EventType::Warning, "Invalid"));
    assert!(
        note.starts_with("spec.tools.rules[0].tools[0]: \"send_[email\" is not a valid glob"),
        "{note}"
    );
    assert_eq!(
        plan.counts.policies,
        BTreeMap::from([("serving_previous", 1)])
    );

    let world = world.after(plan);
    assert_eq!(world.plan_at(NOW).statuses, [], "announced once");
}

#[test]
fn a_suspended_generation_is_announced_with_its_compilation() {
    let world = World::default().with(policy("clinic-assistant").suspended());
    let plan = world.plan_at(NOW);
    let reasons: Vec<_> = events(update(&plan, "clinic-assistant"))
        .into_iter()
        .map(|(type_, reason, _)| (type_, reason))
        .collect();
    assert_eq!(
        reasons,
        [
            (EventType::Normal, "Compiled"),
            (EventType::Warning, "Suspended")
        ]
    );
    assert!(
        plan.bundle
            .unwrap()
            .policy("clinic", "clinic-assistant")
            .unwrap()
            .suspend
    );
}

/// Issue 22: user text in a condition message (4,000 bytes at most) and
/// an Event note (1,000) is cut before the character that straddles the
/// limit. The glob's `é`s start at byte 33 of the diagnostic, so bytes
/// 4,000 and 1,000 both fall inside one.
#[test]
fn user_text_in_status_and_events_is_cut_on_a_character_boundary() {
    let glob = format!("x[{}", "é".repeat(2500));
    let world = World::default()
        .with(policy("poisoned").with_tool_glob(&glob))
        .with(policy("clinic-assistant"));
    let plan = world.plan_at(NOW);
    assert!(plan.failures.is_empty(), "{:?}", plan.failures);

    let status = policy_status_of(&plan, "poisoned");
    let message = &status.conditions[0].message;
    assert_eq!(message.len(), 3999, "cut before the é across byte 4,000");
    assert!(message.starts_with("spec.tools.rules[0].tools[0]: \"x[é"));
    let note = &update(&plan, "poisoned").events[0].note;
    assert_eq!(note.len(), 999, "cut before the é across byte 1,000");
    assert!(message.starts_with(note.as_str()));

    // And the other policy is planned as usual.
    let other = policy_status_of(&plan, "clinic-assistant");
    assert_eq!(conditions(other)[0], ("Accepted", "True", "Compiled"));
}

#[test]
fn a_panic_while_planning_one_object_leaves_the_others_planned() {
    let world = World::default()
        .with(policy("a"))
        .with(policy("b"))
        .with(policy("c"));
    let compiled = compile(CompileInput {
        policies: &world.policies,
        grants: &[],
        secrets: &world.secrets,
        egress: &palisade_policy::Egress::default(),
        previous: None,
        now: t(NOW),
        policy_budget: None,
    })
    .unwrap();
    let served = Served::Revision(compiled.bundle.revision().to_owned());
    let reports = Reports::new(&[], &world.history, None, t(NOW));
    let mut failures = Vec::new();
    let updates = plan_each(
        &compiled.policies,
        &world.policies,
        |r| &r.object,
        |r, p| {
            assert_ne!(r.object.name, "b", "a bug that shows on b only");
            policy_update(r, p, &served, &reports, t(NOW))
        },
        |r, p| failed_policy_update(r, p, t(NOW)),
        &mut failures,
    );

    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].object.name, "b");
    assert!(failures[0].panic.contains("a bug that shows on b only"));
    // (name, Accepted's reason) of each update.
    let accepted: Vec<(&str, &str)> = updates
        .iter()
        .map(|u| match &u.status {
            Status::Policy(s) => (u.object.name.as_str(), s.conditions[0].reason.as_str()),
            Status::Grant(_) => unreachable!(),
        })
        .collect();
    assert_eq!(
        accepted,
        [
            ("a", "Compiled"),
            ("b", crate::status::STATUS_FAILED),
            ("c", "Compiled")
        ]
    );
    let failed = updates.iter().find(|u| u.object.name == "b").unwrap();
    assert_eq!(
        events(failed)[0].1,
        crate::status::STATUS_FAILED,
        "announced with a Warning"
    );
}

#[test]
fn gateways_applied_counts_the_fresh_gateways_that_applied_the_served_revision() {
    let world = World::default().with(policy("clinic-assistant"));
    let first = world.plan_at(NOW);
    let revision = first.secret.as_ref().unwrap().revision.clone();
    let world = world
        .after(first)
        .with_gateway("gw-0", &revision, "2026-11-22T10:00:30Z")
        .with_gateway("gw-1", &revision, "2026-11-22T10:00:40Z")
        .with_gateway("gone", &revision, "2026-11-22T09:50:00Z")
        .with_gateway("stranger", "rev-from-elsewhere", "2026-11-22T10:00:40Z");
    let plan = world.plan_at("2026-11-22T10:01:00Z");
    let status = policy_status_of(&plan, "clinic-assistant");
    assert_eq!(status.gateways_applied, Some(2));
    assert!(
        update(&plan, "clinic-assistant").events.is_empty(),
        "same generation: no new Event"
    );
}

#[test]
fn a_grant_that_expires_leaves_the_bundle_and_is_announced() {
    let world = clinic().applied_at(NOW);

    let plan = world.plan_at("2026-11-22T11:00:01Z");
    assert!(plan.secret.is_some(), "a new revision without the grant");
    assert!(plan.bundle.as_ref().unwrap().grants().is_empty());
    assert_eq!(plan.next_expiry, None);
    let expired = update(&plan, "lab");
    assert!(matches!(&expired.status, Status::Grant(s) if s.state == Some(GrantState::Expired)));
    assert_eq!(
        events(expired),
        [(
            EventType::Normal,
            "GrantExpired",
            "expired at 2026-11-22T11:00:00Z"
        )]
    );
    assert_eq!(plan.counts.grants, BTreeMap::from([("expired", 1)]));
}

/// What the served bundle decides for `agent` calling a tool (the
/// decision a gateway serving it would answer).
fn decided(plan: &Plan, namespace: &str, agent: &str) -> palisade_policy::ReasonCode {
    let bundle = plan.bundle.as_ref().expect("a bundle is served");
    bundle
        .evaluate_tool(
            &palisade_policy::ToolCall {
                namespace,
                agent,
                tool: "calendar_read",
                arguments: &json!({}),
            },
            t(NOW),
        )
        .decision
        .reason_code
}

/// A policy with two agents, `clinic-assistant-agent` and `second-agent`,
/// whose tools are allowed by default.
fn two_agent_policy() -> AIPolicy {
    policy("clinic-assistant").edited(|p| {
        p.spec.agents.push(
            serde_json::from_value(json!({"name": "second-agent", "serviceAccount": "second"}))
                .unwrap(),
        );
        p.spec.tools.default = serde_json::from_value(json!("Allow")).unwrap();
    })
}

/// Issue 23: the newest `spec.suspend` applies on top of the last good
/// generation when the edit that sets it does not compile.
#[test]
fn a_broken_edit_that_suspends_the_policy_stops_the_last_good_generation() {
    let world = World::default().with(two_agent_policy()).applied_at(NOW);
    let world = world.edit("clinic-assistant", |p| {
        p.at_generation(2).with_tool_glob("send_[email").suspended()
    });

    let plan = world.plan_at(NOW);
    assert!(
        plan.secret.is_some(),
        "the switch is a new revision to write"
    );
    let served = plan.bundle.as_ref().unwrap();
    let p = served.policy("clinic", "clinic-assistant").unwrap();
    assert_eq!((p.generation, p.suspend), (1, true));
    for agent in ["clinic-assistant-agent", "second-agent"] {
        assert_eq!(
            decided(&plan, "clinic", agent),
            palisade_policy::ReasonCode::KillSwitchPolicy,
            "{agent}"
        );
    }
    let status = policy_status_of(&plan, "clinic-assistant");
    assert_eq!(
        conditions(status),
        [
            ("Accepted", "False", "Invalid"),
            ("Ready", "False", "ServingPrevious")
        ]
    );
    let reasons: Vec<_> = events(update(&plan, "clinic-assistant"))
        .into_iter()
        .map(|(type_, reason, _)| (type_, reason))
        .collect();
    assert_eq!(
        reasons,
        [
            (EventType::Warning, "Invalid"),
            (EventType::Warning, "Suspended")
        ]
    );
}

/// Issue 23: likewise one agent's `suspended`.
#[test]
fn a_broken_edit_that_suspends_one_agent_stops_that_agent_on_the_last_good_generation() {
    let world = World::default().with(two_agent_policy()).applied_at(NOW);
    let world = world.edit("clinic-assistant", |p| {
        p.at_generation(2)
            .with_tool_glob("send_[email")
            .edited(|p| p.spec.agents[1].suspended = true)
    });

    let plan = world.plan_at(NOW);
    assert!(plan.secret.is_some());
    assert_eq!(
        decided(&plan, "clinic", "second-agent"),
        palisade_policy::ReasonCode::KillSwitchAgent
    );
    assert_eq!(
        decided(&plan, "clinic", "clinic-assistant-agent"),
        palisade_policy::ReasonCode::ToolDefaultAllow,
        "the other agent is not stopped"
    );
}

/// A switch turned on stays on until an edit that compiles lifts it: a
/// broken edit never lifts one (nor does the next broken edit after it).
#[test]
fn a_broken_edit_never_lifts_a_kill_switch() {
    let world = World::default()
        .with(two_agent_policy().suspended())
        .applied_at(NOW);
    let world = world
        .edit("clinic-assistant", |p| {
            p.at_generation(2)
                .with_tool_glob("send_[email")
                .edited(|p| p.spec.suspend = false)
        })
        .applied_at(NOW);
    let plan = world.plan_at(NOW);
    assert_eq!(
        decided(&plan, "clinic", "second-agent"),
        palisade_policy::ReasonCode::KillSwitchPolicy
    );
    // An edit that compiles does.
    let world = world.edit("clinic-assistant", |_| two_agent_policy().at_generation(3));
    let plan = world.plan_at(NOW);
    assert_eq!(
        decided(&plan, "clinic", "second-agent"),
        palisade_policy::ReasonCode::ToolDefaultAllow
    );
}

/// Keywords no compressor can shrink much: `rules` routing rules of 1,000
/// keywords of 250 random letters and digits (about 250 kB each).
fn incompressible_keywords(rules: usize, seed: u64) -> serde_json::Value {
    let mut x = seed | 1;
    let alphabet = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut next = move || {
        // xorshift64
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        alphabet[(x % alphabet.len() as u64) as usize] as char
    };
    let rules: Vec<_> = (0..rules)
        .map(|i| {
            let keywords: Vec<String> = (0..1000)
                .map(|_| (0..250).map(|_| next()).collect())
                .collect();
            json!({"name": format!("bulk-{i}"), "keywords": keywords, "provider": "local"})
        })
        .collect();
    json!(rules)
}

/// A policy of tenant `radiology` whose compiled form is about 750 kB:
/// two of them are over what one Secret can hold.
fn oversize_policy(name: &str, seed: u64) -> AIPolicy {
    policy(name).edited(|p| {
        p.metadata.namespace = Some("radiology".into());
        p.spec.routing.rules = serde_json::from_value(incompressible_keywords(3, seed)).unwrap();
    })
}

/// Issue 23: one tenant cannot stop the Secret from being written for
/// everyone: its oversize policies are refused one by one, and another
/// tenant's kill switch is still written.
#[test]
fn an_oversize_tenant_is_refused_alone_and_another_tenants_kill_switch_is_still_written() {
    let world = World::default()
        .with(two_agent_policy())
        .applied_at(NOW)
        .with(oversize_policy("scans", 1))
        .with(oversize_policy("reports", 2));
    let world = world.edit("clinic-assistant", |p| p.at_generation(2).suspended());

    let plan = world.plan_at(NOW);
    assert!(plan.secret.is_some(), "the Secret is still written");
    assert!(!plan.counts.bundle_too_large);
    assert_eq!(
        decided(&plan, "clinic", "second-agent"),
        palisade_policy::ReasonCode::KillSwitchPolicy
    );
    for name in ["scans", "reports"] {
        assert_eq!(
            decided(&plan, "radiology", &format!("{name}-agent")),
            palisade_policy::ReasonCode::PolicyInvalid,
            "{name}: refused, so its agents are denied"
        );
        let status = policy_status_of(&plan, name);
        assert_eq!(
            conditions(status),
            [
                ("Accepted", "False", "TooLarge"),
                ("Ready", "False", "NotServed")
            ]
        );
        let message = &status.conditions[0].message;
        assert!(message.contains("-byte budget"), "{message}");
        let announced = events(update(&plan, name));
        assert_eq!(
            (announced[0].0, announced[0].1),
            (EventType::Warning, "TooLarge")
        );
        assert!(announced[0].2.contains("budget"), "{}", announced[0].2);
    }
    assert_eq!(
        decided(&plan, "clinic", "clinic-assistant-agent"),
        palisade_policy::ReasonCode::KillSwitchPolicy
    );
}
