-- What a tool Palisade ran itself returned (rows of kind tool_result):
-- the SHA-256 of the result as it was handed on (sanitized and capped)
-- and the size of what the tool produced. NULL on every other row.
ALTER TABLE audit_events ADD COLUMN result_sha256 TEXT;
ALTER TABLE audit_events ADD COLUMN result_bytes BIGINT;
