use super::{
    duration, environment, key_id, key_type,
    keyspace::opt_keyspace_id,
    metadata, opt_owner_id, owner_id, page_size, pb, restrictions,
    role::role_names,
    rotation::{rotation, to_rotation},
    scopes, timestamp, to_environment, to_key_type, to_restrictions, to_timestamp, update_paths,
};
use crate::{
    domain::{KeyName, KeyRecord, KeyState, RequestId, Timestamp},
    error::{Error, Result},
    keys::{self, CreateKey, Created, Expiry, KeyPatch, KeyQuery, Page, Rotated},
    store::KeyOrder,
};

pub fn key_message(k: &KeyRecord, now: Timestamp) -> pb::Key {
    let state = match k.state(now) {
        KeyState::Active => pb::KeyState::Active,
        KeyState::Expired => pb::KeyState::Expired,
        KeyState::Revoked => pb::KeyState::Revoked,
        KeyState::Disabled => pb::KeyState::Disabled,
    };
    pb::Key {
        id: k.id.to_string(),
        owner_id: k.owner_id.to_string(),
        name: k.name.to_string(),
        r#type: to_key_type(k.key_type).into(),
        environment: to_environment(k.environment).into(),
        scopes: k.scopes.iter().map(ToString::to_string).collect(),
        metadata: k
            .metadata
            .iter()
            .map(|(a, b)| (a.clone(), b.clone()))
            .collect(),
        hint: k.hint.clone(),
        state: state.into(),
        create_time: Some(to_timestamp(k.created_at)),
        update_time: Some(to_timestamp(k.updated_at)),
        expire_time: k.expires_at.map(to_timestamp),
        revoke_time: k.revoked_at.map(to_timestamp),
        revoke_reason: k
            .revoke_reason
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
        disable_time: k.disabled_at.map(to_timestamp),
        rotated_from: k
            .rotated_from
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
        rotated_to: k
            .rotated_to
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
        version: k.version,
        restrictions: to_restrictions(&k.restrictions),
        last_used_time: k.last_used_at.map(to_timestamp),
        last_client_ip: k.last_client_ip.clone().unwrap_or_default(),
        rotation_policy: k.rotation.map(to_rotation),
        keyspace: k.keyspace_id.to_string(),
        roles: k.roles.iter().map(ToString::to_string).collect(),
        external_id: k.external_id.clone().unwrap_or_default(),
        import_time: k.imported_at.map(to_timestamp),
    }
}

