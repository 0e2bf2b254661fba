//! Palisade's data plane.
//!
//! - [`run`]: `palisade-gateway run`, the standalone gateway;
//! - [`server`]: the HTTP surface (`/v1/tool-calls`, health, readiness,
//!   metrics), every decision audited before it is answered;
//! - [`snapshot`] / [`source`]: the configuration, swapped atomically and
//!   reloaded from files on change;
//! - [`identity`]: API-key authentication; [`error`]: OpenAI-shaped errors;
//! - [`metrics`]: `palisade_*` Prometheus metrics;
//! - [`config`], [`audit_cli`]: file loading and the `audit` commands.
//!
//! Chat completions, providers, Kubernetes sources and approvals are not
//! built yet.

pub mod audit_cli;
pub mod config;
pub mod error;
pub mod identity;
pub mod metrics;
pub mod run;
pub mod server;
pub mod snapshot;
pub mod source;
