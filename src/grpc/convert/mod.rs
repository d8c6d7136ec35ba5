//! Conversions between prost messages and domain types. Requests are
//! destructured exhaustively, so a new proto field fails to compile until it
//! is handled here.

mod audit;
mod events;
mod import;
mod key;
mod keyspace;
mod leak;
mod legacy;
mod policy;
mod quota;
mod restrictions;
mod role;
mod rotation;
mod token;
mod usage;
mod verify;
mod webhooks;

use std::{collections::HashMap, time::Duration};

pub use audit::{audit_page, audit_query, chain_report};
pub use events::{key_event, propagation, replica_status, watch_request};
pub use import::{export_keyspace, exported, import_request, import_response};
pub use key::{
    create_request, created, key_message, key_patch, key_query, keys_page, rotated, stale_query,
};
pub use keyspace::{
    create_keyspace, keyspace_id, keyspace_patch, keyspaces_page, list_keyspaces, opt_keyspace_id,
    to_keyspace,
};
pub use leak::{report as leak_report, to_policy as to_leak_policy};
pub use policy::{owner_policy, to_owner_policy};
pub use quota::{
    OwnerPatch, cost, credit_change, credit_policy, credit_settings, credits_of, limit_costs,
    owner_patch, to_credits, to_owner,
};
pub use restrictions::{restrictions, to_restrictions};
pub use role::{create_role, list_roles, role_patch, role_ref, role_updated, roles_page, to_role};
pub use token::{
    admin_token, create_token_request, token_id, token_list_query, token_reason, tokens_page,
};
pub use usage::{key_usage, overlap, range, unknown_stats};
pub use verify::{
    check_required_any, check_required_scopes, client_ip, keyspace_scope, verify_response,
};
pub use webhooks::{
    create_endpoint, deliveries_page, delivery, delivery_query, endpoint, update_endpoint,
};

use super::pb;
use crate::{
    domain::{
        Environment, KeyId, KeyType, MAX_SCOPES, Metadata, OwnerId, Reason, Scope, Timestamp,
    },
    error::{Error, Result},
};

/// Earliest and latest instants accepted: years 1970 to 9999.
const MAX_SECONDS: i64 = 253_402_300_799;

pub fn timestamp(field: &str, t: crate::grpc::wkt::Timestamp) -> Result<Timestamp> {
    let crate::grpc::wkt::Timestamp { seconds, nanos } = t;
    if !(0..=MAX_SECONDS).contains(&seconds) || !(0..1_000_000_000).contains(&nanos) {
        return Err(Error::invalid(
            field,
            "must be a valid time between 1970 and 9999",
        ));
    }
    Ok(Timestamp::from_millis(
        seconds * 1000 + i64::from(nanos / 1_000_000),
    ))
}

pub fn to_timestamp(t: Timestamp) -> crate::grpc::wkt::Timestamp {
    let ms = t.as_millis();
    crate::grpc::wkt::Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    }
}

pub fn duration(field: &str, d: crate::grpc::wkt::Duration) -> Result<Duration> {
    let crate::grpc::wkt::Duration { seconds, nanos } = d;
    if seconds < 0 || !(0..1_000_000_000).contains(&nanos) {
        return Err(Error::invalid(field, "must not be negative"));
    }
    Ok(Duration::new(seconds as u64, nanos as u32))
}

pub fn key_id(field: &str, s: &str) -> Result<KeyId> {
    if s.is_empty() {
        return Err(Error::invalid(field, "is required"));
    }
    s.parse().map_err(|e| Error::invalid(field, e))
}

/// An optional id filter: empty means none.
pub fn opt_key_id(field: &str, s: &str) -> Result<Option<KeyId>> {
    (!s.is_empty()).then(|| key_id(field, s)).transpose()
}

pub fn owner_id(field: &str, s: &str) -> Result<OwnerId> {
    OwnerId::parse(s).map_err(|e| Error::invalid(field, e))
}

