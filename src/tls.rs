//! Extra roots of trust for gateways behind a TLS-inspecting proxy: `provider.caBundle` and the
//! AWS CLI's `AWS_CA_BUNDLE` (PEM files) are trusted in addition to the platform's roots, by the
//! one HTTPS client (`http_client`) that Bedrock, the control plane and the credential providers
//! share.

use crate::error::{Error, Kind, Result};
use aws_smithy_http_client::tls::{TlsContext, TrustStore};

/// One CA bundle: where it was named, and its PEM text.
#[derive(Debug, Clone)]
pub struct Bundle {
    pub source: &'static str,
    pub path: String,
    pem: Vec<u8>,
}

/// The bundles to trust, read now so that a wrong path is an error at `bp_provider_new`.
pub fn bundles(config_path: Option<&str>, env: impl Fn(&str) -> Option<String>) -> Result<Vec<Bundle>> {
    let named = [("provider.caBundle", config_path.map(str::to_string)), ("AWS_CA_BUNDLE", env("AWS_CA_BUNDLE"))];
    let mut out = Vec::new();
    for (source, path) in named {
        let Some(path) = path.map(|p| p.trim().to_string()).filter(|p| !p.is_empty()) else { continue };
        let pem = std::fs::read(&path).map_err(|e| Error::new(Kind::Config, format!("{source}: cannot read the CA bundle {path}: {e}")))?;
        if !pem.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----") {
            return Err(Error::new(Kind::Config, format!("{source}: {path} holds no PEM certificate (-----BEGIN CERTIFICATE-----)")));
        }
        out.push(Bundle { source, path, pem });
    }
    Ok(out)
}

/// The roots `context` trusts, for rustls directly (the HTTP/1.1 client, `src/http1`): the
/// platform's, plus `bundles`.
pub fn roots(bundles: &[Bundle]) -> Result<rustls::RootCertStore> {
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    let mut store = rustls::RootCertStore::empty();
    // Unreadable platform certificates are skipped, as the SDK's own client skips them.
    store.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    for b in bundles {
        for cert in CertificateDer::pem_slice_iter(&b.pem) {
            let cert = cert.map_err(|e| Error::new(Kind::Config, format!("{}: {} is not a valid PEM certificate bundle: {e}", b.source, b.path)))?;
            store.add(cert).map_err(|e| Error::new(Kind::Config, format!("{}: a certificate in {} cannot be trusted: {e}", b.source, b.path)))?;
        }
    }
    Ok(store)
}

/// A TLS context trusting `bundles` as well as the platform's roots.
pub fn context(bundles: &[Bundle]) -> Result<TlsContext> {
    let mut store = TrustStore::default();
    for b in bundles {
        store.add_pem_certificate(b.pem.clone());
    }
    TlsContext::builder().with_trust_store(store).build().map_err(|e| Error::new(Kind::Config, format!("the CA bundle could not be used: {e}")))
}
