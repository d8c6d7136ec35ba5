//! Keyspaces: requests to domain types, and back.

use super::{
    duration, environment,
    leak::{leak_response, to_leak_response},
    legacy::{legacy_formats, to_legacy_format},
    pb, restrictions,
    rotation::{rotation, to_rotation},
    scopes, to_environment, to_restrictions, to_timestamp, update_paths,
};
use crate::{
    domain::{
        KeyPrefix, Keyspace, KeyspaceDefaults, KeyspaceId, KeyspaceName, Scope,
        keyspace::MAX_CATALOGUE,
    },
    error::{Error, Result},
    keys::{self, KeyspacePatch, KeyspaceQuery, MAX_GRACE, MAX_TTL, NewKeyspace, Page},
};

pub fn keyspace_id(field: &str, s: &str) -> Result<KeyspaceId> {
    if s.is_empty() {
        return Err(Error::invalid(field, "is required"));
    }
    s.parse().map_err(|e| Error::invalid(field, e))
}

/// An optional keyspace filter: empty means none.
pub fn opt_keyspace_id(field: &str, s: &str) -> Result<Option<KeyspaceId>> {
    (!s.is_empty()).then(|| keyspace_id(field, s)).transpose()
}

fn prefix(field: &str, s: &str) -> Result<KeyPrefix> {
    if s.is_empty() {
        return Err(Error::invalid(field, "is required"));
    }
    KeyPrefix::parse(s).map_err(|e| Error::invalid(field, e))
}

fn name(field: &str, s: &str) -> Result<KeyspaceName> {
    KeyspaceName::parse(s).map_err(|e| Error::invalid(field, e))
}

/// A declared scope catalogue: at most [`MAX_CATALOGUE`], none repeated.
fn catalogue(field: &str, raw: Vec<String>) -> Result<Vec<Scope>> {
    if raw.len() > MAX_CATALOGUE {
        return Err(Error::invalid(
            field,
            format!("at most {MAX_CATALOGUE} scopes"),
        ));
    }
    let mut out: Vec<Scope> = Vec::with_capacity(raw.len());
    for (i, s) in raw.iter().enumerate() {
        let scope = Scope::parse(s).map_err(|e| Error::invalid(format!("{field}[{i}]"), e))?;
        if out.contains(&scope) {
            return Err(Error::invalid(format!("{field}[{i}]"), "is a duplicate"));
        }
        out.push(scope);
    }
    Ok(out)
}

fn bounded(
    field: String,
    d: Option<crate::grpc::wkt::Duration>,
    max: std::time::Duration,
    max_text: &str,
) -> Result<Option<std::time::Duration>> {
    let Some(d) = d else { return Ok(None) };
    let d = duration(&field, d)?;
    if d.is_zero() || d > max {
        return Err(Error::invalid(
            field,
            format!("must be positive and at most {max_text}"),
        ));
    }
    Ok(Some(d))
}

fn defaults(field: &str, d: Option<pb::KeyspaceDefaults>) -> Result<KeyspaceDefaults> {
    let Some(pb::KeyspaceDefaults {
        environment: env,
        scopes: raw_scopes,
        rotation_policy,
        grace_period,
        ttl,
        max_lifetime,
        restrictions: raw_restrictions,
    }) = d
    else {
        return Ok(KeyspaceDefaults::default());
    };
    let environment = match pb::Environment::try_from(env) {
        Ok(pb::Environment::Unspecified) => None,
        _ => Some(environment(&format!("{field}.environment"), env)?),
    };
    let grace = grace_period
        .map(|g| duration(&format!("{field}.grace_period"), g))
        .transpose()?;
    if grace.is_some_and(|g| g > MAX_GRACE) {
        return Err(Error::invalid(
            format!("{field}.grace_period"),
            "must be at most 30 days",
        ));
    }
    Ok(KeyspaceDefaults {
        environment,
        scopes: scopes(&format!("{field}.scopes"), raw_scopes)?,
        rotation: rotation(&format!("{field}.rotation_policy"), rotation_policy)?,
        grace,
        ttl: bounded(format!("{field}.ttl"), ttl, MAX_TTL, "10 years")?,
        max_lifetime: bounded(
            format!("{field}.max_lifetime"),
            max_lifetime,
            MAX_TTL,
            "10 years",
        )?,
        restrictions: {
            if raw_restrictions
                .as_ref()
                .is_some_and(|r| r.credits.is_some())
            {
                return Err(Error::invalid(
                    format!("{field}.restrictions.credits"),
                    "keyspace defaults cannot start balances; set credits on CreateKey",
                ));
            }
            restrictions(&format!("{field}.restrictions"), raw_restrictions)?
        },
    })
}

