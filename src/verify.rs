//! The verify decision: one pure function of (record, request, now).
//!
//! Order of checks, first failure wins:
//! 1. format (`MALFORMED`) and existence (`NOT_FOUND`) are decided by the
//!    caller before a record is found;
//! 2. `REVOKED`: permanent, so it outranks everything;
//! 3. `DISABLED`: an operator's suspension, reversible;
//! 4. `EXPIRED`: `now >= expires_at`, judged against the clock on every call;
//! 5. `INSUFFICIENT_SCOPE`: every required scope must be granted (all-of).
//!
//! State checks come before request checks so that a dead key never leaks
//! which scopes it would have had.

use crate::domain::{KeyRecord, Timestamp};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    Valid,
    Malformed,
    NotFound,
    Revoked,
    Expired,
    Disabled,
    InsufficientScope,
}

/// The outcome of a decision. Borrows the request, so deciding allocates nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision<'a> {
    pub code: Code,
    /// For `InsufficientScope`: the first required scope not granted.
    pub missing_scope: Option<&'a str>,
}

impl Decision<'_> {
    pub const fn of(code: Code) -> Self {
        Self {
            code,
            missing_scope: None,
        }
    }

    pub fn is_valid(&self) -> bool {
        self.code == Code::Valid
    }
}

/// What the caller asks of a key. Required scopes must already be checked by
/// [`crate::domain::scope::check_required`].
#[derive(Clone, Copy, Debug, Default)]
pub struct Request<'a> {
    pub required_scopes: &'a [String],
}

pub fn decide<'a>(record: &KeyRecord, request: &Request<'a>, now: Timestamp) -> Decision<'a> {
    if record.revoked_at.is_some() {
        return Decision::of(Code::Revoked);
    }
    if record.disabled_at.is_some() {
        return Decision::of(Code::Disabled);
    }
    if record.is_expired(now) {
        return Decision::of(Code::Expired);
    }
    let missing = request
        .required_scopes
        .iter()
        .find(|req| !record.scopes.iter().any(|s| s.grants(req)));
    if let Some(missing) = missing {
        return Decision {
            code: Code::InsufficientScope,
            missing_scope: Some(missing),
        };
    }
    Decision::of(Code::Valid)
}

#[cfg(test)]
mod tests;

/// What Verify answers: the decision, and the record when the key exists.
#[derive(Debug)]
pub struct Outcome<'a> {
    pub decision: Decision<'a>,
    pub record: Option<std::sync::Arc<KeyRecord>>,
    /// A fixed explanation for denials; empty when valid.
    pub detail: &'static str,
}

/// Parses `key`, looks it up in `index` and decides. Never touches the
/// database; allocates nothing but the `Arc` clone of the record.
pub fn verify<'a>(
    index: &crate::index::KeyIndex,
    key: &str,
    request: &Request<'a>,
    now: Timestamp,
) -> Outcome<'a> {
    let presented = match crate::domain::api_key::parse(key) {
        Ok(p) => p,
        Err(e) => {
            return Outcome {
                decision: Decision::of(Code::Malformed),
                record: None,
                detail: e.detail(),
            };
        }
    };
    let Some(record) = index.get(&presented.hash) else {
        return Outcome {
            decision: Decision::of(Code::NotFound),
            record: None,
            detail: "unknown key",
        };
    };
    let decision = decide(&record, request, now);
    Outcome {
        detail: detail(decision.code),
        decision,
        record: Some(record),
    }
}

const fn detail(code: Code) -> &'static str {
    match code {
        Code::Valid => "",
        Code::Malformed => "malformed key",
        Code::NotFound => "unknown key",
        Code::Revoked => "key was revoked",
        Code::Expired => "key has expired",
        Code::Disabled => "key is disabled",
        Code::InsufficientScope => "a required scope is not granted",
    }
}
