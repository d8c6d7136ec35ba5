//! Keyspaces: create, get, list, update. Each change is audited with the
//! acting token in the transaction that makes it; the prefix is final once
//! the keyspace holds a key.

use serde_json::json;

use super::{Actor, CONFLICT_RETRIES, Keys, KeyspaceQuery, Page, diff};
use crate::{
    domain::{
        KeyPrefix, Keyspace, KeyspaceDefaults, KeyspaceId, KeyspaceName, Scope, leak::LeakResponse,
        legacy::LegacyFormat,
    },
    error::{Error, Result},
    store::{KeyspaceUpdate, StoreError},
};

/// A parsed CreateKeyspace request.
#[derive(Clone, Debug)]
pub struct NewKeyspace {
    pub name: KeyspaceName,
    pub prefix: KeyPrefix,
    pub defaults: KeyspaceDefaults,
    pub scopes: Vec<Scope>,
    pub leak: LeakResponse,
    pub legacy: Vec<LegacyFormat>,
}

/// UpdateKeyspace's changes; `None` leaves a field alone.
#[derive(Clone, Debug, Default)]
pub struct KeyspacePatch {
    pub name: Option<KeyspaceName>,
    pub prefix: Option<KeyPrefix>,
    pub defaults: Option<KeyspaceDefaults>,
    pub scopes: Option<Vec<Scope>>,
    pub leak: Option<LeakResponse>,
    pub legacy: Option<Vec<LegacyFormat>>,
}

const PREFIX_TAKEN: &str = "prefix: is already the prefix of another keyspace";

fn checked(ks: &Keyspace) -> Result<()> {
    ks.check().map_err(|v| Error::invalid(v.field, v.reason))
}

fn formats_json(formats: &[LegacyFormat]) -> serde_json::Value {
    formats.iter().map(LegacyFormat::to_json).collect()
}

fn scope_strs(scopes: &[Scope]) -> Vec<&str> {
    scopes.iter().map(Scope::as_str).collect()
}

impl Keys {
    /// After a keyspace write: this replica's Verify sees its legacy
    /// formats before the write is answered.
    async fn reload_formats(&self) -> Result<()> {
        let (generation, keyspaces) = self.store.legacy_keyspaces().await?;
        self.index.set_legacy_formats(generation, &keyspaces);
        Ok(())
    }

