-- How much of each limit's window the gateway replicas together have
-- leased (spec.limits shared across replicas): one row per budget and
-- window, `used` only ever raised, up to the limit. Not audit history:
-- the runtime role may update it and drop windows that are over.
CREATE TABLE budget_usage (
    budget TEXT NOT NULL,
    window_start BIGINT NOT NULL,
    used BIGINT NOT NULL,
    PRIMARY KEY (budget, window_start)
);
