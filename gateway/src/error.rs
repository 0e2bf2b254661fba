//! Errors as agents see them. [`GatewayError`] is every way a request can
//! end without the answer it asked for; each variant knows its HTTP status,
//! its stable code and whether trying again may help, and renders itself
//! in OpenAI's error JSON (`{"error": {message, type, param, code}}`) with
//! the code in `x-palisade-reason` and, where there is one, the decision's
//! rule, policy and request id in a `palisade` object. Internals (database
//! errors, provider bodies, URLs) are logged, never returned.
//!
//! A code is a policy [`ReasonCode`] (`tool.denied_by_rule`) or one of the
//! gateway's own [`ErrorCode`]s (`upstream.timeout`); both lists are
//! mirrored in `docs/reason-codes.md`, and tests keep them in step.

use crate::approvals::ApprovalError;
use crate::kubernetes::token_review::ReviewError;
use crate::providers::UpstreamError;
use axum::Json;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use palisade_policy::ReasonCode;
use serde::Serialize;
use serde_json::{Value, json};
use std::fmt;
use std::time::Duration;

/// The gateway's own codes: what went wrong when it is not a policy
/// decision. Stable, like reason codes: never renamed, only added.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// No, or an unknown, agent key or token.
    InvalidApiKey,
    /// The request is malformed (body, parameters, media type, size).
    InvalidRequest,
    /// No configuration loaded yet: the gateway serves nothing.
    NotReady,
    /// The decision could not be audited, so it was not given.
    AuditUnavailable,
    /// The provider did not answer within its timeout.
    UpstreamTimeout,
    /// The provider could not be reached.
    UpstreamUnreachable,
    /// The provider failed (5xx).
    UpstreamError,
    /// The provider refused the request (4xx): its status, its message
    /// bounded and sanitised.
    UpstreamRejected,
    /// The provider's URL is not on the platform's allow-list, or it would
    /// get credentials over plain `http://`: the gateway did not connect.
    UpstreamNotAllowed,
    /// The provider answered something its API does not promise.
    UpstreamInvalidResponse,
    /// The routed provider's protocol has no such API (Anthropic has no
    /// embeddings): the policy must route the request elsewhere.
    UpstreamUnsupported,
    /// The agent's namespace is outside the gateway's `--watch-namespaces`.
    ApprovalsNamespaceNotWatched,
    /// The approvals store cannot be reached.
    ApprovalsUnavailable,
    /// `429`: the namespace's ResourceQuota on Approvals is used up.
    ApprovalsQuotaExceeded,
    /// Deciding approvals over HTTP is off (in a cluster: `kubectl patch`).
    ApprovalsDecisionsOff,
    /// Listing and deciding approvals needs an operator token.
    ApprovalsOperatorOnly,
    /// The approval already has its (final) decision.
    ApprovalAlreadyDecided,
    /// The audit query: no, or a wrong, auditor token.
    AuditQueryUnauthorized,
    /// The audit query: a parameter it does not understand.
    AuditQueryInvalidParameter,
    /// The audit query: the audit database is unavailable.
    AuditQueryUnavailable,
    /// Too many unknown ServiceAccount tokens to review at once.
    AuthReviewRateLimited,
    /// The API server could not review a ServiceAccount token.
    AuthReviewUnavailable,
    /// The request bodies in flight use the whole body budget.
    GatewayOverloaded,
    /// No such route on the gateway.
    NotFound,
    /// The route exists but not with this method.
    MethodNotAllowed,
}

