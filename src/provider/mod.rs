//! The provider's lifecycle. Exported functions run on host threads, where the plugin must not
//! touch tokio, spawn std threads or leave thread-exit destructors (they would keep the image
//! mapped, or crash the host after `dlclose`; see shared/PLUGIN-NOTES.md). So the host side only
//! parses input and hands commands to a plugin-owned pthread through a `Mutex` + `Condvar`; that
//! thread owns the runtime and the AWS clients, and `free` joins it.

mod control;
pub mod copy_heap;
mod delivery;
pub mod mailbox;
mod mailbox_state;
mod outbox;
mod outbox_state;
#[cfg(test)]
mod outbox_state_tests;
mod pin;
mod pool;
mod run_queue;
mod runtime_thread;
mod scratch;
mod shards;
mod shown;
mod sync;
mod tls_key;
mod trim;

use crate::auth::Auth;
use crate::config::Config;
use crate::converse::request::{self, StreamRequest};
use crate::discovery::{self, select, Discovery};
use crate::error::{Error, Kind, Result};
use crate::model::Model;
use crate::region::{self, RegionSource};
pub use control::{Callback, EventFn, EventsFn, StreamShared};
pub use delivery::{in_callback, in_runtime_callback};
pub use control::Inside;
use control::{lock, Command, Control, Gate, Registry, Reply};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What `free` may take beyond its drain, in every case (`BP_FREE_GRACE_MS` in the header):
/// `CANCEL_GRACE` for cancelled streams to deliver their end and for host threads inside a
/// discovery or embedding to leave, then the rest for the runtime's threads to exit.
pub const FREE_GRACE: Duration = Duration::from_millis(2000);
const CANCEL_GRACE: Duration = Duration::from_millis(1000);

pub struct Provider {
    gate: Gate,
    control: Arc<Control>,
    registry: Arc<Registry>,
    models: Vec<Arc<Model>>,
    discovery: Arc<Discovery>,
    region: String,
    embed_concurrency: usize,
    /// The guardrail of every stream that names none (the init config's `guardrail`).
    guardrail: Option<aws_sdk_bedrockruntime::types::GuardrailStreamConfiguration>,
    /// The control thread, until `free` joins or detaches it.
    thread: Mutex<Option<libc::pthread_t>>,
    next_id: AtomicU64,
    /// Keeps the copy's own heap (where the clients' one-time state lives) while this provider may use it.
    _heap: copy_heap::Hold,
}

/// How `free` ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FreeOutcome {
    /// Every stream finished on its own; everything is released.
    Drained,
    /// Some streams were still running at the deadline and were cancelled; everything is released.
    CancelledSome,
    /// Something could not be stopped in time (a host callback that has not returned, a thread
    /// that did not exit): the image pinned itself; the stop completes when the callback returns.
    Pinned,
    /// Another `free` of this provider is under way.
    AlreadyFreeing,
}

/// What `free` found, and whether the provider's memory may go (not while a host thread is
/// still inside one of its calls).
pub struct Freed {
    pub outcome: FreeOutcome,
    pub release: bool,
}

