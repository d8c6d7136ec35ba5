//! The webhook handlers of KeyAdmin. Webhook endpoints and their deliveries
//! carry every owner's events, so they are for unlimited tokens only.

use tonic::{Request, Response};

use super::{AdminService, Reply};
use crate::{
    domain::Permission,
    grpc::{convert, pb},
};

impl AdminService {
    #[tracing::instrument(skip_all)]
    pub(super) async fn create_endpoint(
        &self,
        req: Request<pb::CreateWebhookEndpointRequest>,
    ) -> Reply<pb::CreateWebhookEndpointResponse> {
        let actor = self.global_caller(&req, Permission::WebhooksManage).await?;
        let (e, secret) = self
            .webhooks
            .create(convert::create_endpoint(req.into_inner()), &actor)
            .await?;
        let signing_secret = secret.expose_secret().to_owned();
        Ok(Response::new(pb::CreateWebhookEndpointResponse {
            endpoint: Some(convert::endpoint(&e)),
            signing_secret,
        }))
    }

    #[tracing::instrument(skip_all)]
    pub(super) async fn list_endpoints(
        &self,
        req: Request<pb::ListWebhookEndpointsRequest>,
    ) -> Reply<pb::ListWebhookEndpointsResponse> {
        self.global_caller(&req, Permission::WebhooksRead).await?;
        let endpoints = self
            .webhooks
            .list()
            .await?
            .iter()
            .map(convert::endpoint)
            .collect();
        Ok(Response::new(pb::ListWebhookEndpointsResponse {
            endpoints,
        }))
    }

    #[tracing::instrument(skip_all)]
    pub(super) async fn update_endpoint(
        &self,
        req: Request<pb::UpdateWebhookEndpointRequest>,
    ) -> Reply<pb::WebhookEndpoint> {
        let actor = self.global_caller(&req, Permission::WebhooksManage).await?;
        let (id, input) = convert::update_endpoint(req.into_inner())?;
        Ok(Response::new(convert::endpoint(
            &self.webhooks.update(&id, input, &actor).await?,
        )))
    }

    #[tracing::instrument(skip_all)]
    pub(super) async fn delete_endpoint(
        &self,
        req: Request<pb::DeleteWebhookEndpointRequest>,
    ) -> Reply<pb::DeleteWebhookEndpointResponse> {
        let actor = self.global_caller(&req, Permission::WebhooksManage).await?;
        let pb::DeleteWebhookEndpointRequest { id } = req.into_inner();
        self.webhooks.delete(&id, &actor).await?;
        Ok(Response::new(pb::DeleteWebhookEndpointResponse {}))
    }

    #[tracing::instrument(skip_all)]
    pub(super) async fn list_deliveries(
        &self,
        req: Request<pb::ListWebhookDeliveriesRequest>,
    ) -> Reply<pb::ListWebhookDeliveriesResponse> {
        self.global_caller(&req, Permission::WebhooksRead).await?;
        let query = convert::delivery_query(req.into_inner())?;
        let page = self.webhooks.deliveries(query).await?;
        Ok(Response::new(convert::deliveries_page(page)))
    }

    #[tracing::instrument(skip_all)]
    pub(super) async fn redeliver(
        &self,
        req: Request<pb::RedeliverWebhookRequest>,
    ) -> Reply<pb::WebhookDelivery> {
        let actor = self.global_caller(&req, Permission::WebhooksManage).await?;
        let pb::RedeliverWebhookRequest { id } = req.into_inner();
        Ok(Response::new(convert::delivery(
            &self.webhooks.redeliver(&id, &actor).await?,
        )))
    }
}