fn to_defaults(d: &KeyspaceDefaults) -> pb::KeyspaceDefaults {
    let dur = |d: std::time::Duration| crate::grpc::wkt::Duration {
        seconds: d.as_secs() as i64,
        nanos: d.subsec_nanos() as i32,
    };
    pb::KeyspaceDefaults {
        environment: d.environment.map_or(0, |e| to_environment(e).into()),
        scopes: d.scopes.iter().map(|s| s.as_str().to_owned()).collect(),
        rotation_policy: d.rotation.map(to_rotation),
        grace_period: d.grace.map(dur),
        ttl: d.ttl.map(dur),
        max_lifetime: d.max_lifetime.map(dur),
        restrictions: to_restrictions(&d.restrictions),
    }
}

pub fn to_keyspace(k: &Keyspace) -> pb::Keyspace {
    pb::Keyspace {
        id: k.id.to_string(),
        name: k.name.as_str().to_owned(),
        prefix: k.prefix.map(|p| p.as_str().to_owned()).unwrap_or_default(),
        defaults: Some(to_defaults(&k.defaults)),
        scopes: k.scopes.iter().map(|s| s.as_str().to_owned()).collect(),
        scanner_regex: k.scanner_regex(),
        create_time: Some(to_timestamp(k.created_at)),
        update_time: Some(to_timestamp(k.updated_at)),
        leak_response: Some(to_leak_response(&k.leak)),
        legacy_formats: k.legacy.iter().map(to_legacy_format).collect(),
    }
}

pub fn create_keyspace(req: pb::CreateKeyspaceRequest) -> Result<NewKeyspace> {
    let pb::CreateKeyspaceRequest {
        name: raw_name,
        prefix: raw_prefix,
        defaults: raw_defaults,
        scopes,
        leak_response: raw_leak,
        legacy_formats: raw_formats,
    } = req;
    Ok(NewKeyspace {
        name: name("name", &raw_name)?,
        prefix: prefix("prefix", &raw_prefix)?,
        defaults: defaults("defaults", raw_defaults)?,
        scopes: catalogue("scopes", scopes)?,
        leak: leak_response("leak_response", raw_leak)?,
        legacy: legacy_formats("legacy_formats", raw_formats)?,
    })
}

/// The `update_mask` paths UpdateKeyspace accepts.
const UPDATABLE: [&str; 6] = [
    "name",
    "prefix",
    "defaults",
    "scopes",
    "leak_response",
    "legacy_formats",
];

pub fn keyspace_patch(req: pb::UpdateKeyspaceRequest) -> Result<(KeyspaceId, KeyspacePatch)> {
    let pb::UpdateKeyspaceRequest {
        keyspace,
        update_mask,
    } = req;
    let ks = keyspace.ok_or_else(|| Error::invalid("keyspace", "is required"))?;
    let id = keyspace_id("keyspace.id", &ks.id)?;
    let paths = update_paths(update_mask, &UPDATABLE)?;
    let named = |p: &str| paths.iter().any(|x| x == p);
    let pb::Keyspace {
        name: raw_name,
        prefix: raw_prefix,
        defaults: raw_defaults,
        scopes,
        leak_response: raw_leak,
        legacy_formats: raw_formats,
        ..
    } = ks;
    let patch = KeyspacePatch {
        name: named("name")
            .then(|| name("keyspace.name", &raw_name))
            .transpose()?,
        prefix: named("prefix")
            .then(|| prefix("keyspace.prefix", &raw_prefix))
            .transpose()?,
        defaults: named("defaults")
            .then(|| defaults("keyspace.defaults", raw_defaults))
            .transpose()?,
        scopes: named("scopes")
            .then(|| catalogue("keyspace.scopes", scopes))
            .transpose()?,
        leak: named("leak_response")
            .then(|| leak_response("keyspace.leak_response", raw_leak))
            .transpose()?,
        legacy: named("legacy_formats")
            .then(|| legacy_formats("keyspace.legacy_formats", raw_formats))
            .transpose()?,
    };
    Ok((id, patch))
}

pub fn list_keyspaces(req: pb::ListKeyspacesRequest) -> Result<KeyspaceQuery> {
    let pb::ListKeyspacesRequest {
        page_size,
        page_token,
    } = req;
    Ok(KeyspaceQuery {
        page_size: keys::page_size(page_size)?,
        page_token,
    })
}

pub fn keyspaces_page(page: Page<Keyspace>) -> pb::ListKeyspacesResponse {
    pb::ListKeyspacesResponse {
        keyspaces: page.items.iter().map(to_keyspace).collect(),
        next_page_token: page.next_page_token.unwrap_or_default(),
    }
}
