//! What every request handler shares ([`AppState`]) and the one way to
//! build it ([`AppStateBuilder`]), used by `palisade-gateway run` and by the
//! tests alike.

use crate::approvals::Approvals;
use crate::auth::{AuthState, Authenticator};
use crate::budgets::{Budgets, Clock};
use crate::credentials::Tokens;
use crate::decisions::ChatEvents;
use crate::http_client::HttpClient;
use crate::kubernetes::TokenReviewer;
use crate::limits::{BodyBudget, BodyLimits};
use crate::metrics::GatewayMetrics;
use crate::snapshot::Current;
use palisade_audit::{AuditWriter, Store};
use palisade_policy::Egress;
use std::sync::Arc;
use std::time::Duration;

/// Default for how long a client may take to send its request body.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// What every handler shares; cloning it (axum does, per request and
/// layer) copies one pointer.
#[derive(Clone, Debug)]
pub struct AppState(Arc<StateParts>);

impl std::ops::Deref for AppState {
    type Target = StateParts;
    fn deref(&self) -> &StateParts {
        &self.0
    }
}

/// The parts of an [`AppState`].
#[derive(Debug)]
pub struct StateParts {
    /// The configuration being served (empty until one loads).
    pub config: Current,
    pub audit: AuditWriter,
    pub metrics: Arc<GatewayMetrics>,
    /// One pooled client for every provider (per-request timeouts).
    pub http: HttpClient,
    /// Who is calling.
    pub auth: Authenticator,
    /// Where held calls are recorded.
    pub approvals: Approvals,
    /// How long a client may take to send its request body.
    pub body_timeout: Duration,
    /// The bytes of request bodies held at once, all requests together.
    pub body_budget: BodyBudget,
    /// `GET /v1/audit/events`, when an auditor token is configured.
    pub audit_reader: Option<AuditReader>,
    /// Which provider URLs may be connected to, and whether credentials
    /// may go over plain `http://`: checked before every provider call.
    pub egress: Egress,
    /// Whether a chat request waits for its routing event to be durable.
    pub chat_events: ChatEvents,
    /// What each agent and policy has used of its `spec.limits`.
    pub budgets: Budgets,
    /// Each agent's recent history, for the security alerts.
    pub security: crate::security::SecurityWatch,
    /// Where security alerts are announced as Events on their policy (in
    /// a cluster).
    pub events: Option<crate::security::report::EventSink>,
    /// The console (`/console`), when configured.
    pub console: Option<crate::console::Console>,
    /// Where quarantines are written (`spec.security.quarantineOn`).
    pub quarantines: Option<crate::security::quarantine::Quarantines>,
}

/// The audit database, readable over HTTP with the auditor's token.
#[derive(Debug)]
pub struct AuditReader {
    pub store: Store,
    pub token: Tokens<()>,
}

impl AuthState for AppState {
    fn config(&self) -> &Current {
        &self.config
    }

    fn authenticator(&self) -> &Authenticator {
        &self.auth
    }
}

impl BodyLimits for AppState {
    fn body_timeout(&self) -> Duration {
        self.body_timeout
    }

    fn body_budget(&self) -> &BodyBudget {
        &self.body_budget
    }
}

impl AppState {
    /// A state serving `config`, auditing to `audit`, holding calls in
    /// `approvals`; the rest is set on the builder.
    pub fn builder(
        config: Current,
        audit: AuditWriter,
        metrics: Arc<GatewayMetrics>,
        approvals: Approvals,
    ) -> AppStateBuilder {
        AppStateBuilder {
            config,
            audit,
            metrics,
            approvals,
            service_accounts: None,
            operators: Tokens::default(),
            body_timeout: BODY_TIMEOUT,
            body_budget: BodyBudget::default(),
            audit_reader: None,
            egress: Egress::default(),
            chat_events: ChatEvents::default(),
            budgets: Budgets::default(),
            events: None,
            console: None,
            quarantines: None,
        }
    }
}

