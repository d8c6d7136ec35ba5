//! Adoption: keys made elsewhere, imported by hash or raw value into a
//! keyspace that declares their legacy format, verified as they are on
//! every replica, retired from a date, and rotated into keysmith keys.

use keysmith::grpc::pb::{self, VerifyCode};
use sha2::{Digest, Sha256};
use tonic::Code;

use crate::helpers::{Backend, TestApp, TestDb, assert_status, eventually, spawn, spawn_on};

/// A platform's old key: `acme_live_` and 32 hex digits.
fn old_key(n: u32) -> String {
    format!(
        "acme_live_{:032x}",
        0x5eed_0000_0000_0000_u128 * 7919 + u128::from(n)
    )
}

fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

fn hex_format(retire: Option<keysmith::grpc::wkt::Timestamp>) -> pb::LegacyFormat {
    pb::LegacyFormat {
        name: "acme-v1".into(),
        prefix: "acme_live_".into(),
        alphabet: pb::LegacyAlphabet::Hex.into(),
        characters: String::new(),
        min_length: 32,
        max_length: 32,
        retire_time: retire,
    }
}

/// A keyspace `acme` that accepts the old keys.
async fn legacy_keyspace(app: &TestApp) -> String {
    app.admin
        .clone()
        .create_keyspace(pb::CreateKeyspaceRequest {
            name: "Acme".into(),
            prefix: "acme".into(),
            defaults: None,
            scopes: vec![],
            leak_response: None,
            legacy_formats: vec![hex_format(None)],
        })
        .await
        .expect("create keyspace")
        .into_inner()
        .id
}

fn by_hash(hash: String, owner: &str) -> pb::ImportedKey {
    pb::ImportedKey {
        secret: Some(pb::imported_key::Secret::Hash(hash)),
        owner_id: owner.into(),
        scopes: vec!["orders:read".into()],
        external_id: format!("legacy-{owner}"),
        ..Default::default()
    }
}

fn by_raw(raw: &str, owner: &str) -> pb::ImportedKey {
    pb::ImportedKey {
        secret: Some(pb::imported_key::Secret::Raw(raw.into())),
        owner_id: owner.into(),
        scopes: vec!["orders:read".into()],
        ..Default::default()
    }
}

async fn import(
    app: &TestApp,
    keyspace: &str,
    keys: Vec<pb::ImportedKey>,
) -> Result<pb::ImportKeysResponse, tonic::Status> {
    app.admin
        .clone()
        .import_keys(pb::ImportKeysRequest {
            keyspace: keyspace.into(),
            keys,
            on_conflict: pb::ImportConflict::Report.into(),
            dry_run: false,
        })
        .await
        .map(tonic::Response::into_inner)
}

async fn audited_imports(app: &TestApp) -> Vec<pb::AuditEvent> {
    app.admin
        .clone()
        .list_audit_events(pb::ListAuditEventsRequest {
            action: "keys.imported".into(),
            ..Default::default()
        })
        .await
        .expect("audit")
        .into_inner()
        .events
}

/// By hash and by raw value; both verify here and on a replica started
/// on the same database, with what the import gave them, and the batch is
/// one audit event with its count and the token.
async fn imported_keys_verify_on_every_replica(backend: Backend) {
    let app = spawn(backend).await;
    let ks = legacy_keyspace(&app).await;
    let (a, b) = (old_key(1), old_key(2));
    let resp = import(
        &app,
        &ks,
        vec![by_hash(sha256_hex(&a), "acct_a"), by_raw(&b, "acct_b")],
    )
    .await
    .expect("import");
    assert_eq!((resp.created, resp.unchanged, resp.conflicts), (2, 0, 0));
    for (key, owner) in [(&a, "acct_a"), (&b, "acct_b")] {
        let v = app.verify_scopes(key, &["orders:read"]).await;
        assert_eq!((v.code(), v.owner_id.as_str()), (VerifyCode::Valid, owner));
    }
    let got = app.get(&resp.results[0].key_id).await;
    assert_eq!(got.external_id, "legacy-acct_a");
    assert!(got.import_time.is_some());
    assert_eq!(got.hint, "…", "a hash shows nothing of the key");
    assert_eq!(app.get(&resp.results[1].key_id).await.hint, "acme_live_…");
    let events = audited_imports(&app).await;
    assert_eq!(events.len(), 1, "one event for the batch");
    let changes: serde_json::Value = serde_json::from_str(&events[0].changes_json).expect("json");
    assert_eq!(changes["created"], 2, "{changes}");
    assert!(events[0].actor.starts_with("admin:"), "{}", events[0].actor);

    let db = TestDb {
        backend,
        config: app.db.config.clone(),
        dir: tempfile::tempdir().expect("temp dir"),
    };
    let second = spawn_on(db, Some(app.token.clone())).await;
    for key in [&a, &b] {
        assert_eq!(second.verify_code(key).await, VerifyCode::Valid);
    }
    // Of the old shape, but never imported: unknown. Of no shape: malformed.
    assert_eq!(second.verify_code(&old_key(3)).await, VerifyCode::NotFound);
    assert_eq!(
        second
            .verify_code("acme_live_not-hex-at-all-000000000")
            .await,
        VerifyCode::Malformed
    );
    // Imported after the second replica started: it follows the change log.
    let c = old_key(4);
    import(&app, &ks, vec![by_raw(&c, "acct_c")])
        .await
        .expect("import");
    eventually("the second replica to know the later key", || async {
        second.verify_code(&c).await == VerifyCode::Valid
    })
    .await;
}

