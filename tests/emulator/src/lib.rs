//! A local Amazon Bedrock emulator that speaks the real wire protocol, so the real AWS SDK
//! client is exercised end to end without reaching AWS: SigV4 or bearer auth, REST-JSON errors
//! with `x-amzn-errortype`, and ConverseStream answered with `application/vnd.amazon.eventstream`
//! frames driven by scripted scenarios (see `scenario`).

pub mod catalog;
pub mod embeddings;
pub mod eventstream;
pub mod identity;
pub mod scenario;
pub mod sigv4;
mod server;
pub mod tls;

use serde_json::Value;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

pub use server::Stats;

/// What the emulator accepts and serves.
#[derive(Debug, Clone)]
pub struct Config {
    pub access_key: String,
    pub secret_key: String,
    pub session_token: Option<String>,
    pub bearer_token: Option<String>,
    pub foundation_models: Vec<Value>,
    pub inference_profiles: Vec<Value>,
    /// Items per page of the list operations (Bedrock pages them; tests shrink this).
    pub page_size: usize,
    /// Access keys refused with `ExpiredTokenException` (rotated or expired credentials).
    pub expired_access_keys: Vec<String>,
    /// IAM actions the caller lacks, like `bedrock:ListInferenceProfiles` (AccessDeniedException).
    pub denied_actions: Vec<String>,
    /// Foundation-model ids Bedrock serves only through an inference profile: invoking them by
    /// bare id fails with the on-demand-throughput ValidationException.
    pub profile_only_models: Vec<String>,
    /// The instance role IMDS reports; `None` makes the credential paths answer 404.
    pub imds_role: Option<String>,
    /// How long each list call takes to answer (lets tests overlap concurrent discoveries).
    pub list_delay: std::time::Duration,
    /// How long each InvokeModel call (embeddings) takes to answer (lets tests free a provider
    /// while a host thread is inside `bp_embed`).
    pub invoke_delay: std::time::Duration,
    /// Lifetime of credentials handed out by IMDS and STS.
    pub temporary_credentials_ttl: std::time::Duration,
    /// Accept requests with no signature at all, as a proxy that authenticates for its clients
    /// does (`AWS_BEDROCK_SKIP_AUTH` clients).
    pub allow_unsigned: bool,
    /// Serve HTTPS with `certs/server.pem` (127.0.0.1 and localhost, signed by `certs/ca.pem`,
    /// the test CA no system trusts) instead of plain HTTP.
    pub tls: bool,
    /// Over TLS, offer HTTP/2 too (ALPN `h2` first), as Bedrock's runtime endpoint does; the SDK
    /// offers it, so streams then share connections.
    pub http2: bool,
    /// The body of every ConverseStream answer, byte for byte (200, the event-stream content
    /// type), instead of a scripted one: the fuzz target for the event mapping sets it per input.
    pub canned_stream: Option<Vec<u8>>,
}

/// The test CA that signed the emulator's TLS certificate (PEM file).
pub fn test_ca_path() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("certs/ca.pem")
}

/// A CA that signed nothing the emulator serves (PEM file).
pub fn other_ca_path() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("certs/other-ca.pem")
}

pub const TEST_ACCESS_KEY: &str = "AKIAEMULATOR0000TEST";
pub const TEST_SECRET_KEY: &str = "emulator/secret/key/for/tests/only/0000";

impl Default for Config {
    fn default() -> Self {
        Config {
            access_key: TEST_ACCESS_KEY.into(),
            secret_key: TEST_SECRET_KEY.into(),
            session_token: None,
            bearer_token: None,
            foundation_models: catalog::default_foundation_models(),
            inference_profiles: catalog::default_inference_profiles(),
            page_size: 100,
            expired_access_keys: Vec::new(),
            denied_actions: Vec::new(),
            profile_only_models: Vec::new(),
            imds_role: None,
            list_delay: std::time::Duration::ZERO,
            invoke_delay: std::time::Duration::ZERO,
            temporary_credentials_ttl: std::time::Duration::from_secs(3600),
            allow_unsigned: false,
            tls: false,
            http2: false,
            canned_stream: None,
        }
    }
}

/// A running emulator on 127.0.0.1 with its own runtime thread; stops when dropped.
pub struct Emulator {
    addr: SocketAddr,
    state: Arc<server::State>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Emulator {
    pub fn start(config: Config) -> Emulator {
        Self::start_on(config, 0)
    }

    pub fn start_on(config: Config, port: u16) -> Emulator {
        let tls = config.tls.then(|| tls::acceptor(config.http2));
        let state = Arc::new(server::State { config: Mutex::new(config), stats: Mutex::new(Stats::default()), identity: Default::default(), throttles: Default::default(), errors_served: Default::default() });
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
        let thread_state = state.clone();
        let thread = std::thread::Builder::new()
            .name("bedrock-emulator".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .thread_name("bedrock-emulator-worker")
                    .enable_all()
                    .build()
                    .expect("emulator runtime");
                rt.block_on(async move {
                    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.expect("bind 127.0.0.1");
                    addr_tx.send(listener.local_addr().expect("local addr")).ok();
                    server::serve(listener, tls, thread_state, stop_rx).await;
                });
            })
            .expect("spawn emulator thread");
        let addr = addr_rx.recv().expect("emulator failed to start");
        Emulator { addr, state, stop: Some(stop_tx), thread: Some(thread) }
    }

    pub fn endpoint(&self) -> String {
        let scheme = if self.state.config.lock().unwrap().tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn stats(&self) -> Stats {
        self.state.stats.lock().unwrap().clone()
    }

    /// Changes what the emulator accepts or serves while it runs (e.g. rotated credentials).
    pub fn reconfigure(&self, change: impl FnOnce(&mut Config)) {
        change(&mut self.state.config.lock().unwrap());
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            stop.send(()).ok();
        }
        if let Some(t) = self.thread.take() {
            t.join().ok();
        }
    }
}
