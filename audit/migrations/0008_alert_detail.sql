-- What a security alert saw (rows of kind security_alert), e.g. "11
-- denials in 60 s (threshold 10)" or "argument path: path traversal".
-- Never an argument's value. NULL on every other row.
ALTER TABLE audit_events ADD COLUMN detail TEXT;
