//! The credits and owner handlers of KeyAdmin.

use tonic::{Request, Response};

use super::{AdminService, Reply};
use crate::{
    domain::Permission,
    error::Error,
    grpc::{convert, pb},
};

impl AdminService {
    #[tracing::instrument(skip_all)]
    pub(super) async fn get_credits_(
        &self,
        req: Request<pb::GetCreditsRequest>,
    ) -> Reply<pb::Credits> {
        let actor = self.caller(&req, Permission::KeysRead).await?;
        use pb::get_credits_request::Subject;
        let of = match &req.get_ref().subject {
            Some(Subject::KeyId(k)) => convert::credits_of(Some(k), None)?,
            Some(Subject::OwnerId(o)) => convert::credits_of(None, Some(o))?,
            None => convert::credits_of(None, None)?,
        };
        let b = self.keys.credits(&of, &actor).await?;
        Ok(Response::new(convert::to_credits(&b)))
    }

    #[tracing::instrument(skip_all)]
    pub(super) async fn update_credits_(
        &self,
        req: Request<pb::UpdateCreditsRequest>,
    ) -> Reply<pb::Credits> {
        let actor = self.caller(&req, Permission::KeysWrite).await?;
        use pb::update_credits_request::Subject;
        let pb::UpdateCreditsRequest {
            subject,
            change,
            refill,
            clear_refill,
            low_at,
            reason,
        } = req.into_inner();
        let of = match &subject {
            Some(Subject::KeyId(k)) => convert::credits_of(Some(k), None)?,
            Some(Subject::OwnerId(o)) => convert::credits_of(None, Some(o))?,
            None => convert::credits_of(None, None)?,
        };
        let change = convert::credit_change(change)?;
        let b = self
            .keys
            .update_credits(
                &of,
                change,
                |current| convert::credit_policy(current.policy, refill, clear_refill, low_at),
                &reason,
                &actor,
            )
            .await?;
        Ok(Response::new(convert::to_credits(&b)))
    }

    #[tracing::instrument(skip_all)]
    pub(super) async fn get_owner_(&self, req: Request<pb::GetOwnerRequest>) -> Reply<pb::Owner> {
        let actor = self.caller(&req, Permission::KeysRead).await?;
        let id = convert::owner_id("owner_id", &req.get_ref().owner_id)?;
        let owner = self.keys.owner(&id, &actor).await?;
        let policy = self.keys.owner_policy(&id).await?;
        Ok(Response::new(convert::to_owner(&owner, policy.as_ref())))
    }

    #[tracing::instrument(skip_all)]
    pub(super) async fn list_owners_(
        &self,
        req: Request<pb::ListOwnersRequest>,
    ) -> Reply<pb::ListOwnersResponse> {
        let actor = self.caller(&req, Permission::KeysRead).await?;
        let pb::ListOwnersRequest {
            page_size,
            page_token,
        } = req.into_inner();
        let limit = match page_size {
            0 => 100,
            n @ 1..=1000 => n,
            _ => return Err(Error::invalid("page_size", "must be between 1 and 1000").into()),
        };
        let after = (!page_token.is_empty())
            .then(|| convert::owner_id("page_token", &page_token))
            .transpose()?;
        let owners = self
            .keys
            .owners(after.as_ref().map(|o| o.as_str()), limit, &actor)
            .await?;
        let next_page_token = match owners.len() == limit as usize {
            true => owners
                .last()
                .map(|o| o.id.as_str().to_owned())
                .unwrap_or_default(),
            false => String::new(),
        };
        let policies = self.keys.owner_policies().await?;
        let policy =
            |o: &crate::store::Owner| policies.iter().find(|(id, _)| *id == o.id).map(|(_, p)| p);
        Ok(Response::new(pb::ListOwnersResponse {
            owners: owners
                .iter()
                .map(|o| convert::to_owner(o, policy(o)))
                .collect(),
            next_page_token,
        }))
    }

    #[tracing::instrument(skip_all)]
    pub(super) async fn update_owner_(
        &self,
        req: Request<pb::UpdateOwnerRequest>,
    ) -> Reply<pb::Owner> {
        let actor = self.global_caller(&req, Permission::PoliciesManage).await?;
        let (id, patch, reason) = convert::owner_patch(req.into_inner())?;
        let convert::OwnerPatch {
            metadata,
            limits,
            credits,
            stale_policy,
        } = patch;
        match &stale_policy {
            Some(Some(p)) => self.keys.set_owner_policy(&id, p, &actor).await?,
            Some(None) => match self.keys.delete_owner_policy(&id, &actor).await {
                Ok(()) | Err(Error::NotFound(_)) => {}
                Err(e) => return Err(e.into()),
            },
            None => {}
        }
        let only_policy = metadata.is_none() && limits.is_none() && credits.is_none();
        let existing = match only_policy {
            true => self.keys.owner(&id, &actor).await.ok(),
            false => None,
        };
        let owner = match existing {
            Some(o) => o,
            None => {
                self.keys
                    .update_owner(&id, metadata, limits, credits, &reason, &actor)
                    .await?
            }
        };
        let policy = self.keys.owner_policy(&id).await?;
        Ok(Response::new(convert::to_owner(&owner, policy.as_ref())))
    }
}
