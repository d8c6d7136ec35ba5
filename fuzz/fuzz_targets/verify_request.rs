//! Verify's request decoding and decision. The first byte picks the mode:
//! - even: the rest is a raw protobuf `VerifyRequest`;
//! - odd: the rest drives a structured request whose key is one of the
//!   index's real keys (or a corruption of one), so the fuzzer reaches the
//!   restriction and scope checks, not only the parser.
#![no_main]

use std::sync::OnceLock;

use keysmith::{
    domain::{
        ApiKey, Environment, KeyName, KeyPrefix, KeyRecord, KeyType, Mode, OwnerId, Rule, Scope,
        Timestamp,
        restriction::{IpAllowlist, RateLimit, ReferrerAllowlist, ResourceAllowlist},
    },
    grpc::{fuzz, pb},
    index::KeyIndex,
    usage::Recorder,
};
use libfuzzer_sys::{
    arbitrary::{self, Unstructured},
    fuzz_target,
};
use prost::Message;

struct World {
    index: KeyIndex,
    usage: Recorder,
    secrets: Vec<String>,
}

fn record(key: &ApiKey, restricted: bool) -> KeyRecord {
    let mut r = KeyRecord::new(
        key,
        OwnerId::parse("acct_fuzz").expect("owner"),
        KeyName::parse("fuzz").expect("name"),
        vec![Scope::parse("invoices:*").expect("scope")],
        Timestamp::now(),
    );
    if restricted {
        let rule = |allow| Rule {
            allow,
            mode: Mode::Enforce,
        };
        r.restrictions.ip = Some(rule(
            IpAllowlist::parse(&["10.0.0.0/8", "2001:db8::/32"]).expect("ip"),
        ));
        r.restrictions.referrer = Some(Rule {
            allow: ReferrerAllowlist::parse(&["*.example.com"]).expect("referrer"),
            mode: Mode::ReportOnly,
        });
        r.restrictions.resource = Some(Rule {
            allow: ResourceAllowlist::parse(&["acct_1/*", "x/*/y"]).expect("resource"),
            mode: Mode::Enforce,
        });
        r.restrictions.rate_limit = Some(Rule {
            allow: RateLimit::new(10, std::time::Duration::from_secs(1), 10).expect("rate"),
            mode: Mode::Enforce,
        });
    }
    r
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let index = KeyIndex::default();
        let mut secrets = Vec::new();
        for (i, (t, e)) in [
            (KeyType::Secret, Environment::Live),
            (KeyType::Publishable, Environment::Test),
        ]
        .into_iter()
        .enumerate()
        {
            // The second key is a keyspace's, with its prefix.
            let prefix = (i == 1).then(|| KeyPrefix::parse("fuzz").expect("prefix"));
            let key = ApiKey::generate_in(prefix, t, e).expect("rng");
            let mut r = record(&key, i == 1);
            if i == 1 {
                r.keyspace_id = "ks_fuzz".parse().expect("keyspace");
            }
            index.upsert(&r);
            secrets.push(key.expose_secret().to_owned());
        }
        index.mark_ready();
        World {
            index,
            usage: Recorder::default(),
            secrets,
        }
    })
}

fn structured(w: &World, u: &mut Unstructured) -> arbitrary::Result<Vec<u8>> {
    let mut key = w.secrets[usize::from(u.arbitrary::<u8>()?) % w.secrets.len()].clone();
    if u.arbitrary::<bool>()? {
        // Corrupt one byte, maybe into something non-ASCII.
        let mut bytes = key.into_bytes();
        let at = usize::from(u.arbitrary::<u8>()?) % bytes.len();
        bytes[at] = u.arbitrary()?;
        key = String::from_utf8_lossy(&bytes).into_owned();
    }
    let req = pb::VerifyRequest {
        key,
        required_scopes: u.arbitrary()?,
        client_ip: u.arbitrary()?,
        referrer: u.arbitrary()?,
        resource: u.arbitrary()?,
        required_any: u
            .arbitrary::<Vec<Vec<String>>>()?
            .into_iter()
            .map(|scopes| pb::ScopeAlternatives { scopes })
            .collect(),
        keyspace: match u.arbitrary::<u8>()? % 4 {
            0 => String::new(),
            1 => "ks_fuzz".into(),
            2 => "ks_default".into(),
            _ => u.arbitrary()?,
        },
        cost: u.arbitrary()?,
        limit_costs: u.arbitrary()?,
    };
    Ok(req.encode_to_vec())
}

fuzz_target!(|data: &[u8]| {
    let w = world();
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let bytes = if mode % 2 == 0 {
        rest.to_vec()
    } else {
        match structured(w, &mut Unstructured::new(rest)) {
            Ok(b) => b,
            Err(_) => return,
        }
    };
    if let Some(resp) = fuzz::verify_request(&bytes, &w.index, &w.usage) {
        // A valid answer always names its key, and a denial explains itself.
        if resp.valid {
            assert!(!resp.key_id.is_empty());
        } else {
            assert!(!resp.detail.is_empty());
        }
    }
});
