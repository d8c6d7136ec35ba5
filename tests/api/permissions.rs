//! Every KeyAdmin RPC needs one permission. For each, a token that holds
//! every permission but that one is refused with PERMISSION_DENIED naming
//! it, and a token that holds only that one gets past authorisation.

use std::collections::BTreeSet;

use futures::future::BoxFuture;
use keysmith::grpc::pb;
use prost::Message;
use tonic::{Code, Status};

use crate::{
    helpers::{Admin, Backend, spawn},
    token_support::{all_but, mint, names, with_permissions},
};

/// What a call may refer to: a key and an admin token that exist.
#[derive(Clone)]
struct Fixture {
    key_id: String,
    token_id: String,
}

type Call = fn(Admin, Fixture) -> BoxFuture<'static, Result<(), Status>>;

/// The RPC → permission map, as README's table states it.
const CALLS: &[(&str, &str, Call)] = &[
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
                update_mask: Some(prost_types::FieldMask {
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
                flag_after: Some(prost_types::Duration {
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
                update_mask: Some(prost_types::FieldMask {
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
                update_mask: Some(prost_types::FieldMask {
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
            };
            a.revoke_admin_token(req).await.map(drop)
        })
    }),
];

/// RPCs that need no admin permission: RotateSelf is authenticated by the
/// key it rotates.
const NO_PERMISSION: &[&str] = &["RotateSelf"];

#[test]
fn every_key_admin_rpc_has_a_permission_in_the_table() {
    let set = prost_types::FileDescriptorSet::decode(pb::FILE_DESCRIPTOR_SET).expect("descriptors");
    let served: BTreeSet<String> = set
        .file
        .iter()
        .flat_map(|f| &f.service)
        .filter(|s| s.name() == "KeyAdmin")
        .flat_map(|s| &s.method)
        .map(|m| m.name().to_owned())
        .collect();
    let mapped: BTreeSet<String> = CALLS
        .iter()
        .map(|(rpc, _, _)| rpc.to_string())
        .chain(NO_PERMISSION.iter().map(|s| s.to_string()))
        .collect();
    assert_eq!(
        served, mapped,
        "a KeyAdmin RPC without a permission in the table"
    );
}

fn refused(result: &Result<(), Status>) -> Option<Code> {
    match result {
        Err(s) if matches!(s.code(), Code::PermissionDenied | Code::Unauthenticated) => {
            Some(s.code())
        }
        _ => None,
    }
}

async fn each_permission_is_denied_without_it_and_allowed_with_it(backend: Backend) {
    let app = spawn(backend).await;
    let key_id = app
        .create_with_scopes(&["a:read"])
        .await
        .key
        .expect("key")
        .id;
    let victim = mint(
        &app,
        &app.admin,
        with_permissions("victim", names(&["keys.read"])),
    )
    .await;
    let fixture = Fixture {
        key_id,
        token_id: victim.id,
    };
    let permissions: BTreeSet<&str> = CALLS.iter().map(|(_, p, _)| *p).collect();
    for permission in permissions {
        let without = mint(
            &app,
            &app.admin,
            with_permissions("without", all_but(permission)),
        )
        .await;
        let only = mint(
            &app,
            &app.admin,
            with_permissions("only", names(&[permission])),
        )
        .await;
        for (rpc, _, call) in CALLS.iter().filter(|(_, p, _)| *p == permission) {
            let denied = call(without.admin.clone(), fixture.clone()).await;
            let status = denied.expect_err(rpc);
            assert_eq!(status.code(), Code::PermissionDenied, "{rpc}: {status:?}");
            assert_eq!(
                status.message(),
                format!("this token lacks {permission}"),
                "{rpc} names the missing permission"
            );
            let allowed = call(only.admin.clone(), fixture.clone()).await;
            assert_eq!(
                refused(&allowed),
                None,
                "{rpc} with only {permission}: {allowed:?}"
            );
        }
    }
    // The fixture's token was revoked by RevokeAdminToken with only
    // tokens.manage: the allowed calls did what they were asked.
    let victim = app
        .admin
        .clone()
        .get_admin_token(pb::GetAdminTokenRequest {
            id: fixture.token_id,
        })
        .await
        .expect("get")
        .into_inner()
        .token
        .expect("token");
    assert_eq!(victim.state(), pb::AdminTokenState::Revoked);
}

crate::backend_tests!(each_permission_is_denied_without_it_and_allowed_with_it);
