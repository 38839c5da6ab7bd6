//! The control thread: a pthread created with libc (not `std::thread`, which would touch
//! thread-locals on the host thread) that builds the runtime and the AWS client, runs the
//! command loop, and on `Shutdown` stops the runtime and waits for its threads.

use crate::clients::{Clients, Settings};
use super::control::{Command, Control, Live, Registry, Reply};
use std::time::Instant;
use super::outbox::Outbox;
use super::pool::{self, Pool};
use super::shards::{self, Shards};
use crate::converse::stream;
use crate::discovery::Discovery;
use crate::error::{Error, Kind, Result};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

struct Args {
    settings: Settings,
    discovery: Arc<Discovery>,
    control: Arc<Control>,
    registry: Arc<Registry>,
    log: crate::log::ProviderAlive,
}

/// Starts the control thread. It holds `log` (the provider's hold on the log thread) until the
/// runtime has stopped, so log records from plugin threads keep going to the log thread for as
/// long as any can be made.
pub fn spawn(
    settings: Settings,
    discovery: Arc<Discovery>,
    control: Arc<Control>,
    registry: Arc<Registry>,
    log: crate::log::ProviderAlive,
) -> Result<libc::pthread_t> {
    let args = Box::new(Args { settings, discovery, control, registry, log });
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

/// Answers a `bp_discover` or `bp_embed` caller exactly once: with the result, or, if `free`
/// cut the work short, with "shutting down" from `Drop`.
struct Answer {
    /// Taken by the one answer given.
    reply: Option<Arc<Reply>>,
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
    }
}