impl ErrorCode {
    /// Every code, in documentation order.
    pub const ALL: &'static [ErrorCode] = &[
        Self::InvalidApiKey,
        Self::InvalidRequest,
        Self::NotReady,
        Self::AuditUnavailable,
        Self::UpstreamTimeout,
        Self::UpstreamUnreachable,
        Self::UpstreamError,
        Self::UpstreamRejected,
        Self::UpstreamNotAllowed,
        Self::UpstreamInvalidResponse,
        Self::UpstreamUnsupported,
        Self::ApprovalsNamespaceNotWatched,
        Self::ApprovalsUnavailable,
        Self::ApprovalsQuotaExceeded,
        Self::ApprovalsDecisionsOff,
        Self::ApprovalsOperatorOnly,
        Self::ApprovalAlreadyDecided,
        Self::AuditQueryUnauthorized,
        Self::AuditQueryInvalidParameter,
        Self::AuditQueryUnavailable,
        Self::AuthReviewRateLimited,
        Self::AuthReviewUnavailable,
        Self::GatewayOverloaded,
        Self::NotFound,
        Self::MethodNotAllowed,
    ];

    /// The wire form.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::InvalidApiKey => "invalid_api_key",
            Self::InvalidRequest => "invalid_request",
            Self::NotReady => "gateway.not_ready",
            Self::AuditUnavailable => "audit.unavailable",
            Self::UpstreamTimeout => "upstream.timeout",
            Self::UpstreamUnreachable => "upstream.unreachable",
            Self::UpstreamError => "upstream.error",
            Self::UpstreamRejected => "upstream.rejected",
            Self::UpstreamNotAllowed => "upstream.not_allowed",
            Self::UpstreamInvalidResponse => "upstream.invalid_response",
            Self::UpstreamUnsupported => "upstream.unsupported",
            Self::ApprovalsNamespaceNotWatched => "approvals.namespace_not_watched",
            Self::ApprovalsUnavailable => "approvals.unavailable",
            Self::ApprovalsQuotaExceeded => "approvals.quota_exceeded",
            Self::ApprovalsDecisionsOff => "approvals.decisions_off",
            Self::ApprovalsOperatorOnly => "approvals.operator_only",
            Self::ApprovalAlreadyDecided => "approval.already_decided",
            Self::AuditQueryUnauthorized => "unauthorized",
            Self::AuditQueryInvalidParameter => "invalid_parameter",
            Self::AuditQueryUnavailable => "audit_unavailable",
            Self::AuthReviewRateLimited => "auth.review_rate_limited",
            Self::AuthReviewUnavailable => "auth.review_unavailable",
            Self::GatewayOverloaded => "gateway.overloaded",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
        }
    }
}

/// The code an error answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// A policy decision's reason.
    Reason(ReasonCode),
    /// The gateway's own.
    Error(ErrorCode),
}

