//! Upgrading in place: a database written by the schema before keyspaces
//! (only the migrations older than the keyspaces one, keys written with
//! that version's exact column set) is opened by the real server. Its keys
//! keep verifying, are in `ks_default`, and keep the bare form.

use std::path::Path;

use keysmith::{
    domain::{ApiKey, Environment, KeyId, KeyType},
    grpc::pb,
};
use sqlx::{PgPool, SqlitePool, migrate::Migrator, sqlite::SqliteConnectOptions};

use crate::helpers::{Backend, TestDb, spawn_on};

/// The keyspaces migration: everything before it is the previous schema.
const KEYSPACES_MIGRATION: i64 = 20261202000000;

/// A key row as the previous version's `Store::write` inserted it: the same
/// 24 columns, in its order.
const OLD_INSERT: &str = "INSERT INTO keys (id, key_hash, owner_id, name, key_type, environment, \
     scopes, metadata, hint, created_at, updated_at, expires_at, revoked_at, revoke_reason, \
     disabled_at, disable_reason, rotated_from, rotated_to, version, request_id, \
     request_fingerprint, restrictions, rotation_policy, lineage_expires_at) \
     VALUES ($1, $2, 'acct_old', 'from before', 'secret', 'live', '[\"invoices:read\"]', '{}', \
     $3, $4, $4, NULL, $5, CASE WHEN $5 IS NULL THEN NULL ELSE 'leaked' END, NULL, NULL, NULL, \
     NULL, $6, NULL, NULL, '{}', NULL, NULL)";

/// Its change-log row (the previous columns, without a keyspace).
const OLD_CHANGE: &str = "INSERT INTO key_changes (seq, key_id, key_hash, kind, owner_id, \
     environment, expires_at, at) VALUES ($1, $2, $3, $4, 'acct_old', 'live', NULL, $5)";

enum OldDb {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

struct OldKey {
    secret: ApiKey,
    id: KeyId,
    revoked: bool,
}

impl OldDb {
    async fn open(db: &TestDb) -> Self {
        match &db.config.database_url {
            Some(url) => Self::Postgres(PgPool::connect(url).await.expect("postgres")),
            None => {
                std::fs::create_dir_all(&db.config.data_dir).expect("data dir");
                let options = SqliteConnectOptions::new()
                    .filename(db.sqlite_file())
                    .create_if_missing(true);
                Self::Sqlite(SqlitePool::connect_with(options).await.expect("sqlite"))
            }
        }
    }

    /// Applies every migration older than the keyspaces one, recorded as
    /// the previous version's `migrate` would have.
    async fn migrate_to_previous_schema(&self, backend: &str) {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("migrations")
            .join(backend);
        let migrator = Migrator::new(dir.as_path()).await.expect("migrations");
        assert!(
            migrator.iter().any(|m| m.version == KEYSPACES_MIGRATION),
            "the keyspaces migration is in {dir:?}"
        );
        let target = KEYSPACES_MIGRATION - 1;
        match self {
            Self::Postgres(p) => migrator.run_to(target, p).await,
            Self::Sqlite(p) => migrator.run_to(target, p).await,
        }
        .expect("previous schema");
        // The previous schema indeed: keys have no keyspace yet.
        let probe = "SELECT keyspace_id FROM keys";
        let probed = match self {
            Self::Postgres(p) => sqlx::query(probe).execute(p).await.map(drop),
            Self::Sqlite(p) => sqlx::query(probe).execute(p).await.map(drop),
        };
        assert!(
            probed.is_err(),
            "keys.keyspace_id exists before the upgrade"
        );
    }

