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
    /// OpenTelemetry GenAI semantic conventions, in Prometheus' naming
    /// of OTel metrics ([`GenAi`]).
    pub gen_ai: GenAi,
    /// Request-body bytes held or reserved now (set when scraped).
    pub body_bytes_in_flight: IntGauge,
    pub audit: AuditMetrics,
    /// Tools Palisade ran, by namespace, tool and reason code.
    pub tool_runs: IntCounterVec,
    /// Replacements made in tool results before a model or client saw
    /// them, by kind (`api_key`, `private_key`, `blob`, `truncated`, ...).
    pub tool_result_redactions: IntCounterVec,
    /// Security alerts raised, by kind; and those held back by their
    /// cooldown.
    pub security_alerts: IntCounterVec,
    pub security_alerts_held_back: IntCounterVec,
    /// `palisade_quarantines_total{result}`: applied, failed, lifted.
    pub quarantines: IntCounterVec,
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
        let tool_runs = IntCounterVec::new(
            Opts::new(
                "palisade_tool_runs_total",
                "Tools Palisade ran itself (spec.tools.run), by namespace, tool and reason code (tool.executed, tool.execution_failed, tool.path_refused, ...)",
            ),
            &["namespace", "tool", "reason"],
        )?;
        registry.register(Box::new(tool_runs.clone()))?;
        let tool_result_redactions = IntCounterVec::new(
            Opts::new(
                "palisade_tool_result_redactions_total",
                "Replacements made in tool results before a model or client saw them, by kind (api_key, authorization, private_key, connection_password, secret_assignment, blob, binary, truncated)",
            ),
            &["kind"],
        )?;
        registry.register(Box::new(tool_result_redactions.clone()))?;
        let security_alerts = IntCounterVec::new(
            Opts::new(
                "palisade_security_alerts_total",
                "Security alerts raised, by kind (path_traversal, sql_injection, denial_burst, repeated_held_call, new_tool, token_jump)",
            ),
            &["kind"],
        )?;
        registry.register(Box::new(security_alerts.clone()))?;
        let security_alerts_held_back = IntCounterVec::new(
            Opts::new(
                "palisade_security_alerts_held_back_total",
                "Security alerts not raised again within their cooldown (spec.security.alerts.cooldown), by kind",
            ),
            &["kind"],
        )?;
        registry.register(Box::new(security_alerts_held_back.clone()))?;
        let quarantines = IntCounterVec::new(
            Opts::new(
                "palisade_quarantines_total",
                "Agents quarantined by a security alert (spec.security.quarantineOn), by result: applied, failed (the agent is NOT quarantined; see the log), lifted (standalone)",
            ),
            &["result"],
        )?;
        registry.register(Box::new(quarantines.clone()))?;
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
        let gen_ai = GenAi::register(&registry)?;
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
            gen_ai,
            body_bytes_in_flight,
            audit,
            tool_runs,
            tool_result_redactions,
            security_alerts,
            security_alerts_held_back,
            quarantines,
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

/// The OpenTelemetry GenAI semantic conventions' client and server
/// metrics, as an OTel-to-Prometheus bridge names them (dots as
/// underscores, the unit as a suffix), with their attributes as labels:
/// `gen_ai_operation_name` (`chat`, `embeddings`), `gen_ai_provider_name`
/// (the policy's provider), `gen_ai_request_model` (the routed model).
#[derive(Debug, Clone)]
pub struct GenAi {
    /// `gen_ai.client.token.usage` (`{token}`), by `gen_ai_token_type`
    /// (`input`, `output`).
    pub token_usage: HistogramVec,
    /// `gen_ai.server.request.duration` (s): from the request's routing
    /// to the provider's answer (a stream's first bytes), `error_type` set
    /// when it failed.
    pub request_duration: HistogramVec,
    /// `gen_ai.server.time_to_first_token` (s), streams only.
    pub time_to_first_token: HistogramVec,
}

const GEN_AI: [&str; 3] = [
    "gen_ai_operation_name",
    "gen_ai_provider_name",
    "gen_ai_request_model",
];

impl GenAi {
    fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        // The conventions' advised bucket boundaries.
        let tokens = vec![
            1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0,
            4194304.0, 16777216.0, 67108864.0,
        ];
        let seconds = vec![
            0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
        ];
        let token_usage = HistogramVec::new(
            HistogramOpts::new(
                "gen_ai_client_token_usage",
                "gen_ai.client.token.usage: tokens used per request, by operation, provider, model and token type",
            )
            .buckets(tokens),
            &[GEN_AI[0], GEN_AI[1], GEN_AI[2], "gen_ai_token_type"],
        )?;
        let request_duration = HistogramVec::new(
            HistogramOpts::new(
                "gen_ai_server_request_duration_seconds",
                "gen_ai.server.request.duration: from routing to the provider's answer, by operation, provider, model and error type",
            )
            .buckets(seconds.clone()),
            &[GEN_AI[0], GEN_AI[1], GEN_AI[2], "error_type"],
        )?;
        let time_to_first_token = HistogramVec::new(
            HistogramOpts::new(
                "gen_ai_server_time_to_first_token_seconds",
                "gen_ai.server.time_to_first_token: from routing to a stream's first token, by operation, provider and model",
            )
            .buckets(seconds),
            &GEN_AI,
        )?;
        registry.register(Box::new(token_usage.clone()))?;
        registry.register(Box::new(request_duration.clone()))?;
        registry.register(Box::new(time_to_first_token.clone()))?;
        Ok(Self {
            token_usage,
            request_duration,
            time_to_first_token,
        })
    }

    /// The conventions' `gen_ai.operation.name` for an audit event kind.
    pub fn operation(kind: &str) -> &'static str {
        if kind == "embedding" {
            "embeddings"
        } else {
            "chat"
        }
    }
}
