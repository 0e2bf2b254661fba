-- Streamed answers open now, per limit and gateway replica
-- (spec.limits.*.concurrentStreams shared across replicas): a replica
-- renews its rows while it holds streams; rows not renewed for a minute
-- (a replica that died) no longer count. Not audit history.
CREATE TABLE stream_slots (
    budget TEXT NOT NULL,
    holder TEXT NOT NULL,
    open BIGINT NOT NULL,
    renewed_ms BIGINT NOT NULL,
    PRIMARY KEY (budget, holder)
);
