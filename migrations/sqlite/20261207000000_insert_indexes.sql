-- What every key insert pays for: `last_used_at` is NULL on most keys
-- (every imported one, every unused one), and it is only ever looked up by
-- a value, which implies NOT NULL: index only the rows that have one.
-- (PostgreSQL's migration of this version also makes `request_id`'s
-- unique index partial; SQLite's is part of the table and stays.)
DROP INDEX keys_last_used_at;
CREATE INDEX keys_last_used_at ON keys (last_used_at) WHERE last_used_at IS NOT NULL;
