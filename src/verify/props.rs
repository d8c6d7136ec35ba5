//! Property tests for the decision: narrowing a key never widens what it
//! grants, a dead key never passes, and the scope check is conjunctive
//! normal form over the held scopes, as a reference model computes it.

use std::net::IpAddr;

use proptest::prelude::*;

use super::{Code, Request, Unmet, decide, tests::record};
use crate::{
    domain::{
        KeyRecord, Mode, Rule, Scope, Timestamp,
        restriction::{IpAllowlist, ReferrerAllowlist, ResourceAllowlist},
    },
    index::Entry,
};

const NOW: Timestamp = Timestamp::from_millis(10_000);

const HELD: &[&str] = &["*", "a:*", "a:b", "a:b:*", "a:c", "b:*", "b:a"];
const REQUIRED: &[&str] = &["a", "a:b", "a:c", "a:b:c", "b:a", "b:b", "c"];
const IPS: &[&str] = &["10.1.2.3", "10.9.9.9", "192.168.0.1", "2001:db8::1"];
const NETS: &[&str] = &[
    "10.1.0.0/16",
    "10.0.0.0/8",
    "192.168.0.0/24",
    "2001:db8::/32",
];
const REFERRERS: &[&str] = &[
    "https://a.example.com/",
    "https://example.com/",
    "https://b.test/",
];
const HOSTS: &[&str] = &["*.example.com", "example.com", "b.test"];
const RESOURCES: &[&str] = &["x/y", "x/z", "y/x/z", "x"];
const PATTERNS: &[&str] = &["x/*", "x/y", "*/x/*", "x"];

fn pick(from: &'static [&'static str]) -> impl Strategy<Value = Vec<&'static str>> {
    prop::sample::subsequence(from, 0..=from.len())
}

fn mode() -> impl Strategy<Value = Mode> {
    prop_oneof![Just(Mode::Enforce), Just(Mode::ReportOnly)]
}

/// A key with some scopes and, maybe, each kind of allowlist.
fn key() -> impl Strategy<Value = KeyRecord> {
    (
        pick(HELD),
        prop::option::of((prop::sample::subsequence(NETS, 1..=NETS.len()), mode())),
        prop::option::of((prop::sample::subsequence(HOSTS, 1..=HOSTS.len()), mode())),
        prop::option::of((
            prop::sample::subsequence(PATTERNS, 1..=PATTERNS.len()),
            mode(),
        )),
        prop::option::of(5_000i64..20_000),
    )
        .prop_map(|(scopes, ip, referrer, resource, expires)| {
            let mut r = record(&scopes);
            r.restrictions.ip = ip.map(|(nets, mode)| Rule {
                allow: IpAllowlist::parse(&nets).expect("valid"),
                mode,
            });
            r.restrictions.referrer = referrer.map(|(hosts, mode)| Rule {
                allow: ReferrerAllowlist::parse(&hosts).expect("valid"),
                mode,
            });
            r.restrictions.resource = resource.map(|(patterns, mode)| Rule {
                allow: ResourceAllowlist::parse(&patterns).expect("valid"),
                mode,
            });
            r.expires_at = expires.map(Timestamp::from_millis);
            r
        })
}

/// What a call presents.
#[derive(Debug, Clone)]
struct Call {
    scopes: Vec<String>,
    /// Any-of groups, each non-empty.
    any: Vec<Vec<String>>,
    ip: Option<IpAddr>,
    referrer: &'static str,
    resource: &'static str,
}

fn call() -> impl Strategy<Value = Call> {
    let group = prop::sample::subsequence(REQUIRED, 1..=3);
    (
        pick(REQUIRED),
        prop::collection::vec(group, 0..4),
        prop::option::of(prop::sample::select(IPS)),
        prop::sample::select(REFERRERS),
        prop::sample::select(RESOURCES),
    )
        .prop_map(|(scopes, any, ip, referrer, resource)| Call {
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            any: any
                .iter()
                .map(|g| g.iter().map(|s| s.to_string()).collect())
                .collect(),
            ip: ip.map(|s| s.parse().expect("ip")),
            referrer,
            resource,
        })
}

fn request(c: &Call) -> Request<'_> {
    Request {
        required_scopes: &c.scopes,
        required_any: &c.any,
        client_ip: c.ip,
        referrer: c.referrer,
        resource: c.resource,
        ..Default::default()
    }
}

fn valid(r: &KeyRecord, c: &Call) -> bool {
    decide(&Entry::from(r), &request(c), NOW).code == Code::Valid
}

/// The reference model of one grant, by segments: `a:*` grants whatever
/// has more segments and starts with `a`; anything else grants itself.
fn model_grants(held: &str, required: &str) -> bool {
    let h: Vec<&str> = held.split(':').collect();
    let r: Vec<&str> = required.split(':').collect();
    match h.split_last() {
        Some((&"*", prefix)) => r.len() > prefix.len() && r[..prefix.len()] == *prefix,
        _ => h == r,
    }
}

/// What the model says is missing: the first all-of scope, else the first
/// any-of group, not granted by any held scope.
fn model_missing<'a>(held: &[Scope], c: &'a Call) -> Option<(Option<&'a str>, Option<usize>)> {
    let granted = |req: &str| held.iter().any(|h| model_grants(h.as_str(), req));
    if let Some(s) = c.scopes.iter().find(|s| !granted(s)) {
        return Some((Some(s), None));
    }
    let group = c.any.iter().position(|g| !g.iter().any(|s| granted(s)))?;
    Some((None, Some(group)))
}

