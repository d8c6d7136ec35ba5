-- Roles: named sets of scopes in one keyspace, which keys hold by name.
CREATE TABLE roles (
    keyspace_id TEXT NOT NULL REFERENCES keyspaces (id),
    name        TEXT NOT NULL,
    description TEXT NOT NULL,
    -- The scopes, as a JSON list.
    scopes      TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    version     INTEGER NOT NULL,
    PRIMARY KEY (keyspace_id, name)
);

-- Which key holds which role: always a role of the key's own keyspace. A
-- role cannot be deleted while a row here names it (the store first drops
-- the rows of revoked keys, and refuses while a live key holds it).
CREATE TABLE key_roles (
    key_id      TEXT NOT NULL REFERENCES keys (id),
    keyspace_id TEXT NOT NULL,
    role_name   TEXT NOT NULL,
    PRIMARY KEY (key_id, role_name),
    FOREIGN KEY (keyspace_id, role_name) REFERENCES roles (keyspace_id, name)
);

-- UpdateRole and DeleteRole find a role's holders by it.
CREATE INDEX key_roles_role ON key_roles (keyspace_id, role_name);
