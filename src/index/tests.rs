use super::*;
use crate::domain::{ApiKey, Environment, KeyName, KeyType, OwnerId, Timestamp};

fn record() -> KeyRecord {
    let key = ApiKey::generate(KeyType::Secret, Environment::Live).unwrap();
    KeyRecord::new(
        &key,
        OwnerId::parse("acct_1").unwrap(),
        KeyName::parse("k").unwrap(),
        Vec::new(),
        Timestamp::from_millis(1_000),
    )
}

fn revoked(r: &KeyRecord) -> KeyRecord {
    let mut next = r.clone();
    next.version += 1;
    next.revoked_at = Some(Timestamp::from_millis(2_000));
    next
}

fn is_revoked(index: &KeyIndex, r: &KeyRecord) -> bool {
    index.get(&r.hash).expect("indexed").revoked
}

#[test]
fn a_reload_keeps_a_local_write_its_snapshot_predates() {
    let index = KeyIndex::default();
    let key = record();
    index.upsert(&key);
    // The snapshot read the key before the revoke committed; the revoke's
    // own replica installed it meanwhile.
    let mut reload = index.begin_reload();
    index.upsert(&revoked(&key));
    reload.put(&key);
    assert!(is_revoked(&index, &key));
    assert_eq!(reload.finish(), 0);
    assert!(is_revoked(&index, &key));
}

#[test]
fn a_local_write_during_a_reload_wins_over_what_the_index_held_before() {
    let index = KeyIndex::default();
    let key = record();
    // Version 2 from a primary that failed over; the standby that took
    // over lost it, and a revoke there writes its own version 2.
    let mut lost = key.clone();
    lost.version = 2;
    index.upsert(&lost);
    let mut reload = index.begin_reload();
    index.upsert(&revoked(&key));
    // The snapshot's row is older than the revoke: the revoke is installed.
    reload.put(&key);
    assert!(is_revoked(&index, &key));
    reload.finish();
    assert!(is_revoked(&index, &key));
}

#[test]
fn a_late_local_write_never_undoes_a_newer_version() {
    let index = KeyIndex::default();
    let key = record();
    // Another replica revoked the key (version 3) and the feed applied it;
    // this replica's own version 2, committed before, lands during a reload.
    let mut renamed = key.clone();
    renamed.version = 2;
    let mut gone = revoked(&renamed);
    gone.version = 3;
    index.upsert(&gone);
    let mut reload = index.begin_reload();
    index.upsert(&renamed);
    assert!(is_revoked(&index, &key));
    reload.put(&gone);
    reload.finish();
    assert!(is_revoked(&index, &key));
}

#[test]
fn a_key_written_after_the_snapshot_was_read_is_installed_at_the_end() {
    let index = KeyIndex::default();
    let key = record();
    let mut lost = key.clone();
    lost.version = 2;
    index.upsert(&lost);
    let reload = index.begin_reload();
    // Not in the snapshot: written after it was read, at a version the
    // index already held from before a failover.
    index.upsert(&revoked(&key));
    reload.finish();
    assert!(is_revoked(&index, &key));
}

#[test]
fn a_reload_keeps_a_key_created_during_it_and_drops_what_is_gone() {
    let index = KeyIndex::default();
    let gone = record();
    let kept = record();
    index.upsert(&gone);
    index.upsert(&kept);
    let mut reload = index.begin_reload();
    let created = record();
    index.upsert(&created);
    reload.put(&kept);
    assert_eq!(reload.finish(), 1);
    assert!(index.get(&gone.hash).is_none());
    assert!(index.get(&kept.hash).is_some());
    assert!(index.get(&created.hash).is_some());
}

#[test]
fn after_a_reload_writes_are_ordinary_upserts_again() {
    let index = KeyIndex::default();
    let key = record();
    let reload = index.begin_reload();
    drop(reload);
    index.upsert(&key);
    let mut reload = index.begin_reload();
    reload.put(&revoked(&key));
    reload.finish();
    assert!(index.local_writes().is_none());
    // A restored database may hold an older version: the reload wins.
    let mut reload = index.begin_reload();
    reload.put(&key);
    reload.finish();
    assert!(!is_revoked(&index, &key));
}