impl Provider {
    pub fn new(config: Config) -> Result<Provider> {
        let log = crate::log::ProviderAlive::new();
        let env = |name: &str| std::env::var(name).ok();
        let auth = Auth::detect(config.provider.api_key.as_ref(), env);
        let base_url = config.provider.base_url.clone();
        if auth.uses_api_key() {
            refuse_cleartext_key(&auth, base_url.as_deref(), env)?;
        }
        let bundles = crate::tls::bundles(config.provider.ca_bundle.as_deref(), env)?;
        let http_version = crate::config::HttpVersion::resolve(config.provider.http_version, env);
        let http_client = crate::http_client::build(&bundles, config.provider.idle_connection, http_version)?;
        let stream_http_clients = (0..config.provider.runtime_threads)
            .map(|_| crate::http_client::build(&bundles, config.provider.idle_connection, http_version))
            .collect::<Result<Vec<_>>>()?;
        let url_region = base_url.as_deref().and_then(region::from_base_url);
        let (runtime_region, region_source) = region::resolve(
            &[
                (config.provider.region.as_deref(), RegionSource::ProviderRegion),
                (url_region.as_deref(), RegionSource::BaseUrl),
                (config.discovery.region.as_deref(), RegionSource::DiscoveryRegion),
            ],
            env,
        );
        let discovery_region = discovery::region(&config, env);
        // AWS serves the control plane at its own hostname; anything else (an emulator, a proxy)
        // is taken to serve both APIs at the one address.
        let control_endpoint = base_url.clone().filter(|u| !region::is_aws_endpoint(u));
        crate::log::info("provider", &format!(
            "provider starting: region {runtime_region} (from {}); discovery region {} (from {}); auth: {}",
            region_source.label(),
            discovery_region.0,
            discovery_region.1.label(),
            auth.describe()
        ));
        for b in &bundles {
            crate::log::info("provider", &format!("trusting the CAs in {} ({}) besides the platform's", b.path, b.source));
        }
        if http_version == crate::config::HttpVersion::Http1 {
            crate::log::info("provider", "HTTP/1.1 only (provider.httpVersion or AWS_BEDROCK_FORCE_HTTP1): one connection per open stream");
        }
        let discovery = Arc::new(Discovery::new(&config, &auth, discovery_region.clone(), control_endpoint.clone()));
        let settings = crate::clients::Settings {
            runtime_region: runtime_region.clone(),
            discovery_region: discovery_region.0,
            runtime_endpoint: base_url,
            control_endpoint,
            auth,
            http_client,
            stream_http_clients,
            may_share_connections: http_version != crate::config::HttpVersion::Http1,
            call_timeout: Duration::from_secs(config.discovery.call_timeout_secs),
            idle_connection: config.provider.idle_connection,
            runtime_threads: config.provider.runtime_threads,
            delivery_gather: config.provider.delivery_gather,
        };
        tls_key::room_for_threads().map_err(Error::internal)?;
        let heap = copy_heap::Hold::new();
        let control = Arc::new(Control::default());
        let registry = Arc::new(Registry::default());
        let thread = runtime_thread::spawn(settings, discovery.clone(), control.clone(), registry.clone(), log)?;
        if let Err(e) = control.wait_ready() {
            control.push(Command::Shutdown { when_idle: false });
            // SAFETY: `thread` was created joinable by `runtime_thread::spawn` and is joined once.
            unsafe { libc::pthread_join(thread, std::ptr::null_mut()) };
            return Err(e);
        }
        Ok(Provider {
            gate: Gate::default(),
            control,
            registry,
            models: config.provider.models,
            discovery,
            region: runtime_region,
            embed_concurrency: config.embed_concurrency,
            guardrail: config.guardrail,
            thread: Mutex::new(Some(thread)),
            next_id: AtomicU64::new(1),
            _heap: heap,
        })
    }

