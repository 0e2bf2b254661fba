//! The gateway as an axum router: every route, the probes and metrics,
//! and the middleware every request passes (latency by matched route).
//! Bodies are read by the handlers, after authentication
//! ([`crate::limits::UnreadBody`]).

use crate::api;
use crate::error::GatewayError;
use crate::limits::BODY_LIMIT;
use crate::state::AppState;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{Method, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use std::time::Instant;

/// Where `/metrics` is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricsRoute {
    /// On the gateway's own port, beside the API (standalone default).
    Here,
    /// Only on a port of its own (`--metrics-listen`, [`metrics_app`]):
    /// agents that can reach the API cannot read every tenant's counters.
    Elsewhere,
}

/// The gateway, `/metrics` included.
pub fn app(state: AppState) -> Router {
    routes(state, MetricsRoute::Here)
}

/// The metrics port: `/metrics` and `/healthz`, nothing an agent calls.
pub fn metrics_app(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/metrics", get(metrics))
        .with_state(state)
}

/// The gateway, with `/metrics` where `metrics_route` says.
pub fn routes(state: AppState, metrics_route: MetricsRoute) -> Router {
    let mut router = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz));
    if metrics_route == MetricsRoute::Here {
        router = router.route("/metrics", get(metrics));
    }
    router = router
        .route("/v1/tool-calls", post(api::tool_calls::handle))
        .route("/v1/chat/completions", post(api::chat::handle))
        .route("/v1/embeddings", post(api::embeddings::handle))
        .route(
            "/v1/messages",
            post(api::ingress::handle::<api::messages::Messages>),
        )
        .route(
            "/v1/responses",
            post(api::ingress::handle::<api::responses::Responses>),
        )
        .route("/v1/models", get(api::models::list))
        .route(
            "/mcp/{server}",
            post(api::mcp::post)
                .get(api::mcp::get)
                .delete(api::mcp::delete),
        )
        .route("/v1/approvals", get(api::approvals::list))
        .route("/v1/approvals/{name}", get(api::approvals::get))
        .route("/v1/approvals/{name}/{verb}", post(api::approvals::decide))
        .route(
            "/v1/security/quarantines/{namespace}/{agent}/lift",
            post(api::quarantines::lift),
        )
        .route("/openapi.json", get(api::openapi::serve_document))
        .route("/docs", get(api::openapi::serve_docs));
    if state.audit_reader.is_some() {
        router = router
            .route("/v1/audit/events", get(api::audit_query::events))
            .route("/v1/audit/usage", get(api::audit_query::usage))
            .route("/v1/security/alerts", get(api::audit_query::alerts));
        if state.console.is_some() {
            router = router.merge(crate::console::routes());
        }
    }
    router
        .fallback(unknown_route)
        .method_not_allowed_fallback(wrong_method)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

/// Request latency by matched route (never the raw path).
async fn observe(State(state): State<AppState>, request: Request, next: Next) -> Response {
    // A shared string: cloning it copies nothing.
    let route = request.extensions().get::<MatchedPath>().cloned();
    let route = route.as_ref().map_or("unmatched", MatchedPath::as_str);
    let started = Instant::now();
    let response = next.run(request).await;
    state
        .metrics
        .requests
        .with_label_values(&[route, response.status().as_str()])
        .observe(started.elapsed().as_secs_f64());
    response
}

/// `404 not_found` in OpenAI's error shape, as any client expects.
async fn unknown_route(method: Method, uri: Uri) -> GatewayError {
    GatewayError::UnknownRoute {
        method: method.to_string(),
        path: uri.path().to_owned(),
    }
}

/// `405 method_not_allowed` in OpenAI's error shape.
async fn wrong_method(method: Method, uri: Uri) -> GatewayError {
    GatewayError::MethodNotAllowed {
        method: method.to_string(),
        path: uri.path().to_owned(),
    }
}

async fn readyz(State(state): State<AppState>) -> Result<Response, GatewayError> {
    let s = state.config.load_full().ok_or(GatewayError::NotReady)?;
    let ready =
        json!({"ready": true, "revision": s.revision(), "loadedAt": s.loaded_at.to_string()});
    Ok(Json(ready).into_response())
}

async fn metrics(State(state): State<AppState>) -> Response {
    let in_use = state.body_budget.in_use();
    state
        .metrics
        .body_bytes_in_flight
        .set(i64::try_from(in_use).unwrap_or(i64::MAX));
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}
