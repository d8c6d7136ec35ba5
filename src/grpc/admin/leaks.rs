//! The leak handlers of KeyAdmin: ReportLeakedKey and LookupKey. Both take
//! a raw key, which is used to find the key and then wiped, never logged.

use tonic::{Request, Response};
use zeroize::Zeroizing;

use super::{AdminService, Reply};
use crate::{
    domain::Permission,
    error::Error,
    grpc::{convert, pb},
};

/// The answer for a string that is no key the caller may see.
fn no_such_key() -> Error {
    Error::NotFound("key: no such key".into())
}

impl AdminService {
    #[tracing::instrument(skip_all)]
    pub(super) async fn report_leaked_key_(
        &self,
        req: Request<pb::ReportLeakedKeyRequest>,
    ) -> Reply<pb::ReportLeakedKeyResponse> {
        let actor = self.caller(&req, Permission::KeysRevoke).await?;
        let pb::ReportLeakedKeyRequest {
            key,
            url,
            source,
            leaked_time,
        } = req.into_inner();
        let key = Zeroizing::new(key);
        if key.is_empty() {
            return Err(Error::invalid("key", "is required").into());
        }
        let report = convert::leak_report(&url, &source, leaked_time)?;
        let id = self.keys.identify(&key).ok_or_else(no_such_key)?;
        drop(key);
        let leak = self.keys.report_leak(&id, &report, None, &actor).await?;
        tracing::warn!(key_id = %leak.key.id, policy = %leak.policy, successors = leak.successors.len(), "leaked key reported");
        let now = self.keys.now();
        Ok(Response::new(pb::ReportLeakedKeyResponse {
            key: Some(convert::key_message(&leak.key, now)),
            policy: convert::to_leak_policy(leak.policy).into(),
            successors: leak
                .successors
                .iter()
                .map(|k| convert::key_message(k, now))
                .collect(),
        }))
    }

    #[tracing::instrument(skip_all)]
    pub(super) async fn lookup_key_(
        &self,
        req: Request<pb::LookupKeyRequest>,
    ) -> Reply<pb::LookupKeyResponse> {
        let actor = self.caller(&req, Permission::KeysRead).await?;
        let key = Zeroizing::new(req.into_inner().key);
        if key.is_empty() {
            return Err(Error::invalid("key", "is required").into());
        }
        let found = self.keys.lookup(&key, &actor).await?;
        tracing::info!(key_id = %found.id, "key looked up by its value");
        Ok(Response::new(pb::LookupKeyResponse {
            key: Some(convert::key_message(&found, self.keys.now())),
        }))
    }
}
