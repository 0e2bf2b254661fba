//! Palisade's data plane. From the outside in:
//!
//! - [`run`]: `palisade-gateway run` (start-up, shutdown); [`listener`]:
//!   connections, TLS, their caps and timeouts; [`cli`]: the `audit` and
//!   `approvals` commands;
//! - [`router`]: every route and the middleware; [`state`]: what handlers
//!   share, and its builder;
//! - [`api`]: one module per API (`tool_calls`, `chat` with its tool-call
//!   gate and stream metering, `messages`, `embeddings`, `models`,
//!   `approvals`, `audit_query`, `openapi`; `routed`: the path every
//!   routed request takes);
//! - [`auth`]: who is calling (agent keys, ServiceAccount tokens, operator
//!   tokens), built on [`credentials`];
//! - [`decisions`]: the one path every decision takes: evaluate, count,
//!   audit; held calls and approval outcomes;
//! - [`approvals`]: where held calls are recorded (Approval resources in a
//!   cluster, the audit database standalone);
//! - [`providers`]: one module per model API (OpenAI, Ollama, Anthropic,
//!   the SSE/NDJSON framing), reached through [`http_client`];
//! - [`snapshot`]: the configuration served, swapped atomically; loaded by
//!   [`config`] from files or by [`kubernetes`] from the operator's Secret;
//! - [`error`]: every error an agent can get, with its status and code;
//! - [`telemetry`]: logs, and traces over OTLP (`--otlp-endpoint`);
//! - [`metrics`]: `palisade_*` Prometheus metrics; [`limits`]: bodies read
//!   after authentication, their size, deadline and budget, JSON nesting;
//!   [`budgets`]: the policies' `spec.limits` (requests, tokens, streams).

pub mod api;
pub mod approvals;
pub mod auth;
pub mod budgets;
pub mod cli;
pub mod config;
pub mod console;
pub mod credentials;
pub mod decisions;
pub mod error;
pub mod http_client;
pub mod kubernetes;
pub mod limits;
pub mod listener;
pub mod metrics;
pub mod providers;
pub mod router;
pub mod run;
pub mod security;
pub mod snapshot;
pub mod state;
pub mod telemetry;
pub mod tools;
