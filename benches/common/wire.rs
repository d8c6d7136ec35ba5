//! A light unary gRPC client on raw h2, for the load phases.
//!
//! The load generator shares two cores with the server, so a client that
//! costs less per call leaves more CPU to the server. This one sends
//! pre-encoded request bodies and decodes only what it checks: the HTTP
//! status, `grpc-status` (in the trailers, or in a trailers-only answer)
//! and, through a message that declares just those fields, the answer's
//! verdict. prost skips the other fields without allocating, so checking
//! every answer costs the Verify phase about what it costs the empty RPC.
//!
//! Every call is checked: a wrong answer is an `Err` naming what was wrong,
//! never a success with a worse latency.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::{Bytes, BytesMut};
use h2::client::SendRequest;
use http::{Request, Uri};
use keysmith::grpc::pb;
use prost::Message;
use tokio::task::JoinSet;
use tonic_health::pb::HealthCheckRequest;

pub const VERIFY: &str = "/keysmith.v1.KeyVerify/Verify";
pub const CHECK: &str = "/grpc.health.v1.Health/Check";

/// `keysmith.v1.VerifyResponse`, fields 1 and 2 only.
#[derive(Clone, PartialEq, Message)]
struct Verdict {
    #[prost(bool, tag = "1")]
    valid: bool,
    #[prost(int32, tag = "2")]
    code: i32,
}

/// `grpc.health.v1.HealthCheckResponse`.
#[derive(Clone, PartialEq, Message)]
struct Health {
    #[prost(int32, tag = "1")]
    status: i32,
}

const VERIFY_CODE_VALID: i32 = 1;
const SERVING: i32 = 1;

/// What a phase calls, and what a right answer to it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rpc {
    /// health `Check`: the answer must be SERVING.
    Check,
    /// `Verify`: the answer must be `valid` with VERIFY_CODE_VALID.
    Verify,
}

impl Rpc {
    pub fn path(self) -> &'static str {
        match self {
            Rpc::Check => CHECK,
            Rpc::Verify => VERIFY,
        }
    }

    fn check(self, msg: &[u8]) -> Result<(), String> {
        match self {
            Rpc::Check => {
                let h = Health::decode(msg).map_err(|e| format!("undecodable answer: {e}"))?;
                (h.status == SERVING)
                    .then_some(())
                    .ok_or_else(|| format!("health status {} (want SERVING)", h.status))
            }
            Rpc::Verify => {
                let v = Verdict::decode(msg).map_err(|e| format!("undecodable answer: {e}"))?;
                (v.valid && v.code == VERIFY_CODE_VALID)
                    .then_some(())
                    .ok_or_else(|| {
                        format!(
                            "verify answered valid={} code={} (want VERIFY_CODE_VALID)",
                            v.valid, v.code
                        )
                    })
            }
        }
    }
}

/// A gRPC message as a request body: uncompressed flag, length, bytes.
pub fn frame(msg: &impl Message) -> Bytes {
    let body = msg.encode_to_vec();
    let mut frame = Vec::with_capacity(5 + body.len());
    frame.push(0);
    frame.extend_from_slice(&u32::try_from(body.len()).expect("small").to_be_bytes());
    frame.extend_from_slice(&body);
    frame.into()
}

/// One HTTP/2 connection. Clones share it; each clone may have calls in
/// flight, up to the server's stream limit.
#[derive(Clone)]
pub struct Conn {
    send: SendRequest<Bytes>,
    authority: String,
}

impl Conn {
    /// Connects with TCP_NODELAY, as tonic's client does. The connection's
    /// driver task ends when the last clone is dropped.
    pub async fn connect(addr: &str) -> Conn {
        let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        tcp.set_nodelay(true).expect("nodelay");
        let (send, conn) = h2::client::handshake(tcp).await.expect("h2 handshake");
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Conn {
            send,
            authority: addr.to_owned(),
        }
    }

    pub fn uri(&self, rpc: Rpc) -> Uri {
        format!("http://{}{}", self.authority, rpc.path())
            .parse()
            .expect("uri")
    }