/// The same batch again changes nothing and says so; the same hash with
/// other data is a conflict that overwrites nothing, unless asked.
async fn reimport_is_unchanged_and_a_conflict_is_reported(backend: Backend) {
    let app = spawn(backend).await;
    let ks = legacy_keyspace(&app).await;
    let a = old_key(1);
    let first = import(&app, &ks, vec![by_raw(&a, "acct_a")])
        .await
        .expect("import");
    let again = import(&app, &ks, vec![by_raw(&a, "acct_a")])
        .await
        .expect("again");
    assert_eq!((again.created, again.unchanged), (0, 1));
    assert_eq!(again.results[0].key_id, first.results[0].key_id);
    assert_eq!(
        audited_imports(&app).await.len(),
        1,
        "nothing written, nothing audited"
    );

    let mut other = by_raw(&a, "acct_a");
    other.scopes = vec!["orders:write".into()];
    other.name = "renamed".into();
    let conflict = import(&app, &ks, vec![other.clone()])
        .await
        .expect("conflict");
    assert_eq!(conflict.conflicts, 1);
    assert_eq!(conflict.results[0].differs, ["name", "scopes"]);
    let v = app.verify_scopes(&a, &["orders:read"]).await;
    assert_eq!(v.code(), VerifyCode::Valid, "the stored record stands");

    let overwritten = app
        .admin
        .clone()
        .import_keys(pb::ImportKeysRequest {
            keyspace: ks.clone(),
            keys: vec![other],
            on_conflict: pb::ImportConflict::Overwrite.into(),
            dry_run: false,
        })
        .await
        .expect("overwrite")
        .into_inner();
    assert_eq!(overwritten.overwritten, 1);
    let v = app.verify_scopes(&a, &["orders:write"]).await;
    assert_eq!(v.code(), VerifyCode::Valid, "{v:?}");
    assert_eq!(
        app.verify_scopes(&a, &["orders:read"]).await.code(),
        VerifyCode::InsufficientScope
    );
}

/// One bad entry refuses its whole batch, naming it; nothing of the batch
/// is written.
async fn a_bad_entry_refuses_its_batch(backend: Backend) {
    let app = spawn(backend).await;
    let ks = legacy_keyspace(&app).await;
    let good = by_raw(&old_key(1), "acct_a");
    let future = keysmith::grpc::wkt::Timestamp {
        seconds: 4_000_000_000,
        nanos: 0,
    };
    let cases: Vec<(&str, pb::ImportedKey, Code, &str)> = vec![
        (
            "a hash of the wrong length",
            by_hash("ab".repeat(31), "acct_b"),
            Code::InvalidArgument,
            "keys[1].hash",
        ),
        (
            "a raw value of no declared format",
            by_raw("sk_live_somebody_elses_key", "acct_b"),
            Code::InvalidArgument,
            "keys[1].raw",
        ),
        (
            "the first entry again",
            by_raw(&old_key(1), "acct_b"),
            Code::InvalidArgument,
            "keys[1].raw",
        ),
        (
            "a creation time in the future",
            pb::ImportedKey {
                create_time: Some(future),
                ..by_raw(&old_key(2), "acct_b")
            },
            Code::InvalidArgument,
            "keys[1].create_time",
        ),
        (
            "a role the keyspace lacks",
            pb::ImportedKey {
                roles: vec!["nobody".into()],
                ..by_raw(&old_key(2), "acct_b")
            },
            Code::InvalidArgument,
            "keys[1].roles[0]",
        ),
    ];
    for (what, bad, code, field) in cases {
        let err = import(&app, &ks, vec![good.clone(), bad])
            .await
            .expect_err(what);
        assert_eq!(err.code(), code, "{what}: {err:?}");
        assert!(err.message().contains(field), "{what}: {}", err.message());
        assert!(
            !err.message().contains("somebody_elses"),
            "{what}: a raw value is never echoed: {}",
            err.message()
        );
    }
    assert_status(
        import(&app, "ks_nosuchkeyspace1", vec![good.clone()]).await,
        Code::NotFound,
        "keyspace",
    );
    assert_eq!(app.verify_code(&old_key(1)).await, VerifyCode::NotFound);
    assert!(audited_imports(&app).await.is_empty());
}

