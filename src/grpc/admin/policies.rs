//! The owner stale policy handlers of KeyAdmin. A policy spans an owner's
//! keys in every keyspace, so they are for unlimited tokens only.

use tonic::{Request, Response};

use super::{AdminService, Reply};
use crate::{
    domain::Permission,
    grpc::{convert, pb},
};

impl AdminService {
    #[tracing::instrument(skip_all)]
    pub(super) async fn set_policy(
        &self,
        req: Request<pb::OwnerStalePolicy>,
    ) -> Reply<pb::OwnerStalePolicy> {
        let actor = self.global_caller(&req, Permission::PoliciesManage).await?;
        let (owner, policy) = convert::owner_policy(req.into_inner())?;
        self.keys.set_owner_policy(&owner, &policy, &actor).await?;
        Ok(Response::new(convert::to_owner_policy(&owner, &policy)))
    }

    #[tracing::instrument(skip_all)]
    pub(super) async fn delete_policy(
        &self,
        req: Request<pb::DeleteOwnerStalePolicyRequest>,
    ) -> Reply<pb::DeleteOwnerStalePolicyResponse> {
        let actor = self.global_caller(&req, Permission::PoliciesManage).await?;
        let pb::DeleteOwnerStalePolicyRequest { owner_id } = req.into_inner();
        self.keys
            .delete_owner_policy(&convert::owner_id("owner_id", &owner_id)?, &actor)
            .await?;
        Ok(Response::new(pb::DeleteOwnerStalePolicyResponse {}))
    }

    #[tracing::instrument(skip_all)]
    pub(super) async fn list_policies(
        &self,
        req: Request<pb::ListOwnerStalePoliciesRequest>,
    ) -> Reply<pb::ListOwnerStalePoliciesResponse> {
        self.global_caller(&req, Permission::PoliciesManage).await?;
        let policies = self.keys.owner_policies().await?;
        let policies = policies
            .iter()
            .map(|(o, p)| convert::to_owner_policy(o, p))
            .collect();
        Ok(Response::new(pb::ListOwnerStalePoliciesResponse {
            policies,
        }))
    }
}