impl Code {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Reason(r) => r.as_str(),
            Self::Error(e) => e.as_str(),
        }
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything a request can end in other than what it asked for.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// `401 invalid_api_key`.
    #[error("missing or unknown API key: send `Authorization: Bearer <your agent's key>`")]
    Unauthenticated,
    /// `503 gateway.not_ready`.
    #[error("the gateway has not loaded a configuration yet; it serves nothing until it has")]
    NotReady,
    /// `400 invalid_request`, saying what is wrong.
    #[error("{0}")]
    BadRequest(String),
    /// `400 invalid_request`: a chat request uses the legacy `functions`
    /// API (`field` is `functions` or `function_call`, also the error's
    /// `param`). Its calls would come back as `function_call`, outside
    /// `tools`; it is refused rather than guessed at.
    #[error(
        "`{field}` (the legacy functions API) is not accepted: use `{replacement}` instead ({hint}); tool calls then come back in `tool_calls`, each decided by policy"
    )]
    LegacyFunctions {
        field: &'static str,
        replacement: &'static str,
        hint: &'static str,
    },
    /// `415 invalid_request`.
    #[error("send the body as application/json")]
    NotJson,
    /// `413 invalid_request`.
    #[error("the request body is larger than {limit} bytes (or was cut off)")]
    BodyTooLarge { limit: usize },
    /// `408 invalid_request`.
    #[error("the request body did not arrive within {0:?}")]
    BodyTimeout(Duration),
    /// `404 invalid_request`: `/v1/approvals/{name}/{action}` with another action.
    #[error("unknown action {0:?}: use /approve or /deny")]
    UnknownAction(String),
    /// `409 invalid_request`: an operator named an approval that several
    /// namespaces hold.
    #[error("approvals named {0:?} exist in several namespaces; add ?namespace=...")]
    AmbiguousApproval(String),
    /// `403` with the decision's reason code: the policy (or the approval
    /// the call names) refused it (`400` for `tool.name_too_long`).
    /// `details` is the decision.
    #[error("{message}")]
    Refused {
        code: ReasonCode,
        message: String,
        details: Value,
    },
    /// A tool Palisade ran (`"execute": true`) produced no result: the
    /// status and reason code of the [`crate::tools::Failure`]; `details`
    /// is the decision (which allowed the call).
    #[error("{}", .failure.message())]
    ToolRun {
        failure: crate::tools::Failure,
        details: Value,
    },
    /// `404 approval.not_found`.
    #[error("no approval {0:?} that you can see")]
    ApprovalNotFound(String),
    /// `409 approval.already_decided`.
    #[error("approval {name:?} was already decided ({}); a decision is final", .decision.as_str())]
    ApprovalAlreadyDecided {
        name: String,
        decision: palisade_crds::ApprovalDecision,
    },
    /// `409 approval.expired`: too late to decide.
    #[error("approval {0:?} expired before it was decided")]
    ApprovalExpiredUndecided(String),
    /// `404 approvals.decisions_off`.
    #[error(
        "deciding approvals over HTTP is off on this gateway: in a cluster, decide with `kubectl patch approval NAME -n NAMESPACE --type=merge -p '{{\"spec\":{{\"decision\":\"Approved\",\"reason\":\"...\"}}}}'`; standalone, configure GatewaySettings spec.approvals.operators"
    )]
    DecisionsOff,
    /// `403 approvals.operator_only`.
    #[error(
        "listing and deciding approvals needs an operator token (GatewaySettings spec.approvals.operators); agent keys cannot decide"
    )]
    OperatorOnly,
    /// `403 approvals.namespace_not_watched` or `503 approvals.unavailable`.
    #[error(transparent)]
    Approvals(#[from] ApprovalError),
    /// `503 audit.unavailable`: the decision was made but could not be
    /// audited, so it is not given.
    #[error("the decision could not be audited, so it is not given; try again")]
    AuditUnavailable { request_id: Option<String> },
    /// `upstream.*`: the provider chosen for a chat request failed.
    #[error("provider {provider}: {error}")]
    Upstream {
        provider: String,
        request_id: String,
        #[source]
        error: UpstreamError,
    },
    /// `401 unauthorized` (the audit query).
    #[error("reading the audit needs a valid bearer token")]
    AuditReadUnauthorized,
    /// `400 invalid_parameter` (the audit query).
    #[error("{0}")]
    AuditQueryParameter(String),
    /// `503 audit_unavailable` (the audit query).
    #[error("the audit database is unavailable")]
    AuditQueryUnavailable,
    /// `429 auth.review_rate_limited` or `503 auth.review_unavailable`: a
    /// ServiceAccount token could not be checked now.
    #[error("{0}; try again shortly")]
    TokenReview(#[from] ReviewError),
    /// `503 gateway.overloaded`: the body budget is in use.
    #[error(
        "the gateway holds as many request bodies as it may (--max-in-flight-body-bytes); try again shortly"
    )]
    Overloaded,
    /// `429` with a `limit.*` reason code: the request is over one of its
    /// policy's `spec.limits`; `Retry-After: retry_after`. `details` is
    /// the decision.
    #[error("{message}")]
    OverLimit {
        code: ReasonCode,
        message: String,
        retry_after: u64,
        details: Value,
    },
    /// `404 not_found`: lifting a quarantine over HTTP is for standalone
    /// gateways (in a cluster it is an annotation), or there is none.
    #[error("{0}")]
    QuarantineNotHere(String),
    /// `404 not_found`: no such route.
    #[error(
        "no route {method} {path} on this gateway; every route it serves is listed at /openapi.json"
    )]
    UnknownRoute { method: String, path: String },
    /// `405 method_not_allowed`.
    #[error(
        "{path} does not take {method}; every route and its methods are listed at /openapi.json"
    )]
    MethodNotAllowed { method: String, path: String },
}

