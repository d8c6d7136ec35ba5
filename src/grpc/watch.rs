//! WatchRevocations: the KeyVerify RPC that waits. It subscribes to the
//! [`Watcher`], which reads the change log for the backlog and then follows
//! the feed's broadcast. Kept apart from `verify.rs`, whose handlers never
//! await and hold no store.

use futures::StreamExt;
use tonic::{Request, Response, Status};

use super::{bearer, convert, pb};
use crate::{auth::VerifyGate, domain::Permission, error::Error, watch::Watcher};

pub type EventStream =
    std::pin::Pin<Box<dyn futures::Stream<Item = Result<pb::KeyEvent, Status>> + Send>>;

#[derive(Clone)]
pub struct WatchHandler {
    watcher: Watcher,
    gate: VerifyGate,
}

impl WatchHandler {
    pub fn new(watcher: Watcher, gate: VerifyGate) -> Self {
        Self { watcher, gate }
    }

    #[tracing::instrument(skip_all)]
    pub async fn watch_revocations(
        &self,
        req: Request<pb::WatchRevocationsRequest>,
    ) -> Result<Response<EventStream>, Status> {
        let admitted = self.gate.admit(bearer(&req), Permission::Watch)?;
        let mut watch = convert::watch_request(req.into_inner())?;
        // Events about keys outside the token's limits are never sent.
        watch.within = admitted.limits().clone();
        let events = self.watcher.watch(watch).await?;
        let gate = self.gate.clone();
        // A token revoked (or expired) while its stream is open ends the
        // stream at the next event.
        let stream = events.map(move |item| match item {
            Ok(_) if !gate.still_admitted(&admitted) => Err(Error::Unauthenticated.into()),
            Ok(change) => Ok(convert::key_event(&change)),
            Err(e) => Err(Status::from(e)),
        });
        Ok(Response::new(Box::pin(stream)))
    }
}
