-- Agents a security alert quarantined on a standalone gateway (in a
-- cluster the quarantine is an annotation on the AIPolicy instead).
-- Portable SQL, as 0001. A row stays until a human lifts it.
CREATE TABLE quarantines (
    namespace TEXT NOT NULL,
    agent TEXT NOT NULL,
    kind TEXT NOT NULL,
    detail TEXT NOT NULL,
    request_id TEXT NOT NULL,
    since_ms BIGINT NOT NULL,
    PRIMARY KEY (namespace, agent)
);
