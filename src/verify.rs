//! The verify decision: one pure function of (record, request, now), and
//! [`verify`], which parses, looks up, decides, applies the rate limit and
//! counts usage.
//!
//! Order of checks, first failure wins:
//! 1. format (`MALFORMED`) and existence (`NOT_FOUND`), before any record;
//!    a key outside the keyspaces the call accepts does not exist for it;
//! 2. `REVOKED`: permanent, so it outranks everything;
//! 3. `DISABLED`: an operator's suspension, reversible;
//! 4. `EXPIRED`: `now >= expires_at`, judged against the clock on every call;
//! 5. `IP_NOT_ALLOWED`, `REFERRER_NOT_ALLOWED`, `RESOURCE_NOT_ALLOWED`: where
//!    the call comes from and what it touches; a missing input is a denial;
//! 6. `INSUFFICIENT_SCOPE`: every required scope must be granted (all-of),
//!    then one scope of each any-of group (`required.rs`);
//! 7. `RATE_LIMITED`: last, so that only calls that would otherwise pass
//!    spend a token.
//!
//! State checks come before request checks so that a dead key never leaks
//! which restrictions or scopes it has. A report-only restriction that fails
//! is recorded in [`Decision::would_deny`] and the check goes on.

use std::{net::IpAddr, time::Duration};

use crate::{
    domain::{KeyState, Rule, Timestamp, TokenLimits, restriction::Take},
    index::{Entry, KeyIndex, KeyspaceScope},
    usage::Recorder,
};

mod required;
pub use required::{AnyOf, NoGroups, Unmet, granted};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Code {
    Valid,
    Malformed,
    NotFound,
    Revoked,
    Expired,
    Disabled,
    InsufficientScope,
    IpNotAllowed,
    ReferrerNotAllowed,
    ResourceNotAllowed,
    RateLimited,
}

impl Code {
    /// Every code, in a fixed order (usage counters are indexed by it).
    pub const ALL: [Code; 11] = [
        Code::Valid,
        Code::Malformed,
        Code::NotFound,
        Code::Revoked,
        Code::Expired,
        Code::Disabled,
        Code::InsufficientScope,
        Code::IpNotAllowed,
        Code::ReferrerNotAllowed,
        Code::ResourceNotAllowed,
        Code::RateLimited,
    ];

    pub const fn index(self) -> usize {
        self as usize
    }

    /// A fixed explanation of a denial, safe for any client.
    pub const fn detail(self) -> &'static str {
        match self {
            Code::Valid => "",
            Code::Malformed => "malformed key",
            Code::NotFound => "unknown key",
            Code::Revoked => "key was revoked",
            Code::Expired => "key has expired",
            Code::Disabled => "key is disabled",
            Code::InsufficientScope => "a required scope is not granted",
            Code::IpNotAllowed => "client_ip is missing or not allowed",
            Code::ReferrerNotAllowed => "referrer is missing or not allowed",
            Code::ResourceNotAllowed => "resource is missing or not allowed",
            Code::RateLimited => "rate limit exceeded",
        }
    }
}

/// Report-only restrictions that failed, as a small set of codes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WouldDeny(u16);

impl WouldDeny {
    pub fn insert(&mut self, code: Code) {
        self.0 |= 1 << code.index();
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn iter(self) -> impl Iterator<Item = Code> {
        Code::ALL
            .into_iter()
            .filter(move |c| self.0 & (1 << c.index()) != 0)
    }
}

/// The outcome of a decision. Borrows the request, so deciding allocates nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision<'a> {
    pub code: Code,
    /// For `InsufficientScope`: the first of `required_scopes` not granted.
    pub missing_scope: Option<&'a str>,
    /// For `InsufficientScope` from `required_any`: the first group of which
    /// nothing is granted.
    pub missing_any: Option<Unmet<'a>>,
    pub would_deny: WouldDeny,
}

impl Decision<'_> {
    pub const fn of(code: Code) -> Self {
        Self {
            code,
            missing_scope: None,
            missing_any: None,
            would_deny: WouldDeny(0),
        }
    }

    pub fn is_valid(&self) -> bool {
        self.code == Code::Valid
    }
}

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

