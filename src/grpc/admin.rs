//! KeyAdmin handlers: authenticate and authorise (one call), parse, call,
//! convert. Rotation and revocation handlers are in `admin/lifecycle.rs`,
//! keyspace handlers in `admin/keyspaces.rs`, role handlers in
//! `admin/roles.rs`, token handlers in `admin/tokens.rs`, webhook handlers in
//! `admin/webhooks.rs`, owner stale policy handlers in `admin/policies.rs`.

mod imports;
mod keyspaces;
mod leaks;
mod lifecycle;
mod policies;
mod quota;
mod roles;
mod tokens;
mod webhooks;

use tonic::{Request, Response, Status};

use super::{bearer, convert, pb, pb::key_admin_server::KeyAdmin};
use crate::{
    auth::AdminAuth,
    domain::Permission,
    keys::{Actor, Keys},
    webhooks::Webhooks,
};

pub struct AdminService {
    keys: Keys,
    auth: AdminAuth,
    webhooks: Webhooks,
}

impl AdminService {
    pub fn new(keys: Keys, auth: AdminAuth, webhooks: Webhooks) -> Self {
        Self {
            keys,
            auth,
            webhooks,
        }
    }

    /// The authenticated caller of `req`, if it holds `needed`:
    /// UNAUTHENTICATED, or PERMISSION_DENIED naming the permission,
    /// otherwise. Every handler starts here, so none runs unauthorised.
    async fn caller<T>(&self, req: &Request<T>, needed: Permission) -> Result<Actor, Status> {
        let peer = req.remote_addr().map(|a| a.ip());
        let actor = self.auth.authenticate(bearer(req), peer).await?;
        actor.require(needed)?;
        Ok(actor)
    }

    /// [`Self::caller`] for a call whose answer spans every owner and
    /// keyspace: a token limited to some is refused as well.
    async fn global_caller<T>(
        &self,
        req: &Request<T>,
        needed: Permission,
    ) -> Result<Actor, Status> {
        let peer = req.remote_addr().map(|a| a.ip());
        let actor = self.auth.authenticate(bearer(req), peer).await?;
        actor.require_global(needed)?;
        Ok(actor)
    }
}

