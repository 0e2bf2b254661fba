//! Palisade's data plane. So far: loading standalone configuration files
//! ([`config`]) and the offline `validate` / `decide` commands that let policy
//! authors validate a file and ask what it would decide. The HTTP server,
//! providers, identity, audit wiring and metrics arrive with issue #5.

pub mod config;
