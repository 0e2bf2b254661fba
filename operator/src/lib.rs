//! Palisade's operator: it watches every AIPolicy and ToolGrant (of every
//! namespace, or of those it is told to watch), compiles
//! them (with the Secrets they reference, read one by one) into one
//! `PolicyBundle`, writes it with server-side apply into the one Secret the
//! gateways watch, and reports per-object status and Events.
//!
//! - [`run`]: start-up (are the CRDs there?) and the two loops side by side;
//! - [`config`]: `OperatorConfig`, the field manager, the error that stops it;
//! - [`reconcile`]: the bundle loop, one pass staged as [`reconcile::read`]
//!   → [`reconcile::plan`] (pure: the Secret, status patches and Events to
//!   write) → [`reconcile::apply`];
//! - [`status`]: pure status computation (conditions that only move on change);
//! - [`events`]: Events, planned as values and published;
//! - [`gateways`]: which revision the gateways applied (their Leases,
//!   placed in the history of revisions this operator wrote);
//! - [`approvals`]: the Approval lifecycle (phase, decider, expiry, audit,
//!   garbage collection);
//! - [`leader`]: Lease-based leader election (one active replica), judged
//!   by the local clock, released on shutdown;
//! - [`scope`]: `--watch-namespaces` (every namespace, or only those);
//! - [`watch`]: watches that skip a malformed object instead of stalling;
//! - [`guard`]: a panic on one object is caught for that object;
//! - [`text`]: user text cut to size on a character boundary;
//! - [`metrics`]: `palisade_operator_*` metrics, `/healthz`, `/readyz`;
//! - [`bundle_secret`] (from `palisade-crds`, beside `gateway_report`):
//!   the formats the operator and the gateways share.
//!
//! One loop compiles everything because the product is one object per
//! installation: a change to any policy or grant recompiles the bundle
//! (milliseconds for thousands of policies), and last known good versions
//! come from the bundle being served.

pub mod approvals;
pub use palisade_crds::bundle_secret;
pub mod config;
pub mod events;
pub mod gateways;
pub mod guard;
pub mod leader;
pub mod metrics;
pub mod reconcile;
pub mod run;
pub mod scope;
pub mod status;
pub mod text;
pub mod watch;

pub use config::{Error, OperatorConfig};
pub use run::run;
