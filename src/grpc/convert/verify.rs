use std::net::IpAddr;

use super::{pb, to_environment, to_key_type, to_timestamp};
use crate::{
    domain::{
        KeyspaceId, MAX_SCOPES, Scope,
        scope::{self, MAX_ALTERNATIVES, MAX_ANY_GROUPS},
    },
    error::{Error, Result},
    index::{KeyIndex, KeyspaceScope},
    verify::{AnyOf, Code, Outcome, Unmet, granted},
};

/// The end client's IP as the gateway passed it: empty means none.
pub fn client_ip(s: &str) -> Result<Option<IpAddr>> {
    if s.is_empty() {
        return Ok(None);
    }
    s.parse()
        .map(Some)
        .map_err(|_| Error::invalid("client_ip", "is not an IP address"))
}

/// The keyspaces a request's `keyspace` field accepts: a form check and a
/// map lookup, without allocating. Empty means any.
pub fn keyspace_scope(index: &KeyIndex, keyspace: &str) -> Result<KeyspaceScope> {
    if !keyspace.is_empty() {
        KeyspaceId::check(keyspace).map_err(|e| Error::invalid("keyspace", e))?;
    }
    Ok(index.keyspace_scope(keyspace))
}

/// Required scopes are the caller's own configuration: a bad one is an
/// INVALID_ARGUMENT for the caller, not a denial of the key.
pub fn check_required_scopes(required: &[String]) -> Result<()> {
    if required.len() > MAX_SCOPES {
        return Err(Error::invalid(
            "required_scopes",
            format!("at most {MAX_SCOPES} scopes"),
        ));
    }
    for (i, s) in required.iter().enumerate() {
        scope::check_required(s).map_err(|e| Error::invalid(format!("required_scopes[{i}]"), e))?;
    }
    Ok(())
}

/// Checks `required_any` as [`check_required_scopes`] checks its scopes. An
/// empty group could never be met: a mistake of the caller, not a denial.
pub fn check_required_any(groups: &[pb::ScopeAlternatives]) -> Result<()> {
    if groups.len() > MAX_ANY_GROUPS {
        return Err(Error::invalid(
            "required_any",
            format!("at most {MAX_ANY_GROUPS} groups"),
        ));
    }
    for (i, pb::ScopeAlternatives { scopes }) in groups.iter().enumerate() {
        if scopes.is_empty() || scopes.len() > MAX_ALTERNATIVES {
            return Err(Error::invalid(
                format!("required_any[{i}].scopes"),
                format!("must hold 1 to {MAX_ALTERNATIVES} scopes"),
            ));
        }
        for (j, s) in scopes.iter().enumerate() {
            scope::check_required(s)
                .map_err(|e| Error::invalid(format!("required_any[{i}].scopes[{j}]"), e))?;
        }
    }
    Ok(())
}

/// The groups as decoded, so deciding copies nothing.
impl AnyOf for Vec<pb::ScopeAlternatives> {
    fn first_unmet(&self, held: &[Scope]) -> Option<Unmet<'_>> {
        self.iter()
            .find(|g| !g.scopes.iter().any(|s| granted(held, s)))
            .map(|g| Unmet::Scopes(&g.scopes))
    }
}

/// The wire code of `c`: `VerifyCode` numbers the codes `index + 1`.
fn code(c: Code) -> pb::VerifyCode {
    pb::VerifyCode::try_from(c.index() as i32 + 1).unwrap_or(pb::VerifyCode::Unspecified)
}

pub fn verify_response(o: &Outcome<'_>) -> pb::VerifyResponse {
    let mut resp = pb::VerifyResponse {
        valid: o.decision.is_valid(),
        code: code(o.decision.code).into(),
        missing_scope: o.decision.missing_scope.unwrap_or_default().to_owned(),
        missing_any: match o.decision.missing_any {
            None => Vec::new(),
            Some(Unmet::Scopes(s)) => s.to_vec(),
            Some(Unmet::Text(t)) => t.split('|').map(str::to_owned).collect(),
        },
        detail: o.detail.to_owned(),
        would_deny: o
            .decision
            .would_deny
            .iter()
            .map(|c| code(c).into())
            .collect(),
        rate_limit_remaining: o.rate_limit_remaining,
        retry_after: o.retry_after.map(|d| crate::grpc::wkt::Duration {
            seconds: d.as_secs() as i64,
            nanos: d.subsec_nanos() as i32,
        }),
        ..Default::default()
    };
    let Some(k) = &o.entry else {
        return resp;
    };
    // A denial names the key, so a gateway can log which one failed and
    // why; who owns it, what it grants and what it says about itself (its
    // metadata may hold internal notes) are only for a caller it lets in.
    resp.key_id = k.key_id().into_string();
    if o.decision.is_valid() {
        resp.owner_id = k.owner_id().to_owned();
        resp.scopes = k.scopes().iter().map(|s| s.as_str().to_owned()).collect();
        resp.environment = to_environment(k.environment).into();
        resp.r#type = to_key_type(k.key_type).into();
        resp.expire_time = k.expires_at.map(to_timestamp);
        resp.metadata = k
            .metadata()
            .iter()
            .map(|(a, b)| (a.clone(), b.clone()))
            .collect();
        if let Some(owner) = &o.owner {
            resp.owner_metadata = owner
                .metadata
                .iter()
                .map(|(a, b)| (a.clone(), b.clone()))
                .collect();
        }
    }
    resp.limits = super::quota::limit_states(&o.limits);
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_its_wire_code() {
        for c in Code::ALL {
            let wire = code(c);
            assert_ne!(wire, pb::VerifyCode::Unspecified, "{c:?}");
            let name = wire.as_str_name().trim_start_matches("VERIFY_CODE_");
            assert_eq!(name.to_ascii_lowercase(), c.name(), "{c:?}");
        }
    }
}
