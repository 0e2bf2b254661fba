//! What each console page shows, gathered from the served configuration,
//! the audit database and the approvals (rendered by [`super::view`]).
//! A part the audit cannot answer says so; the rest of the page still
//! shows.

use super::session::{self, Viewer};
use super::view::{
    self, AgentSwitch, AgentUsage, Deciding, Lifting, Overview, Replica, Row, Switches,
};
use super::{Console, guarded, to_login};
use crate::api::audit_query::AlertView;
use crate::approvals::Approvals;
use crate::decisions::held;
use crate::limits::UnreadBody;
use crate::security::quarantine::Quarantines;
use crate::state::AppState;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use palisade_audit::{AuditDecision, Filter, Store, UsageFilter};
use palisade_crds::ApprovalDecision;
use serde::Deserialize;
use std::collections::BTreeMap;

/// The audit store (the console is mounted only with the auditor token,
/// so there always is one), once it holds the requests already answered
/// ([`palisade_audit::AuditWriter::caught_up`]).
async fn store(state: &AppState) -> Option<&Store> {
    let reader = state.audit_reader.as_ref()?;
    state.audit.caught_up().await;
    Some(&reader.store)
}

fn day_ago() -> Option<jiff::Timestamp> {
    jiff::Timestamp::now()
        .checked_sub(jiff::SignedDuration::from_hours(24))
        .ok()
}

fn page(title: &str, viewer: &Viewer, active: &str, body: Markup) -> Response {
    guarded(view::respond(view::layout(title, viewer, active, body)))
}

/// An error page with its status.
fn trouble(status: StatusCode, viewer: &Viewer, message: &str) -> Response {
    let body =
        html! { p.error role="alert" { (message) } p { a href="/console/approvals" { "Back" } } };
    let mut response = page("Not done", viewer, "", body);
    *response.status_mut() = status;
    response
}

/// Rows from the audit, or what to say instead.
async fn rows(
    state: &AppState,
    filter: &Filter,
    what: &str,
) -> Result<Vec<palisade_audit::ChainedEvent>, String> {
    let store = store(state).await.ok_or_else(|| what.to_owned())?;
    store.query(filter).await.map_err(|e| {
        tracing::warn!(error = %e, "console: audit query failed");
        what.to_owned()
    })
}

/// `GET /console`: configuration and replicas, kill switches, pending
/// approvals, alerts, usage and denials.
pub async fn overview(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let Some(viewer) = session::viewer(&state, &headers) else {
        return to_login();
    };
    let now = jiff::Timestamp::now();
    let snapshot = state.config.load_full();
    let switches = snapshot
        .iter()
        .flat_map(|s| s.bundle.policies())
        .map(|p| Switches {
            namespace: p.namespace.clone(),
            name: p.name.clone(),
            generation: p.generation,
            suspended: p.suspend,
            agents: p
                .agents
                .iter()
                .map(|a| AgentSwitch {
                    name: a.name.clone(),
                    suspended: a.suspended,
                    quarantine: a.quarantine.clone(),
                })
                .collect(),
        })
        .collect();
    let revision = snapshot.as_ref().map(|s| s.revision().to_owned());
    let alerts = rows(
        &state,
        &Filter {
            decision: Some(AuditDecision::Alert.as_str().to_owned()),
            since: day_ago(),
            limit: Some(20),
            newest_first: true,
            ..Filter::default()
        },
        "Security alerts",
    )
    .await
    .map(|rows| rows.into_iter().map(|c| AlertView::of(c.event)).collect());
    let lifting = match (&state.quarantines, &viewer) {
        (Some(Quarantines::Local { .. }), Viewer::Operator(_)) => {
            Lifting::Button(session::csrf_of(&headers))
        }
        (Some(Quarantines::Local { .. }), Viewer::Auditor) => Lifting::OperatorsOnly,
        _ => Lifting::Kubectl,
    };
    let overview = Overview {
        lifting,
        replicas: replicas(&state, revision.as_deref()).await,
        revision,
        switches,
        pending: state
            .approvals
            .pending(now)
            .await
            .map_err(|_| "Pending approvals".to_owned()),
        alerts,
        usage: usage(&state).await,
        denials: match store(&state).await.zip(day_ago()) {
            Some((store, since)) => store
                .denials_by_reason(since)
                .await
                .map_err(|_| "Denials by reason".to_owned()),
            None => Err("Denials by reason".to_owned()),
        },
    };
    page(
        "Overview",
        &viewer,
        "overview",
        view::overview(&overview, now),
    )
}