type Reply<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl KeyAdmin for AdminService {
    #[tracing::instrument(skip_all)]
    async fn create_key(&self, req: Request<pb::CreateKeyRequest>) -> Reply<pb::CreateKeyResponse> {
        let actor = self.caller(&req, Permission::KeysWrite).await?;
        let create = convert::create_request(req.into_inner())?;
        let created = self.keys.create(create, &actor).await?;
        tracing::info!(key_id = %created.key.id, replayed = created.secret.is_none(), "key created");
        Ok(Response::new(convert::created(created, self.keys.now())))
    }

    #[tracing::instrument(skip_all)]
    async fn get_key(&self, req: Request<pb::GetKeyRequest>) -> Reply<pb::GetKeyResponse> {
        let actor = self.caller(&req, Permission::KeysRead).await?;
        let pb::GetKeyRequest { id } = req.into_inner();
        let key = self
            .keys
            .get_visible(&convert::key_id("id", &id)?, &actor)
            .await?;
        let key = Some(convert::key_message(&key, self.keys.now()));
        Ok(Response::new(pb::GetKeyResponse { key }))
    }

    #[tracing::instrument(skip_all)]
    async fn list_keys(&self, req: Request<pb::ListKeysRequest>) -> Reply<pb::ListKeysResponse> {
        let actor = self.caller(&req, Permission::KeysRead).await?;
        let page = self
            .keys
            .list(convert::key_query(req.into_inner())?, &actor)
            .await?;
        Ok(Response::new(convert::keys_page(page, self.keys.now())))
    }

    #[tracing::instrument(skip_all)]
    async fn update_key(&self, req: Request<pb::UpdateKeyRequest>) -> Reply<pb::UpdateKeyResponse> {
        let actor = self.caller(&req, Permission::KeysWrite).await?;
        let (id, patch) = convert::key_patch(req.into_inner())?;
        let key = self.keys.update(&id, patch, &actor).await?;
        let key = Some(convert::key_message(&key, self.keys.now()));
        Ok(Response::new(pb::UpdateKeyResponse { key }))
    }

    async fn rotate_key(&self, req: Request<pb::RotateKeyRequest>) -> Reply<pb::RotateKeyResponse> {
        self.rotate_key_(req).await
    }

    async fn rotate_self(
        &self,
        req: Request<pb::RotateSelfRequest>,
    ) -> Reply<pb::RotateKeyResponse> {
        self.rotate_self_(req).await
    }

    async fn revoke_key(&self, req: Request<pb::RevokeKeyRequest>) -> Reply<pb::RevokeKeyResponse> {
        self.revoke_key_(req).await
    }

    async fn report_leaked_key(
        &self,
        req: Request<pb::ReportLeakedKeyRequest>,
    ) -> Reply<pb::ReportLeakedKeyResponse> {
        self.report_leaked_key_(req).await
    }

    async fn lookup_key(&self, req: Request<pb::LookupKeyRequest>) -> Reply<pb::LookupKeyResponse> {
        self.lookup_key_(req).await
    }

    async fn import_keys(
        &self,
        req: Request<pb::ImportKeysRequest>,
    ) -> Reply<pb::ImportKeysResponse> {
        self.import_keys_(req).await
    }

    async fn export_keys(
        &self,
        req: Request<pb::ExportKeysRequest>,
    ) -> Reply<pb::ExportKeysResponse> {
        self.export_keys_(req).await
    }

    #[tracing::instrument(skip_all)]
    async fn disable_key(
        &self,
        req: Request<pb::DisableKeyRequest>,
    ) -> Reply<pb::DisableKeyResponse> {
        let actor = self.caller(&req, Permission::KeysRevoke).await?;
        let pb::DisableKeyRequest { id, reason } = req.into_inner();
        let id = convert::key_id("id", &id)?;
        let key = self
            .keys
            .disable(&id, convert::reason("reason", &reason)?, &actor)
            .await?;
        let key = Some(convert::key_message(&key, self.keys.now()));
        Ok(Response::new(pb::DisableKeyResponse { key }))
    }

    #[tracing::instrument(skip_all)]
    async fn enable_key(&self, req: Request<pb::EnableKeyRequest>) -> Reply<pb::EnableKeyResponse> {
        let actor = self.caller(&req, Permission::KeysWrite).await?;
        let pb::EnableKeyRequest { id } = req.into_inner();
        let key = self
            .keys
            .enable(&convert::key_id("id", &id)?, &actor)
            .await?;
        let key = Some(convert::key_message(&key, self.keys.now()));
        Ok(Response::new(pb::EnableKeyResponse { key }))
    }

    #[tracing::instrument(skip_all)]
    async fn list_audit_events(
        &self,
        req: Request<pb::ListAuditEventsRequest>,
    ) -> Reply<pb::ListAuditEventsResponse> {
        let actor = self.caller(&req, Permission::AuditRead).await?;
        let page = self
            .keys
            .audit_events(convert::audit_query(req.into_inner())?, &actor)
            .await?;
        Ok(Response::new(convert::audit_page(page)))
    }

    #[tracing::instrument(skip_all)]
    async fn get_replica_status(
        &self,
        req: Request<pb::GetReplicaStatusRequest>,
    ) -> Reply<pb::GetReplicaStatusResponse> {
        self.global_caller(&req, Permission::ReplicasRead).await?;
        let pb::GetReplicaStatusRequest {} = req.into_inner();
        Ok(Response::new(convert::replica_status(
            self.keys.replica_status().await?,
        )))
    }

    #[tracing::instrument(skip_all)]
    async fn get_key_usage(
        &self,
        req: Request<pb::GetKeyUsageRequest>,
    ) -> Reply<pb::GetKeyUsageResponse> {
        let actor = self.caller(&req, Permission::UsageRead).await?;
        let pb::GetKeyUsageRequest { id, from, to } = req.into_inner();
        let id = convert::key_id("id", &id)?;
        let (from, to) = convert::range(from, to)?;
        let usage = self.keys.usage(&id, from, to, &actor).await?;
        Ok(Response::new(convert::key_usage(usage)))
    }

    #[tracing::instrument(skip_all)]
    async fn get_rotation_overlap(
        &self,
        req: Request<pb::GetRotationOverlapRequest>,
    ) -> Reply<pb::GetRotationOverlapResponse> {
        let actor = self.caller(&req, Permission::UsageRead).await?;
        let pb::GetRotationOverlapRequest { id } = req.into_inner();
        let overlap = self
            .keys
            .overlap(&convert::key_id("id", &id)?, &actor)
            .await?;
        Ok(Response::new(convert::overlap(overlap)))
    }

    async fn set_owner_stale_policy(
        &self,
        req: Request<pb::OwnerStalePolicy>,
    ) -> Reply<pb::OwnerStalePolicy> {
        self.set_policy(req).await
    }

    async fn delete_owner_stale_policy(
        &self,
        req: Request<pb::DeleteOwnerStalePolicyRequest>,
    ) -> Reply<pb::DeleteOwnerStalePolicyResponse> {
        self.delete_policy(req).await
    }

    async fn list_owner_stale_policies(
        &self,
        req: Request<pb::ListOwnerStalePoliciesRequest>,
    ) -> Reply<pb::ListOwnerStalePoliciesResponse> {
        self.list_policies(req).await
    }

    #[tracing::instrument(skip_all)]
    async fn list_stale_keys(
        &self,
        req: Request<pb::ListStaleKeysRequest>,
    ) -> Reply<pb::ListKeysResponse> {
        let actor = self.caller(&req, Permission::KeysRead).await?;
        let page = self
            .keys
            .list(convert::stale_query(req.into_inner())?, &actor)
            .await?;
        Ok(Response::new(convert::keys_page(page, self.keys.now())))
    }

    #[tracing::instrument(skip_all)]
    async fn get_unknown_key_stats(
        &self,
        req: Request<pb::GetUnknownKeyStatsRequest>,
    ) -> Reply<pb::GetUnknownKeyStatsResponse> {
        self.global_caller(&req, Permission::UsageRead).await?;
        let pb::GetUnknownKeyStatsRequest { from, to } = req.into_inner();
        let (from, to) = convert::range(from, to)?;
        Ok(Response::new(convert::unknown_stats(
            self.keys.unknown_stats(from, to).await?,
        )))
    }

    #[tracing::instrument(skip_all)]
    async fn verify_audit_chain(
        &self,
        req: Request<pb::VerifyAuditChainRequest>,
    ) -> Reply<pb::VerifyAuditChainResponse> {
        self.global_caller(&req, Permission::AuditRead).await?;
        let pb::VerifyAuditChainRequest {} = req.into_inner();
        Ok(Response::new(convert::chain_report(
            self.keys.verify_audit_chain().await?,
        )))
    }

    async fn create_webhook_endpoint(
        &self,
        req: Request<pb::CreateWebhookEndpointRequest>,
    ) -> Reply<pb::CreateWebhookEndpointResponse> {
        self.create_endpoint(req).await
    }

    async fn list_webhook_endpoints(
        &self,
        req: Request<pb::ListWebhookEndpointsRequest>,
    ) -> Reply<pb::ListWebhookEndpointsResponse> {
        self.list_endpoints(req).await
    }

    async fn update_webhook_endpoint(
        &self,
        req: Request<pb::UpdateWebhookEndpointRequest>,
    ) -> Reply<pb::WebhookEndpoint> {
        self.update_endpoint(req).await
    }

    async fn delete_webhook_endpoint(
        &self,
        req: Request<pb::DeleteWebhookEndpointRequest>,
    ) -> Reply<pb::DeleteWebhookEndpointResponse> {
        self.delete_endpoint(req).await
    }

    async fn list_webhook_deliveries(
        &self,
        req: Request<pb::ListWebhookDeliveriesRequest>,
    ) -> Reply<pb::ListWebhookDeliveriesResponse> {
        self.list_deliveries(req).await
    }

    async fn redeliver_webhook(
        &self,
        req: Request<pb::RedeliverWebhookRequest>,
    ) -> Reply<pb::WebhookDelivery> {
        self.redeliver(req).await
    }

    async fn create_admin_token(
        &self,
        req: Request<pb::CreateAdminTokenRequest>,
    ) -> Reply<pb::CreateAdminTokenResponse> {
        self.mint_token(req).await
    }

    async fn list_admin_tokens(
        &self,
        req: Request<pb::ListAdminTokensRequest>,
    ) -> Reply<pb::ListAdminTokensResponse> {
        self.list_tokens(req).await
    }

    async fn get_admin_token(
        &self,
        req: Request<pb::GetAdminTokenRequest>,
    ) -> Reply<pb::GetAdminTokenResponse> {
        self.get_token(req).await
    }

    async fn revoke_admin_token(
        &self,
        req: Request<pb::RevokeAdminTokenRequest>,
    ) -> Reply<pb::RevokeAdminTokenResponse> {
        self.revoke_token(req).await
    }

    async fn create_keyspace(
        &self,
        req: Request<pb::CreateKeyspaceRequest>,
    ) -> Reply<pb::Keyspace> {
        self.create_keyspace_(req).await
    }

    async fn get_keyspace(&self, req: Request<pb::GetKeyspaceRequest>) -> Reply<pb::Keyspace> {
        self.get_keyspace_(req).await
    }

    async fn list_keyspaces(
        &self,
        req: Request<pb::ListKeyspacesRequest>,
    ) -> Reply<pb::ListKeyspacesResponse> {
        self.list_keyspaces_(req).await
    }

    async fn update_keyspace(
        &self,
        req: Request<pb::UpdateKeyspaceRequest>,
    ) -> Reply<pb::Keyspace> {
        self.update_keyspace_(req).await
    }

    async fn create_role(&self, req: Request<pb::CreateRoleRequest>) -> Reply<pb::Role> {
        self.create_role_(req).await
    }

    async fn get_role(&self, req: Request<pb::GetRoleRequest>) -> Reply<pb::Role> {
        self.get_role_(req).await
    }

    async fn list_roles(&self, req: Request<pb::ListRolesRequest>) -> Reply<pb::ListRolesResponse> {
        self.list_roles_(req).await
    }

    async fn update_role(
        &self,
        req: Request<pb::UpdateRoleRequest>,
    ) -> Reply<pb::UpdateRoleResponse> {
        self.update_role_(req).await
    }

    async fn delete_role(
        &self,
        req: Request<pb::DeleteRoleRequest>,
    ) -> Reply<pb::DeleteRoleResponse> {
        self.delete_role_(req).await
    }

    async fn get_credits(&self, req: Request<pb::GetCreditsRequest>) -> Reply<pb::Credits> {
        self.get_credits_(req).await
    }

    async fn update_credits(&self, req: Request<pb::UpdateCreditsRequest>) -> Reply<pb::Credits> {
        self.update_credits_(req).await
    }

    async fn get_owner(&self, req: Request<pb::GetOwnerRequest>) -> Reply<pb::Owner> {
        self.get_owner_(req).await
    }

    async fn list_owners(
        &self,
        req: Request<pb::ListOwnersRequest>,
    ) -> Reply<pb::ListOwnersResponse> {
        self.list_owners_(req).await
    }

    async fn update_owner(&self, req: Request<pb::UpdateOwnerRequest>) -> Reply<pb::Owner> {
        self.update_owner_(req).await
    }
}
