-- Tokens a routed request used, as its provider reported them: input
-- (prompt), output (completion) and, of the input, how many were read
-- from the provider's prompt cache. NULL where unknown (tool calls,
-- approvals, providers that report nothing, rows from before this).
ALTER TABLE audit_events ADD COLUMN input_tokens BIGINT;
ALTER TABLE audit_events ADD COLUMN output_tokens BIGINT;
ALTER TABLE audit_events ADD COLUMN cached_tokens BIGINT;