impl GatewayError {
    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Unauthenticated | Self::AuditReadUnauthorized => StatusCode::UNAUTHORIZED,
            Self::NotReady
            | Self::AuditUnavailable { .. }
            | Self::AuditQueryUnavailable
            | Self::Overloaded
            | Self::TokenReview(ReviewError::Unavailable) => StatusCode::SERVICE_UNAVAILABLE,
            Self::TokenReview(ReviewError::RateLimited) | Self::OverLimit { .. } => {
                StatusCode::TOO_MANY_REQUESTS
            }
            Self::BadRequest(_) | Self::AuditQueryParameter(_) | Self::LegacyFunctions { .. } => {
                StatusCode::BAD_REQUEST
            }
            // Refused by the policy, but for the request's shape: the
            // caller must change it, not ask for permission.
            Self::Refused {
                code: ReasonCode::ToolNameTooLong,
                ..
            } => StatusCode::BAD_REQUEST,
            Self::ToolRun { failure, .. } => failure.status(),
            Self::NotJson => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            Self::UnknownAction(_)
            | Self::ApprovalNotFound(_)
            | Self::DecisionsOff
            | Self::QuarantineNotHere(_)
            | Self::UnknownRoute { .. } => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::AmbiguousApproval(_)
            | Self::ApprovalAlreadyDecided { .. }
            | Self::ApprovalExpiredUndecided(_) => StatusCode::CONFLICT,
            // A limit, not a prohibition: the same call may go through later.
            Self::Refused {
                code: ReasonCode::LimitPendingApprovals,
                ..
            } => StatusCode::TOO_MANY_REQUESTS,
            Self::Refused { .. } | Self::OperatorOnly => StatusCode::FORBIDDEN,
            Self::Approvals(ApprovalError::NamespaceNotWatched(_)) => StatusCode::FORBIDDEN,
            Self::Approvals(ApprovalError::QuotaExceeded(_)) => StatusCode::TOO_MANY_REQUESTS,
            Self::Approvals(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Upstream { error, .. } => match error {
                UpstreamError::Timeout => StatusCode::GATEWAY_TIMEOUT,
                // The client's own mistake: the provider's status.
                UpstreamError::Client(s, _) => {
                    StatusCode::from_u16(*s).unwrap_or(StatusCode::BAD_REQUEST)
                }
                // The policy routed it where it cannot go: a request that
                // cannot succeed as configured, not a provider failure.
                UpstreamError::Unsupported(_) => StatusCode::BAD_REQUEST,
                _ => StatusCode::BAD_GATEWAY,
            },
        }
    }

    /// The stable code.
    pub fn code(&self) -> Code {
        use ErrorCode as E;
        let code = match self {
            Self::Refused { code, .. } | Self::OverLimit { code, .. } => {
                return Code::Reason(*code);
            }
            Self::ToolRun { failure, .. } => return Code::Reason(failure.code()),
            Self::ApprovalNotFound(_) => return Code::Reason(ReasonCode::ApprovalNotFound),
            Self::ApprovalExpiredUndecided(_) => return Code::Reason(ReasonCode::ApprovalExpired),
            Self::Unauthenticated => E::InvalidApiKey,
            Self::NotReady => E::NotReady,
            Self::BadRequest(_)
            | Self::LegacyFunctions { .. }
            | Self::NotJson
            | Self::BodyTooLarge { .. }
            | Self::BodyTimeout(_)
            | Self::UnknownAction(_)
            | Self::AmbiguousApproval(_) => E::InvalidRequest,
            Self::ApprovalAlreadyDecided { .. } => E::ApprovalAlreadyDecided,
            Self::DecisionsOff => E::ApprovalsDecisionsOff,
            Self::OperatorOnly => E::ApprovalsOperatorOnly,
            Self::Approvals(ApprovalError::NamespaceNotWatched(_)) => {
                E::ApprovalsNamespaceNotWatched
            }
            Self::Approvals(ApprovalError::QuotaExceeded(_)) => E::ApprovalsQuotaExceeded,
            Self::Approvals(_) => E::ApprovalsUnavailable,
            Self::AuditUnavailable { .. } => E::AuditUnavailable,
            Self::Upstream { error, .. } => match error {
                UpstreamError::Timeout => E::UpstreamTimeout,
                UpstreamError::Connect(_) => E::UpstreamUnreachable,
                UpstreamError::Server(_) => E::UpstreamError,
                UpstreamError::Client(..) => E::UpstreamRejected,
                UpstreamError::NotAllowed(_) => E::UpstreamNotAllowed,
                UpstreamError::Invalid(_) => E::UpstreamInvalidResponse,
                UpstreamError::Unsupported(_) => E::UpstreamUnsupported,
            },
            Self::AuditReadUnauthorized => E::AuditQueryUnauthorized,
            Self::AuditQueryParameter(_) => E::AuditQueryInvalidParameter,
            Self::AuditQueryUnavailable => E::AuditQueryUnavailable,
            Self::TokenReview(ReviewError::RateLimited) => E::AuthReviewRateLimited,
            Self::TokenReview(ReviewError::Unavailable) => E::AuthReviewUnavailable,
            Self::Overloaded => E::GatewayOverloaded,
            Self::UnknownRoute { .. } | Self::QuarantineNotHere(_) => E::NotFound,
            Self::MethodNotAllowed { .. } => E::MethodNotAllowed,
        };
        Code::Error(code)
    }

    /// Whether the same request may succeed later as it is: the gateway or
    /// something behind it was unavailable, not the request wrong.
    pub fn retryable(&self) -> bool {
        match self {
            Self::NotReady
            | Self::AuditUnavailable { .. }
            | Self::AuditQueryUnavailable
            | Self::BodyTimeout(_)
            | Self::TokenReview(_)
            | Self::Overloaded => true,
            Self::Approvals(e) => !matches!(e, ApprovalError::NamespaceNotWatched(_)),
            Self::Upstream { error, .. } => error.retryable(),
            _ => false,
        }
    }

    /// What the agent reads: never a database error, a provider's body
    /// (other than its own error message for a 4xx) or a URL.
    fn message(&self) -> String {
        match self {
            Self::Approvals(ApprovalError::NamespaceNotWatched(ns)) => format!(
                "this installation does not handle approvals in namespace {ns:?} (it is not in the gateway's --watch-namespaces), so the held call can be neither recorded nor checked; ask the platform team to add the namespace"
            ),
            Self::Approvals(_) => "the approvals store cannot be reached, so the held call cannot be recorded or checked; try again".into(),
            Self::Upstream {
                provider, error, ..
            } => match error {
                UpstreamError::Timeout => format!("provider {provider} did not answer in time"),
                UpstreamError::Connect(_) => format!("provider {provider} is unreachable"),
                UpstreamError::Server(s) => format!("provider {provider} failed with HTTP {s}"),
                UpstreamError::Client(s, refusal) => match &refusal.message {
                    Some(m) => format!("provider {provider} refused the request with HTTP {s}: {m}"),
                    None => format!("provider {provider} refused the request with HTTP {s}"),
                },
                UpstreamError::NotAllowed(_) => format!(
                    "provider {provider} is not at a URL this installation allows the gateway to reach; ask the platform team"
                ),
                UpstreamError::Invalid(_) => format!(
                    "provider {provider} answered something its API does not promise"
                ),
                UpstreamError::Unsupported(api) => format!(
                    "provider {provider} has no {} API, and the policy routes this request there; route {} to an OpenAI-compatible or Ollama provider (a routing rule on the model, or another defaultProvider)",
                    api.as_str(),
                    api.as_str()
                ),
            },
            other => other.to_string(),
        }
    }

    /// The `palisade` object: the decision, or where the request went.
    fn details(&self) -> Option<Value> {
        match self {
            Self::Refused { details, .. }
            | Self::OverLimit { details, .. }
            | Self::ToolRun { details, .. } => Some(details.clone()),
            Self::AuditUnavailable {
                request_id: Some(id),
            } => Some(json!({"requestId": id})),
            Self::Upstream {
                provider,
                request_id,
                error: UpstreamError::Client(_, refusal),
            } if refusal.code.is_some() => Some(
                json!({"provider": provider, "requestId": request_id, "providerCode": refusal.code}),
            ),
            Self::Upstream {
                provider,
                request_id,
                ..
            } => Some(json!({"provider": provider, "requestId": request_id})),
            _ => None,
        }
    }

    /// The request field the error is about, if it is about one.
    fn param(&self) -> Option<&'static str> {
        match self {
            Self::LegacyFunctions { field, .. } => Some(field),
            _ => None,
        }
    }

    /// Logs what the answer leaves out.
    fn log(&self) {
        match self {
            Self::Approvals(ApprovalError::NamespaceNotWatched(ns)) => {
                tracing::warn!(namespace = %ns, "refused an approval outside --watch-namespaces");
            }
            Self::Approvals(e) => tracing::error!(error = %e, "approvals store unavailable"),
            Self::Upstream {
                provider,
                error:
                    error @ (UpstreamError::Connect(_)
                    | UpstreamError::Invalid(_)
                    | UpstreamError::NotAllowed(_)),
                ..
            } => tracing::warn!(%provider, %error, "provider failed"),
            _ => {}
        }
    }
}

