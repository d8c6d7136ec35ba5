//! An HTTP receiver on 127.0.0.1, for webhooks and OTLP exports: it fails
//! the first `failures` requests with 500 and records every request.

use std::{
    collections::HashMap,
    convert::Infallible,
    sync::{Arc, Mutex},
};

use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, body::Bytes, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;

#[derive(Clone, Debug)]
pub struct Received {
    pub path: String,
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

impl Received {
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).map_or("", String::as_str)
    }
}

pub struct Receiver {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    pub got: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    pub fn requests(&self) -> Vec<Received> {
        self.got.lock().expect("lock").clone()
    }
}

pub async fn receiver(failures: usize) -> Receiver {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let got: Arc<Mutex<Vec<Received>>> = Arc::default();
    let seen = got.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                    let seen = seen.clone();
                    async move {
                        let path = req.uri().path().to_owned();
                        let headers = req
                            .headers()
                            .iter()
                            .map(|(k, v)| {
                                (
                                    k.as_str().to_owned(),
                                    v.to_str().unwrap_or_default().to_owned(),
                                )
                            })
                            .collect();
                        let body = req
                            .into_body()
                            .collect()
                            .await
                            .map(|b| b.to_bytes().to_vec())
                            .unwrap_or_default();
                        let n = {
                            let mut seen = seen.lock().expect("lock");
                            seen.push(Received {
                                path,
                                headers,
                                body,
                            });
                            seen.len()
                        };
                        let status = if n <= failures { 500 } else { 200 };
                        let resp = Response::builder()
                            .status(status)
                            .body(Full::new(Bytes::new()))
                            .expect("response");
                        Ok::<_, Infallible>(resp)
                    }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Receiver { base, got }
}