/// What Verify answers: the decision, the key when it exists, and the rate
/// limit's state when the key has one.
#[derive(Debug)]
pub struct Outcome<'a> {
    pub decision: Decision<'a>,
    pub entry: Option<std::sync::Arc<Entry>>,
    /// A fixed explanation for denials; empty when valid.
    pub detail: &'static str,
    pub rate_limit_remaining: Option<u32>,
    pub retry_after: Option<Duration>,
}

/// Parses `key`, looks it up in `index`, decides, takes a rate-limit token
/// and counts the call. Never touches the database; allocates nothing but
/// the `Arc` clone of the entry.
pub fn verify<'a>(
    index: &KeyIndex,
    usage: &Recorder,
    key: &str,
    request: &Request<'a>,
    now: Timestamp,
    mono_nanos: impl FnOnce() -> u64,
) -> Outcome<'a> {
    verify_within(
        index,
        usage,
        key,
        request,
        &TokenLimits::NONE,
        now,
        mono_nanos,
    )
}

/// [`verify`] for a caller confined to some keyspaces or owners (the
/// verify listener's credential): a key outside them answers `NOT_FOUND`,
/// exactly as a key that does not exist, and is neither counted nor
/// charged a rate-limit token.
pub fn verify_within<'a>(
    index: &KeyIndex,
    usage: &Recorder,
    key: &str,
    request: &Request<'a>,
    within: &TokenLimits,
    now: Timestamp,
    mono_nanos: impl FnOnce() -> u64,
) -> Outcome<'a> {
    let presented = match crate::domain::api_key::parse(key) {
        Ok(p) => p,
        Err(e) => {
            usage.unknown(Code::Malformed);
            return bare(Code::Malformed, e.detail());
        }
    };
    let Some(entry) = index
        .get(&presented.hash)
        .filter(|e| request.keyspaces.admits(e.keyspace()))
    else {
        usage.unknown(Code::NotFound);
        return bare(Code::NotFound, Code::NotFound.detail());
    };
    if !within.is_unlimited() && !admitted(index, within, &entry) {
        usage.unknown(Code::NotFound);
        return bare(Code::NotFound, Code::NotFound.detail());
    }
    let mut decision = decide(&entry, request, now);
    let runtime = entry.runtime();
    let (mut remaining, mut retry_after) = (None, None);
    if let (true, Some(rule)) = (decision.is_valid(), &entry.restrictions().rate_limit) {
        // The monotonic clock is read only for keys with a rate limit.
        match runtime.take_token(rule.allow, mono_nanos()) {
            Take::Allowed { remaining: r } => remaining = Some(r),
            Take::Limited { retry_after: after } if rule.enforced() => {
                decision.code = Code::RateLimited;
                (remaining, retry_after) = (Some(0), Some(after));
            }
            Take::Limited { .. } => {
                decision.would_deny.insert(Code::RateLimited);
                remaining = Some(0);
            }
        }
    }
    usage.record(runtime, &decision, request.client_ip, now);
    Outcome {
        detail: decision.code.detail(),
        decision,
        entry: Some(entry),
        rate_limit_remaining: remaining,
        retry_after,
    }
}

fn bare(code: Code, detail: &'static str) -> Outcome<'static> {
    Outcome {
        decision: Decision::of(code),
        entry: None,
        detail,
        rate_limit_remaining: None,
        retry_after: None,
    }
}

#[cfg(test)]
mod alloc;
#[cfg(test)]
mod props;
#[cfg(test)]
mod tests;

/// Whether `entry` is inside a limited credential's keyspaces and owners. A
/// few map lookups, made only for a limited credential.
fn admitted(index: &KeyIndex, within: &TokenLimits, entry: &Entry) -> bool {
    within.admits_owner(entry.owner_id())
        && within.keyspaces().is_none_or(|ks| {
            ks.iter()
                .any(|k| index.keyspace_slot(k) == Some(entry.keyspace()))
        })
}
