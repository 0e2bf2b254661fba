//! Palisade's data plane.
//!
//! - [`run`]: `palisade-gateway run`, the standalone gateway;
//! - [`server`]: the HTTP surface (`/v1/tool-calls`, health, readiness,
//!   metrics), every decision audited before it is answered;
//! - [`chat`]: `/v1/chat/completions`, routed by policy, with tool calls
//!   proposed by the model decided before the client sees them;
//! - [`providers`]: OpenAI-compatible, Ollama and Anthropic upstreams;
//! - [`snapshot`] / [`source`]: the configuration, swapped atomically and
//!   reloaded from files on change;
//! - [`identity`]: API-key authentication; [`error`]: OpenAI-shaped errors;
//! - [`metrics`]: `palisade_*` Prometheus metrics;
//! - [`openapi`]: the OpenAPI document (`/openapi.json`) and `/docs`;
//! - [`config`], [`audit_cli`]: file loading and the `audit` commands.
//!
//! Not built yet: the Kubernetes source and TokenReview identity,
//! approvals.

pub mod audit_cli;
pub mod chat;
pub mod config;
pub mod error;
pub mod identity;
pub mod metrics;
pub mod openapi;
pub mod providers;
pub mod run;
pub mod server;
pub mod snapshot;
pub mod source;
