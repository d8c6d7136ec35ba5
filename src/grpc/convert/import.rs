//! ImportKeys and ExportKeys: requests to domain types, and back. A raw key
//! is moved into a wiping buffer at once, and named in no error.

use zeroize::Zeroizing;

use super::{
    environment, key_type, keyspace::opt_keyspace_id, metadata, owner_id, pb, restrictions,
    role::role_names, scopes, timestamp, to_environment, to_key_type, to_restrictions,
    to_timestamp,
};
use crate::{
    domain::{KeyHash, KeyId, KeyName, KeyRecord, KeyspaceId},
    error::{Error, Result},
    keys::{
        Import, ImportEntry, ImportOutcome, ImportSecret, Imported, MAX_EXTERNAL_ID, MAX_HINT,
        MAX_IMPORT_BATCH,
    },
};

pub fn import_request(req: pb::ImportKeysRequest) -> Result<Import> {
    let pb::ImportKeysRequest {
        keyspace,
        keys,
        on_conflict,
        dry_run,
    } = req;
    if keys.len() > MAX_IMPORT_BATCH {
        return Err(Error::invalid(
            "keys",
            format!("at most {MAX_IMPORT_BATCH} keys a call"),
        ));
    }
    let overwrite = match pb::ImportConflict::try_from(on_conflict) {
        Ok(pb::ImportConflict::Unspecified | pb::ImportConflict::Report) => false,
        Ok(pb::ImportConflict::Overwrite) => true,
        Err(_) => return Err(Error::invalid("on_conflict", "unknown value")),
    };
    Ok(Import {
        keyspace: opt_keyspace_id("keyspace", &keyspace)?.unwrap_or_default(),
        entries: keys
            .into_iter()
            .enumerate()
            .map(|(i, k)| entry(&format!("keys[{i}]"), k))
            .collect::<Result<_>>()?,
        overwrite,
        dry_run,
    })
}

/// A hash as text (see [`KeyHash::parse_text`]).
fn hash(field: &str, s: &str) -> Result<KeyHash> {
    KeyHash::parse_text(s).ok_or_else(|| {
        Error::invalid(
            field,
            "must be SHA-256: 64 hex digits, or 32 bytes in base64",
        )
    })
}

fn text(field: &str, s: String, max: usize) -> Result<Option<String>> {
    if s.len() > max || s.chars().any(char::is_control) {
        return Err(Error::invalid(
            field,
            format!("must be at most {max} bytes, without control characters"),
        ));
    }
    Ok((!s.is_empty()).then_some(s))
}

