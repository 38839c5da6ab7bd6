//! The HTTPS client when HTTP/1.1 is asked for (`provider.httpVersion: "1.1"`, or pi-ai's
//! `AWS_BEDROCK_FORCE_HTTP1=1`): hyper's HTTP/1.1 connections over rustls (ring), offering only
//! `http/1.1` in ALPN so no server can pick HTTP/2, kept in a pool of this crate's own. The SDK's
//! client cannot be told to: it always offers `h2` first. What it gives the SDK is kept: the
//! platform's roots plus the CA bundles, proxies from the environment (CONNECT tunnels,
//! `NO_PROXY`), the SDK's connect and read timeouts, idle connections closed by a timer, and
//! connection failures classed as I/O (retried).
//!
//! Why not hyper-util's pooled client, which this crate used before: it is generic over HTTP/1
//! and HTTP/2 alike, so instantiated for this connector it compiled a second copy of its HTTP/2
//! half (464 KB of the shipped library) that this client never speaks. hyper's HTTP/1 connection
//! API plus `pool.rs` is all an HTTP/1.1-only client needs.
//!
//! A crate of its own so that it is built for size in the `ship` profile: the plugin crate,
//! where it would otherwise be instantiated, is built for speed.

mod pool;

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::http::{http_client_fn, HttpConnector, HttpConnectorFuture, SharedHttpClient, SharedHttpConnector};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_types::body::SdkBody;
use http::header::{HeaderValue, HOST};
use http::uri::{PathAndQuery, Uri};
use hyper::client::conn::http1::SendRequest;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::proxy::Tunnel;
use hyper_util::client::legacy::connect::HttpConnector as TcpConnector;
use hyper_util::client::proxy::matcher::Matcher;
use hyper_util::rt::TokioIo;
use pool::{Key, Pool};
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
    connect: HttpsConnector<Route>,
    pool: Arc<Pool<SendRequest<SdkBody>>>,
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
        let connect = HttpsConnector::from((Route { tcp, proxies }, tls));
        Http1 { connect, pool: Pool::new(idle_timeout), read_timeout }
    }
}

impl HttpConnector for Http1 {
    fn call(&self, request: aws_smithy_runtime_api::client::orchestrator::HttpRequest) -> HttpConnectorFuture {
        let request = match request.try_into_http1x().map_err(|e| ConnectorError::user(e.into())).and_then(origin_form) {
            Ok(r) => r,
            Err(e) => return HttpConnectorFuture::ready(Err(e)),
        };
        let (connect, pool, read_timeout) = (self.connect.clone(), self.pool.clone(), self.read_timeout);
        HttpConnectorFuture::new(async move {
            let sent = send(connect, pool, request);
            let response = match read_timeout {
                Some(limit) => tokio::time::timeout(limit, sent)
                    .await
                    .map_err(|_| ConnectorError::timeout(format!("no response within the read timeout ({limit:?})").into()))??,
                None => sent.await?,
            };
            HttpResponse::try_from(response.map(SdkBody::from_body_1_x)).map_err(|e| ConnectorError::other(e.into(), None))
        })
    }
}

/// Where the request goes (the pool's key), and the request as a connection sends it: the
/// request-target in origin form (`/path?query`; the SDK builds absolute URIs, and a tunnel
/// carries origin form too) and a `Host` header, as HTTP/1.1 requires.
fn origin_form(mut request: http::Request<SdkBody>) -> Result<(Key, http::Request<SdkBody>), ConnectorError> {
    let uri = request.uri().clone();
    let (Some(scheme), Some(authority)) = (uri.scheme(), uri.authority()) else {
        return Err(ConnectorError::user(format!("not an absolute URI: {uri}").into()));
    };
    let key = Key::new(scheme.as_str(), authority.as_str());
    if !request.headers().contains_key(HOST) {
        let default_port = if scheme.as_str() == "https" { 443 } else { 80 };
        let host = match authority.port_u16() {
            Some(port) if port != default_port => format!("{}:{port}", authority.host()),
            _ => authority.host().to_owned(),
        };
        let value = HeaderValue::from_str(&host).map_err(|e| ConnectorError::user(e.into()))?;
        request.headers_mut().insert(HOST, value);
    }
    let path = uri.path_and_query().cloned().unwrap_or_else(|| PathAndQuery::from_static("/"));
    *request.uri_mut() = Uri::from(path);
    Ok((key, request))
}

/// Sends on an idle pooled connection, or on a new one. A pooled connection the server closed
/// while it sat idle gives the request back unsent: it goes out once more on a new connection,
/// as hyper-util's pool did, instead of costing one of the SDK's retries.
async fn send(connect: HttpsConnector<Route>, pool: Arc<Pool<SendRequest<SdkBody>>>, (key, mut request): (Key, http::Request<SdkBody>)) -> Result<http::Response<hyper::body::Incoming>, ConnectorError> {
    while let Some(mut sender) = pool.take(&key, |s| s.is_ready()) {
        match sender.try_send_request(request).await {
            Ok(response) => {
                pool.give_back_when(key, sender, ready);
                return Ok(response);
            }
            Err(mut e) => match e.take_message() {
                Some(unsent) => request = unsent,
                None => return Err(classify(e.into_error())),
            },
        }
    }
    let mut sender = connect_new(connect, &key).await?;
    let response = sender.send_request(request).await.map_err(classify)?;
    pool.give_back_when(key, sender, ready);
    Ok(response)
}

/// Resolves once the connection can carry the next request: its answer was read to the end.
/// An error (the answer dropped half-read, the server closing) means it is not reused.
async fn ready(mut sender: SendRequest<SdkBody>) -> Option<SendRequest<SdkBody>> {
    sender.ready().await.ok().map(|()| sender)
}

async fn connect_new(mut connect: HttpsConnector<Route>, key: &Key) -> Result<SendRequest<SdkBody>, ConnectorError> {
    let uri: Uri = key.uri().map_err(|e| ConnectorError::user(e.into()))?;
    let io = connect.call(uri).await.map_err(ConnectorError::io)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(io).await.map_err(classify)?;
    // The connection's I/O runs as a task of its own; it ends when the connection closes
    // (the sender dropped by the pool, or the server hanging up).
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

/// Connection failures (reset, closed before the answer) are I/O: the SDK retries them.
fn classify(e: hyper::Error) -> ConnectorError {
    let mut io = e.is_closed() || e.is_incomplete_message() || e.is_canceled();
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(&e);
    while let Some(s) = source {
        io |= s.is::<std::io::Error>();
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
