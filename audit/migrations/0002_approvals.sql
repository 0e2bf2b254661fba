-- Held tool calls of the standalone gateway (in a cluster they are
-- Approval resources instead). Portable SQL, as 0001. Times are epoch
-- milliseconds. A row is written once by the gateway; a human's decision
-- and the single consumption are compare-and-set updates.
CREATE TABLE approvals (
    namespace TEXT NOT NULL,
    name TEXT NOT NULL,
    agent TEXT NOT NULL,
    tool TEXT NOT NULL,
    arguments TEXT NOT NULL,
    arguments_digest TEXT NOT NULL,
    request_id TEXT NOT NULL,
    policy TEXT NOT NULL,
    policy_generation BIGINT NOT NULL,
    rule TEXT,
    requested_by TEXT,
    requested_at_ms BIGINT NOT NULL,
    expires_at_ms BIGINT NOT NULL,
    decision TEXT,
    reason TEXT,
    decided_by TEXT,
    decided_at_ms BIGINT,
    consumed_at_ms BIGINT,
    consumed_by TEXT,
    expiry_recorded BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (namespace, name)
);

CREATE INDEX approvals_pending ON approvals (decision, expires_at_ms);