    pub async fn create_keyspace(&self, new: NewKeyspace, actor: &Actor) -> Result<Keyspace> {
        let now = self.now();
        let ks = Keyspace {
            id: KeyspaceId::generate().map_err(|e| Error::Internal(e.to_string()))?,
            name: new.name,
            prefix: Some(new.prefix),
            defaults: new.defaults,
            scopes: new.scopes,
            leak: new.leak,
            legacy: new.legacy,
            created_at: now,
            updated_at: now,
            version: 1,
        };
        checked(&ks)?;
        let changes = json!({
            "keyspace_id": ks.id.as_str(),
            "name": ks.name.as_str(),
            "prefix": new.prefix.as_str(),
            "defaults": ks.defaults.to_json(),
            "scopes": scope_strs(&ks.scopes),
            "leak_response": ks.leak.to_json(),
            "legacy_formats": formats_json(&ks.legacy),
        });
        let audit = actor.event(now, "keyspace.created", changes);
        match self.store.insert_keyspace(&ks, &audit).await {
            Ok(()) => {
                self.reload_formats().await?;
                Ok(ks)
            }
            Err(StoreError::Duplicate) => Err(Error::AlreadyExists(PREFIX_TAKEN.into())),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn get_keyspace(&self, id: &KeyspaceId) -> Result<Keyspace> {
        self.store
            .get_keyspace(id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("keyspace {id}")))
    }

    /// The keyspace a request names, as a field-named error when it does
    /// not exist.
    pub(super) async fn named_keyspace(&self, field: &str, id: &KeyspaceId) -> Result<Keyspace> {
        match self.store.get_keyspace(id).await? {
            Some(ks) => Ok(ks),
            None => Err(Error::NotFound(format!("{field}: keyspace {id}"))),
        }
    }

    /// A page of the keyspaces `actor` may see: its keyspace limit is part
    /// of the query, so a page is never cut short by keyspaces it cannot see.
    pub async fn list_keyspaces(
        &self,
        query: KeyspaceQuery,
        actor: &Actor,
    ) -> Result<Page<Keyspace>> {
        let after = query.after(&self.page_tokens)?;
        let within = actor.limits().keyspaces();
        let rows = self
            .store
            .list_keyspaces(after.as_ref(), query.page_size + 1, within)
            .await?;
        Ok(Page::from_overfetch(rows, query.page_size, |k| {
            query.token_after(&self.page_tokens, k)
        }))
    }

    pub async fn update_keyspace(
        &self,
        id: &KeyspaceId,
        patch: KeyspacePatch,
        actor: &Actor,
    ) -> Result<Keyspace> {
        for _ in 0..CONFLICT_RETRIES {
            let old = self.get_keyspace(id).await?;
            let now = self.now();
            let mut next = old.clone();
            let mut changes = serde_json::Map::new();
            changes.insert("keyspace_id".into(), json!(id.as_str()));
            if let Some(name) = &patch.name
                && *name != old.name
            {
                changes.insert("name".into(), diff(old.name.as_str(), name.as_str()));
                next.name = name.clone();
            }
            if let Some(prefix) = patch.prefix
                && Some(prefix) != old.prefix
            {
                if old.id.is_default() {
                    return Err(Error::FailedPrecondition(
                        "prefix: the default keyspace's keys are bare; it has no prefix".into(),
                    ));
                }
                let held = old.prefix.as_ref().map(KeyPrefix::as_str);
                changes.insert("prefix".into(), diff(held, prefix.as_str()));
                next.prefix = Some(prefix);
            }
            if let Some(defaults) = &patch.defaults
                && *defaults != old.defaults
            {
                let d = diff(old.defaults.to_json(), defaults.to_json());
                changes.insert("defaults".into(), d);
                next.defaults = defaults.clone();
            }
            if let Some(scopes) = &patch.scopes
                && *scopes != old.scopes
            {
                let d = diff(scope_strs(&old.scopes), scope_strs(scopes));
                changes.insert("scopes".into(), d);
                next.scopes = scopes.clone();
            }
            if let Some(leak) = patch.leak
                && leak != old.leak
            {
                let d = diff(old.leak.to_json(), leak.to_json());
                changes.insert("leak_response".into(), d);
                next.leak = leak;
            }
            if let Some(legacy) = &patch.legacy
                && *legacy != old.legacy
            {
                let d = diff(formats_json(&old.legacy), formats_json(legacy));
                changes.insert("legacy_formats".into(), d);
                next.legacy = legacy.clone();
            }
            if changes.len() == 1 {
                return Ok(old);
            }
            checked(&next)?;
            next.version = old.version + 1;
            next.updated_at = now;
            let audit = actor.event(now, "keyspace.updated", changes);
            match self.store.update_keyspace(&next, &audit).await {
                Ok(KeyspaceUpdate::Updated) => {
                    self.reload_formats().await?;
                    return Ok(next);
                }
                Ok(KeyspaceUpdate::Conflict) => continue,
                Ok(KeyspaceUpdate::Undeclared(what)) => {
                    return Err(Error::FailedPrecondition(format!(
                        "scopes: {what}, which the new catalogue leaves out; change that first"
                    )));
                }
                Ok(KeyspaceUpdate::PrefixFinal) => {
                    return Err(Error::FailedPrecondition(
                        "prefix: is final once the keyspace holds keys".into(),
                    ));
                }
                Err(StoreError::Duplicate) => {
                    return Err(Error::AlreadyExists(PREFIX_TAKEN.into()));
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(Error::Unavailable(
            "the keyspace is changing too often; retry",
        ))
    }
}