/// Every replica and its revision: in a cluster from the gateways'
/// report Leases, standalone this process.
async fn replicas(state: &AppState, revision: Option<&str>) -> Result<Vec<Replica>, String> {
    let Some(Console {
        instance, cluster, ..
    }) = state.console.as_ref()
    else {
        return Ok(Vec::new());
    };
    let this = Replica {
        name: instance.clone(),
        revision: revision.unwrap_or("none").to_owned(),
        renewed: None,
        this: true,
    };
    let Some((client, namespace)) = cluster else {
        return Ok(vec![this]);
    };
    use k8s_openapi::api::coordination::v1::Lease;
    use palisade_crds::gateway_report;
    let api: kube::Api<Lease> = kube::Api::namespaced(client.clone(), namespace);
    let params = kube::api::ListParams::default().labels(&gateway_report::label_selector());
    let leases = api.list(&params).await.map_err(|e| {
        tracing::warn!(error = %e, "console: the gateways' Leases could not be listed");
        "The replicas' reports (Leases)".to_owned()
    })?;
    let mut replicas: Vec<Replica> = leases
        .items
        .iter()
        .filter_map(|l| {
            let name = l.metadata.name.as_deref()?;
            let name = name.strip_prefix(gateway_report::LEASE_PREFIX)?.to_owned();
            Some(Replica {
                this: name == *instance,
                revision: gateway_report::applied_revision(l)
                    .unwrap_or("none")
                    .to_owned(),
                renewed: gateway_report::renewed_at(l),
                name,
            })
        })
        .collect();
    if !replicas.iter().any(|r| r.this) {
        replicas.push(this);
    }
    Ok(replicas)
}

/// Requests and tokens per agent over the last day.
async fn usage(state: &AppState) -> Result<Vec<AgentUsage>, String> {
    let what = || "Tokens and requests".to_owned();
    let store = store(state).await.ok_or_else(what)?;
    let filter = UsageFilter {
        since: day_ago(),
        ..UsageFilter::default()
    };
    let rows = store.usage(&filter).await.map_err(|_| what())?;
    let mut per_agent: BTreeMap<String, AgentUsage> = BTreeMap::new();
    for u in rows {
        let agent = format!("{}/{}", u.namespace, u.agent);
        let total = per_agent.entry(agent.clone()).or_default();
        total.agent = agent;
        total.requests += u.requests;
        total.input_tokens += u.input_tokens;
        total.output_tokens += u.output_tokens;
    }
    Ok(per_agent.into_values().collect())
}

/// The decisions page's filters (empty fields mean "any").
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DecisionFilters {
    pub namespace: Option<String>,
    pub agent: Option<String>,
    pub decision: Option<String>,
    pub reason: Option<String>,
    pub request_id: Option<String>,
}

impl DecisionFilters {
    fn fields(&self) -> [(&'static str, &'static str, &str); 5] {
        fn v(o: &Option<String>) -> &str {
            o.as_deref().unwrap_or("").trim()
        }
        [
            ("namespace", "Namespace", v(&self.namespace)),
            ("agent", "Agent", v(&self.agent)),
            ("decision", "Decision", v(&self.decision)),
            ("reason", "Reason code", v(&self.reason)),
            ("requestId", "Request id", v(&self.request_id)),
        ]
    }

    /// The audit filter these ask for.
    pub fn filter(&self) -> Filter {
        let set = |name: &str| {
            self.fields()
                .into_iter()
                .find(|(n, _, v)| *n == name && !v.is_empty())
                .map(|(_, _, v)| v.to_owned())
        };
        Filter {
            namespace: set("namespace"),
            agent: set("agent"),
            decision: set("decision"),
            reason: set("reason"),
            request_id: set("requestId"),
            ..Filter::default()
        }
    }

