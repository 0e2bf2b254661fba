//! Who is calling. One [`Authenticator`] knows every kind of caller:
//!
//! - agents, by an API key of the current configuration, or (in a
//!   cluster) by a ServiceAccount token the API server vouches for, mapped
//!   to the agent whose `serviceAccount` it is in that namespace;
//! - standalone operators, by a token from `GatewaySettings
//!   spec.approvals.operators` (never accepted as an agent, nor an agent
//!   key as an operator);
//!
//! and the request handlers take it as an extractor: [`Agent`] where only
//! agents may call, [`Caller`] where operators may too. Every token comes
//! through [`crate::credentials::bearer`] and is compared in constant time.

use crate::credentials::{Identity, Tokens, agent_key, bearer};
use crate::error::GatewayError;
use crate::kubernetes::TokenReviewer;
use crate::snapshot::{Current, Snapshot};
use axum::extract::FromRequestParts;
use axum::http::HeaderMap;
use axum::http::request::Parts;
use std::sync::Arc;

/// Checks every kind of credential.
#[derive(Debug, Default)]
pub struct Authenticator {
    /// ServiceAccount tokens, when running in a cluster.
    service_accounts: Option<TokenReviewer>,
    /// Standalone: the people who may decide approvals over HTTP, by name.
    /// Empty in a cluster, where decisions go through Kubernetes RBAC.
    operators: Tokens<String>,
}

impl Authenticator {
    pub fn new(service_accounts: Option<TokenReviewer>, operators: Tokens<String>) -> Self {
        Self {
            service_accounts,
            operators,
        }
    }

    /// The agent whose API key or ServiceAccount token the request carries,
    /// or `401`; `429`/`503` when a ServiceAccount token cannot be reviewed
    /// now (see [`crate::kubernetes::token_review`]).
    pub async fn agent(
        &self,
        snapshot: &Snapshot,
        headers: &HeaderMap,
    ) -> Result<Identity, GatewayError> {
        let token = agent_key(headers).ok_or(GatewayError::Unauthenticated)?;
        if let Some(who) = snapshot.agent_keys.holder(token) {
            return Ok(who.clone());
        }
        let Some(reviewer) = &self.service_accounts else {
            return Err(GatewayError::Unauthenticated);
        };
        let user = reviewer.username(token).await?;
        user.and_then(|u| service_account_agent(snapshot, &u))
            .ok_or(GatewayError::Unauthenticated)
    }

    /// The operator whose token the request carries, if any.
    /// The operators' tokens (standalone; empty in a cluster).
    pub fn operators(&self) -> &Tokens<String> {
        &self.operators
    }

    pub fn operator(&self, headers: &HeaderMap) -> Option<&str> {
        self.operators.holder(bearer(headers)?).map(String::as_str)
    }

    /// An operator, or else an agent (which needs a loaded configuration).
    pub async fn caller(
        &self,
        config: &Current,
        headers: &HeaderMap,
    ) -> Result<Caller, GatewayError> {
        if let Some(name) = self.operator(headers) {
            return Ok(Caller::Operator(name.to_owned()));
        }
        let snapshot = config.load_full().ok_or(GatewayError::NotReady)?;
        let who = self.agent(&snapshot, headers).await?;
        Ok(Caller::Agent(Agent { who, snapshot }))
    }
}

/// The agent a ServiceAccount user (`system:serviceaccount:NS:NAME`) is:
/// the one whose `serviceAccount` is that account, in the account's
/// namespace.
fn service_account_agent(snapshot: &Snapshot, user: &str) -> Option<Identity> {
    let rest = user.strip_prefix("system:serviceaccount:")?;
    let (namespace, account) = rest.split_once(':')?;
    snapshot
        .bundle
        .policies()
        .iter()
        .filter(|p| p.namespace == namespace)
        .find_map(|p| {
            p.agents
                .iter()
                .find(|a| a.service_account.as_deref() == Some(account))
                .map(|a| Identity {
                    namespace: namespace.to_owned(),
                    agent: a.name.clone(),
                })
        })
}

/// What the extractors need from the application state.
pub trait AuthState: Send + Sync {
    fn config(&self) -> &Current;
    fn authenticator(&self) -> &Authenticator;
}

/// An authenticated agent, with the configuration it was authenticated
/// against (the request uses that one throughout). `503 gateway.not_ready`
/// before any configuration, `401 invalid_api_key` for anyone else.
#[derive(Debug, Clone)]
pub struct Agent {
    pub who: Identity,
    pub snapshot: Arc<Snapshot>,
}

impl<S: AuthState> FromRequestParts<S> for Agent {
    type Rejection = GatewayError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, GatewayError> {
        let snapshot = state.config().load_full().ok_or(GatewayError::NotReady)?;
        let who = state
            .authenticator()
            .agent(&snapshot, &parts.headers)
            .await?;
        Ok(Self { who, snapshot })
    }
}

/// An operator (by name) or an agent.
#[derive(Debug, Clone)]
pub enum Caller {
    Operator(String),
    Agent(Agent),
}

impl<S: AuthState> FromRequestParts<S> for Caller {
    type Rejection = GatewayError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, GatewayError> {
        state
            .authenticator()
            .caller(state.config(), &parts.headers)
            .await
    }
}
