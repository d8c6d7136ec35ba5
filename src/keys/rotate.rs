//! Rotation: RotateKey (an admin) and RotateSelf (the key itself).
//!
//! A rotation issues a successor that inherits everything but the secret,
//! and ends the old key after a grace period. The successor never outlives
//! the absolute end (`lineage_expires_at`) of the key it replaces: rotating
//! is not a way to extend a key's life. Only an admin's explicit expiry
//! (UpdateKey) moves that end.

use std::{net::IpAddr, time::Duration};

use serde_json::json;

use super::{Actor, Keys, MAX_GRACE, Rotated, audit_event, diff};
use crate::{
    domain::{ApiKey, KeyId, KeyRecord, KeyState, KeyType, Timestamp, api_key},
    error::{Error, Result},
    store::{ChangeKind, NewChange, StoreError, WriteBatch},
};

/// How often one lineage (a key and every successor rotated from it) may
/// rotate itself: a key made by a rotation less than this long ago cannot.
pub const SELF_ROTATION_INTERVAL: Duration = Duration::from_secs(60);

/// The shortest grace period a key may give itself. Whoever holds a key can
/// rotate it; the floor keeps a thief from ending the legitimate holder's key
/// at once, which leaves time for the `key.rotated` event to be seen and the
/// lineage revoked.
pub const MIN_SELF_GRACE: Duration = Duration::from_secs(3600);

/// Who asks for a rotation, and so which rules apply.
enum Rotator<'a> {
    Admin(&'a Actor),
    /// The key itself, proven by possession, calling from `peer` (the
    /// admin connection's TCP peer address).
    Key {
        actor: Actor,
        peer: Option<IpAddr>,
    },
}

impl Rotator<'_> {
    fn actor(&self) -> &Actor {
        match self {
            Self::Admin(a) => a,
            Self::Key { actor, .. } => actor,
        }
    }

    /// Refuses a rotation of `key` at `now`. A self-rotation's refusals name
    /// no other key and no restriction's content: its caller is only
    /// trusted as far as the key it holds.
    fn admit(&self, key: &KeyRecord, now: Timestamp) -> Result<()> {
        let Self::Key { peer, .. } = self else {
            return admin_admit(key, now);
        };
        if key.key_type == KeyType::Publishable {
            return Err(PUBLISHABLE);
        }
        if key.state(now) != KeyState::Active {
            return Err(Error::Unauthenticated);
        }
        // Before anything about the lineage: a caller outside the key's
        // network learns nothing more. Report-only rules never deny, here
        // as on Verify.
        if let Some(rule) = key.restrictions.ip.as_ref().filter(|r| r.enforced())
            && !peer.is_some_and(|ip| rule.allow.contains(ip))
        {
            return Err(Error::PermissionDenied(
                "this key may not rotate itself from this address",
            ));
        }
        if key.rotated_to.is_some() {
            return Err(Error::FailedPrecondition(
                "this key was already rotated; its successor may rotate itself".into(),
            ));
        }
        // The head of a lineage is its only key that can rotate, and it was
        // made at the lineage's last rotation: so its age is the time since.
        // The check reads the stored record, so it holds across replicas.
        let interval =
            Duration::from_millis((now.as_millis() - key.created_at.as_millis()).max(0) as u64);
        if key.rotated_from.is_some() && interval < SELF_ROTATION_INTERVAL {
            return Err(Error::ResourceExhausted(
                "a key and its successors may rotate themselves at most once a minute".into(),
            ));
        }
        Ok(())
    }
}

const PUBLISHABLE: Error = Error::PermissionDenied("publishable keys cannot rotate themselves");

fn admin_admit(key: &KeyRecord, now: Timestamp) -> Result<()> {
    let id = &key.id;
    match key.state(now) {
        KeyState::Active => {}
        state => {
            return Err(Error::FailedPrecondition(format!(
                "key {id} is {}; only an active key can be rotated",
                state.as_str()
            )));
        }
    }
    if let Some(next) = &key.rotated_to {
        return Err(Error::FailedPrecondition(format!(
            "key {id} was already rotated to {next}; rotate that key instead"
        )));
    }
    Ok(())
}

impl Keys {
    /// Issues a successor to key `id`. The old key keeps working until
    /// `now + grace` (never later than its own expiry). The successor
    /// inherits everything but the secret, and expires at the old key's
    /// absolute end.
    pub async fn rotate(
        &self,
        id: &KeyId,
        grace: Option<Duration>,
        end_grace_when_idle: Option<Duration>,
        actor: &Actor,
    ) -> Result<Rotated> {
        self.rotate_as(id, grace, end_grace_when_idle, Rotator::Admin(actor))
            .await
    }

