//! The rotation and revocation handlers of KeyAdmin: RotateKey, RotateSelf
//! (authenticated by the key itself, not by an admin token) and RevokeKey.

use tonic::{Request, Response, Status};

use super::{AdminService, Reply};
use crate::{
    domain::Permission,
    grpc::{bearer, convert, pb},
    keys::MAX_PROPAGATION_TIMEOUT,
};

impl AdminService {
    #[tracing::instrument(skip_all)]
    pub(super) async fn rotate_key_(
        &self,
        req: Request<pb::RotateKeyRequest>,
    ) -> Reply<pb::RotateKeyResponse> {
        let actor = self.caller(&req, Permission::KeysWrite).await?;
        let pb::RotateKeyRequest {
            id,
            grace_period,
            end_grace_when_idle,
        } = req.into_inner();
        let id = convert::key_id("id", &id)?;
        let grace = grace_period
            .map(|d| convert::duration("grace_period", d))
            .transpose()?;
        let idle = end_grace_when_idle
            .map(|d| convert::duration("end_grace_when_idle", d))
            .transpose()?;
        let rotated = self.keys.rotate(&id, grace, idle, &actor).await?;
        tracing::info!(key_id = %id, successor = %rotated.key.id, "key rotated");
        Ok(Response::new(convert::rotated(rotated, self.keys.now())))
    }

    #[tracing::instrument(skip_all)]
    pub(super) async fn rotate_self_(
        &self,
        req: Request<pb::RotateSelfRequest>,
    ) -> Reply<pb::RotateKeyResponse> {
        // The bearer is the key itself; it is parsed and hashed, never kept.
        let presented = bearer(&req)
            .ok_or(crate::error::Error::Unauthenticated)?
            .to_owned();
        // The TCP peer, not an address the caller writes in metadata: only
        // the connection's address is beyond the key holder's control.
        let peer = req.remote_addr().map(|a| a.ip());
        let pb::RotateSelfRequest { grace_period } = req.into_inner();
        let grace = grace_period
            .map(|d| convert::duration("grace_period", d))
            .transpose()?;
        let rotated = self.keys.rotate_self(&presented, grace, peer).await;
        drop(zeroize::Zeroizing::new(presented));
        let rotated = rotated?;
        tracing::info!(key_id = %rotated.previous.id, successor = %rotated.key.id, "key rotated itself");
        Ok(Response::new(convert::rotated(rotated, self.keys.now())))
    }

    #[tracing::instrument(skip_all)]
    pub(super) async fn revoke_key_(
        &self,
        req: Request<pb::RevokeKeyRequest>,
    ) -> Reply<pb::RevokeKeyResponse> {
        let actor = self.caller(&req, Permission::KeysRevoke).await?;
        let pb::RevokeKeyRequest {
            id,
            reason,
            wait_for_propagation,
            propagation_timeout,
            include_successors,
        } = req.into_inner();
        let id = convert::key_id("id", &id)?;
        let reason = convert::reason("reason", &reason)?;
        let timeout = propagation_timeout
            .map(|d| convert::duration("propagation_timeout", d))
            .transpose()?;
        if timeout.is_some_and(|t| t > MAX_PROPAGATION_TIMEOUT) {
            return Err(Status::invalid_argument(
                "propagation_timeout: must be at most 60s",
            ));
        }
        let revocation = self
            .keys
            .revoke(&id, reason, include_successors, &actor)
            .await?;
        let seq = revocation.seq;
        let successors = revocation.successors.len();
        tracing::info!(key_id = %id, seq, successors, "key revoked");
        let propagation = match wait_for_propagation {
            true => Some(convert::propagation(
                &self.keys.await_propagation(seq, timeout).await?,
            )),
            false => None,
        };
        let now = self.keys.now();
        Ok(Response::new(pb::RevokeKeyResponse {
            key: Some(convert::key_message(&revocation.key, now)),
            propagation,
            successors: revocation
                .successors
                .iter()
                .map(|k| convert::key_message(k, now))
                .collect(),
        }))
    }
}