fn run(args: Args) {
    let Args { settings, discovery, control, registry, log } = args;
    // SAFETY: naming the calling thread; the name is a NUL-terminated literal under 16 bytes.
    unsafe { libc::pthread_setname_np(libc::pthread_self(), c"bp-control".as_ptr()) };
    let (started, stopped) = (control.clone(), control.clone());
    // One worker for what is not a stream (discoveries, embeddings, the delivery pool's
    // threads, the trim timer); the streams run on the shards.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        // The delivery pool's threads, plus room for the SDK's own blocking work (DNS lookups).
        .max_blocking_threads(pool::MAX_THREADS + 64)
        .thread_keep_alive(Duration::from_secs(1))
        .thread_name("bp-runtime")
        .enable_all()
        .on_thread_start(move || {
            started.threads.started();
            shards::thread_started();
        })
        .on_thread_stop(move || {
            shards::thread_stopping();
            stopped.threads.stopping();
        })
        .build();
    let runtime = match runtime {
        Ok(rt) => rt,
        Err(e) => return control.set_ready(Err(Error::internal(format!("could not start the plugin's runtime: {e}")))),
    };
    let (started, stopped) = (control.clone(), control.clone());
    let hooks = shards::Hooks { started: Arc::new(move || started.threads.started()), stopping: Arc::new(move || stopped.threads.stopping()) };
    let shards = match Shards::start(settings.runtime_threads, settings.may_share_connections, &hooks) {
        Ok(shards) => shards,
        Err(e) => return control.set_ready(Err(Error::internal(e))),
    };
    let (idle_connection, delivery_gather) = (settings.idle_connection, settings.delivery_gather);
    // Passed down to every stream beside the clients (which know nothing of Converse).
    let profile_bases = Arc::new(crate::converse::profile_base::ProfileBases::new(settings.call_timeout));
    // The SDK's one-time statics are forced here: kept in the copy's own heap, given back at unload.
    let clients = Arc::new(super::copy_heap::in_region(|| runtime.block_on(Clients::new(settings))));
    let (kept, peak) = super::copy_heap::usage();
    crate::log::debug("provider", &format!("clients built: {} KiB kept in this copy's own heap (peak {} KiB), given back at unload", kept / 1024, peak / 1024));
    control.set_ready(Ok(()));

    let live = Arc::new(Live::default());
    runtime.spawn(super::trim::when_quiet(live.clone(), idle_connection));
    let pool = Pool::new(runtime.handle().clone(), delivery_gather);
    // Discoveries and embeddings in flight, aborted when `free` begins: they have nothing to
    // finish cleanly, and their Answer tells the caller they were cut short.
    let mut calls: Vec<tokio::task::AbortHandle> = Vec::new();
    let stop = loop {
        match control.next() {
            Command::Start { shared, request, callback } => {
                live.insert(shared.clone());
                let model_id = request.model.id.clone();
                let fault = request.fault;
                let outbox = Outbox::new(shared, callback, pool.clone(), registry.clone(), live.clone(), model_id, fault);
                let (clients, profile_bases) = (clients.clone(), profile_bases.clone());
                shards.spawn(|lane| stream::run(clients, profile_bases, lane, request, outbox));
            }
            Command::Discover { refresh, reply } => {
                let answer = Answer { reply: Some(reply), what: "discovery" };
                let (discovery, clients) = (discovery.clone(), clients.clone());
                calls.retain(|d| !d.is_finished());
                let task = runtime.spawn(async move {
                    answer.send(discovery.run(&clients, refresh).await.map(|v| v.to_string()));
                });
                calls.push(task.abort_handle());
            }
            Command::Embed { request, reply } => {
                let answer = Answer { reply: Some(reply), what: "embedding" };
                let clients = clients.clone();
                calls.retain(|d| !d.is_finished());
                let task = runtime.spawn(async move {
                    answer.send(crate::embed::run(clients, request).await.map(|v| v.to_string()));
                });
                calls.push(task.abort_handle());
            }
            Command::Cancel(shared) => shared.cancel.notify_one(),
            Command::AbortCalls => calls.drain(..).for_each(|d| d.abort()),
            Command::CancelAll(reply) => {
                let mut stopped = 0;
                for shared in live.all() {
                    if shared.request_cancel() {
                        stopped += 1;
                    }
                    shared.cancel.notify_one();
                }
                reply.set(stopped);
            }
            Command::Shutdown { when_idle } => break when_idle,
        }
    };
    if stop {
        // `free` returned BUSY: a host callback is still blocked. Finish the stop once it
        // returns and every stream has delivered its terminal event.
        registry.wait_idle(None);
    }
    drop(clients);
    drop(discovery);
    pool.close();
    let deadline = control.stop_deadline();
    shards.stop(deadline);
    runtime.shutdown_timeout(deadline.saturating_duration_since(Instant::now()));
    control.threads.wait_gone(deadline);
    let stranded = pool.left_behind();
    if stranded > 0 {
        crate::log::error("provider", &format!("{stranded} streams were left undelivered at shutdown (a plugin bug)"));
    }
    if !log.release(deadline) {
        control.threads.log_thread_stuck();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::converse::profile_base::ProfileBases;
    use crate::converse::request::StreamRequest;

    /// The size of what `f` would return, without calling it.
    fn size_of_output<A, B, C, D, F>(_: impl FnOnce(A, B, C, D) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    #[test]
    fn an_open_streams_task_stays_small() {
        // Every open stream holds its task for its whole life: thousands of them at a model's
        // pace. Sending (the SDK's future, ~12 KB) and the request are boxed and freed once the
        // response starts; inline they made the task 8.4 KB. The SDK's item for each event is
        // used up where it is polled: kept across the loop's awaits, it was written into the task
        // and copied back out for every token, and made the task 2,568 bytes (2,088 without).
        let lane = || crate::converse::connecting::Lane { client: 0, connecting: Arc::new(crate::converse::connecting::Connecting::new(true)) };
        let task = size_of_output(|c: Arc<Clients>, p: Arc<ProfileBases>, r: Box<StreamRequest>, o: Arc<Outbox>| stream::run(c, p, lane(), r, o));
        assert!(task <= 2560, "a stream's task is {task} bytes: something large is held across its awaits (box what only its start needs; use up what a poll returns before awaiting)");
    }
}