/// From its retire time on, keys of a format answer FORMAT_RETIRED, known
/// or not, and the refusals are counted; rotating an imported key before
/// then yields a keysmith key, which keeps working.
async fn a_retired_format_is_refused_and_rotation_moves_to_a_native_key(backend: Backend) {
    let app = spawn(backend).await;
    let ks = legacy_keyspace(&app).await;
    let (a, b) = (old_key(1), old_key(2));
    let resp = import(&app, &ks, vec![by_raw(&a, "acct_a"), by_raw(&b, "acct_b")])
        .await
        .expect("import");
    let rotated = app
        .admin
        .clone()
        .rotate_key(pb::RotateKeyRequest {
            id: resp.results[0].key_id.clone(),
            ..Default::default()
        })
        .await
        .expect("rotate")
        .into_inner();
    let native = rotated.secret.clone();
    assert!(
        native.starts_with("acme_sk_live_"),
        "a keysmith key: {native}"
    );
    let successor = rotated.key.as_ref().expect("key");
    assert!(successor.import_time.is_none(), "made here, not imported");
    assert_eq!(app.verify_code(&native).await, VerifyCode::Valid);
    let overlap = app
        .admin
        .clone()
        .get_rotation_overlap(pb::GetRotationOverlapRequest {
            id: resp.results[0].key_id.clone(),
        })
        .await
        .expect("the migration's progress")
        .into_inner();
    assert_eq!(overlap.old_key_id, resp.results[0].key_id);

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    let retire = keysmith::grpc::wkt::Timestamp {
        seconds: now - 1,
        nanos: 0,
    };
    app.admin
        .clone()
        .update_keyspace(pb::UpdateKeyspaceRequest {
            keyspace: Some(pb::Keyspace {
                id: ks.clone(),
                legacy_formats: vec![hex_format(Some(retire))],
                ..Default::default()
            }),
            update_mask: Some(keysmith::grpc::wkt::FieldMask {
                paths: vec!["legacy_formats".into()],
            }),
        })
        .await
        .expect("retire");
    for key in [&a, &b, &old_key(3)] {
        assert_eq!(app.verify_code(key).await, VerifyCode::FormatRetired);
    }
    assert_eq!(app.verify_code(&native).await, VerifyCode::Valid);
    let got = app
        .admin
        .clone()
        .get_keyspace(pb::GetKeyspaceRequest { id: ks })
        .await
        .expect("get")
        .into_inner();
    assert!(got.legacy_formats[0].retire_time.is_some());
}

/// Every key's record goes out without a secret and comes back into an
/// empty database: the same ids, owners and states, and each key verifies
/// as before, native and imported alike.
async fn export_then_import_round_trips(backend: Backend) {
    let app = spawn(backend).await;
    let ks = legacy_keyspace(&app).await;
    let old = old_key(1);
    import(&app, &ks, vec![by_raw(&old, "acct_a")])
        .await
        .expect("import");
    let native = app.create_with_scopes(&["orders:read"]).await;
    let revoked = app.create_with_scopes(&[]).await;
    app.revoke(&revoked.key.as_ref().expect("key").id).await;
    let exported = app
        .admin
        .clone()
        .export_keys(pb::ExportKeysRequest::default())
        .await
        .expect("export")
        .into_inner();
    assert_eq!(exported.keys.len(), 3);
    let text = format!("{:?}", exported.keys);
    assert!(
        !text.contains(&old) && !text.contains(&native.secret),
        "no secret leaves"
    );

    let empty = spawn(backend).await;
    // Keyspace ids differ between installations: the new one has its own.
    let acme = legacy_keyspace(&empty).await;
    for (key, keyspace) in exported.keys.iter().zip(&exported.keyspaces) {
        // Keyspace ids differ between installations; what matters to a key
        // is its keyspace's prefix, so each goes to the keyspace of its own.
        let into = if *keyspace == ks {
            acme.clone()
        } else {
            String::new()
        };
        import(&empty, &into, vec![key.clone()])
            .await
            .expect("import back");
    }
    assert_eq!(empty.verify_code(&old).await, VerifyCode::Valid);
    assert_eq!(
        empty
            .verify_scopes(&native.secret, &["orders:read"])
            .await
            .code(),
        VerifyCode::Valid
    );
    assert_eq!(
        empty.verify_code(&revoked.secret).await,
        VerifyCode::Revoked
    );
    let id = &native.key.as_ref().expect("key").id;
    assert_eq!(
        empty.get(id).await.owner_id,
        native.key.as_ref().expect("key").owner_id
    );
}