/// OpenAI's `error.type` for a status.
fn error_type(status: StatusCode) -> &'static str {
    match status.as_u16() {
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        429 => "rate_limit_error",
        400 | 405 | 413 | 415 | 422 => "invalid_request_error",
        _ => "api_error",
    }
}

/// OpenAI's error body, with Palisade's details beside it.
#[derive(Debug, Serialize)]
struct ErrorBody {
    error: ErrorObject,
    #[serde(skip_serializing_if = "Option::is_none")]
    palisade: Option<Value>,
}

#[derive(Debug, Serialize)]
struct ErrorObject {
    message: String,
    #[serde(rename = "type")]
    kind: &'static str,
    /// The request field at fault, where the error is about one.
    param: Option<&'static str>,
    code: &'static str,
}

impl IntoResponse for GatewayError {
    fn into_response(self) -> Response {
        static REASON: HeaderName = HeaderName::from_static("x-palisade-reason");
        self.log();
        let status = self.status();
        let code = self.code().as_str();
        let body = ErrorBody {
            error: ErrorObject {
                message: self.message(),
                kind: error_type(status),
                param: self.param(),
                code,
            },
            palisade: self.details(),
        };
        let mut response = (status, Json(body)).into_response();
        response
            .headers_mut()
            .insert(REASON.clone(), HeaderValue::from_static(code));
        if matches!(self, Self::TokenReview(_) | Self::Overloaded) {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if let Self::OverLimit { retry_after, .. } = self {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after.max(1)));
        }
        response
    }
}

#[cfg(test)]
mod tests;
