-- Tamper-evident audit: each event stores the hash of the one before it
-- and its own hash over (previous hash, event). See src/store/audit_chain.rs.
ALTER TABLE audit_events ADD COLUMN prev_hash BLOB;
ALTER TABLE audit_events ADD COLUMN hash BLOB;
