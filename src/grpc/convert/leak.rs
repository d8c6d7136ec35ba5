//! Leak responses and reports: requests to domain types, and back.

use super::{pb, timestamp};
use crate::{
    domain::{
        Environment, KeyType,
        leak::{LeakFinder, LeakPolicy, LeakReport, LeakResponse, leak_label, leak_url},
    },
    error::{Error, Result},
};

fn policy(field: &str, v: i32) -> Result<Option<LeakPolicy>> {
    match pb::LeakPolicy::try_from(v) {
        Ok(pb::LeakPolicy::Unspecified) => Ok(None),
        Ok(pb::LeakPolicy::Notify) => Ok(Some(LeakPolicy::Notify)),
        Ok(pb::LeakPolicy::Disable) => Ok(Some(LeakPolicy::Disable)),
        Ok(pb::LeakPolicy::Revoke) => Ok(Some(LeakPolicy::Revoke)),
        Err(_) => Err(Error::invalid(field, "unknown leak policy")),
    }
}

pub fn to_policy(p: LeakPolicy) -> pb::LeakPolicy {
    match p {
        LeakPolicy::Notify => pb::LeakPolicy::Notify,
        LeakPolicy::Disable => pb::LeakPolicy::Disable,
        LeakPolicy::Revoke => pb::LeakPolicy::Revoke,
    }
}

/// A keyspace's leak response; unset is the defaults.
pub fn leak_response(field: &str, r: Option<pb::LeakResponse>) -> Result<LeakResponse> {
    let Some(pb::LeakResponse {
        live,
        test,
        publishable,
        public_revocation_off,
    }) = r
    else {
        return Ok(LeakResponse::default());
    };
    Ok(LeakResponse {
        live: policy(&format!("{field}.live"), live)?,
        test: policy(&format!("{field}.test"), test)?,
        publishable: policy(&format!("{field}.publishable"), publishable)?,
        public_revocation_off,
    })
}

/// With every default filled in: what is in force.
pub fn to_leak_response(r: &LeakResponse) -> pb::LeakResponse {
    let p = |t, e| to_policy(r.policy(t, e)).into();
    pb::LeakResponse {
        live: p(KeyType::Secret, Environment::Live),
        test: p(KeyType::Secret, Environment::Test),
        publishable: p(KeyType::Publishable, Environment::Live),
        public_revocation_off: !r.public_revocation(),
    }
}

/// ReportLeakedKey's report (the key itself is the caller's to hold).
pub fn report(
    url: &str,
    source: &str,
    leaked_time: Option<crate::grpc::wkt::Timestamp>,
) -> Result<LeakReport> {
    Ok(LeakReport {
        finder: LeakFinder::Report,
        url: leak_url(url)
            .map_err(|e| Error::invalid("url", e))?
            .to_owned(),
        source: leak_label(source)
            .map_err(|e| Error::invalid("source", e))?
            .to_owned(),
        token_type: String::new(),
        leaked_at: leaked_time
            .map(|t| timestamp("leaked_time", t))
            .transpose()?,
    })
}
