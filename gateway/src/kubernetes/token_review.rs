//! ServiceAccount tokens, vouched for by the API server: a TokenReview per
//! token, its answer cached for [`TOKEN_CACHE_TTL`]. This says whose token
//! it is; [`crate::auth`] says which agent that account is.

use crate::credentials::sha256;
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use kube::api::{Api, PostParams};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a TokenReview answer is trusted.
pub const TOKEN_CACHE_TTL: Duration = Duration::from_secs(30);

/// Token digest → (when reviewed, the username it belongs to, if any).
type ReviewCache = Arc<Mutex<HashMap<[u8; 32], (Instant, Option<String>)>>>;

/// TokenReview-backed identity with a short cache.
#[derive(Clone)]
pub struct TokenReviewer {
    client: kube::Client,
    audiences: Vec<String>,
    cache: ReviewCache,
}

impl std::fmt::Debug for TokenReviewer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenReviewer").finish_non_exhaustive()
    }
}

impl TokenReviewer {
    pub fn new(client: kube::Client, audiences: Vec<String>) -> Self {
        Self {
            client,
            audiences,
            cache: Arc::default(),
        }
    }

    /// The username the API server vouches for, if any (cached). A failed
    /// review is logged and treated as an unknown token.
    pub async fn username(&self, token: &str) -> Option<String> {
        let key = sha256(token);
        if let Some((at, user)) = self.cache.lock().ok()?.get(&key).cloned()
            && at.elapsed() < TOKEN_CACHE_TTL
        {
            return user;
        }
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
        let user = match answer {
            Ok(r) => r
                .status
                .filter(|s| s.authenticated == Some(true))
                .and_then(|s| s.user)
                .and_then(|u| u.username),
            Err(e) => {
                tracing::warn!(error = %e, "TokenReview failed; treating the token as unknown");
                return None;
            }
        };
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() > 10_000 {
                cache.clear();
            }
            cache.insert(key, (Instant::now(), user.clone()));
        }
        user
    }
}
