//! WatchRevocations: the KeyVerify RPC that waits. It subscribes to the
//! [`Watcher`], which reads the change log for the backlog and then follows
//! the feed's broadcast. Kept apart from `verify.rs`, whose handlers never
//! await and hold no store.

use futures::StreamExt;
use tonic::{Request, Response, Status};

use super::{convert, pb};
use crate::{index::KeyspaceBinding, watch::Watcher};

pub type EventStream =
    std::pin::Pin<Box<dyn futures::Stream<Item = Result<pb::KeyEvent, Status>> + Send>>;

#[derive(Clone)]
pub struct WatchHandler {
    watcher: Watcher,
}

impl WatchHandler {
    pub fn new(watcher: Watcher) -> Self {
        Self { watcher }
    }

    #[tracing::instrument(skip_all)]
    pub async fn watch_revocations(
        &self,
        req: Request<pb::WatchRevocationsRequest>,
        bound: Option<&KeyspaceBinding>,
    ) -> Result<Response<EventStream>, Status> {
        let mut watch = convert::watch_request(req.into_inner())?;
        if let Some(b) = bound {
            watch = watch.within(b);
        }
        let events = self.watcher.watch(watch).await?;
        let stream = events.map(|item| match item {
            Ok(change) => Ok(convert::key_event(&change)),
            Err(e) => Err(Status::from(e)),
        });
        Ok(Response::new(Box::pin(stream)))
    }
}