/// Builds an [`AppState`].
#[derive(Debug)]
pub struct AppStateBuilder {
    config: Current,
    audit: AuditWriter,
    metrics: Arc<GatewayMetrics>,
    approvals: Approvals,
    service_accounts: Option<TokenReviewer>,
    operators: Tokens<String>,
    body_timeout: Duration,
    body_budget: BodyBudget,
    audit_reader: Option<AuditReader>,
    egress: Egress,
    chat_events: ChatEvents,
    budgets: Budgets,
    events: Option<crate::security::report::EventSink>,
    console: Option<crate::console::Console>,
    quarantines: Option<crate::security::quarantine::Quarantines>,
}

impl AppStateBuilder {
    /// Announces security alerts as Events on their policy.
    pub fn events(mut self, recorder: kube::runtime::events::Recorder) -> Self {
        self.events = Some(crate::security::report::EventSink(recorder));
        self
    }

    /// Quarantines agents where `quarantines` says (a cluster's AIPolicy
    /// annotations, or the standalone table).
    pub fn quarantines(mut self, quarantines: crate::security::quarantine::Quarantines) -> Self {
        self.quarantines = Some(quarantines);
        self
    }

    /// Serves the console (`/console`); it needs the auditor token
    /// ([`Self::audit_reader`]).
    pub fn console(mut self, console: crate::console::Console) -> Self {
        self.console = Some(console);
        self
    }

    /// Counts `spec.limits` with this clock (default: the system's).
    pub fn clock(mut self, clock: Clock) -> Self {
        self.budgets = Budgets::with_clock(clock);
        self
    }

    /// Shares `spec.limits` with the other replicas through `store`, when
    /// it is PostgreSQL (set after [`Self::clock`]).
    pub fn shared_budgets(mut self, store: Store) -> Self {
        self.budgets = self.budgets.shared(store);
        self
    }

    /// Whether chat requests wait for their routing event to be durable
    /// (default: they do).
    pub fn chat_events(mut self, chat_events: ChatEvents) -> Self {
        self.chat_events = chat_events;
        self
    }

    /// The provider URLs the gateway may connect to (default: the chart's
    /// allow-list, no credentials over plain `http://`).
    pub fn egress(mut self, egress: Egress) -> Self {
        self.egress = egress;
        self
    }

    /// Accepts agents' ServiceAccount tokens (in a cluster).
    pub fn service_accounts(mut self, reviewer: TokenReviewer) -> Self {
        self.service_accounts = Some(reviewer);
        self
    }

    /// Standalone: the people (name, token) who may list and decide
    /// approvals over HTTP.
    pub fn operators(mut self, named_tokens: Vec<(String, String)>) -> Self {
        self.operators = Tokens::of_secrets(named_tokens);
        self
    }

    /// How long a client may take to send its request body.
    pub fn body_timeout(mut self, timeout: Duration) -> Self {
        self.body_timeout = timeout;
        self
    }

    /// The bytes of request bodies held at once (default
    /// [`crate::limits::BODY_BUDGET`]).
    pub fn body_budget(mut self, bytes: usize) -> Self {
        self.body_budget = BodyBudget::new(bytes);
        self
    }

    /// Serves `GET /v1/audit/events` from `store` to `token`'s holder.
    pub fn audit_reader(mut self, store: Store, token: String) -> Self {
        self.audit_reader = Some(AuditReader {
            store,
            token: Tokens::of_secrets([((), token)]),
        });
        self
    }

    pub fn build(self) -> AppState {
        AppState(Arc::new(StateParts {
            config: self.config,
            audit: self.audit,
            metrics: self.metrics,
            http: HttpClient::new(),
            auth: Authenticator::new(self.service_accounts, self.operators),
            approvals: self.approvals,
            body_timeout: self.body_timeout,
            body_budget: self.body_budget,
            audit_reader: self.audit_reader,
            egress: self.egress,
            chat_events: self.chat_events,
            budgets: self.budgets,
            security: Default::default(),
            events: self.events,
            console: self.console,
            quarantines: self.quarantines,
        }))
    }
}
