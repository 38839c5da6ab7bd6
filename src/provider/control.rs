//! What host threads share with the plugin's control thread: a command queue, the in-flight
//! registry that `free` drains, and the per-stream state a host handle may see. Host threads
//! touch only std `Mutex`/`Condvar` and atomics here (and create or drop a tokio `Notify`, which
//! uses no thread-locals): they are safe on host threads.

use crate::converse::request::StreamRequest;
use crate::error::Result;
use std::collections::{HashMap, VecDeque};
use std::os::raw::c_void;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

pub use bedrock_plugin_abi::{EventFn, EventsFn};

/// The host's callback and its `user_data`, moved to the stream's outbox: one call per event
/// (`bp_stream_start`), or one call per delivery pass with every event it has (1.5's
/// `bp_stream_start_batched`, for hosts where each call is a costly thread hop).
pub enum Callback {
    Each { f: EventFn, user_data: *mut c_void },
    /// One call per event on the runtime thread that decoded it (ABI 1.8's
    /// `bp_stream_start_inline`): the host promised a callback that returns at once.
    Inline { f: EventFn, user_data: *mut c_void },
    Batched { f: EventsFn, user_data: *mut c_void },
    /// Filed into a mailbox under the host's tag (ABI 1.7): no host code runs on plugin threads.
    Mailbox { mailbox: Arc<super::mailbox::Mailbox>, tag: u64 },
}

// SAFETY: the ABI contract makes the host responsible for `user_data` being usable from the
// plugin's threads (delivery or, inline, runtime); the plugin calls `f` from one thread at a time
// per stream.
unsafe impl Send for Callback {}

/// What a host handle, the control thread and the stream's task share about one stream.
pub struct StreamShared {
    pub id: u64,
    cancel_requested: AtomicBool,
    finished: AtomicBool,
    /// Wakes the stream's task when it waits on the network or for room. Notified only on plugin
    /// threads (waking a tokio task touches tokio's thread-locals); host threads go through
    /// `Command::Cancel`.
    pub cancel: Notify,
}

impl StreamShared {
    pub fn new(id: u64) -> StreamShared {
        StreamShared { id, cancel_requested: AtomicBool::new(false), finished: AtomicBool::new(false), cancel: Notify::new() }
    }

    /// Marks the stream cancelled; false when it had already finished or been cancelled.
    pub fn request_cancel(&self) -> bool {
        !self.finished.load(Ordering::Acquire) && !self.cancel_requested.swap(true, Ordering::AcqRel)
    }

    pub fn cancel_requested(&self) -> bool {
        self.cancel_requested.load(Ordering::Acquire)
    }

    pub fn mark_finished(&self) {
        self.finished.store(true, Ordering::Release);
    }
}

/// The streams whose terminal event is not decided yet, for `CancelAll`.
#[derive(Default)]
pub struct Live(Mutex<HashMap<u64, Arc<StreamShared>>>);

impl Live {
    pub fn insert(&self, shared: Arc<StreamShared>) {
        lock(&self.0).insert(shared.id, shared);
    }

    pub fn remove(&self, id: u64) {
        lock(&self.0).remove(&id);
    }

    pub fn all(&self) -> Vec<Arc<StreamShared>> {
        lock(&self.0).values().cloned().collect()
    }

    pub fn is_empty(&self) -> bool {
        lock(&self.0).is_empty()
    }
}

/// Where a host thread (`bp_discover`, `bp_embed`, `free`) waits for an answer computed on the
/// plugin's side.
pub struct Reply<T = Result<String>> {
    value: Mutex<Option<T>>,
    ready: Condvar,
}

impl<T> Default for Reply<T> {
    fn default() -> Self {
        Reply { value: Mutex::new(None), ready: Condvar::new() }
    }
}

impl<T> Reply<T> {
    pub fn set(&self, value: T) {
        *lock(&self.value) = Some(value);
        self.ready.notify_all();
    }