    /// The query string of the filters that are set.
    pub fn query(&self) -> String {
        let set: Vec<(&str, &str)> = self
            .fields()
            .into_iter()
            .filter(|(_, _, v)| !v.is_empty())
            .map(|(n, _, v)| (n, v))
            .collect();
        view::query(&set)
    }
}

/// `GET /console/decisions?namespace=&agent=&decision=&reason=`: the
/// newest 100 matching decisions; with JavaScript, new ones stream in.
pub async fn decisions(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(filters): Query<DecisionFilters>,
) -> Response {
    let Some(viewer) = session::viewer(&state, &headers) else {
        return to_login();
    };
    let filter = Filter {
        limit: Some(100),
        newest_first: true,
        ..filters.filter()
    };
    let body = match rows(&state, &filter, "The decisions").await {
        Ok(found) => {
            let rows: Vec<Row> = found.iter().map(|c| Row::of(&c.event)).collect();
            let mut stream = format!("/console/stream?{}", filters.query());
            if let Some(newest) = rows.first() {
                stream.push_str(&format!("&after={}", newest.cursor));
            }
            html! {
                (view::filter_form(&filters.fields()))
                (view::decisions_table(&rows, Some(&stream)))
            }
        }
        Err(what) => view::unavailable(&what),
    };
    page("Decisions", &viewer, "decisions", body)
}

/// `GET /console/decisions/{id}`: one audit row in full (raw prompts and
/// arguments only if the policy kept them) and the other rows of its
/// request.
pub async fn decision(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let Some(viewer) = session::viewer(&state, &headers) else {
        return to_login();
    };
    let one = Filter {
        id: Some(id.clone()),
        limit: Some(1),
        ..Filter::default()
    };
    let found = match rows(&state, &one, "This decision").await {
        Ok(mut found) => found.pop(),
        Err(what) => return page("Decision", &viewer, "decisions", view::unavailable(&what)),
    };
    let Some(row) = found else {
        return trouble(
            StatusCode::NOT_FOUND,
            &viewer,
            &format!("No audit row has the id {id}."),
        );
    };
    let same = Filter {
        request_id: Some(row.event.request_id.clone()),
        limit: Some(100),
        ..Filter::default()
    };
    let related: Vec<Row> = rows(&state, &same, "")
        .await
        .unwrap_or_default()
        .iter()
        .map(|c| Row::of(&c.event))
        .collect();
    let title = format!(
        "{} {} by {}",
        row.event.kind.as_str(),
        row.event.decision,
        row.event.agent
    );
    page(&title, &viewer, "decisions", view::detail(&row, &related))
}

/// `GET /console/approvals`: what is held and until when, and how to
/// decide it here.
pub async fn approvals(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let Some(viewer) = session::viewer(&state, &headers) else {
        return to_login();
    };
    let now = jiff::Timestamp::now();
    let csrf = session::csrf_of(&headers);
    let deciding = match (&state.approvals, &viewer) {
        (Approvals::Cluster { .. }, _) => Deciding::Kubectl,
        (Approvals::Local { .. }, Viewer::Operator(_)) => Deciding::Buttons(&csrf),
        (Approvals::Local { .. }, Viewer::Auditor) => Deciding::OperatorsOnly,
    };
    let body = match state.approvals.pending(now).await {
        Ok(mut pending) => {
            pending.sort_by_key(|a| a.expires_at);
            view::approvals(&pending, now, &deciding)
        }
        Err(e) => {
            tracing::warn!(error = %e, "console: approvals could not be listed");
            html! { p.error { "The approvals could not be read: " (e) } }
        }
    };
    page("Pending approvals", &viewer, "approvals", body)
}

#[derive(Debug, Deserialize)]
struct DecideForm {
    csrf: String,
    #[serde(default)]
    reason: String,
}

/// A console form an operator sent, if it carries this session's CSRF
/// value; otherwise the page saying so.
async fn operator_form(
    body: UnreadBody,
    headers: &HeaderMap,
    viewer: &Viewer,
) -> Result<DecideForm, Box<Response>> {
    let form: Option<DecideForm> = match body.read().await {
        Ok(bytes) => serde_urlencoded::from_bytes(&bytes).ok(),
        Err(e) => return Err(Box::new(e.into_response())),
    };
    form.filter(|f| session::csrf_holds(headers, &f.csrf)).ok_or_else(|| {
        tracing::warn!(viewer = %viewer.describe(), "console: a form without this session's CSRF value was refused");
        Box::new(trouble(
            StatusCode::FORBIDDEN,
            viewer,
            "This form is stale or was not sent from this console: reload the page and try again.",
        ))
    })
}

