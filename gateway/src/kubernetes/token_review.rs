//! ServiceAccount tokens, vouched for by the API server. This says whose
//! token it is; [`crate::auth`] says which agent that account is.
//!
//! What keeps a flood of made-up tokens off the API server:
//!
//! - only a JWT-shaped token is reviewed ([`jwt_claims`]): anything else,
//!   and a JWT that expired, is refused here;
//! - answers are cached by the token's SHA-256 in two bounded LRUs: an
//!   accepted token for [`TOKEN_CACHE_TTL`] (never past its `exp`), a
//!   refused one, or one whose review failed, for [`FAILURE_CACHE_TTL`].
//!   Refusals have their own cache, so made-up tokens cannot push the
//!   agents' answers out;
//! - reviews are rate-limited per process ([`ReviewRate`], a token
//!   bucket): past it, a token with no cached answer is answered
//!   `429 auth.review_rate_limited` without a review.
//!
//! With audiences (`--token-audience palisade`), the review asks for them
//! and an answer must name one of them (an API server that is not
//! audience-aware is not trusted).

use crate::credentials::sha256;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hashlink::LruCache;
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec, TokenReviewStatus};
use kube::api::{Api, PostParams};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long an accepted token's answer is trusted (less if it expires
/// sooner).
pub const TOKEN_CACHE_TTL: Duration = Duration::from_secs(30);
/// How long a refused token, or one whose review failed, is answered
/// from the cache.
pub const FAILURE_CACHE_TTL: Duration = Duration::from_secs(5);
/// Entries in each of the two caches (accepted, refused or failed).
pub const CACHE_CAPACITY: usize = 10_000;
/// Longer bearer tokens are not JWTs the API server issues.
const MAX_TOKEN_LEN: usize = 16 * 1024;

/// How many TokenReviews one gateway process may make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReviewRate {
    /// Sustained reviews per second.
    pub per_second: u32,
    /// Reviews that may be made at once after a quiet spell.
    pub burst: u32,
}

impl Default for ReviewRate {
    fn default() -> Self {
        Self {
            per_second: 20,
            burst: 40,
        }
    }
}

/// Why a token could not be checked now (it may be fine).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReviewError {
    #[error("too many unknown ServiceAccount tokens to review at once")]
    RateLimited,
    #[error("the API server could not review the token")]
    Unavailable,
}

/// What the claims of a JWT-shaped token say that matters here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claims {
    /// `exp`, seconds since the epoch.
    pub expires: Option<u64>,
}

/// The claims of a token shaped like a JWT (three base64url parts, a JSON
/// header naming its `alg`, a JSON object payload, a signature), or
/// `None` for anything else.
pub fn jwt_claims(token: &str) -> Option<Claims> {
    if token.len() > MAX_TOKEN_LEN {
        return None;
    }
    let mut parts = token.split('.');
    let (header, payload, signature) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || signature.is_empty() || URL_SAFE_NO_PAD.decode(signature).is_err()
    {
        return None;
    }
    let json = |part: &str| -> Option<serde_json::Map<String, serde_json::Value>> {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).ok()?).ok()
    };
    json(header)?.get("alg")?.as_str()?;
    let payload = json(payload)?;
    Some(Claims {
        expires: payload.get("exp").and_then(serde_json::Value::as_u64),
    })
}

/// A cached refusal or failure.
#[derive(Debug, Clone, Copy)]
enum Failure {
    Refused,
    Unavailable,
}

/// A token bucket.
#[derive(Debug)]
struct Bucket {
    rate: ReviewRate,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn new(rate: ReviewRate) -> Self {
        Self {
            rate,
            tokens: f64::from(rate.burst),
            at: Instant::now(),
        }
    }

