-- Request ids expire once their resource is gone (docs/storage.md): when each was recorded (by
-- the proposer's clock) and when it expires (NULL while the resource exists). Entries from before
-- this migration count as recorded at time 0, so they expire once their resource is deleted.
ALTER TABLE request_ids ADD COLUMN created_at_ms INTEGER NOT NULL DEFAULT 0;
ALTER TABLE request_ids ADD COLUMN expires_at_ms INTEGER;
