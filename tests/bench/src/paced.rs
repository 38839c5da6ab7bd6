//! The capacity scenario's stand-in: ConverseStream at a model's real pace over HTTPS (the
//! emulator's test certificate), HTTP/2 when the client offers it (`--h1`: HTTP/1.1 only, as an
//! endpoint without `h2` in its ALPN would answer).
//!
//! The model id `pace-<seed>` picks the stream from a seeded mix: first token after 300–800 ms,
//! then 50–100 tokens/s, 500–2,000 tokens. Each token's text is the CLOCK_MONOTONIC time (ns) at
//! which the stand-in hands its frame to the connection, so a client in another process reads
//! the delay it adds to every token without a clock of ours. No signature checks, no scenario
//! parsing: a real endpoint's work is not the client's cost. Runs in its own process, so the
//! client's CPU is measured alone.

use bedrock_emulator::eventstream::event;
use bytes::Bytes;
use hyper::body::{Body, Frame};
use hyper::{Request, Response};
use serde_json::json;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

/// CLOCK_MONOTONIC in ns: the clock `Instant`, Node's `process.hrtime` and the stand-in share.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a valid timespec to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// One stream of the seeded mix.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Pace {
    pub first_token: Duration,
    pub tokens_per_s: u32,
    pub tokens: u32,
}

impl Pace {
    pub fn of(seed: u64) -> Pace {
        // splitmix64: the same seed gives every client the same stream.
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        Pace {
            first_token: Duration::from_millis(300 + z % 501),
            tokens_per_s: 50 + ((z >> 16) % 51) as u32,
            tokens: 500 + ((z >> 32) % 1501) as u32,
        }
    }
}

fn seed_of(path: &str) -> u64 {
    path.split('/').find_map(|p| p.strip_prefix("pace-")).and_then(|n| n.parse().ok()).unwrap_or(0)
}

/// The response body: each frame made when its time comes, by the connection's own task.
struct Paced {
    pace: Pace,
    sent: u32,
    start: Instant,
    sleep: Pin<Box<Sleep>>,
    done: bool,
}

impl Paced {
    fn new(pace: Pace) -> Paced {
        let start = Instant::now() + pace.first_token;
        Paced { pace, sent: 0, start, sleep: Box::pin(tokio::time::sleep_until(start)), done: false }
    }

    fn due(&self, token: u32) -> Instant {
        self.start + Duration::from_secs_f64(token as f64 / self.pace.tokens_per_s as f64)
    }
}

impl Body for Paced {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.done {
            return Poll::Ready(None);
        }
        if self.sleep.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        let n = self.sent;
        let mut out = Vec::new();
        if n == 0 {
            out.extend(event("messageStart", &json!({"role": "assistant"})));
        }
        if n < self.pace.tokens {
            out.extend(event("contentBlockDelta", &json!({"contentBlockIndex": 0, "delta": {"text": format!("{} ", monotonic_ns())}})));
            self.sent += 1;
            let next = self.due(self.sent);
            self.sleep.as_mut().reset(next);
        } else {
            let tokens = self.pace.tokens;
            out.extend(event("contentBlockStop", &json!({"contentBlockIndex": 0})));
            out.extend(event("messageStop", &json!({"stopReason": "end_turn"})));
            out.extend(event("metadata", &json!({"usage": {"inputTokens": 5, "outputTokens": tokens, "totalTokens": tokens + 5}, "metrics": {"latencyMs": 1}})));
            self.done = true;
        }
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(out)))))
    }
}

/// Serves until the parent closes our stdin; prints `listening on <port>` once ready.
pub fn serve(http2: bool) {
    crate::raise_fd_limit();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        println!("listening on {}", listener.local_addr().unwrap().port());
        std::thread::spawn(|| {
            let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut Vec::new());
            std::process::exit(0);
        });
        let tls = bedrock_emulator::tls::acceptor(http2);
        loop {
            let Ok((tcp, _)) = listener.accept().await else { continue };
            let _ = tcp.set_nodelay(true);
            let tls = tls.clone();
            tokio::spawn(async move {
                let Ok(stream) = tls.accept(tcp).await else { return };
                let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
                let io = hyper_util::rt::TokioIo::new(stream);
                let service = hyper::service::service_fn(|req: Request<hyper::body::Incoming>| async move {
                    let pace = Pace::of(seed_of(req.uri().path()));
                    Ok::<_, Infallible>(Response::builder().header("content-type", "application/vnd.amazon.eventstream").header("x-amzn-requestid", "capacity").body(Paced::new(pace)).unwrap())
                });
                if h2 {
                    // Many streams on one connection is the point; the client's window updates
                    // keep up with tokens this small.
                    let mut builder = hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new());
                    builder.max_concurrent_streams(100_000);
                    let _ = builder.serve_connection(io, service).await;
                } else {
                    let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
                }
            });
        }
    });
}

