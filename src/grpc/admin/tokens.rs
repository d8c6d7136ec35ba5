//! The admin token handlers of KeyAdmin. Each needs `tokens.manage`.

use tonic::{Request, Response};

use super::{AdminService, Reply};
use crate::{
    domain::Permission,
    grpc::{convert, pb},
};

impl AdminService {
    #[tracing::instrument(skip_all)]
    pub(super) async fn mint_token(
        &self,
        req: Request<pb::CreateAdminTokenRequest>,
    ) -> Reply<pb::CreateAdminTokenResponse> {
        let actor = self.caller(&req, Permission::TokensManage).await?;
        let new = convert::create_token_request(req.into_inner())?;
        let (secret, token) = self.auth.create_token(new, &actor).await?;
        Ok(Response::new(pb::CreateAdminTokenResponse {
            token: Some(convert::admin_token(&token, self.keys.now())),
            secret: secret.expose_secret().to_owned(),
        }))
    }

    #[tracing::instrument(skip_all)]
    pub(super) async fn list_tokens(
        &self,
        req: Request<pb::ListAdminTokensRequest>,
    ) -> Reply<pb::ListAdminTokensResponse> {
        let actor = self.caller(&req, Permission::TokensManage).await?;
        let (size, page_token) = convert::token_list_query(req.into_inner())?;
        let tokens = self.keys.page_tokens();
        let page = self
            .auth
            .list_tokens(size, &page_token, tokens, &actor)
            .await?;
        Ok(Response::new(convert::tokens_page(page, self.keys.now())))
    }

    #[tracing::instrument(skip_all)]
    pub(super) async fn get_token(
        &self,
        req: Request<pb::GetAdminTokenRequest>,
    ) -> Reply<pb::GetAdminTokenResponse> {
        let actor = self.caller(&req, Permission::TokensManage).await?;
        let pb::GetAdminTokenRequest { id } = req.into_inner();
        let token = self
            .auth
            .get_token(&convert::token_id("id", &id)?, &actor)
            .await?;
        let token = Some(convert::admin_token(&token, self.keys.now()));
        Ok(Response::new(pb::GetAdminTokenResponse { token }))
    }

    #[tracing::instrument(skip_all)]
    pub(super) async fn revoke_token(
        &self,
        req: Request<pb::RevokeAdminTokenRequest>,
    ) -> Reply<pb::RevokeAdminTokenResponse> {
        let actor = self.caller(&req, Permission::TokensManage).await?;
        let pb::RevokeAdminTokenRequest {
            id,
            reason,
            include_minted,
        } = req.into_inner();
        let id = convert::token_id("id", &id)?;
        let reason = convert::token_reason("reason", &reason)?;
        let (token, minted_revoked) = self
            .auth
            .revoke_token(&id, reason, include_minted, &actor)
            .await?;
        let token = Some(convert::admin_token(&token, self.keys.now()));
        Ok(Response::new(pb::RevokeAdminTokenResponse {
            token,
            minted_revoked,
        }))
    }
}
