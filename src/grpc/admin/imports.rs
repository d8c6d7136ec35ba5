//! The adoption handlers of KeyAdmin: ImportKeys and ExportKeys.

use tonic::{Request, Response};

use super::{AdminService, Reply};
use crate::{
    domain::Permission,
    grpc::{convert, pb},
    keys::KeyQuery,
    store::KeyOrder,
};

impl AdminService {
    #[tracing::instrument(skip_all)]
    pub(super) async fn import_keys_(
        &self,
        req: Request<pb::ImportKeysRequest>,
    ) -> Reply<pb::ImportKeysResponse> {
        let actor = self.caller(&req, Permission::KeysWrite).await?;
        let import = convert::import_request(req.into_inner())?;
        let (dry_run, n) = (import.dry_run, import.entries.len());
        let imported = self.keys.import(import, &actor).await?;
        let resp = convert::import_response(&imported);
        tracing::info!(
            keys = n,
            dry_run,
            created = resp.created,
            unchanged = resp.unchanged,
            conflicts = resp.conflicts,
            overwritten = resp.overwritten,
            "import batch"
        );
        Ok(Response::new(resp))
    }

    #[tracing::instrument(skip_all)]
    pub(super) async fn export_keys_(
        &self,
        req: Request<pb::ExportKeysRequest>,
    ) -> Reply<pb::ExportKeysResponse> {
        let actor = self.caller(&req, Permission::KeysWrite).await?;
        let pb::ExportKeysRequest {
            keyspace,
            page_size,
            page_token,
        } = req.into_inner();
        let query = KeyQuery {
            owner_id: None,
            keyspace_id: convert::export_keyspace(&keyspace)?,
            state: None,
            unused_for: None,
            order: KeyOrder::Id,
            page_size: convert::page_size(page_size)?,
            page_token,
        };
        let page = self.keys.list(query, &actor).await?;
        Ok(Response::new(pb::ExportKeysResponse {
            keys: page.items.iter().map(convert::exported).collect(),
            keyspaces: page
                .items
                .iter()
                .map(|k| k.keyspace_id.to_string())
                .collect(),
            next_page_token: page.next_page_token.unwrap_or_default(),
        }))
    }
}
