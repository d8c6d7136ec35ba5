-- Keyspaces: each key belongs to exactly one, which gives it its prefix
-- (`<prefix>_sk_live_…`) and the defaults it was created with.
CREATE TABLE keyspaces (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    -- Unique; empty only for the default keyspace, whose keys are bare.
    prefix     TEXT NOT NULL UNIQUE CHECK ((id = 'ks_default') = (prefix = '')),
    -- Defaults for keys created in it (environment, scopes, rotation, grace,
    -- ttl, maximum lifetime, restrictions), as JSON.
    defaults   TEXT NOT NULL,
    -- The declared scope catalogue; empty: any scope.
    scopes     TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    version    INTEGER NOT NULL
);

-- Every key made before keyspaces goes into the default keyspace, and keeps
-- its bare form and its hash.
INSERT INTO keyspaces (id, name, prefix, defaults, scopes, created_at, updated_at, version)
VALUES ('ks_default', 'default', '', '{}', '[]',
        CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER),
        CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER), 1);

-- The default also serves a writer that does not name a keyspace (an older
-- replica during a rolling upgrade). No foreign key, as on SQLite (which
-- cannot add one with a default): the store checks the keyspace, and its
-- prefix, under the change_seq lock of the key's write.
ALTER TABLE keys ADD COLUMN keyspace_id TEXT NOT NULL DEFAULT 'ks_default';
CREATE INDEX keys_keyspace_id ON keys (keyspace_id, id);

-- Stream events carry the keyspace, so a subscriber can filter by it.
ALTER TABLE key_changes ADD COLUMN keyspace_id TEXT NOT NULL DEFAULT 'ks_default';
