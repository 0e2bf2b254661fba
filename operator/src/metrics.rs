//! The operator's Prometheus metrics (prefix `palisade_operator_`) and its
//! small HTTP server: `/healthz`, `/readyz`, `/metrics`.

use axum::Router;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus::{
    Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

#[derive(Debug)]
pub struct OperatorMetrics {
    pub registry: Registry,
    pub reconciles: IntCounter,
    pub errors: IntCounterVec,
    pub duration: Histogram,
    pub bundle_bytes: IntGauge,
    pub policies: IntGaugeVec,
    pub grants: IntGaugeVec,
    pub leader: IntGauge,
    pub approvals: IntGaugeVec,
    pub approval_outcomes: IntCounterVec,
    pub approval_notifications: IntCounterVec,
    pub approvals_expiring: IntGaugeVec,
    /// Set once the first reconcile succeeded (or while standing by).
    pub ready: AtomicBool,
}

impl OperatorMetrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let reconciles = IntCounter::new(
            "palisade_operator_reconcile_total",
            "Compile-and-apply passes",
        )?;
        let errors = IntCounterVec::new(
            Opts::new(
                "palisade_operator_reconcile_errors_total",
                "Failed passes by kind",
            ),
            &["kind"],
        )?;
        let duration = Histogram::with_opts(
            HistogramOpts::new(
                "palisade_operator_reconcile_duration_seconds",
                "Time of one compile-and-apply pass",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ]),
        )?;
        let bundle_bytes = IntGauge::new(
            "palisade_operator_bundle_bytes",
            "Compressed size of the compiled configuration",
        )?;
        let policies = IntGaugeVec::new(
            Opts::new("palisade_operator_policies", "AIPolicies by state"),
            &["state"],
        )?;
        let grants = IntGaugeVec::new(
            Opts::new("palisade_operator_grants", "ToolGrants by state"),
            &["state"],
        )?;
        let leader = IntGauge::new("palisade_operator_leader", "1 while this replica leads")?;
        let approvals = IntGaugeVec::new(
            Opts::new("palisade_operator_approvals", "Approvals by phase"),
            &["phase"],
        )?;
        let approval_outcomes = IntCounterVec::new(
            Opts::new(
                "palisade_operator_approval_outcomes_total",
                "Approval outcomes recorded: approved, denied, expired, consumed, collected",
            ),
            &["outcome"],
        )?;
        let approval_notifications = IntCounterVec::new(
            Opts::new(
                "palisade_operator_approval_notifications_total",
                "Approval notifications (spec.approvals.notify) by result: sent, failed",
            ),
            &["result"],
        )?;
        let approvals_expiring = IntGaugeVec::new(
            Opts::new(
                "palisade_operator_approvals_expiring",
                "Pending approvals whose deadline is less than 5 minutes away, by namespace",
            ),
            &["namespace"],
        )?;
        for c in [
            Box::new(reconciles.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(errors.clone()),
            Box::new(duration.clone()),
            Box::new(bundle_bytes.clone()),
            Box::new(policies.clone()),
            Box::new(grants.clone()),
            Box::new(leader.clone()),
            Box::new(approvals.clone()),
            Box::new(approval_outcomes.clone()),
            Box::new(approval_notifications.clone()),
            Box::new(approvals_expiring.clone()),
        ] {
            registry.register(c)?;
        }
        Ok(Self {
            registry,
            reconciles,
            errors,
            duration,
            bundle_bytes,
            approvals,
            approval_outcomes,
            approval_notifications,
            approvals_expiring,
            policies,
            grants,
            leader,
            ready: AtomicBool::new(false),
        })
    }

    pub fn render(&self) -> String {
        prometheus::TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            .unwrap_or_default()
    }
}

/// `/healthz`, `/readyz`, `/metrics`.
pub fn router(metrics: Arc<OperatorMetrics>) -> Router {
    let ready = Arc::clone(&metrics);
    let render = Arc::clone(&metrics);
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(move || {
                let ready = Arc::clone(&ready);
                async move {
                    if ready.ready.load(Ordering::Acquire) {
                        (StatusCode::OK, "ready").into_response()
                    } else {
                        (
                            StatusCode::SERVICE_UNAVAILABLE,
                            "not ready: the first reconcile has not finished",
                        )
                            .into_response()
                    }
                }
            }),
        )
        .route(
            "/metrics",
            get(move || {
                let render = Arc::clone(&render);
                async move { render.render() }
            }),
        )
}
