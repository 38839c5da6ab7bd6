//! The HTTPS client when HTTP/1.1 is asked for (`provider.httpVersion: "1.1"`, or pi-ai's
//! `AWS_BEDROCK_FORCE_HTTP1=1`): hyper's pooled HTTP/1.1 client over rustls (ring) that offers
//! only `http/1.1` in ALPN, so no server can pick HTTP/2. The SDK's own client cannot be told to:
//! it always offers `h2` first. What it gives the SDK is kept: the platform's roots plus the CA
//! bundles, proxies from the environment (CONNECT tunnels, `NO_PROXY`), the SDK's connect and
//! read timeouts, the idle timeout on a timer, and connection failures classed as I/O (retried).
//!
//! A crate of its own so that hyper's client, instantiated here a second time for this
//! connector's types (the SDK's client has its own), is built for size in the `ship` profile:
//! the plugin crate, where it would otherwise be instantiated, is built for speed.

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::http::{http_client_fn, HttpConnector, HttpConnectorFuture, SharedHttpClient, SharedHttpConnector};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_types::body::SdkBody;
use http::Uri;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::proxy::Tunnel;
use hyper_util::client::legacy::connect::HttpConnector as TcpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::proxy::matcher::Matcher;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::TcpStream;
use tower_service::Service;

/// Connect and read timeouts: the SDK asks for a connector per combination.
type Timeouts = (Option<Duration>, Option<Duration>);

/// The client; the error is rustls refusing its own safe defaults (a build problem).
pub fn build(roots: rustls::RootCertStore, idle_timeout: Duration) -> Result<SharedHttpClient, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS configuration: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tls = Arc::new(tls);
    let proxies = Arc::new(Matcher::from_env());
    // One connector (one pool) per timeout combination, as the SDK's own client keeps them.
    let connectors: Mutex<Vec<(Timeouts, SharedHttpConnector)>> = Mutex::default();
    Ok(http_client_fn(move |settings, _components| {
        let timeouts = (settings.connect_timeout(), settings.read_timeout());
        let mut connectors = connectors.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, c)) = connectors.iter().find(|(t, _)| *t == timeouts) {
            return c.clone();
        }
        let c = SharedHttpConnector::new(Http1::new(tls.clone(), proxies.clone(), idle_timeout, timeouts));
        connectors.push((timeouts, c.clone()));
        c
    }))
}

struct Http1 {
    client: Client<HttpsConnector<Route>, SdkBody>,
    read_timeout: Option<Duration>,
}

impl std::fmt::Debug for Http1 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Http1").field("read_timeout", &self.read_timeout).finish_non_exhaustive()
    }
}

impl Http1 {
    fn new(tls: Arc<rustls::ClientConfig>, proxies: Arc<Matcher>, idle_timeout: Duration, (connect_timeout, read_timeout): Timeouts) -> Http1 {
        let mut tcp = TcpConnector::new();
        // https URIs pass through it: TLS is the layer above.
        tcp.enforce_http(false);
        tcp.set_nodelay(true);
        tcp.set_connect_timeout(connect_timeout);
        let https = HttpsConnector::from((Route { tcp, proxies }, tls));
        let client = Client::builder(TokioExecutor::new()).pool_idle_timeout(idle_timeout).pool_timer(TokioTimer::new()).build(https);
        Http1 { client, read_timeout }
    }
}

impl HttpConnector for Http1 {
    fn call(&self, request: aws_smithy_runtime_api::client::orchestrator::HttpRequest) -> HttpConnectorFuture {
        let request = match request.try_into_http1x() {
            Ok(r) => r,
            Err(e) => return HttpConnectorFuture::ready(Err(ConnectorError::user(e.into()))),
        };
        let sent = self.client.request(request);
        let read_timeout = self.read_timeout;
        HttpConnectorFuture::new(async move {
            let answered = match read_timeout {
                Some(limit) => tokio::time::timeout(limit, sent)
                    .await
                    .map_err(|_| ConnectorError::timeout(format!("no response within the read timeout ({limit:?})").into()))?,
                None => sent.await,
            };
            let response = answered.map_err(classify)?.map(SdkBody::from_body_1_x);
            HttpResponse::try_from(response).map_err(|e| ConnectorError::other(e.into(), None))
        })
    }
}

/// Connection failures (refused, reset, closed before the answer) are I/O: the SDK retries them.
fn classify(e: hyper_util::client::legacy::Error) -> ConnectorError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(&e);
    let mut io = e.is_connect();
    while let Some(s) = source {
        if s.is::<std::io::Error>() {
            io = true;
        }
        if let Some(h) = s.downcast_ref::<hyper::Error>() {
            io |= h.is_closed() || h.is_incomplete_message() || h.is_canceled();
        }
        source = s.source();
    }
    if io {
        ConnectorError::io(e.into())
    } else {
        ConnectorError::other(e.into(), None)
    }
}

/// TCP to the destination, or through the proxy the environment names for it (a CONNECT tunnel).
#[derive(Clone)]
struct Route {
    tcp: TcpConnector,
    proxies: Arc<Matcher>,
}

impl Service<Uri> for Route {
    type Response = TokioIo<TcpStream>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = std::result::Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<std::result::Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, dst: Uri) -> Self::Future {
        let mut tcp = self.tcp.clone();
        match self.proxies.intercept(&dst) {
            None => Box::pin(async move { tcp.call(dst).await.map_err(Into::into) }),
            Some(via) => {
                let mut tunnel = Tunnel::new(via.uri().clone(), tcp);
                if let Some(auth) = via.basic_auth() {
                    tunnel = tunnel.with_auth(auth.clone());
                }
                Box::pin(async move { tunnel.call(dst).await.map_err(Into::into) })
            }
        }
    }
}
