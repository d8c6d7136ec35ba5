//! Leak response: GitHub's signed secret-scanning reports on the public
//! listener, ReportLeakedKey, revocation by presenting a key, and
//! LookupKey. Each applies its keyspace's leak policy, audits `key.leaked`,
//! and streams what it ended as LEAKED.

use std::time::Duration;

use keysmith::grpc::pb::{self, KeyEventKind, LeakPolicy, VerifyCode};
use tonic::Code;

use crate::{
    helpers::{Backend, TestApp, TestDb, assert_status, eventually, spawn_configured, spawn_with},
    receiver::receiver,
    rotate_self::{HOUR, rotate_self, secs},
    scanner::{
        KeyServer, Mode, Signer, document, hex_sha256, key_server, matches, post, report,
        with_public,
    },
};

/// A server with the public listener, reading keys from a key server that
/// serves `signer`'s key.
async fn scanned(backend: Backend, signer: &Signer) -> (TestApp, KeyServer) {
    scanned_with(backend, signer, |_| {}).await
}

async fn scanned_with(
    backend: Backend,
    signer: &Signer,
    configure: impl FnOnce(&mut keysmith::public::PublicConfig),
) -> (TestApp, KeyServer) {
    let keys = key_server(Mode::Serve(document(&[signer]))).await;
    let app = spawn_with(backend, |c| {
        with_public(c, &keys.url);
        configure(c.public.as_mut().expect("public"));
        c.webhooks.allow_private_targets = true;
    })
    .await;
    (app, keys)
}

/// A well-formed key, checksum and all, that this service never issued.
fn stranger() -> String {
    let key = keysmith::domain::ApiKey::generate(
        keysmith::domain::KeyType::Secret,
        keysmith::domain::Environment::Live,
    )
    .expect("random");
    key.expose_secret().to_owned()
}

fn public(app: &TestApp) -> std::net::SocketAddr {
    app.public_addr.expect("the public listener is on")
}

/// A keyspace with prefix `prefix` and leak response `leak`.
async fn keyspace(app: &TestApp, prefix: &str, leak: Option<pb::LeakResponse>) -> String {
    let ks = app
        .admin
        .clone()
        .create_keyspace(pb::CreateKeyspaceRequest {
            name: format!("{prefix} API"),
            prefix: prefix.into(),
            leak_response: leak,
            ..Default::default()
        })
        .await
        .expect("create keyspace")
        .into_inner();
    ks.id
}

