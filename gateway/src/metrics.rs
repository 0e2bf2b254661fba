//! The gateway's Prometheus metrics (prefix `palisade_`). Labels carry
//! decisions, reason codes, the rules that made them (bounded by policy)
//! and matched routes, never tool names callers chose, prompt text or raw
//! paths.

use palisade_audit::AuditMetrics;
use prometheus::{
    HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

#[derive(Debug, Clone)]
pub struct GatewayMetrics {
    pub registry: Registry,
    pub decisions: IntCounterVec,
    pub kill_switch_hits: IntCounterVec,
    pub requests: HistogramVec,
    pub config_revision: IntGaugeVec,
    pub config_loaded_seconds: IntGauge,
    pub config_reload_errors: IntCounter,
    pub approvals: IntCounterVec,
    /// Tokens providers reported, by namespace, agent (declared agents
    /// only: callers are authenticated), provider, model (routed, so
    /// allowed by policy) and type (input, output, cached).
    pub tokens: IntCounterVec,
    /// Request-body bytes held or reserved now (set when scraped).
    pub body_bytes_in_flight: IntGauge,
    pub audit: AuditMetrics,
}

impl GatewayMetrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let decisions = IntCounterVec::new(
            Opts::new(
                "palisade_decisions_total",
                "Decisions by namespace, agent (declared agents only), kind, outcome, reason code and the rule (or grant) that made them",
            ),
            &["namespace", "agent", "kind", "decision", "reason", "rule"],
        )?;
        let kill_switch_hits = IntCounterVec::new(
            Opts::new(
                "palisade_kill_switch_hits_total",
                "Requests stopped by a kill switch",
            ),
            &["namespace", "scope"],
        )?;
        let requests = HistogramVec::new(
            HistogramOpts::new(
                "palisade_request_duration_seconds",
                "Request latency by matched route and status",
            )
            .buckets(vec![
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
                5.0,
            ]),
            &["route", "status"],
        )?;
        let config_revision = IntGaugeVec::new(
            Opts::new(
                "palisade_config_revision_info",
                "1 for the configuration revision being served",
            ),
            &["revision"],
        )?;
        let config_loaded_seconds = IntGauge::new(
            "palisade_config_loaded_timestamp_seconds",
            "When the served configuration was loaded (Unix seconds); age = now - this",
        )?;
        let config_reload_errors = IntCounter::new(
            "palisade_config_reload_errors_total",
            "Configuration changes rejected (the previous configuration kept serving)",
        )?;
        let approvals = IntCounterVec::new(
            Opts::new(
                "palisade_approvals_total",
                "Approval outcomes seen by this gateway: requested, approved, denied, expired, consumed, replay_refused, mismatch, not_found",
            ),
            &["outcome"],
        )?;
        let tokens = IntCounterVec::new(
            Opts::new(
                "palisade_tokens_total",
                "Tokens providers reported for routed requests, by namespace, agent, provider, model and type (input, output, cached: of the input, read from the provider's cache)",
            ),
            &["namespace", "agent", "provider", "model", "type"],
        )?;
        registry.register(Box::new(tokens.clone()))?;
        let body_bytes_in_flight = IntGauge::new(
            "palisade_request_body_bytes_in_flight",
            "Request-body bytes held or reserved now, against --max-in-flight-body-bytes (past it: 503 gateway.overloaded)",
        )?;
        registry.register(Box::new(body_bytes_in_flight.clone()))?;
        registry.register(Box::new(approvals.clone()))?;
        registry.register(Box::new(decisions.clone()))?;
        registry.register(Box::new(kill_switch_hits.clone()))?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(config_revision.clone()))?;
        registry.register(Box::new(config_loaded_seconds.clone()))?;
        registry.register(Box::new(config_reload_errors.clone()))?;
        let audit = AuditMetrics::register(&registry)?;
        Ok(Self {
            registry,
            decisions,
            kill_switch_hits,
            requests,
            config_revision,
            config_loaded_seconds,
            config_reload_errors,
            approvals,
            tokens,
            body_bytes_in_flight,
            audit,
        })
    }

    /// Records that `revision` is now served.
    pub fn served(&self, revision: &str, loaded_at: jiff::Timestamp) {
        self.config_revision.reset();
        self.config_revision.with_label_values(&[revision]).set(1);
        self.config_loaded_seconds.set(loaded_at.as_second());
    }

    pub fn render(&self) -> String {
        prometheus::TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            .unwrap_or_default()
    }
}
