//! Palisade's operator: it watches every AIPolicy and ToolGrant, compiles
//! them (with the Secrets they reference, read one by one) into one
//! `PolicyBundle`, writes it with server-side apply into the one Secret the
//! gateways watch, and reports per-object status and Events.
//!
//! - [`bundle_secret`] (from `palisade-crds`): the compiled object, a Secret;
//! - [`status`]: pure status computation (conditions that only move on change);
//! - [`reconcile`]: the watch → compile → apply → status loop;
//! - [`approvals`]: the Approval lifecycle (phase, decider, expiry, audit,
//!   garbage collection);
//! - [`leader`]: Lease-based leader election (one active replica);
//! - [`watch`]: watches that skip a malformed object instead of stalling;
//! - [`metrics`]: `palisade_operator_*` metrics, `/healthz`, `/readyz`.
//!
//! One loop compiles everything because the product is one object per
//! installation: a change to any policy or grant recompiles the bundle
//! (milliseconds for thousands of policies), and last known good versions
//! come from the bundle being served.

pub mod approvals;
pub use palisade_crds::bundle_secret;
pub mod leader;
pub mod metrics;
pub mod reconcile;
pub mod status;
pub mod watch;

pub use reconcile::{Error, OperatorConfig, run};
