-- The absolute end of a key and of every successor rotated from it. Set by
-- CreateKey and by an admin's UpdateKey expiry; a rotation copies it to the
-- successor, so rotating never extends a key's life. Scheduled expiries and
-- grace periods move expires_at only. NULL: no absolute end.
ALTER TABLE keys ADD COLUMN lineage_expires_at INTEGER;

-- Existing keys: their current expiry is the best record of their end. A key
-- whose expiry came from a scheduled rotation's expire action passes that
-- expiry on to its successor; an admin extends it with UpdateKey.
UPDATE keys SET lineage_expires_at = expires_at;