    /// Rotation by proof of possession: `presented` is the current key, and
    /// `peer` the address it calls from, judged against the key's own IP
    /// restriction.
    pub async fn rotate_self(
        &self,
        presented: &str,
        grace: Option<Duration>,
        peer: Option<IpAddr>,
    ) -> Result<Rotated> {
        let parsed = api_key::parse(presented).map_err(|_| Error::Unauthenticated)?;
        // Judged on the key's prefix, before any lookup: the answer tells
        // nothing about whether the key exists.
        if parsed.key_type == KeyType::Publishable {
            return Err(PUBLISHABLE);
        }
        let entry = self.index.get(&parsed.hash).ok_or(Error::Unauthenticated)?;
        if entry.state(self.now()) != KeyState::Active {
            return Err(Error::Unauthenticated);
        }
        if grace.is_some_and(|g| g < MIN_SELF_GRACE) {
            return Err(Error::invalid(
                "grace_period",
                "must be at least 1h when a key rotates itself",
            ));
        }
        let id = entry.key_id();
        let actor = Actor::key(&id);
        self.rotate_as(&id, grace, None, Rotator::Key { actor, peer })
            .await
    }

    /// Rotates `id`. An unset `grace` is the key's keyspace's default, then
    /// the server's (raised to [`MIN_SELF_GRACE`] for a self-rotation).
    async fn rotate_as(
        &self,
        id: &KeyId,
        grace: Option<Duration>,
        end_grace_when_idle: Option<Duration>,
        rotator: Rotator<'_>,
    ) -> Result<Rotated> {
        if grace.is_some_and(|g| g > MAX_GRACE) {
            return Err(Error::invalid("grace_period", "must be at most 30 days"));
        }
        for _ in 0..super::CONFLICT_RETRIES {
            let old = super::visible(rotator.actor(), self.get(id).await?)?;
            let now = self.config.clock.now();
            rotator.admit(&old, now)?;
            // The successor stays in the keyspace, with its prefix (final:
            // the keyspace holds the old key).
            let ks = self.get_keyspace(&old.keyspace_id).await?;
            let default_grace = ks.defaults.grace.unwrap_or(self.config.rotation_grace);
            let grace = match (&rotator, grace) {
                (_, Some(g)) => g,
                (Rotator::Admin(_), None) => default_grace,
                (Rotator::Key { .. }, None) => default_grace.max(MIN_SELF_GRACE),
            };
            let secret = ApiKey::generate_in(ks.prefix, old.key_type, old.environment)
                .map_err(|e| Error::Internal(e.to_string()))?;
            let new = KeyRecord {
                id: KeyId::generate(),
                hash: secret.hash(),
                hint: secret.hint(),
                created_at: now,
                updated_at: now,
                // Not the old key's expiry, which a scheduled rotation may
                // have pulled in to make its holder rotate.
                expires_at: old.lineage_expires_at,
                rotated_from: Some(old.id.clone()),
                rotated_to: None,
                version: 1,
                // A keysmith key, made here: it keeps the external id (the
                // platform's reference) but was not imported.
                imported_at: None,
                ..old.clone()
            };
            let grace_end = now.saturating_add(grace);
            let mut previous = old.clone();
            previous.expires_at = Some(old.expires_at.map_or(grace_end, |e| e.min(grace_end)));
            previous.rotated_to = Some(new.id.clone());
            previous.end_grace_when_idle = end_grace_when_idle;
            previous.version += 1;
            previous.updated_at = now;
            let ms = |t: Option<Timestamp>| t.map(Timestamp::as_millis);
            let rotated = json!({
                "rotated_to": diff(None::<&str>, new.id.as_str()),
                "expires_at": diff(ms(old.expires_at), ms(previous.expires_at)),
            });
            let created = json!({
                "rotated_from": diff(None::<&str>, old.id.as_str()),
                "expires_at": ms(new.expires_at),
            });
            let actor = rotator.actor();
            let batch = WriteBatch {
                insert: Some((new.clone(), None)),
                update: vec![previous.clone()],
                audit: vec![
                    audit_event(now, actor, "key.rotated", &previous, None, rotated, None),
                    audit_event(now, actor, "key.created", &new, None, created, None),
                ],
                changes: vec![
                    NewChange::of(ChangeKind::Created, &new),
                    NewChange::of(ChangeKind::Rotated, &previous),
                ],
                notice: None,
                minted: None,
                balances: vec![],
            };
            match self
                .commit(batch, vec![new.clone(), previous.clone()])
                .await
            {
                Ok(_) => {
                    return Ok(Rotated {
                        key: new,
                        secret,
                        previous,
                    });
                }
                Err(Error::Store(StoreError::Conflict)) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(Error::Unavailable("the key is changing too often; retry"))
    }
}
