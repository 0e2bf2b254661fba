//! Input limits the HTTP surface enforces before parsing:
//!
//! - a request body is read only by a handler that has authenticated the
//!   caller on the headers ([`UnreadBody::read`]), within [`BODY_LIMIT`]
//!   (413), the body timeout (408) and the process-wide [`BodyBudget`] of
//!   bytes in flight (503 `gateway.overloaded`): an unauthenticated upload
//!   costs no memory, and authenticated ones together cost at most the
//!   budget;
//! - the JSON nesting depth (a deeply nested body is a cheap way to make a
//!   parser recurse).

use crate::error::GatewayError;
use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Request};
use axum::http::header;
use http_body_util::BodyExt;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Request bodies larger than this are refused with 413.
pub const BODY_LIMIT: usize = 1 << 20;

/// Default for the bytes of request bodies one process holds at once.
pub const BODY_BUDGET: usize = 64 << 20;

/// The bytes of request bodies the process may hold at once, shared by
/// every request (a semaphore of bytes).
#[derive(Debug, Clone)]
pub struct BodyBudget {
    free: Arc<Semaphore>,
    total: usize,
}

impl BodyBudget {
    /// A budget of `bytes` (at least [`BODY_LIMIT`], so that any body
    /// allowed can be read).
    pub fn new(bytes: usize) -> Self {
        let total = bytes.clamp(BODY_LIMIT, Semaphore::MAX_PERMITS);
        Self {
            free: Arc::new(Semaphore::new(total)),
            total,
        }
    }

    /// The bytes held or reserved by bodies being read or in use now.
    pub fn in_use(&self) -> usize {
        self.total.saturating_sub(self.free.available_permits())
    }

    /// `bytes` of the budget, held until the permit is dropped; `503
    /// gateway.overloaded` at once when they are not free.
    fn take(&self, bytes: usize) -> Result<OwnedSemaphorePermit, GatewayError> {
        let n =
            u32::try_from(bytes).map_err(|_| GatewayError::BodyTooLarge { limit: BODY_LIMIT })?;
        Arc::clone(&self.free)
            .try_acquire_many_owned(n)
            .map_err(|_| GatewayError::Overloaded)
    }
}

impl Default for BodyBudget {
    fn default() -> Self {
        Self::new(BODY_BUDGET)
    }
}

/// What reading a body needs from the application state.
pub trait BodyLimits: Send + Sync {
    fn body_timeout(&self) -> Duration;
    fn body_budget(&self) -> &BodyBudget;
}

/// A request body not read yet: handlers authenticate first, then
/// [`UnreadBody::read`] it.
#[derive(Debug)]
pub struct UnreadBody {
    body: Body,
    declared: Option<usize>,
    timeout: Duration,
    budget: BodyBudget,
}

impl<S: BodyLimits> FromRequest<S> for UnreadBody {
    type Rejection = std::convert::Infallible;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let declared = request
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse().ok());
        Ok(Self {
            body: request.into_body(),
            declared,
            timeout: state.body_timeout(),
            budget: state.body_budget().clone(),
        })
    }
}

impl UnreadBody {
    /// Reads the whole body: `413` past [`BODY_LIMIT`] (at once when the
    /// declared length says so), `408` when it does not arrive within the
    /// body timeout, `503 gateway.overloaded` when the budget cannot hold
    /// it (a declared length is reserved whole before reading).
    pub async fn read(self) -> Result<ReadBody, GatewayError> {
        let too_large = GatewayError::BodyTooLarge { limit: BODY_LIMIT };
        if self.declared.is_some_and(|n| n > BODY_LIMIT) {
            return Err(too_large);
        }
        let mut held = self.budget.take(self.declared.unwrap_or(0))?;
        let mut body = self.body;
        let mut bytes = Vec::with_capacity(self.declared.unwrap_or(0));
        let reading = async {
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(|_| GatewayError::BodyTooLarge { limit: BODY_LIMIT })?;
                let Ok(data) = frame.into_data() else {
                    continue;
                };
                if bytes.len() + data.len() > BODY_LIMIT {
                    return Err(GatewayError::BodyTooLarge { limit: BODY_LIMIT });
                }
                let beyond = (bytes.len() + data.len()).saturating_sub(held.num_permits());
                if beyond > 0 {
                    held.merge(self.budget.take(beyond)?);
                }
                bytes.extend_from_slice(&data);
            }
            Ok(())
        };
        let read = tokio::time::timeout(self.timeout, reading).await;
        match read {
            Ok(Ok(())) => Ok(ReadBody {
                bytes: Bytes::from(bytes),
                _held: held,
            }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(GatewayError::BodyTimeout(self.timeout)),
        }
    }
}

/// A body read whole; its bytes stay counted in the budget while it
/// lives.
#[derive(Debug)]
pub struct ReadBody {
    bytes: Bytes,
    _held: OwnedSemaphorePermit,
}

impl ReadBody {
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }
}

impl std::ops::Deref for ReadBody {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.bytes
    }
}

/// The deepest JSON nesting a request may use. Chat messages with tool
/// schemas need perhaps 10; 64 leaves room and stops abuse.
pub const MAX_JSON_DEPTH: usize = 64;

/// Refuses a body nested deeper than [`MAX_JSON_DEPTH`] (one pass over the
/// bytes, strings skipped, no allocation).
pub fn check_json_depth(body: &[u8]) -> Result<(), GatewayError> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in body {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > MAX_JSON_DEPTH {
                    return Err(GatewayError::BadRequest(format!(
                        "the JSON body is nested more than {MAX_JSON_DEPTH} levels deep; flatten it"
                    )));
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_is_counted_outside_strings_only() {
        let ok = format!(
            "{}{}",
            "[".repeat(MAX_JSON_DEPTH),
            "]".repeat(MAX_JSON_DEPTH)
        );
        assert!(check_json_depth(ok.as_bytes()).is_ok());
        let deep = format!(
            "{}{}",
            "[".repeat(MAX_JSON_DEPTH + 1),
            "]".repeat(MAX_JSON_DEPTH + 1)
        );
        let e = check_json_depth(deep.as_bytes()).unwrap_err();
        assert_eq!(e.status(), 400);
        assert!(e.to_string().contains("nested more than 64"));
        // Brackets inside strings (and escaped quotes) do not count.
        let text = format!(r#"{{"a": "{}\" {}"}}"#, "[".repeat(500), "{".repeat(500));
        assert!(check_json_depth(text.as_bytes()).is_ok());
    }
}