/// A key in `keyspace`: (id, secret).
async fn key_in(
    app: &TestApp,
    keyspace: &str,
    env: pb::Environment,
    kind: pb::KeyType,
) -> (String, String) {
    let created = app
        .create(pb::CreateKeyRequest {
            owner_id: "acct_leaky".into(),
            keyspace: keyspace.into(),
            environment: env.into(),
            r#type: kind.into(),
            // Publishable keys must be bound to somewhere.
            restrictions: (kind == pb::KeyType::Publishable).then(|| pb::Restrictions {
                ip: Some(pb::IpRestriction {
                    allow: vec!["127.0.0.0/8".into()],
                    mode: pb::RestrictionMode::Enforce.into(),
                }),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await;
    (created.key.expect("key").id, created.secret)
}

async fn live_secret(app: &TestApp, keyspace: &str) -> (String, String) {
    key_in(app, keyspace, pb::Environment::Live, pb::KeyType::Secret).await
}

/// A revocation stream of every restrictive change, from now.
async fn watch(app: &TestApp) -> tonic::Streaming<pb::KeyEvent> {
    app.verify
        .clone()
        .watch_revocations(pb::WatchRevocationsRequest::default())
        .await
        .expect("watch")
        .into_inner()
}

/// The stream's next event is key `id`'s LEAKED.
async fn assert_leaked_event(events: &mut tonic::Streaming<pb::KeyEvent>, id: &str) {
    let e = tokio::time::timeout(Duration::from_secs(10), events.message())
        .await
        .expect("an event in time")
        .expect("stream ok")
        .expect("stream open");
    assert_eq!((e.kind(), e.key_id.as_str()), (KeyEventKind::Leaked, id));
}

async fn audit(app: &TestApp, key_id: &str, action: &str) -> Vec<pb::AuditEvent> {
    app.admin
        .clone()
        .list_audit_events(pb::ListAuditEventsRequest {
            key_id: key_id.into(),
            action: action.into(),
            ..Default::default()
        })
        .await
        .expect("audit")
        .into_inner()
        .events
}

async fn all_leaks(app: &TestApp) -> usize {
    app.admin
        .clone()
        .list_audit_events(pb::ListAuditEventsRequest {
            action: "key.leaked".into(),
            ..Default::default()
        })
        .await
        .expect("audit")
        .into_inner()
        .events
        .len()
}

/// One report: a live secret key (revoked), a test key (only notified), a
/// string of the right shape that is no key, and one of no shape at all.
/// The feedback labels each; the audit, webhook and stream say the rest.
async fn github_report_applies_each_keys_policy(backend: Backend) {
    let signer = Signer::new("key-a");
    let (app, _keys) = scanned(backend, &signer).await;
    let hook = receiver(0).await;
    app.admin
        .clone()
        .create_webhook_endpoint(pb::CreateWebhookEndpointRequest {
            url: hook.base.clone(),
            events: vec!["key.leaked".into()],
            description: String::new(),
        })
        .await
        .expect("webhook");
    let ks = keyspace(&app, "acme", None).await;
    let (live_id, live) = live_secret(&app, &ks).await;
    let (test_id, test) = key_in(&app, &ks, pb::Environment::Test, pb::KeyType::Secret).await;
    let (_, bystander) = live_secret(&app, &ks).await;
    // Right shape, valid checksum, never issued.
    let stranger = stranger();
    let mut events = watch(&app).await;

    let tokens = [
        live.as_str(),
        test.as_str(),
        stranger.as_str(),
        "ghp_notours",
    ];
    let reply = report(public(&app), &signer, &matches(&tokens)).await;
    assert_eq!(reply.status, 200, "{:?}", reply.json);
    let feedback = reply.json.as_array().expect("a feedback array");
    assert_eq!(feedback.len(), 4);
    let labels: Vec<_> = feedback
        .iter()
        .map(|f| f["label"].as_str().unwrap())
        .collect();
    assert_eq!(
        labels,
        [
            "true_positive",
            "true_positive",
            "false_positive",
            "false_positive"
        ]
    );
    for (f, t) in feedback.iter().zip(tokens) {
        assert_eq!(f["token_hash"], hex_sha256(t));
        assert_eq!(f["token_type"], "keysmith_api_key");
    }

    assert_eq!(app.verify_code(&live).await, VerifyCode::Revoked);
    assert_eq!(
        app.verify_code(&test).await,
        VerifyCode::Valid,
        "notify only"
    );
    assert_eq!(app.verify_code(&bystander).await, VerifyCode::Valid);
    assert_leaked_event(&mut events, &live_id).await;

    for id in [&live_id, &test_id] {
        let leaked = audit(&app, id, "key.leaked").await;
        assert_eq!(leaked.len(), 1, "{id}: {leaked:?}");
        assert_eq!(leaked[0].actor, "github");
        let changes: serde_json::Value =
            serde_json::from_str(&leaked[0].changes_json).expect("changes");
        assert_eq!(
            changes["url"],
            "https://github.com/octo/app/blob/abc123/config.yml"
        );
        assert_eq!(changes["source"], "content");
        assert_eq!(changes["finder"], "github");
    }
    let revoked = audit(&app, &live_id, "key.revoked").await;
    assert_eq!(revoked.len(), 1);
    assert_eq!(revoked[0].reason, "leaked");
    assert!(audit(&app, &test_id, "key.revoked").await.is_empty());
    eventually("both key.leaked webhooks", || async {
        hook.requests()
            .iter()
            .filter(|r| String::from_utf8_lossy(&r.body).contains("key.leaked"))
            .count()
            == 2
    })
    .await;
    let bodies: String = hook
        .requests()
        .iter()
        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
        .collect();
    assert!(!bodies.contains(&live), "a webhook carried the secret");
}

/// Every bad request is refused with its own status, and none revokes
/// anything or writes an audit event.
async fn bad_reports_change_nothing(backend: Backend) {
    let signer = Signer::new("key-a");
    let (app, _keys) = scanned(backend, &signer).await;
    let addr = public(&app);
    let ks = keyspace(&app, "acme", None).await;
    let (_, live) = live_secret(&app, &ks).await;
    let body = matches(&[&live]);
    let sig = signer.sign(&body);
    let stranger = Signer::new("key-b");
    let route = "/v1/secret-scanning/github";
    type Case<'a> = (&'a str, Vec<(&'a str, String)>, Vec<u8>, u16);
    let cases: Vec<Case> = vec![
        ("no signature", vec![], body.clone(), 401),
        (
            "another key's signature",
            vec![
                ("Github-Public-Key-Identifier", signer.id.clone()),
                ("Github-Public-Key-Signature", stranger.sign(&body)),
            ],
            body.clone(),
            401,
        ),
        (
            "an unknown key identifier",
            vec![
                ("Github-Public-Key-Identifier", "key-b".into()),
                ("Github-Public-Key-Signature", stranger.sign(&body)),
            ],
            body.clone(),
            401,
        ),
        (
            "a body changed after signing",
            vec![
                ("Github-Public-Key-Identifier", signer.id.clone()),
                ("Github-Public-Key-Signature", sig.clone()),
            ],
            matches(&[&live, &live]),
            401,
        ),
        (
            "a signature that is not base64 DER",
            vec![
                ("Github-Public-Key-Identifier", signer.id.clone()),
                ("Github-Public-Key-Signature", "bm90IGEgc2lnbmF0dXJl".into()),
            ],
            body.clone(),
            401,
        ),
    ];
    for (what, headers, body, status) in cases {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let reply = post(addr, route, &headers, body).await;
        assert_eq!(reply.status, status, "{what}: {:?}", reply.json);
        assert!(reply.json["error"].is_string(), "{what}: {:?}", reply.json);
    }
    // Signed, but refused for what the body is.
    let huge_token = matches(&[&"a".repeat(1_000_000)]);
    // Under the body cap, refused by the parser: past 1,000 matches, and a
    // token longer than any key.
    let many_small = format!("[{}]", vec![r#"{"token":"x"}"#; 1_500].join(","));
    assert!(many_small.len() < 64 * 1024);
    let long_token = matches(&[&"a".repeat(5_000)]);
    let hundred_thousand = format!("[{}]", vec![r#"{"token":"x"}"#; 100_000].join(","));
    let over_cap = vec![b' '; 300 * 1024];
    for (what, body, status) in [
        ("not JSON", b"token=abc".to_vec(), 400),
        ("an object, not an array", br#"{"token":"x"}"#.to_vec(), 400),
        ("a match with no token", br#"[{"type":"x"}]"#.to_vec(), 400),
        ("a token of 1 MB", huge_token, 413),
        ("100,000 matches", hundred_thousand.into_bytes(), 413),
        ("a body over the cap", over_cap, 413),
        ("1,500 matches under the cap", many_small.into_bytes(), 413),
        ("a token of 5,000 bytes", long_token, 400),
    ] {
        let reply = report(addr, &signer, &body).await;
        assert_eq!(reply.status, status, "{what}: {:?}", reply.json);
        assert!(reply.json["error"].is_string(), "{what}: {:?}", reply.json);
    }
    assert_eq!(app.verify_code(&live).await, VerifyCode::Valid);
    assert_eq!(all_leaks(&app).await, 0);

    // A replay of a good report is refused, and applies nothing again.
    let first = report(addr, &signer, &body).await;
    assert_eq!(first.status, 200, "{:?}", first.json);
    assert_eq!(app.verify_code(&live).await, VerifyCode::Revoked);
    let again = report(addr, &signer, &body).await;
    assert_eq!(again.status, 409, "{:?}", again.json);
    assert_eq!(all_leaks(&app).await, 1);
}

/// The key server goes away (hangs, then serves junk): reports signed by
/// the cached key are answered at once, and an unknown identifier is
/// refused without losing the cached key.
async fn a_key_server_outage_is_survived_on_the_cached_key(backend: Backend) {
    let signer = Signer::new("key-a");
    let (app, keys) = scanned(backend, &signer).await;
    let addr = public(&app);
    let ks = keyspace(&app, "acme", None).await;
    let (_, a) = live_secret(&app, &ks).await;
    let (_, b) = live_secret(&app, &ks).await;
    let (_, c) = live_secret(&app, &ks).await;
    assert_eq!(report(addr, &signer, &matches(&[&a])).await.status, 200);

    keys.set(Mode::Hang);
    let fetched = keys.fetches();
    let reply = report(addr, &signer, &matches(&[&b])).await;
    assert_eq!(reply.status, 200, "{:?}", reply.json);
    assert_eq!(keys.fetches(), fetched, "a cached key needs no fetch");
    // An unknown identifier makes one fetch, which times out: refused.
    let other = Signer::new("key-b");
    let reply = report(addr, &other, &matches(&[&c])).await;
    assert_eq!(reply.status, 401, "{:?}", reply.json);

    keys.set(Mode::Garbage);
    let reply = report(addr, &other, &matches(&[&c])).await;
    assert_eq!(reply.status, 401, "{:?}", reply.json);
    assert_eq!(app.verify_code(&c).await, VerifyCode::Valid);
    let reply = report(addr, &signer, &matches(&[&c])).await;
    assert_eq!(
        reply.status, 200,
        "the junk document did not replace the cached key"
    );
    assert_eq!(app.verify_code(&c).await, VerifyCode::Revoked);

    // GitHub rotates its key: a report by the new one is accepted once the
    // document has it.
    keys.set(Mode::Serve(document(&[&signer, &other])));
    let (_, d) = live_secret(&app, &ks).await;
    let reply = report(addr, &other, &matches(&[&d])).await;
    assert_eq!(reply.status, 200, "{:?}", reply.json);
    assert_eq!(app.verify_code(&d).await, VerifyCode::Revoked);
}

/// A flood of unknown key identifiers makes no flood of fetches: the
/// document is fetched at most once a refetch interval.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_key_ids_refetch_at_most_once_an_interval() {
    let signer = Signer::new("key-a");
    let (app, keys) = scanned_with(Backend::Sqlite, &signer, |p| {
        p.github_keys.refetch_interval = Duration::from_secs(60);
    })
    .await;
    eventually("the startup fetch", || async { keys.fetches() == 1 }).await;
    let (_, live) = live_secret(&app, "").await;
    let stranger = Signer::new("key-z");
    for _ in 0..5 {
        let reply = report(public(&app), &stranger, &matches(&[&live])).await;
        assert_eq!(reply.status, 401, "{:?}", reply.json);
    }
    assert_eq!(
        keys.fetches(),
        1,
        "an unknown id within the interval fetches nothing"
    );
    assert_eq!(app.verify_code(&live).await, VerifyCode::Valid);
}

/// A token limited to one keyspace reaches no key outside it through the
/// raw-key RPCs: NOT_FOUND, as for a string that is no key.
async fn raw_key_rpcs_stay_within_a_tokens_keyspaces(backend: Backend) {
    use crate::token_support::{mint, names, with_permissions};
    let app = spawn_with(backend, |_| {}).await;
    let acme = keyspace(&app, "acme", None).await;
    let (_, ours) = live_secret(&app, &acme).await;
    let (_, theirs) = live_secret(&app, "").await;
    let req = pb::CreateAdminTokenRequest {
        keyspaces: vec![acme.clone()],
        ..with_permissions("acme team", names(&["keys.read", "keys.revoke"]))
    };
    let mut a = mint(&app, &app.admin, req).await.admin;
    let lookup = |key: &str| pb::LookupKeyRequest { key: key.into() };
    let report = |key: &str| pb::ReportLeakedKeyRequest {
        key: key.into(),
        source: "scan".into(),
        ..Default::default()
    };
    assert!(a.lookup_key(lookup(&ours)).await.is_ok());
    assert_status(a.lookup_key(lookup(&theirs)).await, Code::NotFound, "key");
    assert_status(
        a.report_leaked_key(report(&theirs)).await,
        Code::NotFound,
        "key",
    );
    assert_eq!(app.verify_code(&theirs).await, VerifyCode::Valid);
    assert!(a.report_leaked_key(report(&ours)).await.is_ok());
    assert_eq!(app.verify_code(&ours).await, VerifyCode::Revoked);
}

/// Before the key server ever answered, no report can be checked: 503, so
/// GitHub retries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_key_ever_fetched_reports_are_retried_later() {
    let keys = key_server(Mode::Garbage).await;
    let app = spawn_with(Backend::Sqlite, |c| with_public(c, &keys.url)).await;
    let (_, live) = live_secret(&app, "").await;
    let signer = Signer::new("key-a");
    let reply = report(public(&app), &signer, &matches(&[&live])).await;
    assert_eq!(reply.status, 503, "{:?}", reply.json);
    assert_eq!(app.verify_code(&live).await, VerifyCode::Valid);
}

/// A body the listener does not want is still read before the answer:
/// one past its route's cap (413), one from an address over its limit
/// (429), one to no route (404). Closing with bytes unread resets the
/// connection under a client still sending, which then sees a broken pipe
/// instead of the answer. One try races; thirty do not pass by luck.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unwanted_body_is_answered_not_reset() {
    let signer = Signer::new("key-a");
    let (app, _keys) = scanned(Backend::Sqlite, &signer).await;
    let big = vec![b' '; 3 * 1024 * 1024];
    let mut seen = std::collections::BTreeSet::new();
    for route in [
        "/v1/secret-scanning/github",
        "/v1/keys/revoke",
        "/v1/nowhere",
    ] {
        for _ in 0..10 {
            let reply = post(public(&app), route, &[], big.clone()).await;
            assert!(reply.json["error"].is_string(), "{route}: {:?}", reply.json);
            seen.insert(reply.status);
        }
    }
    // Public revocations allow a burst of 5 an address: the rest are 429.
    assert_eq!(seen, [404, 413, 429].into(), "{seen:?}");
}

/// Policies per keyspace and environment: disable, revoke for test keys,
/// notify for live ones.
async fn each_keyspace_chooses_its_policy(backend: Backend) {
    let signer = Signer::new("key-a");
    let (app, _keys) = scanned(backend, &signer).await;
    let strict = keyspace(
        &app,
        "strict",
        Some(pb::LeakResponse {
            live: LeakPolicy::Disable.into(),
            test: LeakPolicy::Revoke.into(),
            ..Default::default()
        }),
    )
    .await;
    let lax = keyspace(
        &app,
        "lax",
        Some(pb::LeakResponse {
            live: LeakPolicy::Notify.into(),
            ..Default::default()
        }),
    )
    .await;
    let (_, s_live) = live_secret(&app, &strict).await;
    let (_, s_test) = key_in(&app, &strict, pb::Environment::Test, pb::KeyType::Secret).await;
    let (_, s_pub) = key_in(
        &app,
        &strict,
        pb::Environment::Live,
        pb::KeyType::Publishable,
    )
    .await;
    let (_, l_live) = live_secret(&app, &lax).await;
    let reply = report(
        public(&app),
        &signer,
        &matches(&[&s_live, &s_test, &s_pub, &l_live]),
    )
    .await;
    assert_eq!(reply.status, 200, "{:?}", reply.json);
    assert_eq!(app.verify_code(&s_live).await, VerifyCode::Disabled);
    assert_eq!(app.verify_code(&s_test).await, VerifyCode::Revoked);
    let v = app.verify_from(&s_pub, &[], "127.0.0.1", "", "").await;
    assert_eq!(v.code(), VerifyCode::Valid, "publishable: notify");
    assert_eq!(app.verify_code(&l_live).await, VerifyCode::Valid);
    // Read back with every default filled in.
    let got = app
        .admin
        .clone()
        .get_keyspace(pb::GetKeyspaceRequest { id: strict })
        .await
        .expect("get")
        .into_inner();
    let leak = got.leak_response.expect("leak response");
    assert_eq!(
        (leak.live(), leak.test(), leak.publishable()),
        (LeakPolicy::Disable, LeakPolicy::Revoke, LeakPolicy::Notify)
    );
    assert!(!leak.public_revocation_off);
}

/// ReportLeakedKey applies the policy like a GitHub report; successors the
/// key rotated itself into after the leak go with it, and one an admin made
/// does not.
async fn report_leaked_key_ends_the_key_and_its_self_made_successors(backend: Backend) {
    let app = spawn_with(backend, |_| {}).await;
    let ks = keyspace(&app, "acme", None).await;
    // A → B by RotateSelf (whoever holds A, maybe a thief).
    let (a_id, a) = live_secret(&app, &ks).await;
    let b = rotate_self(&app, &a, Some(2 * HOUR)).await.expect("self");
    let b_id = b.key.as_ref().expect("key").id.clone();
    // X → Y by an admin: Y went to the owner.
    let (x_id, x) = live_secret(&app, &ks).await;
    let y = app
        .admin
        .clone()
        .rotate_key(pb::RotateKeyRequest {
            id: x_id.clone(),
            grace_period: Some(secs(HOUR)),
            ..Default::default()
        })
        .await
        .expect("rotate")
        .into_inner();
    let req = |key: &str| pb::ReportLeakedKeyRequest {
        key: key.into(),
        url: "https://ci.example.com/build/42".into(),
        source: "gitleaks".into(),
        leaked_time: None,
    };
    let resp = app
        .admin
        .clone()
        .report_leaked_key(req(&a))
        .await
        .expect("report")
        .into_inner();
    assert_eq!(resp.policy(), LeakPolicy::Revoke);
    assert_eq!(resp.key.expect("key").id, a_id);
    let successors: Vec<_> = resp.successors.iter().map(|k| k.id.clone()).collect();
    assert_eq!(successors, std::slice::from_ref(&b_id));
    assert_eq!(app.verify_code(&a).await, VerifyCode::Revoked);
    assert_eq!(app.verify_code(&b.secret).await, VerifyCode::Revoked);
    let leaked = audit(&app, &a_id, "key.leaked").await;
    assert!(leaked[0].actor.starts_with("admin:"), "{leaked:?}");
    assert_eq!(audit(&app, &b_id, "key.revoked").await[0].reason, "leaked");

    let resp = app
        .admin
        .clone()
        .report_leaked_key(req(&x))
        .await
        .expect("report")
        .into_inner();
    assert!(resp.successors.is_empty(), "{:?}", resp.successors);
    assert_eq!(app.verify_code(&x).await, VerifyCode::Revoked);
    assert_eq!(app.verify_code(&y.secret).await, VerifyCode::Valid);

    // A leak known to be later than the self-rotation spares the successor;
    // one in the future is refused (it would spare every successor).
    let (_, p) = live_secret(&app, &ks).await;
    let q = rotate_self(&app, &p, Some(2 * HOUR)).await.expect("self");
    let made = q
        .key
        .as_ref()
        .and_then(|k| k.create_time)
        .expect("create time");
    let later_ms = made.seconds * 1000 + i64::from(made.nanos) / 1_000_000 + 1;
    let later = keysmith::grpc::wkt::Timestamp {
        seconds: later_ms / 1000,
        nanos: i32::try_from(later_ms % 1000).unwrap() * 1_000_000,
    };
    while keysmith::domain::Timestamp::now().as_millis() <= later_ms {
        tokio::task::yield_now().await;
    }
    let future = keysmith::grpc::wkt::Timestamp {
        seconds: later.seconds + 3600,
        nanos: 0,
    };
    assert_status(
        app.admin
            .clone()
            .report_leaked_key(pb::ReportLeakedKeyRequest {
                leaked_time: Some(future),
                ..req(&p)
            })
            .await,
        Code::InvalidArgument,
        "leaked_time",
    );
    let resp = app
        .admin
        .clone()
        .report_leaked_key(pb::ReportLeakedKeyRequest {
            leaked_time: Some(later),
            ..req(&p)
        })
        .await
        .expect("report")
        .into_inner();
    assert!(resp.successors.is_empty());
    assert_eq!(app.verify_code(&q.secret).await, VerifyCode::Valid);

    // Bad input, each named; a string that is no key is NOT_FOUND.
    let mut admin = app.admin.clone();
    assert_status(
        admin.report_leaked_key(req("")).await,
        Code::InvalidArgument,
        "key",
    );
    assert_status(
        admin
            .report_leaked_key(pb::ReportLeakedKeyRequest {
                url: "x".repeat(3000),
                ..req(&y.secret)
            })
            .await,
        Code::InvalidArgument,
        "url",
    );
    assert_status(
        admin.report_leaked_key(req("sk_live_nope")).await,
        Code::NotFound,
        "key",
    );
    assert_eq!(app.verify_code(&y.secret).await, VerifyCode::Valid);
}

/// Anyone holding a key may revoke it by presenting it; the answer is the
/// same whatever the key was, a keyspace may turn it off, and it is
/// limited per peer.
async fn a_holder_revokes_a_key_by_presenting_it(backend: Backend) {
    let signer = Signer::new("key-a");
    // No refill: the burst is all a peer gets, whatever the test's speed.
    let (app, _keys) = scanned_with(backend, &signer, |p| {
        p.revoke_per_peer = keysmith::public::Rate {
            per_second: 0.0,
            burst: 12.0,
        }
    })
    .await;
    let addr = public(&app);
    // Found publishable keys are revoked here: by a scanner, not by whoever
    // presents one.
    let open = keyspace(
        &app,
        "open",
        Some(pb::LeakResponse {
            publishable: LeakPolicy::Revoke.into(),
            ..Default::default()
        }),
    )
    .await;
    let closed = keyspace(
        &app,
        "closed",
        Some(pb::LeakResponse {
            public_revocation_off: true,
            ..Default::default()
        }),
    )
    .await;
    // Test keys too: presenting a key revokes it whatever the leak policy.
    let (id, key) = key_in(&app, &open, pb::Environment::Test, pb::KeyType::Secret).await;
    let (_, kept) = live_secret(&app, &closed).await;
    let revoke = |key: &str| {
        post(
            addr,
            "/v1/keys/revoke",
            &[],
            serde_json::to_vec(&serde_json::json!({ "key": key })).unwrap(),
        )
    };
    let reply = revoke(&key).await;
    assert_eq!(
        (reply.status, reply.json["status"].as_str()),
        (202, Some("accepted"))
    );
    assert_eq!(app.verify_code(&key).await, VerifyCode::Revoked);
    let revoked = audit(&app, &id, "key.revoked").await;
    assert_eq!(revoked[0].actor, "public");
    assert_eq!(audit(&app, &id, "key.leaked").await[0].actor, "public");
    // Already revoked, or never issued: the very same answer, and the
    // revoked key presented again adds nothing to the audit log.
    let stranger = stranger();
    for k in [&key, &stranger, &key] {
        let reply = revoke(k).await;
        assert_eq!(
            (reply.status, reply.json.clone()),
            (202, serde_json::json!({"status": "accepted"}))
        );
    }
    assert_eq!(audit(&app, &id, "key.leaked").await.len(), 1);
    assert_eq!(audit(&app, &id, "key.revoked").await.len(), 1);
    // A publishable key is public by design: presenting it proves nothing,
    // so it is only notified (audited once an hour), whatever the policy.
    let (pk_id, pk) = key_in(&app, &open, pb::Environment::Live, pb::KeyType::Publishable).await;
    for _ in 0..2 {
        assert_eq!(revoke(&pk).await.status, 202);
    }
    let v = app.verify_from(&pk, &[], "127.0.0.1", "", "").await;
    assert_eq!(
        v.code(),
        VerifyCode::Valid,
        "a publishable key is not revoked by anyone"
    );
    assert_eq!(audit(&app, &pk_id, "key.leaked").await.len(), 1);
    let reply = revoke(&kept).await;
    assert_eq!(reply.status, 403, "{:?}", reply.json);
    assert_eq!(app.verify_code(&kept).await, VerifyCode::Valid);
    let reply = post(addr, "/v1/keys/revoke", &[], b"key=abc".to_vec()).await;
    assert_eq!(reply.status, 400);
    let reply = revoke("sk_live_short").await;
    assert_eq!(reply.status, 400);
    // The per-peer limit: a burst of 12 (9 spent above), then 429.
    let mut limited = false;
    for _ in 0..10 {
        if revoke(&stranger).await.status == 429 {
            limited = true;
            break;
        }
    }
    assert!(limited, "the per-peer limit never applied");
}

/// A holder's repeat is audited again once the hour is over.
async fn a_holders_repeat_is_audited_again_after_the_hour(backend: Backend) {
    let (clock, now) = crate::usage::manual_clock();
    let keys = key_server(Mode::Garbage).await;
    let app = spawn_with(backend, |c| {
        with_public(c, &keys.url);
        c.clock = clock;
    })
    .await;
    let (id, key) = live_secret(&app, "").await;
    let body = serde_json::to_vec(&serde_json::json!({ "key": key })).unwrap();
    for _ in 0..2 {
        let reply = post(public(&app), "/v1/keys/revoke", &[], body.clone()).await;
        assert_eq!(reply.status, 202);
    }
    assert_eq!(audit(&app, &id, "key.leaked").await.len(), 1);
    now.fetch_add(3_600_001, std::sync::atomic::Ordering::SeqCst);
    let reply = post(public(&app), "/v1/keys/revoke", &[], body).await;
    assert_eq!(reply.status, 202);
    assert_eq!(audit(&app, &id, "key.leaked").await.len(), 2);
    assert_eq!(audit(&app, &id, "key.revoked").await.len(), 1);
}

/// LookupKey finds a key's record from its value, within the caller's
/// reach, and audits who looked.
async fn lookup_key_finds_the_record_and_audits_it(backend: Backend) {
    let app = spawn_with(backend, |_| {}).await;
    let (id, key) = live_secret(&app, "").await;
    let found = app
        .admin
        .clone()
        .lookup_key(pb::LookupKeyRequest { key: key.clone() })
        .await
        .expect("lookup")
        .into_inner()
        .key
        .expect("key");
    assert_eq!(found.id, id);
    assert_eq!(found.owner_id, "acct_leaky");
    let looked = audit(&app, &id, "key.looked_up").await;
    assert_eq!(looked.len(), 1);
    assert!(looked[0].actor.starts_with("admin:"));
    assert!(!looked[0].changes_json.contains(&key));
    let mut admin = app.admin.clone();
    assert_status(
        admin
            .lookup_key(pb::LookupKeyRequest {
                key: "sk_live_nope".into(),
            })
            .await,
        Code::NotFound,
        "key",
    );
    assert_status(
        admin
            .lookup_key(pb::LookupKeyRequest { key: String::new() })
            .await,
        Code::InvalidArgument,
        "key",
    );
}

crate::backend_tests!(
    github_report_applies_each_keys_policy,
    bad_reports_change_nothing,
    a_key_server_outage_is_survived_on_the_cached_key,
    each_keyspace_chooses_its_policy,
    report_leaked_key_ends_the_key_and_its_self_made_successors,
    a_holder_revokes_a_key_by_presenting_it,
    lookup_key_finds_the_record_and_audits_it,
    raw_key_rpcs_stay_within_a_tokens_keyspaces,
    a_holders_repeat_is_audited_again_after_the_hour,
);

/// Two replicas on one PostgreSQL: a live key reported to the first is
/// denied by the second, whose stream delivers the LEAKED event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reported_key_is_denied_on_every_replica() {
    let signer = Signer::new("key-a");
    let (first, _keys) = scanned(Backend::Postgres, &signer).await;
    let db = TestDb {
        backend: Backend::Postgres,
        config: first.db.config.clone(),
        dir: tempfile::tempdir().expect("temp dir"),
    };
    let second = spawn_configured(db, Some(first.token.clone()), |_| {}).await;
    let ks = keyspace(&first, "acme", None).await;
    let (id, live) = live_secret(&first, &ks).await;
    eventually("the second replica to know the key", || async {
        second.verify_code(&live).await == VerifyCode::Valid
    })
    .await;
    let mut events = watch(&second).await;
    let reply = report(public(&first), &signer, &matches(&[&live])).await;
    assert_eq!(reply.status, 200, "{:?}", reply.json);
    assert_leaked_event(&mut events, &id).await;
    assert_eq!(second.verify_code(&live).await, VerifyCode::Revoked);
    assert_eq!(first.verify_code(&live).await, VerifyCode::Revoked);
}

/// A client that sends headers and trickles its body holds a connection,
/// never a request slot; and one address holds at most its share of the
/// connections, past which it is closed at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_hold_no_slot_and_one_address_only_its_share() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let signer = Signer::new("key-a");
    let (app, _keys) = scanned_with(Backend::Sqlite, &signer, |p| {
        p.max_in_flight = 1;
        // A share of 3 connections an address (an eighth).
        p.max_connections = 24;
        p.per_peer = keysmith::public::Rate {
            per_second: 1000.0,
            burst: 1000.0,
        };
    })
    .await;
    let addr = public(&app);
    // Headers of a 100-byte body, and then nothing.
    let mut slow = tokio::net::TcpStream::connect(addr).await.expect("connect");
    slow.write_all(
        b"POST /v1/keys/revoke HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
          content-length: 100\r\n\r\n{\"key\":",
    )
    .await
    .expect("write");
    // The one request slot is free for another client meanwhile.
    let reply = post(addr, "/v1/keys/revoke", &[], br#"{"key": "nope"}"#.to_vec()).await;
    assert_eq!(
        reply.status, 400,
        "answered, not refused for lack of a slot"
    );
    // Two more idle connections fill this address's share of 3; a fourth is
    // closed at once, without an answer.
    let _held: Vec<_> =
        futures::future::join_all((0..2).map(|_| tokio::net::TcpStream::connect(addr)))
            .await
            .into_iter()
            .map(|c| c.expect("connect"))
            .collect();
    let mut over = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let _ = over
        .write_all(b"POST /v1/keys/revoke HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\n{}")
        .await;
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(10), over.read(&mut buf))
        .await
        .expect("closed in time");
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "past its share, the connection is closed unanswered: {read:?}"
    );
    // The trickler's body deadline ends its request with 408.
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(15), slow.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
}
