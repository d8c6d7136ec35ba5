-- The change log's lineage: a random id made once, with the database. A
-- replica remembers it; when it changes (a restore from another lineage),
-- the replica's applied sequence means nothing here and it reloads its
-- index. Set a new value by hand after restoring a backup:
--   UPDATE log_lineage SET epoch = random();
CREATE TABLE log_lineage (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    epoch INTEGER NOT NULL
);
INSERT INTO log_lineage (id, epoch) VALUES (1, random());
