//! HTTPS for the emulator: the certificate in `certs/` (made by `certs/make-certs.sh`), so
//! tests can check that the plugin refuses an untrusted CA and trusts one given in a bundle.

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::sync::Arc;

/// With `http2`, ALPN offers `h2` before `http/1.1`, as Bedrock's runtime endpoint does.
pub fn acceptor(http2: bool) -> tokio_rustls::TlsAcceptor {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("certs");
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(dir.join("server.pem")).expect("certs/server.pem").map(|c| c.expect("a PEM certificate")).collect();
    let key = PrivateKeyDer::from_pem_file(dir.join("server.key")).expect("certs/server.key");
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("the emulator's certificate and key match");
    if http2 {
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    }
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}
