//! The keyspace handlers of KeyAdmin, delegated to from the trait impl. A
//! keyspace outside a limited token's keyspaces does not exist for it.

use tonic::{Request, Response, Status};

use super::{AdminService, Reply};
use crate::{
    domain::{KeyspaceId, Permission},
    error::Error,
    grpc::{convert, pb},
    keys::Actor,
};

/// NOT_FOUND, exactly as for a keyspace that does not exist, unless `id` is
/// within `actor`'s keyspaces.
pub(super) fn sees_keyspace(actor: &Actor, id: &KeyspaceId) -> Result<(), Status> {
    if actor.limits().admits_keyspace(id.as_str()) {
        Ok(())
    } else {
        Err(Error::NotFound(format!("keyspace {id}")).into())
    }
}

impl AdminService {
    /// A new keyspace is outside every limited token's keyspaces, so only an
    /// unlimited token creates one.
    #[tracing::instrument(skip_all)]
    pub(super) async fn create_keyspace_(
        &self,
        req: Request<pb::CreateKeyspaceRequest>,
    ) -> Reply<pb::Keyspace> {
        let actor = self
            .global_caller(&req, Permission::KeyspacesManage)
            .await?;
        let new = convert::create_keyspace(req.into_inner())?;
        let ks = self.keys.create_keyspace(new, &actor).await?;
        tracing::info!(keyspace_id = %ks.id, "keyspace created");
        Ok(Response::new(convert::to_keyspace(&ks)))
    }

    #[tracing::instrument(skip_all)]
    pub(super) async fn get_keyspace_(
        &self,
        req: Request<pb::GetKeyspaceRequest>,
    ) -> Reply<pb::Keyspace> {
        let actor = self.caller(&req, Permission::KeyspacesRead).await?;
        let pb::GetKeyspaceRequest { id } = req.into_inner();
        let id = convert::keyspace_id("id", &id)?;
        sees_keyspace(&actor, &id)?;
        let ks = self.keys.get_keyspace(&id).await?;
        Ok(Response::new(convert::to_keyspace(&ks)))
    }

    #[tracing::instrument(skip_all)]
    pub(super) async fn list_keyspaces_(
        &self,
        req: Request<pb::ListKeyspacesRequest>,
    ) -> Reply<pb::ListKeyspacesResponse> {
        let actor = self.caller(&req, Permission::KeyspacesRead).await?;
        let query = convert::list_keyspaces(req.into_inner())?;
        let page = self.keys.list_keyspaces(query, &actor).await?;
        Ok(Response::new(convert::keyspaces_page(page)))
    }

    #[tracing::instrument(skip_all)]
    pub(super) async fn update_keyspace_(
        &self,
        req: Request<pb::UpdateKeyspaceRequest>,
    ) -> Reply<pb::Keyspace> {
        let actor = self.caller(&req, Permission::KeyspacesManage).await?;
        let (id, patch) = convert::keyspace_patch(req.into_inner())?;
        sees_keyspace(&actor, &id)?;
        let ks = self.keys.update_keyspace(&id, patch, &actor).await?;
        Ok(Response::new(convert::to_keyspace(&ks)))
    }
}
