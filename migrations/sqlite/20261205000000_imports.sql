-- Adoption: the legacy key formats a keyspace accepts besides its own, and
-- what an imported key keeps of where it came from.
ALTER TABLE keyspaces ADD COLUMN legacy_formats TEXT NOT NULL DEFAULT '[]';
-- The platform's own id for an imported key, kept for reference only.
ALTER TABLE keys ADD COLUMN external_id TEXT;
-- When the key was imported; NULL for a key made here.
ALTER TABLE keys ADD COLUMN imported_at INTEGER;
