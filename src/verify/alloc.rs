//! Verify allocates nothing per request, keyspaces included: the request's
//! keyspace resolves by a map lookup, the prefix parses inline, and a key
//! outside the keyspace answers from the miss path. Counted by a global
//! allocator that wraps the system one, on the calling thread only.

use std::{
    alloc::{GlobalAlloc, Layout, System},
    cell::Cell,
};

use super::*;
use crate::{
    domain::{ApiKey, Environment, KeyPrefix, KeyType},
    usage::Recorder,
};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: every call is passed on to the system allocator unchanged; the
// count is a const-initialised thread local, which itself never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        // SAFETY: the caller's contract is the system allocator's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

/// How many allocations `f` makes on this thread.
fn allocations(f: impl FnOnce()) -> u64 {
    let before = ALLOCATIONS.with(Cell::get);
    f();
    ALLOCATIONS.with(Cell::get) - before
}

#[test]
fn verify_allocates_nothing_with_or_without_a_keyspace() {
    let index = KeyIndex::default();
    let usage = Recorder::default();
    let bare = ApiKey::generate(KeyType::Secret, Environment::Live).unwrap();
    let acme = KeyPrefix::parse("acme").ok();
    let prefixed = ApiKey::generate_in(acme, KeyType::Secret, Environment::Live).unwrap();
    let mut r = super::tests::record(&["a:read"]);
    r.hash = bare.hash();
    index.upsert(&r);
    r.id = crate::domain::KeyId::generate();
    r.hash = prefixed.hash();
    r.keyspace_id = "ks_acme".parse().unwrap();
    index.upsert(&r);
    let scopes = vec!["a:read".to_owned()];
    let cases = [
        (bare.expose_secret(), "", Code::Valid),
        (bare.expose_secret(), "ks_default", Code::Valid),
        (prefixed.expose_secret(), "ks_acme", Code::Valid),
        (prefixed.expose_secret(), "ks_default", Code::NotFound),
        (prefixed.expose_secret(), "ks_nowhere", Code::NotFound),
        (bare.expose_secret(), "ks_acme", Code::NotFound),
    ];
    let run = |key: &str, keyspace: &str| {
        let req = Request {
            required_scopes: &scopes,
            keyspaces: index.keyspace_scope(keyspace),
            ..Default::default()
        };
        verify(&index, &usage, key, &req, super::tests::NOW, || 0)
            .decision
            .code
    };
    // The first use of a key makes its runtime and queues it for the
    // usage flush, once: not per request.
    for (key, keyspace, code) in cases {
        assert_eq!(run(key, keyspace), code, "{keyspace}");
    }
    for (key, keyspace, code) in cases {
        let mut answered = None;
        let n = allocations(|| answered = Some(run(key, keyspace)));
        assert_eq!(answered, Some(code));
        assert_eq!(n, 0, "verify in `{keyspace}` allocated {n} times");
    }
}