/// A token limited to one owner imports for that owner only; a hash held
/// by another owner's key is refused with one answer that names no key and
/// tells nothing of its record; ending a key by import needs keys.revoke.
async fn a_limited_token_imports_within_its_reach(backend: Backend) {
    use crate::token_support::{mint, names, with_permissions};
    let app = spawn(backend).await;
    let ks = legacy_keyspace(&app).await;
    let theirs = old_key(1);
    let stored = import(&app, &ks, vec![by_raw(&theirs, "acct_other")])
        .await
        .expect("import");
    let req = pb::CreateAdminTokenRequest {
        owners: vec!["acct_mine".into()],
        ..with_permissions("mine", names(&["keys.write"]))
    };
    let mut mine = mint(&app, &app.admin, req).await.admin;
    let try_import = |keys: Vec<pb::ImportedKey>, dry_run: bool| pb::ImportKeysRequest {
        keyspace: ks.clone(),
        keys,
        on_conflict: pb::ImportConflict::Report.into(),
        dry_run,
    };
    let err = mine
        .import_keys(try_import(vec![by_raw(&theirs, "acct_mine")], true))
        .await
        .expect_err("another owner's key");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("keys[0].hash"), "{}", err.message());
    assert!(
        !err.message().contains(&stored.results[0].key_id) && !err.message().contains("acct_other"),
        "{}",
        err.message()
    );
    assert_status(
        mine.import_keys(try_import(vec![by_raw(&old_key(2), "acct_other")], false))
            .await,
        Code::PermissionDenied,
        "owner_id",
    );
    let revoked = pb::ImportedKey {
        revoke_time: Some(keysmith::grpc::wkt::Timestamp {
            seconds: 1_700_000_000,
            nanos: 0,
        }),
        ..by_raw(&old_key(3), "acct_mine")
    };
    assert_status(
        mine.import_keys(try_import(vec![revoked], false)).await,
        Code::PermissionDenied,
        "keys.revoke",
    );
    let ok = mine
        .import_keys(try_import(vec![by_raw(&old_key(4), "acct_mine")], false))
        .await
        .expect("own owner")
        .into_inner();
    assert_eq!(ok.created, 1);
    assert_eq!(
        app.verify_code(&theirs).await,
        VerifyCode::Valid,
        "untouched"
    );
}

/// A full batch of 1,000 commits whole (many rows a statement), as one
/// audit event; a Verify bound to another keyspace never sees its keys.
async fn a_full_batch_commits_whole(backend: Backend) {
    let app = spawn(backend).await;
    let ks = legacy_keyspace(&app).await;
    let keys: Vec<_> = (0..1000)
        .map(|n| by_hash(sha256_hex(&old_key(n)), &format!("acct_{}", n % 7)))
        .collect();
    let resp = import(&app, &ks, keys).await.expect("import");
    assert_eq!(resp.created, 1000);
    for n in [0, 499, 500, 999] {
        assert_eq!(
            app.verify_code(&old_key(n)).await,
            VerifyCode::Valid,
            "key {n}"
        );
    }
    assert_eq!(audited_imports(&app).await.len(), 1);
    let bound = app
        .verify
        .clone()
        .verify(pb::VerifyRequest {
            key: old_key(0),
            keyspace: "ks_default".into(),
            ..Default::default()
        })
        .await
        .expect("verify")
        .into_inner();
    assert_ne!(bound.code(), VerifyCode::Valid, "bound to another keyspace");
}

crate::backend_tests!(
    a_limited_token_imports_within_its_reach,
    a_full_batch_commits_whole,
    imported_keys_verify_on_every_replica,
    reimport_is_unchanged_and_a_conflict_is_reported,
    a_bad_entry_refuses_its_batch,
    a_retired_format_is_refused_and_rotation_moves_to_a_native_key,
    export_then_import_round_trips,
);
