-- An approval keeps a bounded preview of the held call's arguments (at
-- most 4096 bytes, as the gateway writes it) and whether it was cut,
-- instead of the whole arguments: the approval is bound to the digest of
-- the full arguments, so the preview only has to show them to a human.
-- Rows held before keep the start of their (already redacted) arguments:
-- their first 1000 characters (at most 4000 bytes), marked when cut.
ALTER TABLE approvals ADD COLUMN arguments_preview TEXT NOT NULL DEFAULT '';
ALTER TABLE approvals ADD COLUMN arguments_truncated BIGINT NOT NULL DEFAULT 0;
UPDATE approvals SET
    arguments_preview = CASE WHEN LENGTH(arguments) <= 1000 THEN arguments
        ELSE SUBSTR(arguments, 1, 1000) || ' … [truncated]' END,
    arguments_truncated = CASE WHEN LENGTH(arguments) <= 1000 THEN 0 ELSE 1 END;
ALTER TABLE approvals DROP COLUMN arguments;
