//! KeyVerify handlers. Verify and VerifyStream answer from memory, through
//! [`VerifyService::answer`]: synchronous code that holds no store and never
//! awaits. WatchRevocations, the one KeyVerify RPC that waits (on the change
//! log and the feed), lives in `watch.rs`; this file only delegates to it.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use futures::StreamExt;
use tonic::{Request, Response, Status};
use zeroize::Zeroize;

use super::{
    presented::{Presented, Wipe},
    watch::{EventStream, WatchHandler},
};

use super::{bearer_in, convert, pb, pb::key_verify_server::KeyVerify};
use crate::{
    auth::VerifyGate,
    domain::{Clock, Permission, Timestamp, TokenLimits, mono_nanos},
    error::Error,
    index::{KeyIndex, ReplicaState},
    metrics::Metrics,
    usage::Recorder,
    verify::{self, Request as VerifyRequest},
    watch::Watcher,
};

#[derive(Clone)]
pub struct VerifyService {
    index: Arc<KeyIndex>,
    metrics: Metrics,
    usage: Arc<Recorder>,
    clock: Clock,
    replica: Arc<ReplicaState>,
    watch: WatchHandler,
    /// Refuse to answer when the change log was last read longer ago than this.
    fail_closed_after: Option<Duration>,
    /// The listener's own credential, when `--verify-auth` requires one.
    gate: VerifyGate,
}

impl VerifyService {
    // Its parts are folded into one verifier next; until then, one per field.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        index: Arc<KeyIndex>,
        metrics: Metrics,
        usage: Arc<Recorder>,
        clock: Clock,
        replica: Arc<ReplicaState>,
        watcher: Watcher,
        fail_closed_after: Option<Duration>,
        gate: VerifyGate,
    ) -> Self {
        Self {
            index,
            metrics,
            usage,
            clock,
            replica,
            watch: WatchHandler::new(watcher, gate.clone()),
            fail_closed_after,
            gate,
        }
    }
}

/// Why a stale replica refuses under `--fail-closed-after`.
pub const FAIL_CLOSED: &str = "this replica lost contact with the database (fail-closed)";

impl Wipe for pb::VerifyRequest {
    fn wipe(&mut self) {
        self.key.zeroize();
    }
}

impl VerifyService {
    /// One verification, shared by the unary and the streaming RPC, for a
    /// caller confined to `within`. Never awaits and never touches the
    /// database.
    fn answer(
        &self,
        req: &Presented<pb::VerifyRequest>,
        within: &TokenLimits,
    ) -> Result<pb::VerifyResponse, Status> {
        let started = Instant::now();
        if !self.index.is_ready() {
            return Err(Error::Unavailable("the key index is still loading").into());
        }
        if self.replica.fail_closed(self.fail_closed_after) {
            return Err(Error::Unavailable(FAIL_CLOSED).into());
        }
        let now = self.clock.now();
        let answered = decide(&self.index, &self.usage, req, within, now, mono_nanos);
        self.metrics
            .verify_latency
            .record(started.elapsed().as_secs_f64(), &[]);
        answered
    }
}

/// Converts a request's arguments and decides it from memory: Verify's
/// work after its checks of the replica, and what the fuzz target drives.
/// `within`: the limits of the caller's credential (keyspaces, owners); the
/// request's own `keyspace` narrows further.
pub(super) fn decide(
    index: &KeyIndex,
    usage: &Recorder,
    req: &pb::VerifyRequest,
    within: &TokenLimits,
    now: Timestamp,
    mono_nanos: impl FnOnce() -> u64,
) -> Result<pb::VerifyResponse, Status> {
    let pb::VerifyRequest {
        key,
        required_scopes,
        client_ip,
        referrer,
        resource,
        required_any,
        keyspace,
    } = req;
    convert::check_required_scopes(required_scopes)?;
    convert::check_required_any(required_any)?;
    let keyspaces = convert::keyspace_scope(index, keyspace)?;
    let request = VerifyRequest {
        required_scopes,
        required_any,
        client_ip: convert::client_ip(client_ip)?,
        referrer,
        resource,
        keyspaces,
    };
    let outcome = verify::verify_within(index, usage, key, &request, within, now, mono_nanos);
    Ok(convert::verify_response(&outcome))
}

type VerifyResults =
    std::pin::Pin<Box<dyn futures::Stream<Item = Result<pb::VerifyStreamResponse, Status>> + Send>>;

#[tonic::async_trait]
impl KeyVerify for VerifyService {
    async fn verify(
        &self,
        req: Request<pb::VerifyRequest>,
    ) -> Result<Response<pb::VerifyResponse>, Status> {
        let (metadata, _, req) = req.into_parts();
        let req = Presented::new(req);
        let admitted = self.gate.admit(bearer_in(&metadata), Permission::Verify)?;
        self.answer(&req, admitted.limits()).map(Response::new)
    }

    type VerifyStreamStream = VerifyResults;

    async fn verify_stream(
        &self,
        req: Request<tonic::Streaming<pb::VerifyStreamRequest>>,
    ) -> Result<Response<VerifyResults>, Status> {
        // Once per stream; each item then only checks that the token was
        // not revoked since (one atomic load).
        let admitted = self
            .gate
            .admit(bearer_in(req.metadata()), Permission::Verify)?;
        if !self.index.is_ready() {
            return Err(Error::Unavailable("the key index is still loading").into());
        }
        let this = self.clone();
        let answers = req.into_inner().map(move |item| {
            let pb::VerifyStreamRequest { id, request } = item?;
            let request = Presented::new(request.unwrap_or_default());
            if !this.gate.still_admitted(&admitted) {
                return Err(Error::Unauthenticated.into());
            }
            let result = match this.answer(&request, admitted.limits()) {
                Ok(r) => pb::verify_stream_response::Result::Response(r),
                Err(status) => pb::verify_stream_response::Result::Error(pb::VerifyStreamError {
                    code: status.code() as i32,
                    message: status.message().to_owned(),
                }),
            };
            Ok(pb::VerifyStreamResponse {
                id,
                result: Some(result),
            })
        });
        Ok(Response::new(Box::pin(answers)))
    }

    type WatchRevocationsStream = EventStream;

    async fn watch_revocations(
        &self,
        req: Request<pb::WatchRevocationsRequest>,
    ) -> Result<Response<EventStream>, Status> {
        self.watch.watch_revocations(req).await
    }
}
