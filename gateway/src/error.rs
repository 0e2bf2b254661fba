//! Errors as agents see them: OpenAI's error JSON (`{"error": {message,
//! type, param, code}}`) with Palisade's reason code as `code`, and the
//! rule and request id alongside. Internals never leak.

use axum::Json;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    /// A reason code (`kill_switch.agent`) or an error code (`invalid_api_key`).
    pub code: String,
    pub message: String,
    pub kind: &'static str,
    /// Extra fields for the `palisade` object (rule, policy, request id).
    pub palisade: Option<Value>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        let kind = match status.as_u16() {
            401 => "authentication_error",
            403 => "permission_error",
            404 => "not_found_error",
            429 => "rate_limit_error",
            400 | 413 | 415 | 422 => "invalid_request_error",
            _ => "api_error",
        };
        Self {
            status,
            code: code.to_owned(),
            message: message.into(),
            kind,
            palisade: None,
        }
    }

    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_api_key",
            "missing or unknown API key: send `Authorization: Bearer <your agent's key>`",
        )
    }

    pub fn not_ready() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "gateway.not_ready",
            "the gateway has not loaded a configuration yet; it serves nothing until it has",
        )
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    pub fn with_palisade(mut self, extra: Value) -> Self {
        self.palisade = Some(extra);
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({"error": {"message": self.message, "type": self.kind, "param": null, "code": self.code}});
        if let Some(p) = self.palisade {
            body["palisade"] = p;
        }
        let mut response = (self.status, Json(body)).into_response();
        if let Ok(v) = HeaderValue::from_str(&self.code) {
            response.headers_mut().insert("x-palisade-reason", v);
        }
        response
    }
}
