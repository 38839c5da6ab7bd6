//! The provider's AWS clients, rebuilt on demand. When Bedrock says the credentials are expired
//! or unknown (an SSO session ran out, a role's session ended, `aws sso login` or a refresher
//! rewrote the credentials file), loading the SDK config again resolves the identity afresh and
//! the call is retried once, without rebuilding the provider.

use crate::auth::{self, Auth};
use crate::error::Error;
use std::sync::{Arc, Mutex};

pub struct Settings {
    pub runtime_region: String,
    pub discovery_region: String,
    pub runtime_endpoint: Option<String>,
    pub control_endpoint: Option<String>,
    pub auth: Auth,
    /// The HTTPS client every SDK client shares (`http_client`): the SDK crates are built without
    /// a default client of their own.
    pub http_client: aws_smithy_runtime_api::client::http::SharedHttpClient,
    /// One HTTPS client per runtime thread that runs streams (`provider/shards.rs`): its own
    /// pool, so its own connection, driven on that thread.
    pub stream_http_clients: Vec<aws_smithy_runtime_api::client::http::SharedHttpClient>,
    /// The clients offer h2 (not told to speak HTTP/1.1 only): streams may share a connection.
    pub may_share_connections: bool,
    /// The deadline of one control-plane call (`discovery.callTimeoutSeconds`).
    pub call_timeout: std::time::Duration,
    /// How long a pooled connection may stay unused (`provider.idleConnectionSeconds`).
    pub idle_connection: std::time::Duration,
    /// The threads that run streams, each a runtime of its own (`provider.runtimeThreads`).
    pub runtime_threads: usize,
    /// The longest a delivery thread gathers events (`provider.deliveryGatherMs`).
    pub delivery_gather: std::time::Duration,
}

pub struct Built {
    /// Bumped on every rebuild, so concurrent callers rebuild once.
    pub generation: u64,
    pub runtime: aws_sdk_bedrockruntime::Client,
    pub control: aws_sdk_bedrock::Client,
    /// The runtime client of each stream thread (`Settings::stream_http_clients`).
    pub streaming: Vec<aws_sdk_bedrockruntime::Client>,
}

impl Built {
    /// The client for a stream running on `shard`.
    pub fn stream_client(&self, shard: usize) -> &aws_sdk_bedrockruntime::Client {
        self.streaming.get(shard).unwrap_or(&self.runtime)
    }
}

pub struct Clients {
    settings: Settings,
    current: Mutex<Arc<Built>>,
    rebuilding: tokio::sync::Mutex<()>,
}

impl Clients {
    pub async fn new(settings: Settings) -> Clients {
        let built = build(&settings, 1).await;
        Clients { settings, current: Mutex::new(Arc::new(built)), rebuilding: tokio::sync::Mutex::new(()) }
    }

    pub fn current(&self) -> Arc<Built> {
        self.current.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Whether resolving the identity again can cure `error`: only for expired or unknown
    /// credentials, and never for a Bedrock API key, which is fixed at start-up.
    pub fn worth_refreshing(&self, error: &Error) -> bool {
        !self.settings.auth.uses_api_key() && crate::sdk_error::is_stale_identity(error)
    }

    /// Fresh clients, unless another caller already rebuilt them since `seen`.
    pub async fn refresh(&self, seen: u64) -> Arc<Built> {
        let _one_at_a_time = self.rebuilding.lock().await;
        let now = self.current();
        if now.generation != seen {
            return now;
        }
        crate::log::info("auth", "Bedrock refused the cached credentials as expired or unknown; resolving them again");
        let fresh = Arc::new(build(&self.settings, seen + 1).await);
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = fresh.clone();
        fresh
    }

    /// An auth failure that did not come from Bedrock, told as "which sources were tried".
    pub fn explain(&self, e: Error) -> Error {
        auth::explain(&self.settings.auth, e)
    }
}

async fn build(s: &Settings, generation: u64) -> Built {
    let sdk = auth::load_sdk_config(&s.runtime_region, s.http_client.clone()).await;
    let mut runtime = aws_sdk_bedrockruntime::config::Builder::from(&sdk);
    let mut control = aws_sdk_bedrock::config::Builder::from(&sdk).region(aws_sdk_bedrock::config::Region::new(s.discovery_region.clone()));
    if let Some(url) = &s.runtime_endpoint {
        runtime = runtime.endpoint_url(url);
    }
    if let Some(url) = &s.control_endpoint {
        control = control.endpoint_url(url);
    }
    if s.auth.unsigned() {
        runtime = runtime.credentials_provider(auth::placeholder_credentials()).interceptor(auth::StripSignature);
        control = control.credentials_provider(auth::placeholder_credentials()).interceptor(auth::StripSignature);
    }
    if let Some((token, preference)) = s.auth.bearer() {
        runtime = runtime.bearer_token(token.clone()).auth_scheme_preference(preference.clone());
        control = control.bearer_token(token).auth_scheme_preference(preference);
    }
    Built {
        generation,
        streaming: s.stream_http_clients.iter().map(|h| aws_sdk_bedrockruntime::Client::from_conf(runtime.clone().http_client(h.clone()).build())).collect(),
        runtime: aws_sdk_bedrockruntime::Client::from_conf(runtime.build()),
        control: aws_sdk_bedrock::Client::from_conf(control.build()),
    }
}
