//! Palisade's data plane.
//!
//! - [`run`]: `palisade-gateway run`, the standalone gateway;
//! - [`server`]: the HTTP surface (`/v1/tool-calls`, health, readiness,
//!   metrics), every decision audited before it is answered;
//! - [`chat`]: `/v1/chat/completions`, routed by policy, with tool calls
//!   proposed by the model decided before the client sees them;
//! - [`providers`]: OpenAI-compatible, Ollama and Anthropic upstreams,
//!   reached through [`upstream`] (pooled HTTP client, no redirects);
//! - [`snapshot`] / [`source`] / [`kubernetes`]: the configuration,
//!   swapped atomically, from files (reloaded on change) or from the
//!   operator's Secret (watched through the API); ServiceAccount identity;
//! - [`identity`]: API-key authentication; [`error`]: OpenAI-shaped errors;
//! - [`metrics`]: `palisade_*` Prometheus metrics;
//! - [`openapi`]: the OpenAPI document (`/openapi.json`) and `/docs`;
//! - [`config`], [`audit_cli`], [`approvals_cli`]: file loading and the
//!   `audit` and `approvals` commands.
//!
//! - [`approvals`] / [`approvals_api`]: held tool calls (Approval
//!   resources in a cluster, the audit database standalone), the `202`
//!   step, polling, single use, and standalone decisions;
//! - [`limits`]: JSON nesting limit.

pub mod approvals;
pub mod approvals_api;
pub mod approvals_cli;
pub mod audit_cli;
pub mod chat;
pub mod config;
pub mod error;
pub mod identity;
pub mod kubernetes;
pub mod limits;
pub mod metrics;
pub mod openapi;
pub mod providers;
pub mod run;
pub mod server;
pub mod snapshot;
pub mod source;
pub mod upstream;