pub fn create_request(req: pb::CreateKeyRequest) -> Result<CreateKey> {
    let pb::CreateKeyRequest {
        owner_id: owner,
        name,
        r#type,
        environment: env,
        scopes: raw_scopes,
        expire_time,
        metadata: raw_metadata,
        request_id,
        ttl,
        restrictions: raw_restrictions,
        rotation_policy,
        keyspace,
        roles: raw_roles,
    } = req;
    let expiry = match (expire_time, ttl) {
        (Some(_), Some(_)) => {
            return Err(Error::invalid("ttl", "set expire_time or ttl, not both"));
        }
        (Some(t), None) => Some(Expiry::At(timestamp("expire_time", t)?)),
        (None, Some(d)) => Some(Expiry::After(duration("ttl", d)?)),
        (None, None) => None,
    };
    let credits = raw_restrictions
        .as_ref()
        .and_then(|r| r.credits)
        .map(|c| super::credit_settings("restrictions.credits", c))
        .transpose()?;
    let request_id = if request_id.is_empty() {
        None
    } else {
        Some(RequestId::parse(&request_id).map_err(|e| Error::invalid("request_id", e))?)
    };
    Ok(CreateKey {
        owner_id: owner_id("owner_id", &owner)?,
        name: KeyName::parse(&name).map_err(|e| Error::invalid("name", e))?,
        keyspace_id: opt_keyspace_id("keyspace", &keyspace)?,
        key_type: key_type("type", r#type)?,
        // Unset follows the keyspace's default, then ENVIRONMENT_TEST.
        environment: match pb::Environment::try_from(env) {
            Ok(pb::Environment::Unspecified) => None,
            _ => Some(environment("environment", env)?),
        },
        scopes: scopes("scopes", raw_scopes)?,
        expiry,
        metadata: metadata("metadata", raw_metadata)?,
        request_id,
        restrictions: restrictions("restrictions", raw_restrictions)?,
        rotation: rotation("rotation_policy", rotation_policy)?,
        roles: role_names("roles", raw_roles)?,
        credits,
    })
}

pub fn created(c: Created, now: Timestamp) -> pb::CreateKeyResponse {
    pb::CreateKeyResponse {
        key: Some(key_message(&c.key, now)),
        replayed: c.secret.is_none(),
        secret: c
            .secret
            .map(|s| s.expose_secret().to_owned())
            .unwrap_or_default(),
    }
}

pub fn rotated(r: Rotated, now: Timestamp) -> pb::RotateKeyResponse {
    pb::RotateKeyResponse {
        key: Some(key_message(&r.key, now)),
        secret: r.secret.expose_secret().to_owned(),
        previous: Some(key_message(&r.previous, now)),
    }
}

/// The id and patch of an UpdateKey request. Only the fields the mask names
/// are read from `key`; the mask must name at least one.
pub fn key_patch(req: pb::UpdateKeyRequest) -> Result<(crate::domain::KeyId, KeyPatch)> {
    let pb::UpdateKeyRequest { key, update_mask } = req;
    let key = key.ok_or_else(|| Error::invalid("key", "is required"))?;
    let id = key_id("key.id", &key.id)?;
    let paths = update_paths(update_mask, &UPDATABLE)?;
    let named = |p: &str| paths.iter().any(|x| x == p);
    let pb::Key {
        name,
        scopes: raw_scopes,
        metadata: raw_metadata,
        expire_time,
        restrictions: raw_restrictions,
        rotation_policy,
        roles: raw_roles,
        ..
    } = key;
    let patch = KeyPatch {
        name: named("name")
            .then(|| KeyName::parse(&name).map_err(|e| Error::invalid("key.name", e)))
            .transpose()?,
        scopes: named("scopes")
            .then(|| scopes("key.scopes", raw_scopes))
            .transpose()?,
        metadata: named("metadata")
            .then(|| metadata("key.metadata", raw_metadata))
            .transpose()?,
        expires_at: named("expire_time")
            .then(|| {
                expire_time
                    .map(|t| timestamp("key.expire_time", t))
                    .transpose()
            })
            .transpose()?,
        restrictions: named("restrictions")
            .then(|| {
                no_credits("key.restrictions.credits", raw_restrictions.as_ref())?;
                restrictions("key.restrictions", raw_restrictions)
            })
            .transpose()?,
        rotation: named("rotation_policy")
            .then(|| rotation("key.rotation_policy", rotation_policy))
            .transpose()?,
        roles: named("roles")
            .then(|| role_names("key.roles", raw_roles))
            .transpose()?,
    };
    Ok((id, patch))
}

/// The `update_mask` paths UpdateKey accepts.
const UPDATABLE: [&str; 7] = [
    "name",
    "scopes",
    "metadata",
    "expire_time",
    "restrictions",
    "rotation_policy",
    "roles",
];

pub fn key_query(req: pb::ListKeysRequest) -> Result<KeyQuery> {
    let pb::ListKeysRequest {
        owner_id,
        state,
        page_size: size,
        page_token,
        order_by,
        unused_for,
        keyspace,
    } = req;
    let state = match pb::KeyState::try_from(state) {
        Ok(pb::KeyState::Unspecified) => None,
        Ok(pb::KeyState::Active) => Some(KeyState::Active),
        Ok(pb::KeyState::Expired) => Some(KeyState::Expired),
        Ok(pb::KeyState::Revoked) => Some(KeyState::Revoked),
        Ok(pb::KeyState::Disabled) => Some(KeyState::Disabled),
        Err(_) => return Err(Error::invalid("state", "unknown key state")),
    };
    let order = match pb::KeyOrder::try_from(order_by) {
        Ok(pb::KeyOrder::Unspecified) => KeyOrder::Id,
        Ok(pb::KeyOrder::LastUsedAsc) => KeyOrder::LastUsedAsc,
        Ok(pb::KeyOrder::LastUsedDesc) => KeyOrder::LastUsedDesc,
        Err(_) => return Err(Error::invalid("order_by", "unknown order")),
    };
    Ok(KeyQuery {
        owner_id: opt_owner_id("owner_id", &owner_id)?,
        keyspace_id: opt_keyspace_id("keyspace", &keyspace)?,
        state,
        unused_for: unused_for.map(|d| duration("unused_for", d)).transpose()?,
        order,
        page_size: page_size(size)?,
        page_token,
    })
}

/// ListStaleKeys: active keys unused for `unused_for` (default 90 days),
/// least recently used first.
pub fn stale_query(req: pb::ListStaleKeysRequest) -> Result<KeyQuery> {
    let pb::ListStaleKeysRequest {
        unused_for,
        owner_id,
        page_size: size,
        page_token,
    } = req;
    let unused_for = match unused_for {
        Some(d) => duration("unused_for", d)?,
        None => keys::DEFAULT_STALE_AFTER,
    };
    Ok(KeyQuery {
        owner_id: opt_owner_id("owner_id", &owner_id)?,
        keyspace_id: None,
        state: Some(KeyState::Active),
        unused_for: Some(unused_for),
        order: KeyOrder::LastUsedAsc,
        page_size: page_size(size)?,
        page_token,
    })
}

pub fn keys_page(page: Page<KeyRecord>, now: Timestamp) -> pb::ListKeysResponse {
    pb::ListKeysResponse {
        keys: page.items.iter().map(|k| key_message(k, now)).collect(),
        next_page_token: page.next_page_token.unwrap_or_default(),
    }
}

/// Refuses credit settings where they cannot start a balance: a key's
/// balance starts at CreateKey and changes with UpdateCredits.
pub(super) fn no_credits(field: &str, r: Option<&pb::Restrictions>) -> Result<()> {
    match r.and_then(|r| r.credits.as_ref()) {
        Some(c) if *c != pb::CreditSettings::default() => Err(Error::invalid(
            field,
            "a key's credits start at CreateKey; change them with UpdateCredits",
        )),
        _ => Ok(()),
    }
}