    /// Counts a host thread into an exported call on this provider until the guard drops;
    /// `SHUTTING_DOWN` once `free` has begun.
    pub fn enter(&self) -> Result<Inside<'_>> {
        self.gate.enter()
    }

    /// A configured model, else one found by the last discovery.
    pub fn lookup(&self, id: &str) -> Option<Arc<Model>> {
        self.models.iter().find(|m| m.id == id).cloned().or_else(|| self.discovery.lookup(id))
    }

    pub fn parse_request(&self, text: &str) -> Result<StreamRequest> {
        let mut request = request::parse(text, |id| self.lookup(id))?;
        if request.guardrail.is_none() {
            request.guardrail = self.guardrail.clone();
        }
        request.fallback_model_id = select::fallback_profile(&request.model.id, &self.region, self.discovery.latest().as_deref());
        Ok(request)
    }

    /// Blocks the calling host thread until the runtime has the answer (`bp_discover`).
    pub fn discover(&self, refresh: bool) -> Result<String> {
        let reply = Arc::new(Reply::default());
        self.registry.admit(&self.control, Command::Discover { refresh, reply: reply.clone() })?;
        reply.wait()
    }

    /// Blocks the calling host thread until every text is embedded (`bp_embed`).
    pub fn embed(&self, text: &str) -> Result<String> {
        let mut request = crate::embed::parse(text)?;
        request.concurrency = self.embed_concurrency;
        let reply = Arc::new(Reply::default());
        self.registry.admit(&self.control, Command::Embed { request, reply: reply.clone() })?;
        reply.wait()
    }

    /// Queues the stream and returns at once; events arrive on a plugin thread.
    pub fn start(&self, request: StreamRequest, callback: Callback) -> Result<StreamHandle> {
        let shared = Arc::new(StreamShared::new(self.next_id.fetch_add(1, Ordering::Relaxed)));
        self.registry.admit(&self.control, Command::Start { shared: shared.clone(), request: Box::new(request), callback })?;
        Ok(StreamHandle { shared, control: self.control.clone() })
    }

    /// Refuses new calls, cuts discoveries and embeddings short, waits up to `drain` for
    /// streams to end (terminal callback included), cancels the rest, stops the runtime and
    /// joins its threads — returning within `drain` + `FREE_GRACE` whatever the host's callbacks
    /// do. When a callback is still blocked at the end, the stop is left to the control thread
    /// (it completes once every stream has ended) and the image pins itself.
    pub fn free(&self, drain: Duration) -> Freed {
        let drain_end = Instant::now() + drain;
        let (cancel_end, stop_end) = (drain_end + CANCEL_GRACE, drain_end + FREE_GRACE);
        if !self.gate.close() {
            return Freed { outcome: FreeOutcome::AlreadyFreeing, release: false };
        }
        self.registry.close();
        self.control.push(Command::AbortCalls);
        let mut cancelled = 0;
        let mut idle = self.registry.wait_idle(Some(drain_end));
        if !idle {
            let reply = Arc::new(Reply::<usize>::default());
            self.control.push(Command::CancelAll(reply.clone()));
            cancelled = reply.wait_until(Some(cancel_end)).unwrap_or(1);
            idle = self.registry.wait_idle(Some(cancel_end));
        }
        let release = self.gate.wait_empty(cancel_end);
        let thread = lock(&self.thread).take();
        let stopped = if idle {
            self.control.stop_by(stop_end);
            self.control.push(Command::Shutdown { when_idle: false });
            if let Some(thread) = thread {
                // SAFETY: joinable thread created by `runtime_thread::spawn`, joined exactly once.
                unsafe { libc::pthread_join(thread, std::ptr::null_mut()) };
            }
            self.control.threads.wait_gone(Instant::now()) == 0
        } else {
            self.control.push(Command::Shutdown { when_idle: true });
            if let Some(thread) = thread {
                // SAFETY: the control thread's handle, taken above; nobody joins it after this.
                unsafe { libc::pthread_detach(thread) };
            }
            false
        };
        let outcome = if !stopped || !release {
            pin::pin_image();
            FreeOutcome::Pinned
        } else if cancelled > 0 {
            FreeOutcome::CancelledSome
        } else {
            FreeOutcome::Drained
        };
        Freed { outcome, release }
    }
}

/// A Bedrock API key is a bearer secret: it never goes to a plain-http endpoint that is not this
/// machine, wherever that endpoint was set.
fn refuse_cleartext_key(auth: &Auth, base_url: Option<&str>, env: impl Fn(&str) -> Option<String>) -> Result<()> {
    let endpoints = [
        ("provider.baseUrl", base_url.map(str::to_string)),
        ("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", env("AWS_ENDPOINT_URL_BEDROCK_RUNTIME")),
        ("AWS_ENDPOINT_URL_BEDROCK", env("AWS_ENDPOINT_URL_BEDROCK")),
        ("AWS_ENDPOINT_URL", env("AWS_ENDPOINT_URL")),
    ];
    match endpoints.into_iter().find_map(|(setting, url)| url.filter(|u| region::is_cleartext_remote(u)).map(|u| (setting, u))) {
        Some((setting, url)) => Err(Error::config(format!(
            "{setting} is {url}: plain http to another host, and a Bedrock API key ({}) is sent only over https or to this machine",
            auth.origin()
        ))),
        None => Ok(()),
    }
}

/// Rejects the calls a provider cannot take once `free` has begun.
pub fn shutting_down() -> Error {
    Error::new(Kind::ShuttingDown, "the provider is shutting down and accepts no new streams")
}

/// The host's handle on one stream; holds no tokio object, so it may be dropped on any thread.
pub struct StreamHandle {
    shared: Arc<StreamShared>,
    control: Arc<Control>,
}

impl StreamHandle {
    /// Idempotent; a no-op once the terminal event was delivered.
    pub fn cancel(&self) {
        if self.shared.request_cancel() {
            self.control.push(Command::Cancel(self.shared.clone()));
        }
    }
}