fn entry(at: &str, k: pb::ImportedKey) -> Result<ImportEntry> {
    let f = |name: &str| format!("{at}.{name}");
    let pb::ImportedKey {
        secret,
        id,
        owner_id: owner,
        name,
        r#type,
        environment: env,
        scopes: raw_scopes,
        roles,
        metadata: raw_metadata,
        restrictions: raw_restrictions,
        expire_time,
        create_time,
        last_used_time,
        external_id,
        hint,
        revoke_time,
        disable_time,
    } = k;
    let secret = match secret {
        Some(pb::imported_key::Secret::Hash(h)) => ImportSecret::Hash(hash(&f("hash"), &h)?),
        Some(pb::imported_key::Secret::Raw(raw)) => {
            let raw = Zeroizing::new(raw);
            if raw.is_empty() {
                return Err(Error::invalid(f("raw"), "is empty"));
            }
            ImportSecret::Raw(raw)
        }
        None => return Err(Error::invalid(f("hash"), "set hash or raw")),
    };
    let restrictions = restrictions(&f("restrictions"), raw_restrictions)?;
    if restrictions.quota.is_some() {
        return Err(Error::invalid(
            f("restrictions"),
            "usage limits and credits are set after import (UpdateKey, the credits API)",
        ));
    }
    let ts = |name: &str, t: Option<crate::grpc::wkt::Timestamp>| {
        t.map(|t| timestamp(&f(name), t)).transpose()
    };
    Ok(ImportEntry {
        secret,
        id: match id.as_str() {
            "" => None,
            s => Some(s.parse::<KeyId>().map_err(|e| Error::invalid(f("id"), e))?),
        },
        owner_id: owner_id(&f("owner_id"), &owner)?,
        name: KeyName::parse(&name).map_err(|e| Error::invalid(f("name"), e))?,
        key_type: key_type(&f("type"), r#type)?,
        environment: match pb::Environment::try_from(env) {
            Ok(pb::Environment::Unspecified) => None,
            _ => Some(environment(&f("environment"), env)?),
        },
        scopes: scopes(&f("scopes"), raw_scopes)?,
        roles: role_names(&f("roles"), roles)?,
        metadata: metadata(&f("metadata"), raw_metadata)?,
        restrictions,
        expires_at: ts("expire_time", expire_time)?,
        created_at: ts("create_time", create_time)?,
        last_used_at: ts("last_used_time", last_used_time)?,
        external_id: text(&f("external_id"), external_id, MAX_EXTERNAL_ID)?,
        hint: text(&f("hint"), hint, MAX_HINT)?,
        revoked_at: ts("revoke_time", revoke_time)?,
        disabled_at: ts("disable_time", disable_time)?,
    })
}

pub fn import_response(imported: &Imported) -> pb::ImportKeysResponse {
    let mut resp = pb::ImportKeysResponse::default();
    for (i, (id, outcome)) in imported.results.iter().enumerate() {
        let (wire, differs) = match outcome {
            ImportOutcome::Created => (pb::ImportOutcome::Created, vec![]),
            ImportOutcome::Unchanged => (pb::ImportOutcome::Unchanged, vec![]),
            ImportOutcome::Overwritten => (pb::ImportOutcome::Overwritten, vec![]),
            ImportOutcome::Conflict(d) => (
                pb::ImportOutcome::Conflict,
                d.iter().map(|s| (*s).to_owned()).collect(),
            ),
        };
        match wire {
            pb::ImportOutcome::Created => resp.created += 1,
            pb::ImportOutcome::Unchanged => resp.unchanged += 1,
            pb::ImportOutcome::Conflict => resp.conflicts += 1,
            _ => resp.overwritten += 1,
        }
        resp.results.push(pb::ImportResult {
            index: u32::try_from(i).unwrap_or(u32::MAX),
            key_id: id.to_string(),
            outcome: wire.into(),
            differs,
        });
    }
    resp
}

/// A key's record in ImportKeys' shape, with its hash: what ExportKeys
/// writes and ImportKeys reads back.
pub fn exported(k: &KeyRecord) -> pb::ImportedKey {
    pb::ImportedKey {
        secret: Some(pb::imported_key::Secret::Hash(hex::encode(
            k.hash.as_bytes(),
        ))),
        id: k.id.to_string(),
        owner_id: k.owner_id.to_string(),
        name: k.name.to_string(),
        r#type: to_key_type(k.key_type).into(),
        environment: to_environment(k.environment).into(),
        scopes: k.scopes.iter().map(ToString::to_string).collect(),
        roles: k.roles.iter().map(ToString::to_string).collect(),
        metadata: k
            .metadata
            .iter()
            .map(|(a, b)| (a.clone(), b.clone()))
            .collect(),
        // Usage limits and credits are not part of a key's import record:
        // an import never carries them (set them after, as for any key).
        restrictions: to_restrictions(&crate::domain::Restrictions {
            quota: None,
            ..k.restrictions.clone()
        }),
        expire_time: k.expires_at.map(to_timestamp),
        create_time: Some(to_timestamp(k.created_at)),
        last_used_time: k.last_used_at.map(to_timestamp),
        external_id: k.external_id.clone().unwrap_or_default(),
        hint: k.hint.clone(),
        revoke_time: k.revoked_at.map(to_timestamp),
        disable_time: k.disabled_at.map(to_timestamp),
    }
}

pub fn export_keyspace(s: &str) -> Result<Option<KeyspaceId>> {
    opt_keyspace_id("keyspace", s)
}
