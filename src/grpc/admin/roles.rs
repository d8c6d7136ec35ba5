//! The role handlers of KeyAdmin, delegated to from the trait impl.

use tonic::{Request, Response};

use super::{AdminService, Reply, keyspaces::sees_keyspace};
use crate::{
    domain::Permission,
    grpc::{convert, pb},
};

impl AdminService {
    #[tracing::instrument(skip_all)]
    pub(super) async fn create_role_(
        &self,
        req: Request<pb::CreateRoleRequest>,
    ) -> Reply<pb::Role> {
        let actor = self.caller(&req, Permission::KeyspacesManage).await?;
        let new = convert::create_role(req.into_inner())?;
        sees_keyspace(&actor, &new.keyspace_id)?;
        let role = self.keys.create_role(new, &actor).await?;
        Ok(Response::new(convert::to_role(&role)))
    }

    #[tracing::instrument(skip_all)]
    pub(super) async fn get_role_(&self, req: Request<pb::GetRoleRequest>) -> Reply<pb::Role> {
        let actor = self.caller(&req, Permission::KeyspacesRead).await?;
        let pb::GetRoleRequest { keyspace, name } = req.into_inner();
        let (ks, name) = convert::role_ref(&keyspace, &name)?;
        sees_keyspace(&actor, &ks)?;
        let role = self.keys.get_role(&ks, &name).await?;
        Ok(Response::new(convert::to_role(&role)))
    }

    #[tracing::instrument(skip_all)]
    pub(super) async fn list_roles_(
        &self,
        req: Request<pb::ListRolesRequest>,
    ) -> Reply<pb::ListRolesResponse> {
        let actor = self.caller(&req, Permission::KeyspacesRead).await?;
        let query = convert::list_roles(req.into_inner())?;
        sees_keyspace(&actor, &query.keyspace_id)?;
        let page = self.keys.list_roles(query).await?;
        Ok(Response::new(convert::roles_page(page)))
    }

    #[tracing::instrument(skip_all)]
    pub(super) async fn update_role_(
        &self,
        req: Request<pb::UpdateRoleRequest>,
    ) -> Reply<pb::UpdateRoleResponse> {
        let actor = self.caller(&req, Permission::KeyspacesManage).await?;
        let (ks, name, patch) = convert::role_patch(req.into_inner())?;
        sees_keyspace(&actor, &ks)?;
        let updated = self.keys.update_role(&ks, &name, patch, &actor).await?;
        tracing::info!(keyspace = %ks, role = %name, keys = updated.keys_changed, "role updated");
        Ok(Response::new(convert::role_updated(&updated)))
    }

    #[tracing::instrument(skip_all)]
    pub(super) async fn delete_role_(
        &self,
        req: Request<pb::DeleteRoleRequest>,
    ) -> Reply<pb::DeleteRoleResponse> {
        let actor = self.caller(&req, Permission::KeyspacesManage).await?;
        let pb::DeleteRoleRequest { keyspace, name } = req.into_inner();
        let (ks, name) = convert::role_ref(&keyspace, &name)?;
        sees_keyspace(&actor, &ks)?;
        self.keys.delete_role(&ks, &name, &actor).await?;
        Ok(Response::new(pb::DeleteRoleResponse {}))
    }
}