    fn take(&mut self, now: Instant) -> bool {
        let refill = now.duration_since(self.at).as_secs_f64() * f64::from(self.rate.per_second);
        self.tokens = (self.tokens + refill).min(f64::from(self.rate.burst));
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The two caches and the bucket.
struct Memory {
    accepted: LruCache<[u8; 32], (Instant, String)>,
    failed: LruCache<[u8; 32], (Instant, Failure)>,
    bucket: Bucket,
}

/// What a review found.
type Outcome = Result<Option<String>, ReviewError>;

impl Memory {
    fn new(capacity: usize, rate: ReviewRate) -> Self {
        Self {
            accepted: LruCache::new(capacity),
            failed: LruCache::new(capacity),
            bucket: Bucket::new(rate),
        }
    }

    /// The cached answer for `key`, else `RateLimited` when no review may
    /// be made now, else `None`: review it.
    fn lookup(&mut self, key: &[u8; 32], now: Instant) -> Option<Outcome> {
        if let Some((until, user)) = self.accepted.get(key)
            && *until > now
        {
            return Some(Ok(Some(user.clone())));
        }
        if let Some((until, failure)) = self.failed.get(key)
            && *until > now
        {
            return Some(match failure {
                Failure::Refused => Ok(None),
                Failure::Unavailable => Err(ReviewError::Unavailable),
            });
        }
        (!self.bucket.take(now)).then_some(Err(ReviewError::RateLimited))
    }

    /// Remembers a review's outcome; an accepted token for `lifetime`.
    fn record(&mut self, key: [u8; 32], outcome: &Outcome, now: Instant, lifetime: Duration) {
        let failure = match outcome {
            Ok(Some(user)) => {
                self.failed.remove(&key);
                self.accepted.insert(key, (now + lifetime, user.clone()));
                return;
            }
            Ok(None) => Failure::Refused,
            Err(_) => Failure::Unavailable,
        };
        self.failed.insert(key, (now + FAILURE_CACHE_TTL, failure));
    }
}

/// TokenReview-backed identity, cached and rate-limited.
#[derive(Clone)]
pub struct TokenReviewer {
    client: kube::Client,
    audiences: Vec<String>,
    memory: Arc<Mutex<Memory>>,
}

impl std::fmt::Debug for TokenReviewer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenReviewer")
            .field("audiences", &self.audiences)
            .finish_non_exhaustive()
    }
}

impl TokenReviewer {
    /// Reviews tokens with `client`, for `audiences` (empty: the API
    /// server's own), at the default [`ReviewRate`].
    pub fn new(client: kube::Client, audiences: Vec<String>) -> Self {
        Self {
            client,
            audiences,
            memory: Arc::new(Mutex::new(Memory::new(
                CACHE_CAPACITY,
                ReviewRate::default(),
            ))),
        }
    }

    /// At most this many reviews.
    pub fn rate(self, rate: ReviewRate) -> Self {
        if let Ok(mut memory) = self.memory.lock() {
            memory.bucket = Bucket::new(rate);
        }
        self
    }

    /// The username the API server vouches for; `Ok(None)` for a token it
    /// refuses (or that is not a live JWT).
    pub async fn username(&self, token: &str) -> Result<Option<String>, ReviewError> {
        let Some(claims) = jwt_claims(token) else {
            return Ok(None);
        };
        let lifetime = match claims.expires {
            Some(exp) => match Duration::from_secs(exp).checked_sub(since_epoch()) {
                Some(left) if !left.is_zero() => left.min(TOKEN_CACHE_TTL),
                _ => return Ok(None),
            },
            None => TOKEN_CACHE_TTL,
        };
        let key = sha256(token);
        let cached = self
            .memory
            .lock()
            .map_err(|_| ReviewError::Unavailable)?
            .lookup(&key, Instant::now());
        if let Some(outcome) = cached {
            return outcome;
        }
        let outcome = self.review(token).await;
        if let Ok(mut memory) = self.memory.lock() {
            memory.record(key, &outcome, Instant::now(), lifetime);
        }
        outcome
    }

    /// One TokenReview.
    async fn review(&self, token: &str) -> Result<Option<String>, ReviewError> {
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: Some(token.to_owned()),
                audiences: (!self.audiences.is_empty()).then(|| self.audiences.clone()),
            },
            ..TokenReview::default()
        };
        let answer = Api::<TokenReview>::all(self.client.clone())
            .create(&PostParams::default(), &review)
            .await;
        match answer {
            Ok(r) => Ok(r.status.and_then(|s| self.accepted_user(s))),
            Err(e) => {
                tracing::warn!(error = %e, "TokenReview failed; answering 503 auth.review_unavailable for this token for {FAILURE_CACHE_TTL:?}");
                Err(ReviewError::Unavailable)
            }
        }
    }

    /// The user an answer vouches for, if it is authenticated and (when
    /// audiences were asked for) for one of them.
    fn accepted_user(&self, status: TokenReviewStatus) -> Option<String> {
        if status.authenticated != Some(true) {
            return None;
        }
        if !self.audiences.is_empty() {
            let named = status.audiences.unwrap_or_default();
            if !named.iter().any(|a| self.audiences.contains(a)) {
                tracing::warn!(
                    asked = ?self.audiences, answered = ?named,
                    "a TokenReview answer names none of the audiences asked for (is the API server audience-aware?); refusing the token"
                );
                return None;
            }
        }
        status.user.and_then(|u| u.username)
    }
}

