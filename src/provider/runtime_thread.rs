//! The control thread: a pthread created with libc (not `std::thread`, which would touch
//! thread-locals on the host thread) that builds the runtime and the AWS client, runs the
//! command loop, and on `Shutdown` stops the runtime and waits for its threads.

use crate::clients::{Clients, Settings};
use super::control::{Command, Control, Live, Registry, Reply};
use super::outbox::Outbox;
use super::pool::{self, Pool};
use crate::converse::stream;
use crate::discovery::Discovery;
use crate::error::{Error, Kind, Result};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
/// How long `shutdown_timeout` waits for runtime threads.
const RUNTIME_STOP: Duration = Duration::from_secs(5);

struct Args {
    settings: Settings,
    discovery: Arc<Discovery>,
    control: Arc<Control>,
    registry: Arc<Registry>,
}

pub fn spawn(settings: Settings, discovery: Arc<Discovery>, control: Arc<Control>, registry: Arc<Registry>) -> Result<libc::pthread_t> {
    let args = Box::new(Args { settings, discovery, control, registry });
    let raw = Box::into_raw(args);
    let mut thread: libc::pthread_t = 0;
    // SAFETY: `entry` takes ownership of `raw` exactly once; on failure we take it back.
    let rc = unsafe { libc::pthread_create(&mut thread, std::ptr::null(), entry, raw.cast()) };
    if rc != 0 {
        drop(unsafe { Box::from_raw(raw) });
        return Err(Error::internal(format!("could not create the plugin's control thread (pthread_create: {rc})")));
    }
    Ok(thread)
}

extern "C" fn entry(arg: *mut libc::c_void) -> *mut libc::c_void {
    // SAFETY: `arg` is the `Box<Args>` leaked by `spawn`.
    let args = unsafe { Box::from_raw(arg.cast::<Args>()) };
    let control = args.control.clone();
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| run(*args)));
    if outcome.is_err() {
        control.set_ready(Err(Error::internal("the plugin's control thread panicked during start-up")));
    }
    std::ptr::null_mut()
}

/// Answers a `bp_discover` or `bp_embed` caller exactly once: with the result, or, if the
/// runtime shuts down before the work finished, with "shutting down" from `Drop`.
struct Answer {
    /// Taken by the one answer given.
    reply: Option<Arc<Reply>>,
    registry: Arc<Registry>,
    what: &'static str,
}

impl Answer {
    fn send(mut self, result: Result<String>) {
        if let Some(reply) = self.reply.take() {
            reply.set(result);
        }
    }
}

impl Drop for Answer {
    fn drop(&mut self) {
        if let Some(reply) = self.reply.take() {
            reply.set(Err(Error::new(Kind::ShuttingDown, format!("{} was cut short: the provider is shutting down", self.what))));
        }
        self.registry.finished();
    }
}

fn run(args: Args) {
    let Args { settings, discovery, control, registry } = args;
    // SAFETY: naming the calling thread; the name is a NUL-terminated literal under 16 bytes.
    unsafe { libc::pthread_setname_np(libc::pthread_self(), c"bp-control".as_ptr()) };
    let (started, stopped) = (control.clone(), control.clone());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        // The delivery pool's threads, plus room for the SDK's own blocking work (DNS lookups).
        .max_blocking_threads(pool::MAX_THREADS + 64)
        .thread_keep_alive(Duration::from_secs(1))
        .thread_name("bp-runtime")
        .enable_all()
        .on_thread_start(move || {
            started.live_threads.fetch_add(1, Ordering::AcqRel);
        })
        .on_thread_stop(move || {
            stopped.live_threads.fetch_sub(1, Ordering::AcqRel);
        })
        .build();
    let runtime = match runtime {
        Ok(rt) => rt,
        Err(e) => return control.set_ready(Err(Error::internal(format!("could not start the plugin's runtime: {e}")))),
    };
    let clients = Arc::new(runtime.block_on(Clients::new(settings)));
    control.set_ready(Ok(()));

    let live = Arc::new(Live::default());
    let pool = Pool::new(runtime.handle().clone());
    // Discoveries and embeddings in flight, aborted when `free` gives up waiting: they have
    // nothing to finish cleanly, and their Answer tells the caller they were cut short.
    let mut calls: Vec<tokio::task::AbortHandle> = Vec::new();
    loop {
        match control.next() {
            Command::Start { shared, request, callback } => {
                live.insert(shared.clone());
                let model_id = request.model.id.clone();
                let outbox = Outbox::new(shared, callback, pool.clone(), registry.clone(), live.clone(), model_id);
                runtime.spawn(stream::run(clients.clone(), request, outbox));
            }
            Command::Discover { refresh, reply } => {
                let answer = Answer { reply: Some(reply), registry: registry.clone(), what: "discovery" };
                let (discovery, clients) = (discovery.clone(), clients.clone());
                calls.retain(|d| !d.is_finished());
                let task = runtime.spawn(async move {
                    answer.send(discovery.run(&clients, refresh).await.map(|v| v.to_string()));
                });
                calls.push(task.abort_handle());
            }
            Command::Embed { request, reply } => {
                let answer = Answer { reply: Some(reply), registry: registry.clone(), what: "embedding" };
                let clients = clients.clone();
                calls.retain(|d| !d.is_finished());
                let task = runtime.spawn(async move {
                    answer.send(crate::embed::run(clients, request).await.map(|v| v.to_string()));
                });
                calls.push(task.abort_handle());
            }
            Command::Cancel(shared) => shared.cancel.notify_one(),
            Command::CancelAll => {
                for shared in live.all() {
                    shared.request_cancel();
                    shared.cancel.notify_one();
                }
                calls.drain(..).for_each(|d| d.abort());
            }
            Command::Shutdown => break,
        }
    }
    drop(clients);
    drop(discovery);
    pool.close();
    runtime.shutdown_timeout(RUNTIME_STOP);
    pool.drain_here();
}