    async fn write_old_key(&self, seq: i64, revoked: bool) -> OldKey {
        let secret = ApiKey::generate(KeyType::Secret, Environment::Live).expect("rng");
        let id = KeyId::generate();
        let now = keysmith::domain::Timestamp::now().as_millis();
        let revoked_at = revoked.then_some(now);
        let version = if revoked { 2_i64 } else { 1 };
        let hash = secret.hash().as_bytes().to_vec();
        let kind = if revoked { "revoked" } else { "created" };
        macro_rules! write {
            ($pool:expr) => {{
                sqlx::query(OLD_INSERT)
                    .bind(id.as_str())
                    .bind(hash.clone())
                    .bind(secret.hint())
                    .bind(now)
                    .bind(revoked_at)
                    .bind(version)
                    .execute($pool)
                    .await
                    .expect("old key row");
                sqlx::query(OLD_CHANGE)
                    .bind(seq)
                    .bind(id.as_str())
                    .bind(hash.clone())
                    .bind(kind)
                    .bind(now)
                    .execute($pool)
                    .await
                    .expect("old change row");
                sqlx::query("UPDATE change_seq SET last = $1 WHERE id = 1")
                    .bind(seq)
                    .execute($pool)
                    .await
                    .expect("change_seq");
            }};
        }
        match self {
            Self::Postgres(p) => write!(p),
            Self::Sqlite(p) => write!(p),
        }
        OldKey {
            secret,
            id,
            revoked,
        }
    }

    async fn close(self) {
        match self {
            Self::Postgres(p) => p.close().await,
            Self::Sqlite(p) => p.close().await,
        }
    }
}

async fn a_database_from_before_keyspaces_upgrades_in_place(backend: Backend) {
    let db = TestDb::new(backend).await;
    let old = OldDb::open(&db).await;
    let folder = match backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    };
    old.migrate_to_previous_schema(folder).await;
    let keys = [
        old.write_old_key(1, false).await,
        old.write_old_key(2, true).await,
    ];
    old.close().await;

    let app = spawn_on(db, None).await;
    for k in &keys {
        let secret = k.secret.expose_secret();
        assert!(secret.starts_with("sk_live_") && secret.len() == 57);
        let expected = match k.revoked {
            false => pb::VerifyCode::Valid,
            true => pb::VerifyCode::Revoked,
        };
        let answer = |keyspace: &str| {
            let req = pb::VerifyRequest {
                key: secret.into(),
                keyspace: keyspace.into(),
                ..Default::default()
            };
            let mut verify = app.verify.clone();
            async move { verify.verify(req).await.expect("verify").into_inner() }
        };
        assert_eq!(answer("").await.code(), expected, "{}", k.id.as_str());
        assert_eq!(answer("ks_default").await.code(), expected);
        let key = app.get(k.id.as_str()).await;
        assert_eq!(key.keyspace, "ks_default");
        assert_eq!(key.hint, k.secret.hint());
        assert_eq!(key.scopes, vec!["invoices:read"]);
    }
    let default = app
        .admin
        .clone()
        .get_keyspace(pb::GetKeyspaceRequest {
            id: "ks_default".into(),
        })
        .await
        .expect("the default keyspace")
        .into_inner();
    assert_eq!(default.prefix, "");
    assert_eq!(
        default.scanner_regex,
        r"\b(sk|pk)_(live|test)_[0-9A-Za-z]{49}\b"
    );
    // The old change log reads on, each change in the default keyspace.
    let watch = pb::WatchRevocationsRequest {
        after_cursor: Some(0),
        all_changes: true,
        keyspace: "ks_default".into(),
        ..Default::default()
    };
    let mut events = app
        .verify
        .clone()
        .watch_revocations(watch)
        .await
        .expect("watch")
        .into_inner();
    for k in &keys {
        let e = tokio::time::timeout(std::time::Duration::from_secs(10), events.message())
            .await
            .expect("in time")
            .expect("ok")
            .expect("an old change");
        assert_eq!(
            (e.key_id.as_str(), e.keyspace.as_str()),
            (k.id.as_str(), "ks_default")
        );
    }
    // A rotation of an old key stays bare, in the default keyspace; new keys
    // made without a keyspace too.
    let rotated = app
        .admin
        .clone()
        .rotate_key(pb::RotateKeyRequest {
            id: keys[0].id.as_str().into(),
            ..Default::default()
        })
        .await
        .expect("rotate an old key")
        .into_inner();
    assert!(rotated.secret.starts_with("sk_live_") && rotated.secret.len() == 57);
    assert_eq!(rotated.key.expect("successor").keyspace, "ks_default");
    assert_eq!(
        app.verify_code(&rotated.secret).await,
        pb::VerifyCode::Valid
    );
    let fresh = app.create_with_scopes(&[]).await;
    assert!(fresh.secret.starts_with("sk_live_"));
    assert_eq!(fresh.key.expect("key").keyspace, "ks_default");
}

crate::backend_tests!(a_database_from_before_keyspaces_upgrades_in_place);
