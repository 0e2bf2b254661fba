//! Palisade's audit pipeline (issue #4, not built yet): the audit event
//! type, the Postgres and SQLite sinks behind one sqlx code path, the
//! durable spool used while the database is unreachable, embedded
//! migrations, and queries. Both the gateway and the operator record
//! decisions through it.