    pub fn wait(&self) -> T {
        self.wait_until(None).expect("no deadline")
    }

    /// The answer, if it comes by `deadline` (None: as long as it takes).
    pub fn wait_until(&self, deadline: Option<Instant>) -> Option<T> {
        wait_while_until(&self.ready, lock(&self.value), deadline, |v| v.is_none()).0.take()
    }
}

pub enum Command {
    Start { shared: Arc<StreamShared>, request: Box<StreamRequest>, callback: Callback },
    Discover { refresh: bool, reply: Arc<Reply> },
    Embed { request: crate::embed::EmbedRequest, reply: Arc<Reply> },
    Cancel(Arc<StreamShared>),
    /// `free`: cut every discovery and embedding in flight short.
    AbortCalls,
    /// `free`'s drain ran out: cancel every stream not yet ended; the reply counts those this
    /// cancel stopped (a stream the host had already cancelled is not counted).
    CancelAll(Arc<Reply<usize>>),
    /// Stop the runtime and leave; `when_idle`: first wait for every stream to end, however long
    /// (the host's `free` has returned BUSY and a callback is still blocked).
    Shutdown { when_idle: bool },
}

pub use super::sync::lock;
use super::sync::wait_while_until;

#[derive(Default)]
pub struct Control {
    queue: Mutex<VecDeque<Command>>,
    wake: Condvar,
    ready: Mutex<Option<Result<()>>>,
    ready_cv: Condvar,
    /// The runtime's threads (workers and blocking ones).
    pub threads: Threads,
    /// When the runtime must have stopped, set by `free` (a stop `free` no longer waits for
    /// gets `LATE_STOP`).
    stop_by: Mutex<Option<Instant>>,
}

/// How long a stop that finishes after `free` returned BUSY gives the runtime's threads.
const LATE_STOP: Duration = Duration::from_secs(5);

impl Control {
    pub fn push(&self, command: Command) {
        lock(&self.queue).push_back(command);
        self.wake.notify_one();
    }

    /// Blocks the control thread until a command arrives.
    pub fn next(&self) -> Command {
        let mut q = lock(&self.queue);
        loop {
            if let Some(c) = q.pop_front() {
                return c;
            }
            q = self.wake.wait(q).unwrap_or_else(|p| p.into_inner());
        }
    }

    pub fn stop_by(&self, deadline: Instant) {
        *lock(&self.stop_by) = Some(deadline);
    }

    pub fn stop_deadline(&self) -> Instant {
        lock(&self.stop_by).take().unwrap_or_else(|| Instant::now() + LATE_STOP)
    }

    pub fn set_ready(&self, result: Result<()>) {
        let mut r = lock(&self.ready);
        if r.is_none() {
            *r = Some(result);
        }
        self.ready_cv.notify_all();
    }

    pub fn wait_ready(&self) -> Result<()> {
        let mut r = lock(&self.ready);
        loop {
            if let Some(result) = r.as_ref() {
                return result.clone();
            }
            r = self.ready_cv.wait(r).unwrap_or_else(|p| p.into_inner());
        }
    }

}

/// The runtime's threads, followed until they have really exited: tokio's stop hook runs
/// before a thread's thread-local destructors, which are code in this image too, so a thread
/// counts as gone only once the kernel has dropped it from `/proc/self/task`.
#[derive(Default)]
pub struct Threads {
    running: AtomicUsize,
    /// Threads past their stop hook that may still be running destructors.
    exiting: Mutex<Vec<libc::pid_t>>,
    /// The log thread was inside the host's log callback past the stop's deadline.
    log_stuck: AtomicBool,
}

fn exists(tid: libc::pid_t) -> bool {
    std::path::Path::new(&format!("/proc/self/task/{tid}")).exists()
}

impl Threads {
    pub fn started(&self) {
        self.running.fetch_add(1, Ordering::AcqRel);
    }

