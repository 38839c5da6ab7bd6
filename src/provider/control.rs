//! What host threads share with the plugin's control thread: a command queue, the in-flight
//! registry that `free` drains, and the per-stream state a host handle may see. Host threads
//! touch only std `Mutex`/`Condvar` and atomics here (and create or drop a tokio `Notify`, which
//! uses no thread-locals): they are safe on host threads.

use crate::converse::request::StreamRequest;
use crate::error::Result;
use std::collections::{HashMap, VecDeque};
use std::os::raw::c_void;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

pub use bedrock_plugin_abi::{EventFn, EventsFn};

/// The host's callback and its `user_data`, moved to the stream's outbox: one call per event
/// (`bp_stream_start`), or one call per delivery pass with every event it has (1.5's
/// `bp_stream_start_batched`, for hosts where each call is a costly thread hop).
pub enum Callback {
    Each { f: EventFn, user_data: *mut c_void },
    Batched { f: EventsFn, user_data: *mut c_void },
}

// SAFETY: the ABI contract makes the host responsible for `user_data` being usable from the
// plugin's delivery threads; the plugin calls `f` from one thread at a time per stream.
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
}

/// Where a `bp_discover` or `bp_embed` caller waits for the answer computed on the runtime.
#[derive(Default)]
pub struct Reply {
    value: Mutex<Option<Result<String>>>,
    ready: Condvar,
}

impl Reply {
    pub fn set(&self, value: Result<String>) {
        *lock(&self.value) = Some(value);
        self.ready.notify_all();
    }

    pub fn wait(&self) -> Result<String> {
        let mut v = lock(&self.value);
        loop {
            if let Some(value) = v.take() {
                return value;
            }
            v = self.ready.wait(v).unwrap_or_else(|p| p.into_inner());
        }
    }
}

pub enum Command {
    Start { shared: Arc<StreamShared>, request: StreamRequest, callback: Callback },
    Discover { refresh: bool, reply: Arc<Reply> },
    Embed { request: crate::embed::EmbedRequest, reply: Arc<Reply> },
    Cancel(Arc<StreamShared>),
    CancelAll,
    Shutdown,
}

pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[derive(Default)]
pub struct Control {
    queue: Mutex<VecDeque<Command>>,
    wake: Condvar,
    ready: Mutex<Option<Result<()>>>,
    ready_cv: Condvar,
    /// Runtime threads alive (worker and blocking), counted by the runtime's start/stop hooks.
    pub live_threads: AtomicUsize,
}

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

    pub fn threads_left(&self) -> usize {
        self.live_threads.load(Ordering::Acquire)
    }
}

struct Admission {
    accepting: bool,
    in_flight: usize,
}

/// Counts streams from admission until their terminal event is decided (its delivery begins),
/// and discoveries until they answered.
pub struct Registry {
    state: Mutex<Admission>,
    idle: Condvar,
}

impl Default for Registry {
    fn default() -> Self {
        Registry { state: Mutex::new(Admission { accepting: true, in_flight: 0 }), idle: Condvar::new() }
    }
}

impl Registry {
    /// Admits a stream or a discovery and queues it under one lock, so a concurrent `close` +
    /// drain can never miss it and `Shutdown` is always queued after it.
    pub fn admit(&self, control: &Control, start: Command) -> Result<()> {
        let mut s = lock(&self.state);
        if !s.accepting {
            return Err(super::shutting_down());
        }
        s.in_flight += 1;
        control.push(start);
        Ok(())
    }

    pub fn close(&self) {
        lock(&self.state).accepting = false;
    }

    pub fn finished(&self) {
        let mut s = lock(&self.state);
        s.in_flight = s.in_flight.saturating_sub(1);
        if s.in_flight == 0 {
            self.idle.notify_all();
        }
    }

    /// True when no stream is in flight within `timeout`.
    pub fn wait_idle(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut s = lock(&self.state);
        while s.in_flight > 0 {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            s = self.idle.wait_timeout(s, deadline - now).unwrap_or_else(|p| p.into_inner()).0;
        }
        true
    }
}
