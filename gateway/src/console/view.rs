//! The console's HTML (maud templates: every value is escaped). What the
//! pages show is gathered in [`super::pages`]; the shapes it hands over
//! are here, so the markup and the live stream's rows cannot drift.

use super::session::Viewer;
use crate::approvals::View as ApprovalView;
use maud::{DOCTYPE, Markup, html};
use palisade_audit::{AuditEvent, ChainedEvent};
use serde::Serialize;

/// One decision as a table row and as a stream event (`console.js`
/// builds the same cells from this JSON).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Row {
    pub id: String,
    /// `TIME_MS.ID`: where a stream resumes.
    pub cursor: String,
    /// `HH:MM:SS.mmm` UTC.
    pub time: String,
    pub namespace: String,
    pub agent: String,
    pub kind: String,
    pub decision: String,
    pub reasons: String,
    /// The tool, or where a chat request went.
    pub subject: String,
    pub rule: String,
    pub latency: String,
}

impl Row {
    pub fn of(e: &AuditEvent) -> Self {
        let subject = match (&e.tool, &e.provider, &e.model) {
            (Some(tool), _, _) => tool.clone(),
            (None, Some(p), Some(m)) => format!("{p} / {m}"),
            (None, Some(p), None) => p.clone(),
            _ => String::new(),
        };
        Self {
            id: e.id.clone(),
            cursor: cursor(e),
            time: e.time.strftime("%H:%M:%S%.3f").to_string(),
            namespace: e.namespace.clone(),
            agent: e.agent.clone(),
            kind: e.kind.as_str().to_owned(),
            decision: e.decision.clone(),
            reasons: e.reason_codes.join(", "),
            subject,
            rule: e.rule.clone().unwrap_or_default(),
            latency: e
                .latency_us
                .map(|us| format!("{:.1} ms", us as f64 / 1000.0))
                .unwrap_or_default(),
        }
    }
}

/// Where a stream resumes after `e`.
pub fn cursor(e: &AuditEvent) -> String {
    format!("{}.{}", e.time.as_millisecond(), e.id)
}

/// `markup` as an HTML response.
pub fn respond(markup: Markup) -> axum::response::Response {
    use axum::response::IntoResponse;
    axum::response::Html(markup.into_string()).into_response()
}

/// The page frame: navigation, who is logged in, the log-out button.
pub fn layout(title: &str, viewer: &Viewer, active: &str, body: Markup) -> Markup {
    let nav = [
        ("overview", "/console", "Overview"),
        ("decisions", "/console/decisions", "Decisions"),
        ("approvals", "/console/approvals", "Approvals"),
        ("alerts", "/console/alerts", "Alerts"),
    ];
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Palisade console" }
                link rel="stylesheet" href="/console/assets/console.css";
                script src="/console/assets/console.js" defer {}
            }
            body {
                header {
                    a.brand href="/console" { "Palisade" }
                    nav {
                        @for (key, href, label) in nav {
                            a href=(href) class=[(key == active).then_some("active")] { (label) }
                        }
                    }
                    form.logout method="post" action="/console/logout" {
                        span.who { (viewer.describe()) }
                        button type="submit" { "Log out" }
                    }
                }
                main { h1 { (title) } (body) }
            }
        }
    }
}

/// The login form, with what went wrong last time.
pub fn login(error: Option<&str>) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { "Log in · Palisade console" }
                link rel="stylesheet" href="/console/assets/console.css";
            }
            body.login {
                main {
                    h1 { "Palisade console" }
                    p { "Log in with the auditor token (read only) or, on a standalone gateway, an operator token (may decide approvals)." }
                    @if let Some(e) = error { p.error role="alert" { (e) } }
                    form method="post" action="/console/login" {
                        label for="token" { "Token" }
                        input #token type="password" name="token" autocomplete="current-password" required autofocus;
                        button type="submit" { "Log in" }
                    }
                }
            }
        }
    }
}

/// A section that could not be read, saying why.
pub fn unavailable(what: &str) -> Markup {
    html! { p.error { (what) " is unavailable: the audit database did not answer (see the gateway's log)." } }
}

fn decision_class(decision: &str) -> &'static str {
    match decision {
        "Allow" | "Approved" | "Consumed" => "ok",
        "Deny" | "Denied" | "Expired" | "Alert" => "bad",
        _ => "held",
    }
}