pub fn opt_owner_id(field: &str, s: &str) -> Result<Option<OwnerId>> {
    (!s.is_empty()).then(|| owner_id(field, s)).transpose()
}

pub fn reason(field: &str, s: &str) -> Result<Reason> {
    Reason::parse(s).map_err(|e| Error::invalid(field, e))
}

/// An update request's field mask: at least one path, each one of
/// `updatable` and named once.
pub(crate) fn update_paths(
    mask: Option<crate::grpc::wkt::FieldMask>,
    updatable: &[&str],
) -> Result<Vec<String>> {
    let paths = mask.map(|m| m.paths).unwrap_or_default();
    if paths.is_empty() {
        return Err(Error::invalid(
            "update_mask",
            format!("must name at least one of {}", updatable.join(", ")),
        ));
    }
    for (i, path) in paths.iter().enumerate() {
        let field = || format!("update_mask.paths[{i}]");
        if !updatable.contains(&path.as_str()) {
            // Not the path itself: whatever was sent there comes back in
            // no error message.
            let reason = format!("cannot be updated; use {}", updatable.join(", "));
            return Err(Error::invalid(field(), reason));
        }
        if paths[..i].contains(path) {
            return Err(Error::invalid(field(), "is repeated"));
        }
    }
    Ok(paths)
}

/// Parses a key's scopes: at most [`MAX_SCOPES`], none repeated.
pub fn scopes(field: &str, raw: Vec<String>) -> Result<Vec<Scope>> {
    if raw.len() > MAX_SCOPES {
        return Err(Error::invalid(
            field,
            format!("at most {MAX_SCOPES} scopes"),
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

pub fn metadata(field: &str, raw: HashMap<String, String>) -> Result<Metadata> {
    Metadata::parse(raw).map_err(|e| match e.key {
        Some(k) => Error::invalid(format!("{field}[{k}]"), e.source),
        None => Error::invalid(field, e.source),
    })
}

pub fn key_type(field: &str, v: i32) -> Result<KeyType> {
    match pb::KeyType::try_from(v) {
        Ok(pb::KeyType::Unspecified | pb::KeyType::Secret) => Ok(KeyType::Secret),
        Ok(pb::KeyType::Publishable) => Ok(KeyType::Publishable),
        Err(_) => Err(Error::invalid(field, "unknown key type")),
    }
}

pub fn environment(field: &str, v: i32) -> Result<Environment> {
    match pb::Environment::try_from(v) {
        Ok(pb::Environment::Unspecified | pb::Environment::Test) => Ok(Environment::Test),
        Ok(pb::Environment::Live) => Ok(Environment::Live),
        Err(_) => Err(Error::invalid(field, "unknown environment")),
    }
}

pub fn to_key_type(t: KeyType) -> pb::KeyType {
    match t {
        KeyType::Secret => pb::KeyType::Secret,
        KeyType::Publishable => pb::KeyType::Publishable,
    }
}

pub fn to_environment(e: Environment) -> pb::Environment {
    match e {
        Environment::Live => pb::Environment::Live,
        Environment::Test => pb::Environment::Test,
    }
}

pub fn page_size(v: i32) -> Result<u32> {
    crate::keys::page_size(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip_at_millisecond_precision() {
        let t = crate::grpc::wkt::Timestamp {
            seconds: 1_700_000_000,
            nanos: 123_000_000,
        };
        assert_eq!(to_timestamp(timestamp("t", t).unwrap()), t);
    }

    #[test]
    fn out_of_range_times_and_negative_durations_are_rejected() {
        let bad = crate::grpc::wkt::Timestamp {
            seconds: -1,
            nanos: 0,
        };
        assert!(timestamp("t", bad).is_err());
        let bad = crate::grpc::wkt::Timestamp {
            seconds: 0,
            nanos: -5,
        };
        assert!(timestamp("t", bad).is_err());
        let bad = crate::grpc::wkt::Duration {
            seconds: -1,
            nanos: 0,
        };
        assert!(duration("d", bad).is_err());
    }
}
