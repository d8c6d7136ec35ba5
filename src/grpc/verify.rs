//! KeyVerify handlers: thin adapters over [`Verifier`], which answers from
//! memory (and waits only to lease for an empty usage-limit pool). WatchRevocations, the one KeyVerify RPC that waits (on the change
//! log and the feed), lives in `watch.rs`; this file only delegates to it.

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
    domain::{Permission, Timestamp, TokenLimits},
    error::Error,
    index::KeyIndex,
    usage::Recorder,
    verify::{self, Request as VerifyRequest, Verifier},
    watch::Watcher,
};

#[derive(Clone)]
pub struct VerifyService {
    verifier: Verifier,
    watch: WatchHandler,
    /// The listener's own credential, when `--verify-auth` requires one.
    gate: VerifyGate,
}

impl VerifyService {
    pub fn new(verifier: Verifier, watcher: Watcher, gate: VerifyGate) -> Self {
        Self {
            verifier,
            watch: WatchHandler::new(watcher, gate.clone()),
            gate,
        }
    }
}

impl Wipe for pb::VerifyRequest {
    fn wipe(&mut self) {
        self.key.zeroize();
    }
}

/// The wire request's arguments, checked, as the core's request.
fn request<'a>(index: &KeyIndex, req: &'a pb::VerifyRequest) -> Result<VerifyRequest<'a>, Status> {
    let pb::VerifyRequest {
        key: _,
        required_scopes,
        client_ip,
        referrer,
        resource,
        required_any,
        keyspace,
        cost,
        limit_costs,
    } = req;
    convert::check_required_scopes(required_scopes)?;
    convert::check_required_any(required_any)?;
    Ok(VerifyRequest {
        required_scopes,
        required_any,
        client_ip: convert::client_ip(client_ip)?,
        referrer,
        resource,
        keyspaces: convert::keyspace_scope(index, keyspace)?,
        cost: convert::cost("cost", cost.unwrap_or(1))?,
        limit_costs: convert::limit_costs(limit_costs)?,
    })
}

impl VerifyService {
    /// One verification, shared by the unary and the streaming RPC, for a
    /// caller confined to `within`.
    async fn answer(
        &self,
        req: &Presented<pb::VerifyRequest>,
        within: &TokenLimits,
    ) -> Result<pb::VerifyResponse, Status> {
        let request = request(self.verifier.index(), req)?;
        let outcome = self.verifier.verify(&req.key, &request, within).await?;
        Ok(convert::verify_response(&outcome))
    }
}

/// Converts a request and decides it from memory, as Verify does, without
/// usage limits: what the fuzz target drives.
pub(super) fn decide(
    index: &KeyIndex,
    usage: &Recorder,
    req: &pb::VerifyRequest,
    within: &TokenLimits,
    now: Timestamp,
    mono_nanos: impl FnOnce() -> u64,
) -> Result<pb::VerifyResponse, Status> {
    let request = request(index, req)?;
    let outcome = verify::evaluate(index, usage, &req.key, &request, within, now, mono_nanos);
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
        self.answer(&req, admitted.limits())
            .await
            .map(Response::new)
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
        if !self.verifier.index().is_ready() {
            return Err(Error::Unavailable("the key index is still loading").into());
        }
        let this = self.clone();
        let answers = req.into_inner().then(move |item| {
            let this = this.clone();
            let admitted = admitted.clone();
            async move {
                let pb::VerifyStreamRequest { id, request } = item?;
                let request = Presented::new(request.unwrap_or_default());
                if !this.gate.still_admitted(&admitted) {
                    return Err(Error::Unauthenticated.into());
                }
                let result = match this.answer(&request, admitted.limits()).await {
                    Ok(r) => pb::verify_stream_response::Result::Response(r),
                    Err(status) => {
                        pb::verify_stream_response::Result::Error(pb::VerifyStreamError {
                            code: status.code() as i32,
                            message: status.message().to_owned(),
                        })
                    }
                };
                Ok(pb::VerifyStreamResponse {
                    id,
                    result: Some(result),
                })
            }
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
