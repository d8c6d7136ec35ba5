//! The verify decision: one pure function of (record, request, now).
//!
//! Order of checks, first failure wins:
//! 1. format (`MALFORMED`) and existence (`NOT_FOUND`), before any record;
//!    a key outside the keyspaces the call accepts does not exist for it
//!    (`super::evaluate`);
//! 2. `REVOKED`: permanent, so it outranks everything;
//! 3. `DISABLED`: an operator's suspension, reversible;
//! 4. `EXPIRED`: `now >= expires_at`, judged against the clock on every call;
//! 5. `IP_NOT_ALLOWED`, `REFERRER_NOT_ALLOWED`, `RESOURCE_NOT_ALLOWED`: where
//!    the call comes from and what it touches; a missing input is a denial;
//! 6. `INSUFFICIENT_SCOPE`: every required scope must be granted (all-of),
//!    then one scope of each any-of group (`domain::required`);
//! 7. then, outside this function and only for a call that passed all of
//!    the above: the per-replica `RATE_LIMITED` bucket, the named limits
//!    (`RATE_LIMITED`) and credits (`USAGE_EXCEEDED`), all or nothing, so a
//!    denied call never spends.
//!
//! State checks come before request checks so that a dead key never leaks
//! which restrictions or scopes it has. A report-only restriction that fails
//! is recorded in [`Decision::would_deny`] and the check goes on.

use std::{collections::HashMap, net::IpAddr};

use crate::{
    domain::{
        KeyState, Rule, Timestamp,
        required::{AnyOf, NoGroups, granted},
        verdict::{Code, Decision},
    },
    index::{Entry, KeyspaceScope},
};

/// What the caller asks of a key, with the end client's values as the
/// gateway saw them. Required scopes must already be checked by
/// [`crate::domain::scope::check_required`].
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    /// All of these.
    pub required_scopes: &'a [String],
    /// And one scope of each of these groups.
    pub required_any: &'a dyn AnyOf,
    pub client_ip: Option<IpAddr>,
    /// Empty when the call carries none.
    pub referrer: &'a str,
    /// Empty when the call carries none.
    pub resource: &'a str,
    /// The keyspaces whose keys may answer; any other key answers exactly
    /// as an unknown one (NOT_FOUND, counted as unknown).
    pub keyspaces: KeyspaceScope,
    /// Credits the call spends (0 checks without spending).
    pub cost: u32,
    /// Tokens it takes of each named limit; 1 of any not named.
    pub limit_costs: Option<&'a HashMap<String, u32>>,
}

impl Default for Request<'_> {
    fn default() -> Self {
        Self {
            required_scopes: &[],
            required_any: &NoGroups,
            client_ip: None,
            referrer: "",
            resource: "",
            keyspaces: KeyspaceScope::ANY,
            cost: 1,
            limit_costs: None,
        }
    }
}

/// Applies one restriction: `Err` for an enforced denial, a note in
/// `would_deny` for a report-only one.
fn check<T>(
    rule: &Option<Rule<T>>,
    allowed: impl FnOnce(&T) -> bool,
    code: Code,
    d: &mut Decision,
) -> Result<(), Code> {
    match rule {
        Some(r) if !allowed(&r.allow) => {
            if r.enforced() {
                return Err(code);
            }
            d.would_deny.insert(code);
            Ok(())
        }
        _ => Ok(()),
    }
}

pub fn decide<'a>(record: &Entry, request: &Request<'a>, now: Timestamp) -> Decision<'a> {
    match record.state(now) {
        KeyState::Revoked => return Decision::of(Code::Revoked),
        KeyState::Disabled => return Decision::of(Code::Disabled),
        KeyState::Expired => return Decision::of(Code::Expired),
        KeyState::Active => {}
    }
    let mut d = Decision::of(Code::Valid);
    let r = record.restrictions();
    let restricted = check(
        &r.ip,
        |a| request.client_ip.is_some_and(|ip| a.contains(ip)),
        Code::IpNotAllowed,
        &mut d,
    )
    .and_then(|()| {
        check(
            &r.referrer,
            |a| !request.referrer.is_empty() && a.allows(request.referrer),
            Code::ReferrerNotAllowed,
            &mut d,
        )
    })
    .and_then(|()| {
        check(
            &r.resource,
            |a| !request.resource.is_empty() && a.allows(request.resource),
            Code::ResourceNotAllowed,
            &mut d,
        )
    });
    if let Err(code) = restricted {
        return Decision { code, ..d };
    }
    let held = record.scopes();
    let missing = request
        .required_scopes
        .iter()
        .find(|req| !granted(held, req));
    if let Some(missing) = missing {
        return Decision {
            code: Code::InsufficientScope,
            missing_scope: Some(missing),
            ..d
        };
    }
    if let Some(group) = request.required_any.first_unmet(held) {
        return Decision {
            code: Code::InsufficientScope,
            missing_any: Some(group),
            ..d
        };
    }
    d
}