/// The decisions table (newest first); `stream` is the live stream's URL.
pub fn decisions_table(rows: &[Row], stream: Option<&str>) -> Markup {
    html! {
        table.decisions #decisions data-stream=[stream] {
            thead { tr {
                th { "Time (UTC)" } th { "Namespace" } th { "Agent" } th { "Kind" }
                th { "Decision" } th { "Reason codes" } th { "Tool / route" } th { "Rule" } th { "Latency" }
            } }
            tbody {
                @for r in rows {
                    tr data-cursor=(r.cursor) {
                        td { a href={ "/console/decisions/" (r.id) } { (r.time) } }
                        td { (r.namespace) } td { (r.agent) } td { (r.kind) }
                        td { span class={ "badge " (decision_class(&r.decision)) } { (r.decision) } }
                        td { (r.reasons) } td { (r.subject) } td { (r.rule) } td { (r.latency) }
                    }
                }
            }
        }
        @if rows.is_empty() { p.empty #decisions-empty { "No decisions match yet." } }
    }
}

/// The filter form of the decisions page (plain GET: works without
/// JavaScript).
pub fn filter_form(values: &[(&str, &str, &str)]) -> Markup {
    html! {
        form.filters method="get" action="/console/decisions" {
            @for (name, label, value) in values {
                label { (label) " " input type="text" name=(name) value=(value); }
            }
            button type="submit" { "Filter" }
            a href="/console/decisions" { "Clear" }
        }
        p.live #live-status hidden { "live" }
    }
}

/// Every field of one audit row, raw prompts and arguments only when the
/// policy kept them.
pub fn detail(row: &ChainedEvent, same_request: &[Row]) -> Markup {
    let e = &row.event;
    let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "—".to_owned());
    let num = |v: Option<i64>| v.map(|n| n.to_string()).unwrap_or_else(|| "—".to_owned());
    let fields: Vec<(&str, String)> = vec![
        ("Time", e.time.to_string()),
        ("Kind", e.kind.as_str().to_owned()),
        ("Request id", e.request_id.clone()),
        (
            "Namespace / agent",
            format!("{} / {}", e.namespace, e.agent),
        ),
        (
            "Policy",
            match (&e.policy, e.policy_generation) {
                (Some(p), Some(g)) => format!("{p} (generation {g})"),
                (p, _) => opt(p),
            },
        ),
        ("Rule", opt(&e.rule)),
        ("Decision", e.decision.clone()),
        (
            "Enforced",
            if e.enforced {
                "yes"
            } else {
                "no (Audit mode: a dry run)"
            }
            .to_owned(),
        ),
        ("Reason codes", e.reason_codes.join(", ")),
        ("Tool", opt(&e.tool)),
        ("Argument digest", opt(&e.argument_digest)),
        (
            "Provider / model",
            format!("{} / {}", opt(&e.provider), opt(&e.model)),
        ),
        ("Prompt SHA-256", opt(&e.prompt_sha256)),
        ("Prompt characters", num(e.prompt_chars)),
        ("Upstream status", num(e.upstream_status)),
        (
            "Latency",
            e.latency_us
                .map(|us| format!("{:.3} ms", us as f64 / 1000.0))
                .unwrap_or_else(|| "—".to_owned()),
        ),
        (
            "Tokens (input / output / cached)",
            format!(
                "{} / {} / {}",
                num(e.input_tokens),
                num(e.output_tokens),
                num(e.cached_tokens)
            ),
        ),
        ("Approval", opt(&e.approval)),
        ("Decided by", opt(&e.decided_by)),
        (
            "Result SHA-256 / bytes",
            format!("{} / {}", opt(&e.result_sha256), num(e.result_bytes)),
        ),
        ("Alert detail", opt(&e.detail)),
        (
            "Chain",
            format!("writer {} seq {} hash {}", row.writer, row.seq, row.hash),
        ),
    ];
    html! {
        dl.detail #detail {
            @for (k, v) in &fields { dt { (k) } dd { (v) } }
        }
        h2 { "Arguments" }
        @match &e.arguments {
            Some(a) => pre { (serde_json::to_string_pretty(a).unwrap_or_default()) },
            None => p.muted { "Not kept (the policy's audit.arguments keeps only the digest)." },
        }
        h2 { "Prompt" }
        @match &e.prompt_text {
            Some(p) => pre { (p) },
            None => p.muted { "Not kept (the policy's audit.prompts keeps only the digest and length)." },
        }
        h2 { "Rows of this request" }
        (decisions_table(same_request, None))
    }
}

/// How a pending approval is decided on this gateway.
#[derive(Debug)]
pub enum Deciding<'a> {
    /// Standalone, an operator is looking: buttons (with the CSRF value).
    Buttons(&'a str),
    /// Standalone, the auditor is looking: who can decide, and how.
    OperatorsOnly,
    /// In a cluster: the commands to copy.
    Kubectl,
}

