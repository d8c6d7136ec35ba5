//! Every KeyAdmin RPC needs one permission. For each, a token that holds
//! every permission but that one is refused with PERMISSION_DENIED naming
//! it, and a token that holds only that one gets past authorisation.

use std::collections::BTreeSet;

use keysmith::grpc::pb;
use prost::Message;
use tonic::{Code, Status};

use crate::{
    helpers::{Backend, spawn},
    permission_table::{CALLS, Fixture},
    token_support::{all_but, mint, names, with_permissions},
};

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
    let created = app.create_with_scopes(&["a:read"]).await;
    let (key_id, key_secret) = (created.key.expect("key").id, created.secret);
    let victim = mint(
        &app,
        &app.admin,
        with_permissions("victim", names(&["keys.read"])),
    )
    .await;
    let fixture = Fixture {
        key_id,
        key_secret,
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