    /// On the stopping thread.
    pub fn stopping(&self) {
        // SAFETY: gettid has no preconditions.
        let tid = unsafe { libc::gettid() };
        let mut exiting = lock(&self.exiting);
        exiting.retain(|t| exists(*t));
        exiting.push(tid);
        drop(exiting);
        self.running.fetch_sub(1, Ordering::AcqRel);
    }

    pub fn log_thread_stuck(&self) {
        self.log_stuck.store(true, Ordering::Release);
    }

    /// Waits until every thread has exited, by `deadline`; the number still there (a log
    /// thread left in the host's callback counts).
    pub fn wait_gone(&self, deadline: Instant) -> usize {
        loop {
            let left = self.running.load(Ordering::Acquire)
                + lock(&self.exiting).iter().filter(|t| exists(**t)).count()
                + usize::from(self.log_stuck.load(Ordering::Acquire));
            if left == 0 || Instant::now() >= deadline {
                return left;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

struct Admission {
    accepting: bool,
    /// Streams admitted whose terminal callback has not returned yet.
    streams: usize,
}

/// Admission of streams and calls, and the count of streams `free` drains: a stream counts
/// from admission until its terminal callback has returned.
pub struct Registry {
    state: Mutex<Admission>,
    idle: Condvar,
}

impl Default for Registry {
    fn default() -> Self {
        Registry { state: Mutex::new(Admission { accepting: true, streams: 0 }), idle: Condvar::new() }
    }
}

impl Registry {
    /// Admits a stream, a discovery or an embedding and queues it under one lock, so a
    /// concurrent `close` can never miss it: whatever was admitted is queued before the
    /// `AbortCalls` / `Shutdown` that `free` queues after closing.
    pub fn admit(&self, control: &Control, command: Command) -> Result<()> {
        let mut s = lock(&self.state);
        if !s.accepting {
            return Err(super::shutting_down());
        }
        if matches!(command, Command::Start { .. }) {
            s.streams += 1;
        }
        control.push(command);
        Ok(())
    }

    pub fn close(&self) {
        lock(&self.state).accepting = false;
    }

    /// A stream's terminal callback returned.
    pub fn finished(&self) {
        let mut s = lock(&self.state);
        s.streams = s.streams.saturating_sub(1);
        if s.streams == 0 {
            self.idle.notify_all();
        }
    }

    /// True when no stream is in flight by `deadline` (None: wait as long as it takes).
    pub fn wait_idle(&self, deadline: Option<Instant>) -> bool {
        wait_while_until(&self.idle, lock(&self.state), deadline, |s| s.streams > 0).1
    }
}

/// Host threads inside an exported function on one provider. `free` closes the gate (later
/// calls get `SHUTTING_DOWN`) and waits for it to empty before the provider's memory goes.
#[derive(Default)]
pub struct Gate {
    state: Mutex<GateState>,
    empty: Condvar,
}

#[derive(Default)]
struct GateState {
    closed: bool,
    inside: usize,
}

/// One host thread inside; leaves on drop.
pub struct Inside<'a>(&'a Gate);

impl Drop for Inside<'_> {
    fn drop(&mut self) {
        let mut s = lock(&self.0.state);
        s.inside -= 1;
        if s.inside == 0 {
            self.0.empty.notify_all();
        }
    }
}

impl Gate {
    pub fn enter(&self) -> Result<Inside<'_>> {
        let mut s = lock(&self.state);
        if s.closed {
            return Err(super::shutting_down());
        }
        s.inside += 1;
        Ok(Inside(self))
    }

    /// Refuses every later `enter`; false if it was already closed (a second `free`).
    pub fn close(&self) -> bool {
        !std::mem::replace(&mut lock(&self.state).closed, true)
    }

    /// True once no host thread is inside, by `deadline`.
    pub fn wait_empty(&self, deadline: Instant) -> bool {
        wait_while_until(&self.empty, lock(&self.state), Some(deadline), |s| s.inside > 0).1
    }
}