/// The pending approvals.
pub fn approvals(pending: &[ApprovalView], now: jiff::Timestamp, deciding: &Deciding) -> Markup {
    html! {
        @if pending.is_empty() { p.empty #no-approvals { "No approval is pending." } }
        @for a in pending {
            section.approval data-name=(a.name) {
                h2 { (a.namespace) "/" (a.name) }
                dl.detail {
                    dt { "Agent" } dd { (a.call.agent) }
                    dt { "Tool" } dd { (a.call.tool) }
                    dt { "Rule" } dd { (a.call.rule.as_deref().unwrap_or("—")) }
                    dt { "Arguments (redacted)" } dd { pre { (a.call.arguments_preview) @if a.call.arguments_truncated { " …" } } }
                    dt { "Requested" } dd { (when(a.requested_at)) }
                    dt { "Expires" } dd { (when(a.expires_at)) " (in " (until(now, a.expires_at)) ")" }
                }
                @match deciding {
                    Deciding::Buttons(csrf) => {
                        @for (verb, label) in [("approve", "Approve"), ("deny", "Deny")] {
                            form.decide method="post" action={ "/console/approvals/" (a.namespace) "/" (a.name) "/" (verb) } {
                                input type="hidden" name="csrf" value=(csrf);
                                input type="text" name="reason" placeholder="reason (optional)" maxlength="1024";
                                button type="submit" class=(verb) { (label) }
                            }
                        }
                    },
                    Deciding::OperatorsOnly => p.muted {
                        "Log in with an operator token to decide here, or run: "
                        code { "palisade-gateway approvals approve " (a.name) " --config ..." }
                    },
                    Deciding::Kubectl => {
                        p { "Decide with kubectl (your RBAC applies):" }
                        pre.command { "kubectl palisade approve " (a.name) " -n " (a.namespace) " --reason \"...\"" }
                        pre.command { "kubectl patch approval " (a.name) " -n " (a.namespace) " --type=merge -p '{\"spec\":{\"decision\":\"Approved\",\"reason\":\"...\"}}'   # or Denied" }
                    },
                }
            }
        }
    }
}

/// A time as the console shows it: `2026-12-06 20:58:42 UTC`.
pub fn when(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// A URL query string of `pairs`, encoded.
pub fn query(pairs: &[(&str, &str)]) -> String {
    serde_urlencoded::to_string(pairs).unwrap_or_default()
}

/// `4m 10s`, or `expired`.
pub fn until(now: jiff::Timestamp, then: jiff::Timestamp) -> String {
    let s = then.as_second() - now.as_second();
    if s <= 0 {
        "expired".to_owned()
    } else if s >= 3600 {
        format!("{}h {}m", s / 3600, (s % 3600) / 60)
    } else {
        format!("{}m {}s", s / 60, s % 60)
    }
}

/// One gateway replica and the configuration it serves.
#[derive(Debug, Clone)]
pub struct Replica {
    pub name: String,
    pub revision: String,
    pub renewed: Option<jiff::Timestamp>,
    /// The replica serving this page.
    pub this: bool,
}

/// One policy's kill switches as served.
#[derive(Debug, Clone)]
pub struct Switches {
    pub namespace: String,
    pub name: String,
    pub generation: i64,
    pub suspended: bool,
    pub agents: Vec<AgentSwitch>,
}

/// One agent's kill switches.
#[derive(Debug, Clone)]
pub struct AgentSwitch {
    pub name: String,
    pub suspended: bool,
    /// Why it is quarantined, if it is.
    pub quarantine: Option<String>,
}

/// How a quarantine is lifted, as the page offers it.
#[derive(Debug)]
pub enum Lifting {
    /// Standalone, an operator: a button (with the CSRF value).
    Button(String),
    /// Standalone, the auditor.
    OperatorsOnly,
    /// In a cluster: the kubectl command.
    Kubectl,
}

/// Requests and tokens of one agent (every provider and model).
#[derive(Debug, Clone, Default)]
pub struct AgentUsage {
    pub agent: String,
    pub requests: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
}

/// What the overview shows; a section the audit could not answer is
/// `Err` with what it is.
#[derive(Debug)]
pub struct Overview {
    pub revision: Option<String>,
    /// How a quarantine is lifted from here.
    pub lifting: Lifting,
    pub replicas: Result<Vec<Replica>, String>,
    pub switches: Vec<Switches>,
    pub pending: Result<Vec<ApprovalView>, String>,
    pub alerts: Result<Vec<crate::api::audit_query::AlertView>, String>,
    pub usage: Result<Vec<AgentUsage>, String>,
    pub denials: Result<Vec<(String, i64)>, String>,
}

fn section<T>(data: &Result<T, String>, body: impl FnOnce(&T) -> Markup) -> Markup {
    match data {
        Ok(d) => body(d),
        Err(what) => unavailable(what),
    }
}

/// The overview page's body.
pub fn overview(o: &Overview, now: jiff::Timestamp) -> Markup {
    html! {
        section #configuration {
            h2 { "Configuration" }
            @match &o.revision {
                Some(r) => p { "This replica serves revision " code { (r) } "." },
                None => p.error { "No configuration loaded yet: the gateway answers 503 not_ready." },
            }
            (section(&o.replicas, |replicas| html! {
                table { thead { tr { th { "Replica" } th { "Revision" } th { "Reported" } } }
                    tbody { @for r in replicas {
                        tr class=[(Some(&r.revision) != o.revision.as_ref()).then_some("stale")] {
                            td { (r.name) @if r.this { " (this one)" } }
                            td { code { (r.revision) } }
                            td { @match r.renewed { Some(t) => (when(t)), None => "—" } }
                        }
                    } }
                }
            }))
        }
        section #kill-switches {
            h2 { "Kill switches" }
            table { thead { tr { th { "Policy" } th { "Generation" } th { "Policy switch" } th { "Agents" } } }
                tbody { @for s in &o.switches {
                    tr {
                        td { (s.namespace) "/" (s.name) } td { (s.generation) }
                        td { @if s.suspended { span.badge.bad { "SUSPENDED" } } @else { span.badge.ok { "serving" } } }
                        td { @for a in &s.agents {
                            span class={ "agent " @if a.suspended || a.quarantine.is_some() { "suspended" } } {
                                (a.name) @if a.suspended { " (suspended)" } @if a.quarantine.is_some() { " (quarantined)" }
                            } " "
                        } }
                    }
                } }
            }
            @for s in &o.switches { @for a in &s.agents { @if let Some(why) = &a.quarantine {
                div.quarantine data-agent=(a.name) {
                    p { span.badge.bad { "QUARANTINED" } " " (s.namespace) "/" (a.name) ": " (why) }
                    @match &o.lifting {
                        Lifting::Button(csrf) => form.decide method="post" action={ "/console/quarantines/" (s.namespace) "/" (a.name) "/lift" } {
                            input type="hidden" name="csrf" value=(csrf);
                            button type="submit" class="approve" { "Lift the quarantine" }
                        },
                        Lifting::OperatorsOnly => p.muted { "An operator lifts it (on this page, or POST /v1/security/quarantines/" (s.namespace) "/" (a.name) "/lift)." },
                        Lifting::Kubectl => pre.command { (crate::api::quarantines::kubectl_lift(&s.namespace, &s.name, &a.name)) },
                    }
                }
            } } }
        }
        section #pending {
            h2 { a href="/console/approvals" { "Pending approvals" } }
            (section(&o.pending, |pending| html! {
                p { (pending.len()) " pending"
                    @if let Some(first) = pending.iter().min_by_key(|a| a.expires_at) {
                        "; the first expires in " (until(now, first.expires_at)) " (" (first.namespace) "/" (first.name) ")"
                    }
                    "." }
            }))
        }
        section #alerts {
            h2 { a href="/console/alerts" { "Security alerts (24 h)" } }
            (section(&o.alerts, |alerts| alerts_table(alerts)))
        }
        section #usage {
            h2 { "Tokens and requests per agent (24 h)" }
            (section(&o.usage, |usage| html! {
                table { thead { tr { th { "Agent" } th.n { "Requests" } th.n { "Input tokens" } th.n { "Output tokens" } } }
                    tbody { @for u in usage {
                        tr { td { (u.agent) } td.n { (u.requests) } td.n { (u.input_tokens) } td.n { (u.output_tokens) } }
                    } }
                }
            }))
        }
        section #denials {
            h2 { "Denials by reason (24 h)" }
            (section(&o.denials, |denials| html! {
                @if denials.is_empty() { p.empty { "No denials." } }
                table { tbody { @for (reason, n) in denials {
                    tr { td { a href={ "/console/decisions?" (query(&[("decision", "Deny"), ("reason", reason)])) } { (reason) } } td.n { (n) } }
                } } }
            }))
        }
    }
}

/// The security alerts, newest first.
pub fn alerts_table(alerts: &[crate::api::audit_query::AlertView]) -> Markup {
    html! {
        @if alerts.is_empty() { p.empty #no-alerts { "No security alerts." } }
        @else {
            table.alerts { thead { tr { th { "Time" } th { "Kind" } th { "Agent" } th { "Tool" } th { "What it saw" } th { "Request" } } }
                tbody { @for a in alerts {
                    tr {
                        td { (when(a.time)) } td { span.badge.bad { (a.kind) } }
                        td { (a.namespace) "/" (a.agent) } td { (a.tool.as_deref().unwrap_or("—")) }
                        td { (a.detail.as_deref().unwrap_or("")) }
                        td { a href={ "/console/decisions?" (query(&[("requestId", &a.request_id)])) } { (a.request_id) } }
                    }
                } }
            }
        }
    }
}
