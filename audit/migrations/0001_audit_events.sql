-- One row per decision. Portable SQL: the same migration runs on
-- PostgreSQL and SQLite. Times are RFC 3339 text plus epoch milliseconds
-- for range queries; reason codes are stored as ",a,b," so a LIKE on
-- ",code," matches one code exactly.
CREATE TABLE audit_events (
    id TEXT PRIMARY KEY,
    writer TEXT NOT NULL,
    seq BIGINT NOT NULL,
    time TEXT NOT NULL,
    time_ms BIGINT NOT NULL,
    kind TEXT NOT NULL,
    request_id TEXT NOT NULL,
    namespace TEXT NOT NULL,
    agent TEXT NOT NULL,
    policy TEXT,
    policy_generation BIGINT,
    rule TEXT,
    decision TEXT NOT NULL,
    enforced BIGINT NOT NULL,
    reason_codes TEXT NOT NULL,
    tool TEXT,
    argument_digest TEXT,
    arguments TEXT,
    provider TEXT,
    model TEXT,
    prompt_sha256 TEXT,
    prompt_chars BIGINT,
    prompt_text TEXT,
    upstream_status BIGINT,
    latency_us BIGINT,
    approval TEXT,
    decided_by TEXT,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);

CREATE UNIQUE INDEX audit_events_writer_seq ON audit_events (writer, seq);
CREATE INDEX audit_events_time ON audit_events (time_ms);
CREATE INDEX audit_events_request ON audit_events (request_id);
CREATE INDEX audit_events_agent ON audit_events (namespace, agent, time_ms);
CREATE INDEX audit_events_decision ON audit_events (decision, time_ms);
CREATE INDEX audit_events_tool ON audit_events (tool, time_ms);
