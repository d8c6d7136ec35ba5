//! `POST /v1/keys/revoke` with `{"key": "<the key>"}`: whoever holds a key
//! may revoke it by presenting it, as with GitHub's credential revocation
//! API: for people who find a key in a paste or a log. Secret keys only: a
//! publishable key, public by design, is only notified (`key.leaked`),
//! whatever its keyspace's policy. A key already ended, or only notified,
//! is audited at most once an hour however often it is presented.
//!
//! Every well-formed request gets the same `202 Accepted`, whether the key
//! existed, was live, or was already revoked: the endpoint faces the
//! internet, and must not tell anyone which strings are live keys. Only a
//! keyspace that turned public revocation off answers 403, decided from the
//! key's prefix (public, in the keyspace's scanner regex) before any
//! lookup. Audited with the actor `public`.

use std::net::SocketAddr;

use hyper::{StatusCode, body::Bytes};
use serde::Deserialize;
use zeroize::Zeroizing;

use super::{
    Public,
    http::{Answer, busy, error, json},
};
use crate::{
    domain::{
        KeyType, api_key,
        leak::{LeakFinder, LeakPolicy, LeakReport},
    },
    error::Error,
    keys::Actor,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RevokeRequest {
    key: String,
}

impl Public {
    pub(super) async fn public_revoke(&self, bytes: Bytes, peer: SocketAddr) -> Answer {
        let bytes = Zeroizing::new(bytes.to_vec());
        let key = match serde_json::from_slice::<RevokeRequest>(&bytes) {
            Ok(r) => Zeroizing::new(r.key),
            Err(_) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    r#"body: must be JSON {"key": "<the key to revoke>"}"#,
                );
            }
        };
        let Ok(parsed) = api_key::parse(&key) else {
            return error(StatusCode::BAD_REQUEST, "key: is not a keysmith API key");
        };
        let keyspace = match self.store.keyspace_by_prefix(parsed.prefix.as_ref()).await {
            Ok(ks) => ks,
            Err(e) => {
                tracing::error!(error = %e, "public revocation: cannot read the keyspace");
                return busy("cannot revoke now; retry", 5);
            }
        };
        if keyspace
            .as_ref()
            .is_some_and(|ks| !ks.leak.public_revocation())
        {
            return error(
                StatusCode::FORBIDDEN,
                "public revocation is off for this key's keyspace; tell its issuer",
            );
        }
        let accepted = json(
            StatusCode::ACCEPTED,
            &serde_json::json!({ "status": "accepted" }),
        );
        // A publishable key is public by design: whoever presents it may be
        // anyone, so presenting one only notifies, whatever the keyspace's
        // policy for found ones. Decided from the prefix, before any lookup.
        let forced = match parsed.key_type {
            KeyType::Secret => LeakPolicy::Revoke,
            KeyType::Publishable => LeakPolicy::Notify,
        };
        let Some(id) = self.keys.identify(&key) else {
            return accepted;
        };
        drop(key);
        let report = LeakReport {
            finder: LeakFinder::Holder,
            url: String::new(),
            source: "public".into(),
            token_type: String::new(),
            leaked_at: None,
        };
        let keys = self.keys.clone();
        // To the end, even if the caller hangs up.
        let work = tokio::spawn(async move {
            let actor = Actor::system("public");
            keys.report_leak(&id, &report, Some(forced), &actor).await
        });
        match work.await {
            Ok(Ok(leak)) => {
                if leak.seq.is_some() {
                    tracing::warn!(key_id = %leak.key.id, %peer, "key revoked by a holder on the public listener");
                }
                accepted
            }
            Ok(Err(Error::NotFound(_))) => accepted,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "public revocation failed");
                busy("cannot revoke now; retry", 5)
            }
            Err(_) => busy("cannot revoke now; retry", 5),
        }
    }
}