/// The ways an update can narrow a key.
#[derive(Debug, Clone)]
enum Narrow {
    DropScope(usize),
    EnforceIp(Vec<&'static str>),
    EnforceReferrer(Vec<&'static str>),
    EnforceResource(Vec<&'static str>),
    ExpireAt(i64),
    Revoke,
    Disable,
}

fn narrowing() -> impl Strategy<Value = Narrow> {
    prop_oneof![
        (0usize..8).prop_map(Narrow::DropScope),
        prop::sample::subsequence(NETS, 1..=NETS.len()).prop_map(Narrow::EnforceIp),
        prop::sample::subsequence(HOSTS, 1..=HOSTS.len()).prop_map(Narrow::EnforceReferrer),
        prop::sample::subsequence(PATTERNS, 1..=PATTERNS.len()).prop_map(Narrow::EnforceResource),
        (0i64..20_000).prop_map(Narrow::ExpireAt),
        Just(Narrow::Revoke),
        Just(Narrow::Disable),
    ]
}

/// Applies `n` so that the result can only be narrower: an allowlist is
/// intersected with what the key had (or added where it had none), an
/// expiry only moves earlier.
fn narrow(r: &KeyRecord, n: &Narrow) -> KeyRecord {
    let mut out = r.clone();
    fn tighten<T>(
        old: &Option<Rule<T>>,
        new: &[&'static str],
        entries: impl Fn(&T) -> Vec<String>,
        parse: impl Fn(&[String]) -> Option<T>,
    ) -> Option<Rule<T>> {
        let kept: Vec<String> = match old {
            Some(rule) => {
                let had = entries(&rule.allow);
                let both: Vec<String> = had
                    .iter()
                    .filter(|e| new.contains(&e.as_str()))
                    .cloned()
                    .collect();
                // Nothing in common: the old entries, now enforced.
                if both.is_empty() { had } else { both }
            }
            None => new.iter().map(|s| s.to_string()).collect(),
        };
        parse(&kept).map(|allow| Rule {
            allow,
            mode: Mode::Enforce,
        })
    }
    let restr = &mut out.restrictions;
    match n {
        Narrow::DropScope(i) => {
            if !out.scopes.is_empty() {
                let i = i % out.scopes.len();
                out.scopes.remove(i);
            }
        }
        Narrow::EnforceIp(nets) => {
            restr.ip = tighten(
                &r.restrictions.ip,
                nets,
                |a| a.entries().collect(),
                |e| IpAllowlist::parse(e).ok(),
            );
        }
        Narrow::EnforceReferrer(hosts) => {
            restr.referrer = tighten(
                &r.restrictions.referrer,
                hosts,
                |a| a.entries().collect(),
                |e| ReferrerAllowlist::parse(e).ok(),
            );
        }
        Narrow::EnforceResource(patterns) => {
            restr.resource = tighten(
                &r.restrictions.resource,
                patterns,
                |a| a.entries().collect(),
                |e| ResourceAllowlist::parse(e).ok(),
            );
        }
        Narrow::ExpireAt(at) => {
            let at = Timestamp::from_millis(*at);
            out.expires_at = Some(out.expires_at.map_or(at, |old| old.min(at)));
        }
        Narrow::Revoke => out.revoked_at = Some(NOW),
        Narrow::Disable => out.disabled_at = Some(NOW),
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    /// Whatever a narrowed key passes, the original passed too.
    #[test]
    fn a_narrowed_key_never_grants_more(
        r in key(),
        steps in prop::collection::vec(narrowing(), 1..4),
        c in call(),
    ) {
        let mut narrowed = r.clone();
        for s in &steps {
            narrowed = narrow(&narrowed, s);
        }
        if valid(&narrowed, &c) {
            prop_assert!(valid(&r, &c), "narrowed by {:?}", steps);
        }
    }

    /// A revoked, disabled or expired key never passes, whatever is asked.
    #[test]
    fn a_dead_key_never_passes(r in key(), c in call(), how in 0u8..3) {
        let mut dead = r;
        match how {
            0 => dead.revoked_at = Some(NOW),
            1 => dead.disabled_at = Some(NOW),
            _ => dead.expires_at = Some(NOW),
        }
        prop_assert!(!valid(&dead, &c));
    }

    /// Report-only restrictions never deny: switching every rule to
    /// report-only passes whenever the scopes do.
    #[test]
    fn report_only_never_denies(r in key(), c in call()) {
        let mut lax = r;
        lax.expires_at = None;
        for mode in [
            lax.restrictions.ip.as_mut().map(|x| &mut x.mode),
            lax.restrictions.referrer.as_mut().map(|x| &mut x.mode),
            lax.restrictions.resource.as_mut().map(|x| &mut x.mode),
        ].into_iter().flatten() {
            *mode = Mode::ReportOnly;
        }
        let granted = model_missing(&lax.scopes, &c).is_none();
        prop_assert_eq!(valid(&lax, &c), granted);
    }

    /// On a live, unrestricted key the decision is the model's CNF over the
    /// held scopes, wildcards included, and a denial names what the model
    /// finds missing first.
    #[test]
    fn the_scope_check_is_the_cnf_model(scopes in pick(HELD), c in call()) {
        let r = record(&scopes);
        let d = decide(&Entry::from(&r), &request(&c), NOW);
        match model_missing(&r.scopes, &c) {
            None => prop_assert_eq!(d.code, Code::Valid),
            Some((scope, group)) => {
                prop_assert_eq!(d.code, Code::InsufficientScope);
                prop_assert_eq!(d.missing_scope, scope);
                prop_assert_eq!(d.missing_any, group.map(|i| Unmet::Scopes(&c.any[i])));
            }
        }
    }
}
