//! The audit pipeline's Prometheus metrics (prefix `palisade_audit_`).

use prometheus::{Histogram, HistogramOpts, IntCounter, IntGauge, Registry};

#[derive(Debug, Clone)]
pub struct AuditMetrics {
    /// Events accepted but not yet durable.
    pub queue_depth: IntGauge,
    /// Events written to the database directly.
    pub written: IntCounter,
    /// Events written to the local spool because the database was unreachable.
    pub spooled: IntCounter,
    /// Spooled events later written to the database.
    pub drained: IntCounter,
    /// Events that could not be made durable anywhere (spool full or broken).
    pub failed: IntCounter,
    /// Events refused at `record` (queue full, fail-closed, spool full).
    pub refused: IntCounter,
    /// Events dropped on purpose: the writer was started with `discard`.
    pub discarded: IntCounter,
    /// Times work waited for room in the queue (the writer was behind).
    pub backpressure: IntCounter,
    /// Requests waiting for room in the queue now.
    pub backpressure_waiting: IntGauge,
    /// Events whose request was answered before they were durable
    /// (chat routing events in the `buffered` setting).
    pub buffered: IntCounter,
    /// Bytes in the spool.
    pub spool_bytes: IntGauge,
    /// 1 while the database is unreachable.
    pub database_down: IntGauge,
    /// Time to make one batch durable (database or spool).
    pub batch_seconds: Histogram,
}

impl AuditMetrics {
    /// Metrics registered in `registry`.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let m = Self::unregistered()?;
        registry.register(Box::new(m.queue_depth.clone()))?;
        registry.register(Box::new(m.written.clone()))?;
        registry.register(Box::new(m.spooled.clone()))?;
        registry.register(Box::new(m.drained.clone()))?;
        registry.register(Box::new(m.failed.clone()))?;
        registry.register(Box::new(m.refused.clone()))?;
        registry.register(Box::new(m.discarded.clone()))?;
        registry.register(Box::new(m.backpressure.clone()))?;
        registry.register(Box::new(m.backpressure_waiting.clone()))?;
        registry.register(Box::new(m.buffered.clone()))?;
        registry.register(Box::new(m.spool_bytes.clone()))?;
        registry.register(Box::new(m.database_down.clone()))?;
        registry.register(Box::new(m.batch_seconds.clone()))?;
        Ok(m)
    }

    /// Metrics not exported anywhere (tools, tests).
    pub fn unregistered() -> Result<Self, prometheus::Error> {
        Ok(Self {
            queue_depth: IntGauge::new(
                "palisade_audit_queue_depth",
                "Audit events accepted but not yet durable",
            )?,
            written: IntCounter::new(
                "palisade_audit_written_total",
                "Audit events written to the database",
            )?,
            spooled: IntCounter::new(
                "palisade_audit_spooled_total",
                "Audit events written to the local spool while the database was unreachable",
            )?,
            drained: IntCounter::new(
                "palisade_audit_drained_total",
                "Spooled audit events later written to the database",
            )?,
            failed: IntCounter::new(
                "palisade_audit_failed_total",
                "Audit events that could not be made durable",
            )?,
            refused: IntCounter::new(
                "palisade_audit_refused_total",
                "Audit events refused when offered (queue full, fail-closed, spool full)",
            )?,
            discarded: IntCounter::new(
                "palisade_audit_discarded_total",
                "Audit events dropped on purpose because auditing is off (palisade-gateway run --no-audit)",
            )?,
            backpressure: IntCounter::new(
                "palisade_audit_backpressure_total",
                "Requests that waited for room in the audit queue because the writer was behind",
            )?,
            backpressure_waiting: IntGauge::new(
                "palisade_audit_backpressure_waiting",
                "Requests waiting now for room in the audit queue",
            )?,
            buffered: IntCounter::new(
                "palisade_audit_buffered_total",
                "Audit events whose request was answered before they were durable (chat events with --audit-chat-events buffered)",
            )?,
            spool_bytes: IntGauge::new("palisade_audit_spool_bytes", "Bytes in the audit spool")?,
            database_down: IntGauge::new(
                "palisade_audit_database_down",
                "1 while the audit database is unreachable",
            )?,
            batch_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "palisade_audit_batch_seconds",
                    "Time to make one batch of audit events durable",
                )
                .buckets(vec![
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                ]),
            )?,
        })
    }
}
