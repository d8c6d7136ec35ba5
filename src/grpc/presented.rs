//! [`Presented`]: a request that carries a presented key, wiped on drop.
//!
//! Verify, each VerifyStream item and ext_authz's Check wrap their request in
//! one before any check. Every return, early (index loading, failing closed,
//! a bad argument) or not, then wipes the key: no new return can forget to.

use std::ops::Deref;

/// A request that holds a presented key and can wipe it in place.
pub(super) trait Wipe {
    fn wipe(&mut self);
}

/// Owns a request until the handler is done with it, then wipes its key.
pub(super) struct Presented<T: Wipe>(T);

impl<T: Wipe> Presented<T> {
    pub(super) fn new(req: T) -> Self {
        Self(req)
    }
}

impl<T: Wipe> Deref for Presented<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: Wipe> Drop for Presented<T> {
    fn drop(&mut self) {
        self.0.wipe();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    };

    use super::*;

    struct Witness(Arc<AtomicBool>);

    impl Wipe for Witness {
        fn wipe(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    #[test]
    fn dropping_wipes_on_every_path() {
        fn early(p: &Presented<Witness>, bail: bool) -> Result<(), ()> {
            if bail {
                return Err(());
            }
            let _ = &p.0;
            Ok(())
        }
        for bail in [true, false] {
            let wiped = Arc::new(AtomicBool::new(false));
            let p = Presented::new(Witness(Arc::clone(&wiped)));
            let _ = early(&p, bail);
            assert!(!wiped.load(Ordering::SeqCst), "not before the end");
            drop(p);
            assert!(wiped.load(Ordering::SeqCst), "bail={bail}");
        }
    }

    #[test]
    fn verify_requests_lose_their_key() {
        let mut req = crate::grpc::pb::VerifyRequest {
            key: "sk_live_secret".into(),
            resource: "acct_1/x".into(),
            ..Default::default()
        };
        req.wipe();
        assert!(req.key.is_empty());
        assert_eq!(req.resource, "acct_1/x", "only the key is wiped");
    }
}
