//! Palisade's data plane. So far: loading standalone configuration files
//! ([`config`]), the audit commands ([`audit_cli`]: migrate, verify, query
//! with `--follow`), and the offline `validate` / `decide` commands that
//! let policy authors validate a file and ask what it would decide. The HTTP server,
//! providers, identity, audit wiring and metrics arrive with issue #5.

pub mod audit_cli;
pub mod config;
