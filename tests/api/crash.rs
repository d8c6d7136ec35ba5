//! `kill -9` in the middle of a burst of CreateKey, RotateKey and RevokeKey.
//! After a restart every call that returned OK is there, and no rotation
//! is half applied.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use keysmith::grpc::pb::{self, VerifyCode};
use tokio::task::JoinSet;

use crate::{
    helpers::{Admin, Backend, TestDb, eventually_within},
    process::{Replica, mint_token},
};

const WORKERS: u64 = 8;
/// Acknowledged calls before the kill; workers keep calling meanwhile.
const ACKED_BEFORE_KILL: usize = 120;

/// A call that returned OK, or a revocation that was sent (the kill may
/// cut its answer off after it committed).
#[derive(Debug, Clone)]
enum Acked {
    RevokeSent {
        id: String,
    },
    Created {
        id: String,
        secret: String,
    },
    Rotated {
        old: String,
        new: String,
        secret: String,
    },
    Revoked {
        id: String,
    },
}

async fn worker(mut admin: Admin, seed: u64, log: Arc<Mutex<Vec<Acked>>>) {
    let mut live: Vec<String> = Vec::new();
    let mut state = seed;
    loop {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let pick = (state >> 33) % 10;
        let acked = if live.is_empty() || pick < 4 {
            let req = pb::CreateKeyRequest {
                owner_id: format!("acct_{seed}"),
                scopes: vec!["invoices:read".into()],
                ..Default::default()
            };
            let Ok(r) = admin.create_key(req).await else {
                return;
            };
            let r = r.into_inner();
            let id = r.key.expect("key").id;
            live.push(id.clone());
            Acked::Created {
                id,
                secret: r.secret,
            }
        } else if pick < 7 {
            let old = live.swap_remove((state as usize >> 8) % live.len());
            let req = pb::RotateKeyRequest {
                id: old.clone(),
                ..Default::default()
            };
            let Ok(r) = admin.rotate_key(req).await else {
                return;
            };
            let r = r.into_inner();
            let new = r.key.expect("key").id;
            live.push(new.clone());
            Acked::Rotated {
                old,
                new,
                secret: r.secret,
            }
        } else {
            let id = live.swap_remove((state as usize >> 8) % live.len());
            log.lock()
                .expect("lock")
                .push(Acked::RevokeSent { id: id.clone() });
            let req = pb::RevokeKeyRequest {
                id: id.clone(),
                reason: "crash test".into(),
                ..Default::default()
            };
            if admin.revoke_key(req).await.is_err() {
                return;
            }
            Acked::Revoked { id }
        };
        log.lock().expect("lock").push(acked);
    }
}

/// Every key, through ListKeys' pages.
async fn all_keys(admin: &mut Admin) -> HashMap<String, pb::Key> {
    let mut keys = HashMap::new();
    let mut page_token = String::new();
    loop {
        let req = pb::ListKeysRequest {
            page_size: 1000,
            page_token,
            ..Default::default()
        };
        let page = admin.list_keys(req).await.expect("list").into_inner();
        keys.extend(page.keys.into_iter().map(|k| (k.id.clone(), k)));
        if page.next_page_token.is_empty() {
            return keys;
        }
        page_token = page.next_page_token;
    }
}

async fn killed_mid_burst_loses_no_acknowledged_write(url: String) {
    let token = mint_token(&url).await;
    let mut replica = Replica::start(&url, &token, &[]).await;
    let log: Arc<Mutex<Vec<Acked>>> = Arc::default();
    let mut workers = JoinSet::new();
    for w in 0..WORKERS {
        workers.spawn(worker(replica.admin.clone(), w + 1, log.clone()));
    }
    // A loaded machine may take a while to answer 120 calls.
    eventually_within(
        std::time::Duration::from_secs(60),
        "a burst of acknowledged calls",
        || async {
            let log = log.lock().expect("lock");
            let acked = log
                .iter()
                .filter(|a| !matches!(a, Acked::RevokeSent { .. }));
            acked.count() >= ACKED_BEFORE_KILL
        },
    )
    .await;
    replica.kill_hard();
    while workers.join_next().await.is_some() {}
    let acked = log.lock().expect("lock").clone();

    let restarted = Replica::start(&url, &token, &[]).await;
    let mut admin = restarted.admin.clone();
    let keys = all_keys(&mut admin).await;
    let code = |secret: &str| {
        let mut verify = restarted.verify.clone();
        let key = secret.to_owned();
        async move {
            let req = pb::VerifyRequest {
                key,
                ..Default::default()
            };
            verify
                .verify(req)
                .await
                .expect("verify")
                .into_inner()
                .code()
        }
    };
    let mut revoked = std::collections::HashSet::new();
    // Sent but never answered: committed or not, both are correct.
    let mut maybe_revoked = std::collections::HashSet::new();
    for a in &acked {
        match a {
            Acked::Revoked { id } => {
                revoked.insert(id.clone());
            }
            Acked::RevokeSent { id } => {
                maybe_revoked.insert(id.clone());
            }
            _ => {}
        }
    }
    maybe_revoked.retain(|id| !revoked.contains(id));
    for a in &acked {
        match a {
            Acked::Created { id, secret } => {
                let key = keys
                    .get(id)
                    .unwrap_or_else(|| panic!("created {id} is gone"));
                let got = code(secret).await;
                if maybe_revoked.contains(id) {
                    assert!(
                        matches!(got, VerifyCode::Valid | VerifyCode::Revoked),
                        "{id}: {got:?}"
                    );
                } else if revoked.contains(id) {
                    assert_eq!(got, VerifyCode::Revoked, "{id}");
                } else {
                    assert_eq!(got, VerifyCode::Valid, "{id}");
                }
                assert!(key.owner_id.starts_with("acct_"), "{id}");
            }
            Acked::Rotated { old, new, secret } => {
                let (o, n) = (&keys[old], &keys[new]);
                assert_eq!(o.rotated_to, *new, "old {old} names its successor");
                assert_eq!(n.rotated_from, *old, "new {new} names its predecessor");
                assert!(o.expire_time.is_some(), "old {old} got its grace expiry");
                if !revoked.contains(new) && !maybe_revoked.contains(new) {
                    assert_eq!(code(secret).await, VerifyCode::Valid, "{new}");
                }
            }
            Acked::Revoked { id } => {
                assert!(keys[id].revoke_time.is_some(), "revoked {id} is revoked");
            }
            Acked::RevokeSent { .. } => {}
        }
    }
    // No half rotation anywhere, acknowledged or not.
    for k in keys.values() {
        if !k.rotated_to.is_empty() {
            let next = keys.get(&k.rotated_to).expect("a successor that exists");
            assert_eq!(next.rotated_from, k.id);
        }
        if !k.rotated_from.is_empty() {
            let prev = keys
                .get(&k.rotated_from)
                .expect("a predecessor that exists");
            assert_eq!(prev.rotated_to, k.id);
        }
    }
    eprintln!(
        "crash: {} acknowledged calls before kill -9, {} keys after restart, all present",
        acked.len(),
        keys.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_kill_9_mid_burst_loses_no_acknowledged_write() {
    let db = TestDb::new(Backend::Postgres).await;
    let url = db.config.database_url.clone().expect("url");
    killed_mid_burst_loses_no_acknowledged_write(url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_kill_9_mid_burst_loses_no_acknowledged_write() {
    let db = TestDb::new(Backend::Sqlite).await;
    std::fs::create_dir_all(&db.config.data_dir).expect("data dir");
    let url = format!("sqlite:{}", db.sqlite_file().display());
    killed_mid_burst_loses_no_acknowledged_write(url).await;
}
