//! The baseline: the same streams consumed with aws-sdk-bedrockruntime directly, in tasks on one
//! runtime of two workers as applications usually run it (or, with shards, on one single-threaded
//! runtime per thread as the plugin runs its streams), with no plugin, no JSON and no callback.

use aws_sdk_bedrockruntime::config::{Credentials, Region, StalledStreamProtectionConfig};
use aws_sdk_bedrockruntime::types::{ContentBlock, ConversationRole, Message};
use aws_sdk_bedrockruntime::Client;

pub struct Direct {
    pub rt: tokio::runtime::Runtime,
    pub client: Client,
    /// With `--direct-shards N`: N single-threaded runtimes, each on a thread of its own with a
    /// client (so a connection) of its own, as the plugin runs its streams; the streams are dealt
    /// to them in turn.
    pub shards: Vec<(tokio::runtime::Handle, Client)>,
}

/// What one directly consumed stream saw (times from `crate::now_ns`).
#[derive(Default)]
pub struct Seen {
    pub events: u64,
    pub first_ns: u64,
    pub done_ns: u64,
    pub gaps: Vec<u32>,
}

impl Direct {
    pub fn new(endpoint: &str) -> Direct {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).thread_name("direct-sdk").enable_all().build().unwrap();
        let config = aws_sdk_bedrockruntime::Config::builder()
            .behavior_version_latest()
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new(crate::ACCESS_KEY, crate::SECRET_KEY, None, None, "bench"))
            .endpoint_url(endpoint)
            .stalled_stream_protection(StalledStreamProtectionConfig::disabled())
            .build();
        Direct { rt, client: Client::from_conf(config), shards: Vec::new() }
    }

    /// Over HTTPS, trusting `ca_pem`: the SDK's default HTTPS client (hyper 1, rustls with
    /// aws-lc, ALPN h2 then http/1.1) given a trust store, as an application would build it, on
    /// a runtime of `workers` threads, or on `shards` runtimes of one thread each.
    pub fn with_ca(endpoint: &str, ca_pem: &[u8], workers: usize, shards: usize) -> Direct {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(workers).thread_name("direct-sdk").enable_all().build().unwrap();
        let shards = (0..shards)
            .map(|_| {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                let handle = rt.handle().clone();
                std::thread::Builder::new().name("direct-shard".into()).spawn(move || rt.block_on(std::future::pending::<()>())).unwrap();
                (handle, https_client(endpoint, ca_pem))
            })
            .collect();
        Direct { rt, client: https_client(endpoint, ca_pem), shards }
    }
}

/// A client with an HTTPS client (so a connection pool) of its own.
fn https_client(endpoint: &str, ca_pem: &[u8]) -> Client {
    use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode, TlsContext, TrustStore};
    let context = TlsContext::builder().with_trust_store(TrustStore::empty().with_native_roots(false).with_pem_certificate(ca_pem.to_vec())).build().expect("the test CA");
    let http = aws_smithy_http_client::Builder::new().tls_provider(tls::Provider::Rustls(CryptoMode::AwsLc)).tls_context(context).build_https();
    let config = aws_sdk_bedrockruntime::Config::builder()
        .behavior_version_latest()
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(crate::ACCESS_KEY, crate::SECRET_KEY, None, None, "bench"))
        .endpoint_url(endpoint)
        .http_client(http)
        // As the plugin configures it: its own watchdog is the stall check.
        .stalled_stream_protection(StalledStreamProtectionConfig::disabled())
        .build();
    Client::from_conf(config)
}

/// One stream of the capacity scenario's mix, every token's added delay recorded.
pub async fn paced_stream(client: &Client, seed: u64, delays: &crate::capacity::Delays) {
    use aws_sdk_bedrockruntime::types::{ContentBlockDelta, ConverseStreamOutput};
    let message = Message::builder().role(ConversationRole::User).content(ContentBlock::Text("go".into())).build().unwrap();
    let Ok(output) = client.converse_stream().model_id(format!("pace-{seed}")).messages(message).send().await else { return };
    let mut stream = output.stream;
    while let Ok(Some(event)) = stream.recv().await {
        if let ConverseStreamOutput::ContentBlockDelta(d) = event {
            if let Some(ContentBlockDelta::Text(text)) = d.delta {
                delays.token(text.as_bytes());
            }
        }
    }
}

pub async fn stream(client: Client, deltas: usize, record_gaps: bool) -> Seen {
    let message = Message::builder().role(ConversationRole::User).content(ContentBlock::Text("go".into())).build().unwrap();
    let output = client.converse_stream().model_id(format!("bench-{deltas}")).messages(message).send().await.expect("ConverseStream");
    let mut stream = output.stream;
    let mut seen = Seen::default();
    let mut last = 0;
    while let Some(_event) = stream.recv().await.expect("an event") {
        let now = crate::now_ns();
        if seen.events == 0 {
            seen.first_ns = now;
        } else if record_gaps {
            seen.gaps.push(((now - last) / 1000) as u32);
        }
        last = now;
        seen.events += 1;
    }
    seen.done_ns = crate::now_ns();
    seen
}
