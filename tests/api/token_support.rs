//! Minting admin tokens through the API, and clients that act with them.

use keysmith::grpc::pb::{self, key_admin_client::KeyAdminClient};

use crate::helpers::{Admin, Bearer, TestApp};

/// The permission catalogue, as the API names it.
pub const ALL: [&str; 14] = [
    "keys.read",
    "keys.write",
    "keys.revoke",
    "keyspaces.read",
    "keyspaces.manage",
    "webhooks.read",
    "webhooks.manage",
    "audit.read",
    "usage.read",
    "policies.manage",
    "replicas.read",
    "tokens.manage",
    "verify",
    "watch",
];

pub fn names(ps: &[&str]) -> Vec<String> {
    ps.iter().map(|p| p.to_string()).collect()
}

/// Every permission but `p`.
pub fn all_but(p: &str) -> Vec<String> {
    ALL.iter()
        .filter(|q| **q != p)
        .map(|q| q.to_string())
        .collect()
}

/// An admin client that presents `secret`.
pub fn client(app: &TestApp, secret: &str) -> Admin {
    let bearer = Bearer(format!("Bearer {secret}").parse().expect("ascii token"));
    KeyAdminClient::with_interceptor(app.admin_channel.clone(), bearer)
}

/// A token minted through the API, and a client acting with it.
pub struct Minted {
    pub id: String,
    pub secret: String,
    pub admin: Admin,
}

/// Mints a token with `by`'s authority.
pub async fn mint(app: &TestApp, by: &Admin, req: pb::CreateAdminTokenRequest) -> Minted {
    let resp = by
        .clone()
        .create_admin_token(req)
        .await
        .expect("mint a token")
        .into_inner();
    let token = resp.token.expect("token");
    assert!(resp.secret.starts_with("ksa_"), "the secret, once");
    Minted {
        id: token.id,
        admin: client(app, &resp.secret),
        secret: resp.secret,
    }
}

/// A token request with a name and these permissions, and nothing else.
pub fn with_permissions(name: &str, permissions: Vec<String>) -> pb::CreateAdminTokenRequest {
    pb::CreateAdminTokenRequest {
        name: name.into(),
        permissions,
        ..Default::default()
    }
}

/// Token `id`, as `admin` may see it.
pub async fn get_token(admin: &Admin, id: &str) -> Result<pb::AdminToken, tonic::Status> {
    let req = pb::GetAdminTokenRequest { id: id.into() };
    let resp = admin.clone().get_admin_token(req).await?;
    Ok(resp.into_inner().token.expect("token"))
}

/// The first page of the tokens `admin` may see.
pub async fn list_tokens(admin: &Admin) -> Vec<pb::AdminToken> {
    let req = pb::ListAdminTokensRequest::default();
    let resp = admin.clone().list_admin_tokens(req).await.expect("list");
    resp.into_inner().tokens
}
