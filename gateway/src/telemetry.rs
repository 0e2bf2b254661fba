//! Logs, and traces over OTLP. Traces are off unless `--otlp-endpoint`
//! (env `OTEL_EXPORTER_OTLP_ENDPOINT`, chart `otlp.endpoint`) names a
//! collector's OTLP/HTTP endpoint: then every routed request (chat,
//! Messages, Responses, embeddings) is one span, `chat MODEL` or
//! `embeddings MODEL` (and every tool-call decision one, `execute_tool
//! TOOL`), with the GenAI conventions' attributes
//! (`gen_ai.operation.name`, `gen_ai.request.model`,
//! `gen_ai.provider.name`) and the decision's (`palisade.decision`,
//! `palisade.reason_code`, `palisade.rule`, namespace, agent, request id),
//! never prompt text. An agent's W3C `traceparent` makes the span its
//! child, and providers get the span's `traceparent` (without traces on,
//! the agent's is passed on as it came).

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use palisade_crds::logging::{self, LogFormat};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Whether spans are exported (without, none is even made: a span costs
/// the request path an allocation or two).
static TRACING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The span of one routed request of `operation` (`chat`,
/// `embeddings`) asking for `model`, the child of the agent's
/// `traceparent`; a disabled span when traces are off.
pub fn request_span(
    operation: &str,
    model: &str,
    who: &crate::credentials::Identity,
    request_id: &str,
    traceparent: Option<&str>,
) -> tracing::Span {
    if !TRACING.load(std::sync::atomic::Ordering::Relaxed) {
        return tracing::Span::none();
    }
    let span = tracing::info_span!(
        "gen_ai.request",
        otel.name = %format!("{operation} {model}"),
        otel.kind = "client",
        gen_ai.operation.name = operation,
        gen_ai.request.model = model,
        gen_ai.provider.name = tracing::field::Empty,
        palisade.namespace = %who.namespace,
        palisade.agent = %who.agent,
        palisade.request_id = request_id,
        palisade.decision = tracing::field::Empty,
        palisade.reason_code = tracing::field::Empty,
        palisade.rule = tracing::field::Empty,
    );
    adopt(&span, traceparent);
    span
}

/// The span of one `POST /v1/tool-calls` decision on `tool` (the
/// conventions' `execute_tool` operation), the child of the agent's
/// `traceparent`; a disabled span when traces are off.
pub fn tool_span(
    tool: &str,
    who: &crate::credentials::Identity,
    request_id: &str,
    traceparent: Option<&str>,
) -> tracing::Span {
    if !TRACING.load(std::sync::atomic::Ordering::Relaxed) {
        return tracing::Span::none();
    }
    let tool = crate::decisions::bounded_tool_name(tool);
    let span = tracing::info_span!(
        "gen_ai.tool_call",
        otel.name = %format!("execute_tool {tool}"),
        otel.kind = "server",
        gen_ai.operation.name = "execute_tool",
        gen_ai.tool.name = %tool,
        palisade.namespace = %who.namespace,
        palisade.agent = %who.agent,
        palisade.request_id = request_id,
        palisade.decision = tracing::field::Empty,
        palisade.reason_code = tracing::field::Empty,
        palisade.rule = tracing::field::Empty,
    );
    adopt(&span, traceparent);
    span
}

/// Makes `span` the child of the agent's `traceparent`, if it sent one.
fn adopt(span: &tracing::Span, traceparent: Option<&str>) {
    if traceparent.is_some() {
        let cx = TraceContextPropagator::new().extract(&Incoming(traceparent));
        let _ = span.set_parent(cx);
    }
}

/// Records the decision on the current request's span.
pub fn record_decision(decision: &str, reason_code: &str, rule: Option<&str>) {
    let span = tracing::Span::current();
    span.record("palisade.decision", decision);
    span.record("palisade.reason_code", reason_code);
    if let Some(rule) = rule {
        span.record("palisade.rule", rule);
    }
}

/// The exporter, flushed on shutdown.
#[derive(Debug, Default)]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

/// The traces URL of an OTLP/HTTP endpoint (`/v1/traces` added unless
/// given, as the OpenTelemetry environment variables specify).
fn traces_url(endpoint: &str) -> String {
    let endpoint = endpoint.trim_end_matches('/');
    if endpoint.ends_with("/v1/traces") {
        endpoint.to_owned()
    } else {
        format!("{endpoint}/v1/traces")
    }
}

/// Installs the logger and, with an endpoint, the trace exporter (inside
/// the runtime: the exporter runs on it).
pub fn init(format: LogFormat, otlp_endpoint: Option<&str>) -> Result<Telemetry, String> {
    let provider = match otlp_endpoint {
        None => None,
        Some(endpoint) if !endpoint.starts_with("http://") => {
            return Err(format!(
                "--otlp-endpoint {endpoint}: only OTLP/HTTP over http:// is supported (a collector in the cluster or a sidecar, e.g. http://otel-collector:4318)"
            ));
        }
        Some(endpoint) => {
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_protocol(Protocol::HttpJson)
                .with_endpoint(traces_url(endpoint))
                .build()
                .map_err(|e| format!("--otlp-endpoint {endpoint}: {e}"))?;
            let processor =
                opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor::builder(
                    exporter,
                    opentelemetry_sdk::runtime::Tokio,
                )
                .build();
            let resource = opentelemetry_sdk::Resource::builder()
                .with_service_name("palisade-gateway")
                .build();
            Some(
                SdkTracerProvider::builder()
                    .with_span_processor(processor)
                    .with_resource(resource)
                    .build(),
            )
        }
    };
    TRACING.store(provider.is_some(), std::sync::atomic::Ordering::Relaxed);
    let traces = provider
        .as_ref()
        .map(|p| tracing_opentelemetry::layer().with_tracer(p.tracer("palisade-gateway")));
    let _ = tracing_subscriber::registry()
        .with(logging::filter())
        .with(logging::layer(format))
        .with(traces)
        .try_init();
    Ok(Telemetry { provider })
}

impl Telemetry {
    /// Sends the spans still buffered.
    pub fn shutdown(self) {
        if let Some(p) = self.provider {
            let _ = p.shutdown();
        }
    }
}

/// One `traceparent` (and `tracestate`) as a propagator reads them.
struct Incoming<'a>(Option<&'a str>);

impl Extractor for Incoming<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        (key == "traceparent").then_some(self.0).flatten()
    }

    fn keys(&self) -> Vec<&str> {
        vec!["traceparent"]
    }
}

struct Outgoing(Option<String>);

impl Injector for Outgoing {
    fn set(&mut self, key: &str, value: String) {
        if key == "traceparent" {
            self.0 = Some(value);
        }
    }
}

tokio::task_local! {
    /// The agent's `traceparent`, passed on when traces are off.
    pub static AGENTS_TRACEPARENT: Option<String>;
}

/// The `traceparent` a provider call carries: the current span's, when
/// traces are on, else the agent's as it came.
pub fn traceparent() -> Option<String> {
    let mut out = Outgoing(None);
    let cx = tracing::Span::current().context();
    TraceContextPropagator::new().inject_context(&cx, &mut out);
    out.0
        .or_else(|| AGENTS_TRACEPARENT.try_with(Clone::clone).ok().flatten())
}