fn since_epoch() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(header: &str, payload: &str) -> String {
        format!(
            "{}.{}.c2lnbmF0dXJl",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(payload)
        )
    }

    #[test]
    fn only_jwt_shaped_tokens_have_claims() {
        let ok = jwt(
            r#"{"alg":"RS256","kid":"k"}"#,
            r#"{"sub":"x","exp":2000000000}"#,
        );
        assert_eq!(
            jwt_claims(&ok),
            Some(Claims {
                expires: Some(2_000_000_000)
            })
        );
        assert_eq!(
            jwt_claims(&jwt(r#"{"alg":"RS256"}"#, "{}")),
            Some(Claims { expires: None })
        );
        let long = format!("{ok}{}", "A".repeat(MAX_TOKEN_LEN));
        let more = format!("{ok}.more");
        let nots: [&str; 10] = [
            "sk-1234",
            "a.b.c",
            "a.b",
            "...",
            &more,
            &ok[..ok.rfind('.').unwrap_or(0) + 1],
            &jwt(r#"{"typ":"JWT"}"#, "{}"),
            &jwt(r#"{"alg":"RS256"}"#, "[1]"),
            &jwt("not json", "{}"),
            long.as_str(),
        ];
        for not in nots {
            assert_eq!(jwt_claims(not), None, "{not:.60}");
        }
    }

    #[test]
    fn the_bucket_allows_a_burst_then_the_rate() {
        let mut b = Bucket::new(ReviewRate {
            per_second: 10,
            burst: 3,
        });
        let t0 = b.at;
        assert!((0..3).all(|_| b.take(t0)));
        assert!(!b.take(t0));
        assert!(!b.take(t0 + Duration::from_millis(50)));
        assert!(b.take(t0 + Duration::from_millis(101)));
        // A long quiet spell refills to the burst, no more.
        let later = t0 + Duration::from_secs(60);
        assert!((0..3).all(|_| b.take(later)));
        assert!(!b.take(later));
    }

    #[test]
    fn answers_are_kept_in_bounded_lrus_and_refusals_never_push_out_agents() {
        let rate = ReviewRate {
            per_second: 1,
            burst: 1000,
        };
        let mut m = Memory::new(2, rate);
        let t0 = Instant::now();
        let ttl = TOKEN_CACHE_TTL;
        let user = |u: &str| Ok(Some(u.to_owned()));
        m.record([1; 32], &user("a"), t0, ttl);
        m.record([2; 32], &user("b"), t0, ttl);
        assert_eq!(m.lookup(&[1; 32], t0), Some(user("a")));
        m.record([3; 32], &user("c"), t0, ttl);
        // The least recently used went (to be reviewed again); the one just
        // read stayed.
        assert_eq!(m.lookup(&[2; 32], t0), None);
        assert_eq!(m.lookup(&[1; 32], t0), Some(user("a")));
        assert_eq!(m.accepted.len(), 2);
        // Any number of refused or failed tokens: the agents stay.
        for i in 10..200u8 {
            let outcome = if i % 2 == 0 {
                Ok(None)
            } else {
                Err(ReviewError::Unavailable)
            };
            m.record([i; 32], &outcome, t0, ttl);
        }
        assert_eq!(m.failed.len(), 2);
        assert_eq!(m.lookup(&[1; 32], t0), Some(user("a")));
        assert_eq!(m.lookup(&[3; 32], t0), Some(user("c")));
        // Failures are remembered briefly, answers for their lifetime.
        assert_eq!(m.lookup(&[198; 32], t0), Some(Ok(None)));
        assert_eq!(
            m.lookup(&[199; 32], t0),
            Some(Err(ReviewError::Unavailable))
        );
        let later = t0 + FAILURE_CACHE_TTL;
        assert_eq!(m.lookup(&[199; 32], later), None);
        assert_eq!(m.lookup(&[1; 32], later), Some(user("a")));
        assert_eq!(m.lookup(&[1; 32], t0 + ttl), None);
        m.record([4; 32], &user("d"), t0, Duration::from_secs(1));
        assert_eq!(m.lookup(&[4; 32], t0 + Duration::from_secs(1)), None);
    }
}
