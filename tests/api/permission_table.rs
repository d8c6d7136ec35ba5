//! The KeyAdmin RPC → permission table, as README states it, with a call
//! of each RPC that passes authorisation when its permission is held.

use futures::future::BoxFuture;
use keysmith::grpc::pb;
use tonic::Status;

use crate::{
    helpers::Admin,
    token_support::{names, with_permissions},
};

/// What a call may refer to: a key and an admin token that exist.
#[derive(Clone)]
pub struct Fixture {
    pub key_id: String,
    /// The key's secret, for the calls that take a raw key.
    pub key_secret: String,
    pub token_id: String,
}

pub type Call = fn(Admin, Fixture) -> BoxFuture<'static, Result<(), Status>>;

/// The RPC → permission map, as README's table states it.
pub const CALLS: &[(&str, &str, Call)] = &[
    ("CreateKey", "keys.write", |mut a, _| {
        Box::pin(async move {
            let req = pb::CreateKeyRequest {
                owner_id: "acct_perm".into(),
                ..Default::default()
            };
            a.create_key(req).await.map(drop)
        })
    }),
    ("GetKey", "keys.read", |mut a, f| {
        Box::pin(async move {
            a.get_key(pb::GetKeyRequest { id: f.key_id })
                .await
                .map(drop)
        })
    }),
    ("ListKeys", "keys.read", |mut a, _| {
        Box::pin(async move { a.list_keys(pb::ListKeysRequest::default()).await.map(drop) })
    }),
    ("UpdateKey", "keys.write", |mut a, f| {
        Box::pin(async move {
            let req = pb::UpdateKeyRequest {
                key: Some(pb::Key {
                    id: f.key_id,
                    name: "renamed".into(),
                    ..Default::default()
                }),
                update_mask: Some(keysmith::grpc::wkt::FieldMask {
                    paths: vec!["name".into()],
                }),
            };
            a.update_key(req).await.map(drop)
        })
    }),
    ("RotateKey", "keys.write", |mut a, f| {
        Box::pin(async move {
            let req = pb::RotateKeyRequest {
                id: f.key_id,
                ..Default::default()
            };
            a.rotate_key(req).await.map(drop)
        })
    }),
    ("RevokeKey", "keys.revoke", |mut a, f| {
        Box::pin(async move {
            let req = pb::RevokeKeyRequest {
                id: f.key_id,
                ..Default::default()
            };
            a.revoke_key(req).await.map(drop)
        })
    }),
    ("ReportLeakedKey", "keys.revoke", |mut a, f| {
        Box::pin(async move {
            let req = pb::ReportLeakedKeyRequest {
                key: f.key_secret,
                source: "permission table".into(),
                ..Default::default()
            };
            a.report_leaked_key(req).await.map(drop)
        })
    }),
    ("LookupKey", "keys.read", |mut a, f| {
        Box::pin(async move {
            let req = pb::LookupKeyRequest { key: f.key_secret };
            a.lookup_key(req).await.map(drop)
        })
    }),
    ("ImportKeys", "keys.write", |mut a, _| {
        Box::pin(async move {
            let req = pb::ImportKeysRequest {
                keys: vec![pb::ImportedKey {
                    secret: Some(pb::imported_key::Secret::Hash("ab".repeat(32))),
                    owner_id: "acct_perm".into(),
                    ..Default::default()
                }],
                dry_run: true,
                ..Default::default()
            };
            a.import_keys(req).await.map(drop)
        })
    }),
    ("ExportKeys", "keys.write", |mut a, _| {
        Box::pin(async move {
            let req = pb::ExportKeysRequest::default();
            a.export_keys(req).await.map(drop)
        })
    }),
    ("DisableKey", "keys.revoke", |mut a, f| {
        Box::pin(async move {
            let req = pb::DisableKeyRequest {
                id: f.key_id,
                reason: String::new(),
            };
            a.disable_key(req).await.map(drop)
        })
    }),
    ("EnableKey", "keys.write", |mut a, f| {
        Box::pin(async move {
            a.enable_key(pb::EnableKeyRequest { id: f.key_id })
                .await
                .map(drop)
        })
    }),
    ("ListAuditEvents", "audit.read", |mut a, _| {
        Box::pin(async move {
            let req = pb::ListAuditEventsRequest::default();
            a.list_audit_events(req).await.map(drop)
        })
    }),
    ("VerifyAuditChain", "audit.read", |mut a, _| {
        Box::pin(async move {
            let req = pb::VerifyAuditChainRequest {};
            a.verify_audit_chain(req).await.map(drop)
        })
    }),
    ("CreateWebhookEndpoint", "webhooks.manage", |mut a, _| {
        Box::pin(async move {
            let req = pb::CreateWebhookEndpointRequest {
                url: "https://hooks.example.com/keysmith".into(),
                events: vec!["key.revoked".into()],
                description: String::new(),
            };
            a.create_webhook_endpoint(req).await.map(drop)
        })
    }),
    ("ListWebhookEndpoints", "webhooks.read", |mut a, _| {
        Box::pin(async move {
            let req = pb::ListWebhookEndpointsRequest {};
            a.list_webhook_endpoints(req).await.map(drop)
        })
    }),
    ("UpdateWebhookEndpoint", "webhooks.manage", |mut a, _| {
        Box::pin(async move {
            let req = pb::UpdateWebhookEndpointRequest::default();
            a.update_webhook_endpoint(req).await.map(drop)
        })
    }),
    ("DeleteWebhookEndpoint", "webhooks.manage", |mut a, _| {
        Box::pin(async move {
            let req = pb::DeleteWebhookEndpointRequest {
                id: "whe_none".into(),
            };
            a.delete_webhook_endpoint(req).await.map(drop)
        })
    }),
    ("ListWebhookDeliveries", "webhooks.read", |mut a, _| {
        Box::pin(async move {
            let req = pb::ListWebhookDeliveriesRequest::default();
            a.list_webhook_deliveries(req).await.map(drop)
        })
    }),
    ("RedeliverWebhook", "webhooks.manage", |mut a, _| {
        Box::pin(async move {
            let req = pb::RedeliverWebhookRequest { id: "none".into() };
            a.redeliver_webhook(req).await.map(drop)
        })
    }),
    ("GetReplicaStatus", "replicas.read", |mut a, _| {
        Box::pin(async move {
            let req = pb::GetReplicaStatusRequest {};
            a.get_replica_status(req).await.map(drop)
        })
    }),
    ("GetKeyUsage", "usage.read", |mut a, f| {
        Box::pin(async move {
            let req = pb::GetKeyUsageRequest {
                id: f.key_id,
                ..Default::default()
            };
            a.get_key_usage(req).await.map(drop)
        })
    }),
    ("GetRotationOverlap", "usage.read", |mut a, f| {
        Box::pin(async move {
            let req = pb::GetRotationOverlapRequest { id: f.key_id };
            a.get_rotation_overlap(req).await.map(drop)
        })
    }),
    ("GetUnknownKeyStats", "usage.read", |mut a, _| {
        Box::pin(async move {
            let req = pb::GetUnknownKeyStatsRequest::default();
            a.get_unknown_key_stats(req).await.map(drop)
        })
    }),
    ("SetOwnerStalePolicy", "policies.manage", |mut a, _| {
        Box::pin(async move {
            let req = pb::OwnerStalePolicy {
                owner_id: "acct_perm".into(),
                flag_after: Some(keysmith::grpc::wkt::Duration {
                    seconds: 86_400,
                    nanos: 0,
                }),
                ..Default::default()
            };
            a.set_owner_stale_policy(req).await.map(drop)
        })
    }),
    ("DeleteOwnerStalePolicy", "policies.manage", |mut a, _| {
        Box::pin(async move {
            let req = pb::DeleteOwnerStalePolicyRequest {
                owner_id: "acct_none".into(),
            };
            a.delete_owner_stale_policy(req).await.map(drop)
        })
    }),
    ("ListOwnerStalePolicies", "policies.manage", |mut a, _| {
        Box::pin(async move {
            let req = pb::ListOwnerStalePoliciesRequest {};
            a.list_owner_stale_policies(req).await.map(drop)
        })
    }),
    ("ListStaleKeys", "keys.read", |mut a, _| {
        Box::pin(async move {
            let req = pb::ListStaleKeysRequest::default();
            a.list_stale_keys(req).await.map(drop)
        })
    }),
    ("CreateKeyspace", "keyspaces.manage", |mut a, _| {
        Box::pin(async move {
            let req = pb::CreateKeyspaceRequest {
                name: "perm".into(),
                prefix: "perm".into(),
                ..Default::default()
            };
            a.create_keyspace(req).await.map(drop)
        })
    }),
    ("GetKeyspace", "keyspaces.read", |mut a, _| {
        Box::pin(async move {
            let req = pb::GetKeyspaceRequest {
                id: "ks_default".into(),
            };
            a.get_keyspace(req).await.map(drop)
        })
    }),
    ("ListKeyspaces", "keyspaces.read", |mut a, _| {
        Box::pin(async move {
            let req = pb::ListKeyspacesRequest::default();
            a.list_keyspaces(req).await.map(drop)
        })
    }),
    ("UpdateKeyspace", "keyspaces.manage", |mut a, _| {
        Box::pin(async move {
            let req = pb::UpdateKeyspaceRequest {
                keyspace: Some(pb::Keyspace {
                    id: "ks_default".into(),
                    name: "renamed".into(),
                    ..Default::default()
                }),
                update_mask: Some(keysmith::grpc::wkt::FieldMask {
                    paths: vec!["name".into()],
                }),
            };
            a.update_keyspace(req).await.map(drop)
        })
    }),
    ("CreateRole", "keyspaces.manage", |mut a, _| {
        Box::pin(async move {
            let req = pb::CreateRoleRequest {
                role: Some(pb::Role {
                    keyspace: "ks_default".into(),
                    name: "perm-role".into(),
                    scopes: vec!["a:read".into()],
                    ..Default::default()
                }),
            };
            a.create_role(req).await.map(drop)
        })
    }),
    ("GetRole", "keyspaces.read", |mut a, _| {
        Box::pin(async move {
            let req = pb::GetRoleRequest {
                keyspace: "ks_default".into(),
                name: "perm-role".into(),
            };
            a.get_role(req).await.map(drop)
        })
    }),
    ("ListRoles", "keyspaces.read", |mut a, _| {
        Box::pin(async move {
            let req = pb::ListRolesRequest {
                keyspace: "ks_default".into(),
                ..Default::default()
            };
            a.list_roles(req).await.map(drop)
        })
    }),
    ("UpdateRole", "keyspaces.manage", |mut a, _| {
        Box::pin(async move {
            let req = pb::UpdateRoleRequest {
                role: Some(pb::Role {
                    keyspace: "ks_default".into(),
                    name: "perm-role".into(),
                    description: "changed".into(),
                    ..Default::default()
                }),
                update_mask: Some(keysmith::grpc::wkt::FieldMask {
                    paths: vec!["description".into()],
                }),
            };
            a.update_role(req).await.map(drop)
        })
    }),
    ("DeleteRole", "keyspaces.manage", |mut a, _| {
        Box::pin(async move {
            let req = pb::DeleteRoleRequest {
                keyspace: "ks_default".into(),
                name: "perm-role".into(),
            };
            a.delete_role(req).await.map(drop)
        })
    }),
    ("CreateAdminToken", "tokens.manage", |mut a, _| {
        Box::pin(async move {
            let req = with_permissions("child", names(&["tokens.manage"]));
            a.create_admin_token(req).await.map(drop)
        })
    }),
    ("ListAdminTokens", "tokens.manage", |mut a, _| {
        Box::pin(async move {
            let req = pb::ListAdminTokensRequest::default();
            a.list_admin_tokens(req).await.map(drop)
        })
    }),
    ("GetAdminToken", "tokens.manage", |mut a, f| {
        Box::pin(async move {
            let req = pb::GetAdminTokenRequest { id: f.token_id };
            a.get_admin_token(req).await.map(drop)
        })
    }),
    ("RevokeAdminToken", "tokens.manage", |mut a, f| {
        Box::pin(async move {
            let req = pb::RevokeAdminTokenRequest {
                id: f.token_id,
                reason: String::new(),
                ..Default::default()
            };
            a.revoke_admin_token(req).await.map(drop)
        })
    }),
    ("GetCredits", "keys.read", |mut a, _| {
        Box::pin(async move {
            let req = pb::GetCreditsRequest {
                subject: Some(pb::get_credits_request::Subject::OwnerId(
                    "acct_perm".into(),
                )),
            };
            a.get_credits(req).await.map(drop)
        })
    }),
    ("UpdateCredits", "keys.write", |mut a, _| {
        Box::pin(async move {
            let req = pb::UpdateCreditsRequest {
                subject: Some(pb::update_credits_request::Subject::OwnerId(
                    "acct_perm".into(),
                )),
                change: Some(pb::update_credits_request::Change::Increment(1)),
                ..Default::default()
            };
            a.update_credits(req).await.map(drop)
        })
    }),
    ("GetOwner", "keys.read", |mut a, _| {
        Box::pin(async move {
            let req = pb::GetOwnerRequest {
                owner_id: "acct_perm".into(),
            };
            a.get_owner(req).await.map(drop)
        })
    }),
    ("ListOwners", "keys.read", |mut a, _| {
        Box::pin(async move {
            a.list_owners(pb::ListOwnersRequest::default())
                .await
                .map(drop)
        })
    }),
    ("UpdateOwner", "policies.manage", |mut a, _| {
        Box::pin(async move {
            let req = pb::UpdateOwnerRequest {
                owner_id: "acct_perm".into(),
                metadata: [("plan".to_string(), "free".to_string())].into(),
                update_mask: Some(keysmith::grpc::wkt::FieldMask {
                    paths: vec!["metadata".into()],
                }),
                ..Default::default()
            };
            a.update_owner(req).await.map(drop)
        })
    }),
];
