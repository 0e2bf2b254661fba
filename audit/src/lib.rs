//! Palisade's audit pipeline: one row per decision, in PostgreSQL (clusters)
//! or an embedded SQLite file (local runs) through the same sqlx code path.
//!
//! - [`event`]: the event and its per-writer hash chain (tamper evidence),
//!   each writer's chain linked to the newest row when it started;
//! - [`decision`]: [`AuditDecision`], what the `decision` column says;
//! - [`key`]: the key of the chain's HMAC, which the database never holds;
//! - [`store`]: connection, embedded migrations and the schema check,
//!   idempotent batched inserts, queries, chain verification;
//! - [`writer`]: the asynchronous batched writer with a bounded queue, the
//!   durable spool for outages, failure modes and graceful drain;
//! - [`spool`]: the append-only, fsync'd, checksummed spool files;
//! - [`approvals`]: the standalone gateway's approvals table (held tool
//!   calls, decided and consumed once, compare-and-set);
//! - [`verify`]: chain verification (order, linkage between writers,
//!   keyed hashes) and its report;
//! - [`roles`]: the INSERT/SELECT-only runtime role of PostgreSQL;
//! - [`metrics`]: `palisade_audit_*` Prometheus metrics.

pub mod approvals;
pub mod budget;
pub mod decision;
pub mod error;
pub mod event;
pub mod key;
pub mod metrics;
pub mod quarantines;
pub mod roles;
pub mod spool;
pub mod store;
pub mod verify;
pub mod writer;

pub use decision::AuditDecision;
pub use error::AuditError;
pub use event::{ApprovalFacts, AuditEvent, ChainedEvent, EventKind};
pub use key::AuditKey;
pub use metrics::AuditMetrics;
pub use store::{
    Backend, Filter, Migrations, Store, Usage, UsageFilter, VerifyReport, WriterConnection,
};
pub use writer::{AuditWriter, Durable, FailureMode, Reservation, WriterConfig, WriterTask};
