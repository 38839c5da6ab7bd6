//! The threads that run the streams: each a single-threaded runtime of its own, with its own
//! HTTPS client (so its own HTTP/2 connection), and every stream kept on the one it started on.
//!
//! On tokio's shared multi-threaded runtime a token crossed threads on its way: the connection's
//! task decoded a frame on one worker and woke the stream's task, which another worker could
//! steal, and both took the connection's lock (found contended in the profile). The SDK consumed
//! directly used 14–25% less CPU per stream at 1,600–3,200 real-pace streams this way
//! (`docs/performance.md`, "One runtime per stream thread"), and a wake-up stays on the thread
//! that made it. A stream goes to the shard with the fewest open and stays there: with thousands
//! of streams at a model's pace the counts even the work out, though a shard whose streams all
//! turn busy at once hands none to another.

use crate::converse::connecting::{Connecting, Lane};
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::runtime::{Handle, Runtime};
use tokio::sync::oneshot;

/// The provider's count of its live threads: every shard thread (its own and its blocking
/// pool's) is counted in as it starts and out as it stops.
#[derive(Clone)]
pub struct Hooks {
    pub started: Arc<dyn Fn() + Send + Sync>,
    pub stopping: Arc<dyn Fn() + Send + Sync>,
}

/// What every runtime thread of the provider does first and last (the main runtime's too).
pub fn thread_started() {
    super::tls_key::thread_started();
    super::scratch::thread_started();
}

pub fn thread_stopping() {
    super::scratch::thread_stopping();
    super::tls_key::thread_stopping();
}

struct Shard {
    handle: Handle,
    /// Streams running on this shard.
    open: Arc<AtomicUsize>,
    /// Its client's connection, as its streams found it.
    connecting: Arc<Connecting>,
    /// Sends the deadline the shard's runtime has to stop by.
    stop: Mutex<Option<oneshot::Sender<Instant>>>,
}

pub struct Shards {
    shards: Vec<Shard>,
}

/// Counts a stream out of its shard when its task ends, or is dropped at shutdown.
struct Open {
    open: Arc<AtomicUsize>,
    connecting: Arc<Connecting>,
}

impl Drop for Open {
    fn drop(&mut self) {
        // The last stream gone: the pool closes the idle connection on its timer, so the next
        // stream opens one first.
        if self.open.fetch_sub(1, Ordering::Relaxed) == 1 {
            self.connecting.cooled();
        }
    }
}

impl Shards {
    /// Starts `n` shards. Called on the control thread (a plugin thread: spawning std threads
    /// here touches no host thread). `hooks.started` runs on the caller for each shard's own
    /// thread before it exists, so a stop that follows at once still waits for it.
    /// `share_connection`: the clients may speak HTTP/2, so a shard's streams share a connection
    /// and wait for its first to open it (`converse/connecting.rs`).
    pub fn start(n: usize, share_connection: bool, hooks: &Hooks) -> Result<Shards, String> {
        let mut shards = Vec::with_capacity(n);
        for i in 0..n {
            let (started, stopping) = (hooks.started.clone(), hooks.stopping.clone());
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                // Its blocking pool: the SDK's DNS lookups, a credential file read.
                .max_blocking_threads(16)
                .thread_keep_alive(std::time::Duration::from_secs(1))
                .thread_name("bp-stream-io")
                .on_thread_start(move || {
                    started();
                    thread_started();
                })
                .on_thread_stop(move || {
                    thread_stopping();
                    stopping();
                })
                .build()
                .map_err(|e| format!("could not start the plugin's runtime: {e}"))?;
            let (tx, rx) = oneshot::channel();
            let handle = runtime.handle().clone();
            (hooks.started)();
            let stopping = hooks.stopping.clone();
            let spawned = std::thread::Builder::new().name("bp-stream".into()).spawn(move || drive(runtime, rx, &*stopping));
            if let Err(e) = spawned {
                (hooks.stopping)();
                return Err(format!("could not start runtime thread {i}: {e}"));
            }
            shards.push(Shard { handle, open: Arc::default(), connecting: Arc::new(Connecting::new(share_connection)), stop: Mutex::new(Some(tx)) });
        }
        Ok(Shards { shards })
    }

    /// Runs `task` on the shard with the fewest open streams, in its lane.
    pub fn spawn<F>(&self, task: impl FnOnce(Lane) -> F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let Some((i, shard)) = self.shards.iter().enumerate().min_by_key(|(_, s)| s.open.load(Ordering::Relaxed)) else {
            return;
        };
        shard.open.fetch_add(1, Ordering::Relaxed);
        let open = Open { open: shard.open.clone(), connecting: shard.connecting.clone() };
        let future = task(Lane { client: i, connecting: shard.connecting.clone() });
        shard.handle.spawn(async move {
            let _open = open;
            future.await
        });
    }

    /// Tells every shard to stop by `deadline`: tasks still there are dropped (a stream's own
    /// guard then ends it), and the shard's blocking threads are waited for up to the deadline.
    /// The threads are not joined here: the provider's thread bookkeeping waits for them.
    pub fn stop(&self, deadline: Instant) {
        for shard in &self.shards {
            if let Some(tx) = shard.stop.lock().unwrap_or_else(|p| p.into_inner()).take() {
                let _ = tx.send(deadline);
            }
        }
    }
}

/// A shard's own thread: runs its runtime until told to stop, then stops it.
fn drive(runtime: Runtime, stop: oneshot::Receiver<Instant>, stopping: &(dyn Fn() + Send + Sync)) {
    thread_started();
    // A dropped sender (the control thread unwinding) stops the shard as a stop would, now.
    let deadline = runtime.block_on(stop).unwrap_or_else(|_| Instant::now());
    runtime.shutdown_timeout(deadline.saturating_duration_since(Instant::now()));
    thread_stopping();
    stopping();
}