    /// One unary call of `rpc` with `body`, checked end to end.
    pub async fn call(&mut self, rpc: Rpc, uri: &Uri, body: Bytes) -> Result<(), String> {
        let req = Request::post(uri.clone())
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(())
            .expect("request");
        let mut send = self
            .send
            .clone()
            .ready()
            .await
            .map_err(|e| format!("connection: {e}"))?;
        let (resp, mut out) = send
            .send_request(req, false)
            .map_err(|e| format!("send: {e}"))?;
        out.send_data(body, true)
            .map_err(|e| format!("send body: {e}"))?;
        let resp = resp.await.map_err(|e| format!("response: {e}"))?;
        if resp.status() != http::StatusCode::OK {
            return Err(format!("HTTP status {}", resp.status()));
        }
        // A trailers-only answer (an error) carries grpc-status here.
        if let Some(status) = resp.headers().get("grpc-status") {
            return Err(grpc_error(status, resp.headers()));
        }
        let mut body = resp.into_body();
        let mut first: Option<Bytes> = None;
        let mut more: Option<BytesMut> = None;
        while let Some(chunk) = body.data().await {
            let chunk = chunk.map_err(|e| format!("response body: {e}"))?;
            let _ = body.flow_control().release_capacity(chunk.len());
            match (&mut first, &mut more) {
                (None, _) => first = Some(chunk),
                (Some(f), None) => {
                    let mut m = BytesMut::from(&f[..]);
                    m.extend_from_slice(&chunk);
                    more = Some(m);
                }
                (Some(_), Some(m)) => m.extend_from_slice(&chunk),
            }
        }
        let trailers = body
            .trailers()
            .await
            .map_err(|e| format!("trailers: {e}"))?
            .ok_or("no trailers (no grpc-status)")?;
        match trailers.get("grpc-status") {
            Some(s) if s == "0" => {}
            Some(s) => return Err(grpc_error(s, &trailers)),
            None => return Err("trailers without grpc-status".into()),
        }
        let msg: &[u8] = match (&first, &more) {
            (_, Some(m)) => m,
            (Some(f), None) => f,
            (None, None) => return Err("grpc-status 0 but no message".into()),
        };
        if msg.len() < 5 || msg[0] != 0 {
            return Err("answer is not one uncompressed gRPC message".into());
        }
        let len = u32::from_be_bytes([msg[1], msg[2], msg[3], msg[4]]) as usize;
        if msg.len() != 5 + len {
            return Err(format!(
                "answer frame says {len} bytes, body has {}",
                msg.len() - 5
            ));
        }
        rpc.check(&msg[5..])
    }
}

fn grpc_error(status: &http::HeaderValue, headers: &http::HeaderMap) -> String {
    let message = headers
        .get("grpc-message")
        .and_then(|m| m.to_str().ok())
        .unwrap_or("");
    format!(
        "grpc-status {} {message}",
        status.to_str().unwrap_or("(not ascii)")
    )
}

/// Aborts the run: a phase whose answers are wrong has no figures.
pub fn wrong_answer(phase: &str, err: &str) -> ! {
    panic!(
        "{phase}: a call got a wrong answer: {err}. \
         The run is aborted; its figures would not measure a working server"
    );
}

/// The request bodies a phase sends, cycled through in order.
pub struct Bodies {
    pub rpc: Rpc,
    pub bodies: Vec<Bytes>,
}

impl Bodies {
    pub fn check() -> Arc<Bodies> {
        Arc::new(Bodies {
            rpc: Rpc::Check,
            bodies: vec![frame(&HealthCheckRequest {
                service: String::new(),
            })],
        })
    }

    /// Verify requests for `secrets` of `keyspace` ([`verify_request`]).
    pub fn verify(secrets: &[String], keyspace: &str) -> Arc<Bodies> {
        Arc::new(Bodies {
            rpc: Rpc::Verify,
            bodies: secrets
                .iter()
                .map(|s| frame(&verify_request(s, keyspace)))
                .collect(),
        })
    }

    pub fn name(&self) -> &'static str {
        match self.rpc {
            Rpc::Check => "empty RPC",
            Rpc::Verify => "unary Verify",
        }
    }
}

/// Runs `bodies` from `conns × inflight` closed-loop callers for `secs`;
/// (calls/s, latencies, distinct bodies sent).
pub async fn closed_loop(
    conns: &[Conn],
    inflight: usize,
    secs: u64,
    bodies: Arc<Bodies>,
) -> (f64, Vec<Duration>, usize) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    // One counter for all callers: the calls walk the bodies in order, so
    // a phase of N calls sends min(N, bodies) distinct keys.
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = JoinSet::new();
    for conn in conns {
        for _ in 0..inflight {
            let (mut conn, bodies, next) = (conn.clone(), bodies.clone(), next.clone());
            tasks.spawn(async move {
                let uri = conn.uri(bodies.rpc);
                let mut lat = Vec::with_capacity(4096);
                while Instant::now() < deadline {
                    let i = next.fetch_add(1, Ordering::Relaxed) % bodies.bodies.len();
                    let start = Instant::now();
                    conn.call(bodies.rpc, &uri, bodies.bodies[i].clone())
                        .await
                        .map_err(|e| format!("call #{i}: {e}"))?;
                    lat.push(start.elapsed());
                }
                Ok::<_, String>(lat)
            });
        }
    }
    let mut all = Vec::new();
    while let Some(lat) = tasks.join_next().await {
        match lat.expect("caller") {
            Ok(lat) => all.extend(lat),
            Err(e) => wrong_answer(bodies.name(), &e),
        }
    }
    let distinct = all.len().min(bodies.bodies.len());
    (all.len() as f64 / secs as f64, all, distinct)
}

/// A Verify request for `secret` needing `invoices:read`.
/// A Verify of `secret` bound to `keyspace`, asking one scope all-of and
/// one of an any-of group, which the benches' keys grant (`customers:read`;
/// `invoices:*` covers `invoices:read`), from their own scopes or their
/// role's: what a gateway for one API asks.
pub fn verify_request(secret: &str, keyspace: &str) -> pb::VerifyRequest {
    pb::VerifyRequest {
        key: secret.to_owned(),
        required_scopes: vec!["customers:read".into()],
        required_any: vec![pb::ScopeAlternatives {
            scopes: vec!["invoices:read".into(), "invoices:admin".into()],
        }],
        keyspace: keyspace.into(),
        ..Default::default()
    }
}
