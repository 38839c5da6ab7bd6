//! The stand-in: answers every ConverseStream with pre-encoded frames as fast as loopback allows
//! (no signature checks, no scenario parsing: the emulator's per-request work would dominate).
//! The model id says how many deltas: `bench-<N>`. It runs in a child process so that the
//! benchmark's CPU figures are the client's alone.

use bedrock_emulator::eventstream::event;
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response};
use serde_json::json;
use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

/// messageStart, N one-word text deltas, contentBlockStop, messageStop and metadata.
fn body(deltas: usize) -> Bytes {
    let mut out = event("messageStart", &json!({"role": "assistant"}));
    let delta = event("contentBlockDelta", &json!({"contentBlockIndex": 0, "delta": {"text": "ab "}}));
    out.reserve(delta.len() * deltas + 512);
    for _ in 0..deltas {
        out.extend_from_slice(&delta);
    }
    out.extend(event("contentBlockStop", &json!({"contentBlockIndex": 0})));
    out.extend(event("messageStop", &json!({"stopReason": "end_turn"})));
    out.extend(event("metadata", &json!({"usage": {"inputTokens": 5, "outputTokens": deltas, "totalTokens": deltas + 5}, "metrics": {"latencyMs": 1}})));
    Bytes::from(out)
}

fn deltas_of(path: &str) -> usize {
    path.split('/').find_map(|p| p.strip_prefix("bench-")).and_then(|n| n.parse().ok()).unwrap_or(1)
}

/// Serves until the parent closes our stdin; prints `listening on <port>` once ready.
pub fn serve() {
    crate::raise_fd_limit();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        println!("listening on {}", listener.local_addr().unwrap().port());
        let bodies: Arc<Mutex<HashMap<usize, Bytes>>> = Arc::default();
        std::thread::spawn(|| {
            let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut Vec::new());
            std::process::exit(0);
        });
        loop {
            let Ok((tcp, _)) = listener.accept().await else { continue };
            let _ = tcp.set_nodelay(true);
            let bodies = bodies.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                    let bodies = bodies.clone();
                    async move {
                        let n = deltas_of(req.uri().path());
                        let body = bodies.lock().unwrap().entry(n).or_insert_with(|| body(n)).clone();
                        Ok::<_, Infallible>(
                            Response::builder()
                                .header("content-type", "application/vnd.amazon.eventstream")
                                .header("x-amzn-requestid", "bench")
                                .body(Full::new(body))
                                .unwrap(),
                        )
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(hyper_util::rt::TokioIo::new(tcp), service).await;
            });
        }
    });
}
