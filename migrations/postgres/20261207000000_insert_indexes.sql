-- What every key insert pays for: an import writes a million keys, and
-- each index on `keys` is most of a row's cost.
-- - `request_id` and `last_used_at` are NULL on most keys (every imported
--   one, every key created without an idempotency key, every unused key):
--   index only the rows that have one. Both are only ever looked up by a
--   value, which implies NOT NULL, so the partial indexes serve them.
-- - `owner_id` and `keyspace_id` compare byte by byte, as `id` already
--   does: ids are ASCII, and a locale's collation only made each index
--   insert slower (and made `owners.id` and `keys.owner_id` disagree).
ALTER TABLE keys DROP CONSTRAINT keys_request_id_key;
CREATE UNIQUE INDEX keys_request_id ON keys (request_id) WHERE request_id IS NOT NULL;
DROP INDEX keys_last_used_at;
CREATE INDEX keys_last_used_at ON keys (last_used_at) WHERE last_used_at IS NOT NULL;
ALTER TABLE keys
    ALTER COLUMN owner_id TYPE TEXT COLLATE "C",
    ALTER COLUMN keyspace_id TYPE TEXT COLLATE "C";
