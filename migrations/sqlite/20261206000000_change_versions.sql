-- The version of the key each change-log row wrote (NULL on rows written
-- before this column): a replica that already holds that version, because
-- it made the change itself, need not read the key again.
ALTER TABLE key_changes ADD COLUMN key_version BIGINT;
