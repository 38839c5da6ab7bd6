//! The one HTTPS client Bedrock, the control plane and the credential providers share: the SDK's
//! default (hyper 1, rustls, proxies from the environment, ALPN h2 then http/1.1) with ring as
//! the crypto provider, plus the CA bundles of `tls` and an idle timeout for pooled connections
//! (`provider.idleConnectionSeconds`); or, when HTTP/1.1 is asked for, the `bedrock-plugin-http1`
//! crate (`src/http1`).
//!
//! The idle timeout is what gives memory back without traffic. After a burst every stream's
//! connection sits in the pool (~50 KiB each with its buffers and TLS state); hyper's pool
//! closes the idle ones on a timer that ticks once per timeout it is given, so a connection goes
//! between one and two of those after its last use, with no request needed. It is given half the
//! setting, so a connection goes between half the setting and the setting: never later than
//! `idleConnectionSeconds` says (given the whole setting, the last of a burst's connections
//! stayed up to twice as long). The SDK's 90 s default held a 2,000-stream burst's sockets and
//! ~100 MB for up to three minutes.

use crate::config::HttpVersion;
use crate::error::Result;
use crate::tls::Bundle;
use aws_smithy_http_client::proxy::ProxyConfig;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use aws_smithy_http_client::{Builder, ConnectorBuilder};
use aws_smithy_runtime_api::client::http::SharedHttpClient;
use std::time::Duration;

pub fn build(bundles: &[Bundle], idle_timeout: Duration, version: HttpVersion) -> Result<SharedHttpClient> {
    if version == HttpVersion::Http1 {
        return bedrock_plugin_http1::build(crate::tls::roots(bundles)?, idle_timeout).map_err(|e| crate::error::Error::new(crate::error::Kind::Internal, e));
    }
    let context = if bundles.is_empty() { None } else { Some(crate::tls::context(bundles)?) };
    Ok(Builder::new().build_with_connector_fn(move |settings, components| {
        let mut conn = ConnectorBuilder::default().tls_provider(tls::Provider::Rustls(CryptoMode::Ring));
        if let Some(context) = &context {
            conn = conn.tls_context(context.clone());
        }
        conn.set_connector_settings(settings.cloned());
        if let Some(components) = components {
            conn.set_sleep_impl(components.sleep_impl());
        }
        conn.set_proxy_config(Some(ProxyConfig::from_env()));
        conn.set_pool_idle_timeout(Some(Some(idle_timeout / 2)));
        conn.build()
    }))
}