/// `POST /console/approvals/{namespace}/{name}/approve|deny` (standalone,
/// an operator's session, the form's CSRF value): decides it like
/// `POST /v1/approvals/{name}/approve|deny`, then back to the list.
pub async fn decide(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((namespace, name, verb)): Path<(String, String, String)>,
    body: UnreadBody,
) -> Response {
    let Some(viewer) = session::viewer(&state, &headers) else {
        return to_login();
    };
    let decision = match verb.as_str() {
        "approve" => ApprovalDecision::Approved,
        "deny" => ApprovalDecision::Denied,
        _ => return trouble(StatusCode::NOT_FOUND, &viewer, "Use approve or deny."),
    };
    let (Viewer::Operator(operator), Approvals::Local { store, .. }) = (&viewer, &state.approvals)
    else {
        let why = match &state.approvals {
            Approvals::Cluster { .. } => {
                "In a cluster, approvals are decided with kubectl (your RBAC applies)."
            }
            Approvals::Local { .. } => {
                "Only an operator may decide approvals: log in with an operator token."
            }
        };
        return trouble(StatusCode::FORBIDDEN, &viewer, why);
    };
    let form = match operator_form(body, &headers, &viewer).await {
        Ok(form) => form,
        Err(refused) => return *refused,
    };
    let reason = form.reason.trim();
    if reason.len() > 1024 {
        return trouble(
            StatusCode::BAD_REQUEST,
            &viewer,
            "The reason may be at most 1024 characters.",
        );
    }
    let decided_by = format!("operator:{operator}");
    let reason = (!reason.is_empty()).then_some(reason);
    match held::decide(
        &state,
        store,
        &namespace,
        &name,
        decision,
        reason,
        &decided_by,
    )
    .await
    {
        Ok(_) => Redirect::to("/console/approvals").into_response(),
        Err(e) => {
            let message = format!("Not decided: {e}");
            trouble(e.into_response().status(), &viewer, &message)
        }
    }
}

/// `GET /console/alerts`: the security alerts of the last day.
pub async fn alerts(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let Some(viewer) = session::viewer(&state, &headers) else {
        return to_login();
    };
    let filter = Filter {
        decision: Some(AuditDecision::Alert.as_str().to_owned()),
        since: day_ago(),
        limit: Some(500),
        newest_first: true,
        ..Filter::default()
    };
    let body = match rows(&state, &filter, "Security alerts").await {
        Ok(rows) => {
            let alerts: Vec<AlertView> = rows.into_iter().map(|c| AlertView::of(c.event)).collect();
            view::alerts_table(&alerts)
        }
        Err(what) => view::unavailable(&what),
    };
    page("Security alerts (24 h)", &viewer, "alerts", body)
}

/// `POST /console/quarantines/{namespace}/{agent}/lift` (standalone, an
/// operator's session, the form's CSRF value): lifts it like `POST
/// /v1/security/quarantines/{namespace}/{agent}/lift`, then back to the
/// overview.
pub async fn lift(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((namespace, agent)): Path<(String, String)>,
    body: UnreadBody,
) -> Response {
    let Some(viewer) = session::viewer(&state, &headers) else {
        return to_login();
    };
    let Viewer::Operator(operator) = &viewer else {
        return trouble(
            StatusCode::FORBIDDEN,
            &viewer,
            "Only an operator may lift a quarantine: log in with an operator token.",
        );
    };
    if let Err(refused) = operator_form(body, &headers, &viewer).await {
        return *refused;
    }
    match crate::api::quarantines::lift_as(&state, &namespace, &agent, operator).await {
        Ok(_) => Redirect::to("/console").into_response(),
        Err(e) => {
            let message = format!("Not lifted: {e}");
            trouble(e.into_response().status(), &viewer, &message)
        }
    }
}
