//! The delivery pool: threads that call host callbacks, as many as callbacks are running, not as
//! many as streams are open. A stream with queued events waits on the run queue; a thread takes
//! it and delivers everything queued in one pass, then takes the next. `CORE` threads start on
//! demand and stay; when work waits while every thread is inside a callback that has stopped
//! making progress (a host blocking in its callback), a watchdog on the runtime adds a thread,
//! up to `MAX_THREADS`, so one slow consumer holds only its own stream. Extra threads leave after
//! `EXTRA_IDLE` without work.
//!
//! Threads are the runtime's blocking threads (named, counted, and joined by its shutdown, as the
//! unload guarantees require); a pool thread is one long `spawn_blocking` job.

use super::control::lock;
use super::outbox::{Outbox, Pass};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;
use tokio::runtime::Handle;
use tokio::sync::Notify;

/// Threads kept while the provider lives (started by the first streams).
pub const CORE: usize = 2;
/// Delivery threads at most: once this many callbacks block at once, other streams wait.
pub const MAX_THREADS: usize = 512;
/// How long an extra thread stays without work.
const EXTRA_IDLE: Duration = Duration::from_secs(1);
/// How often the watchdog looks while work waits and no thread is free.
const WATCH_EVERY: Duration = Duration::from_millis(2);

/// One thread's signs of life, read by the watchdog.
#[derive(Default)]
struct Slot {
    /// Inside a delivery pass.
    busy: AtomicBool,
    /// Callbacks returned, ever.
    progress: AtomicU64,
}

#[derive(Default)]
struct State {
    runnable: VecDeque<Arc<Outbox>>,
    threads: usize,
    idle: usize,
    /// The watchdog has been told and is looking.
    watching: bool,
    closed: bool,
}

pub struct Pool {
    state: Mutex<State>,
    work: Condvar,
    slots: Mutex<Vec<Arc<Slot>>>,
    help: Notify,
    runtime: Handle,
}

impl Pool {
    pub fn new(runtime: Handle) -> Arc<Pool> {
        let pool = Arc::new(Pool {
            state: Mutex::default(),
            work: Condvar::new(),
            slots: Mutex::default(),
            help: Notify::new(),
            runtime: runtime.clone(),
        });
        runtime.spawn(watchdog(pool.clone()));
        pool
    }

    /// Puts a stream whose token the caller holds on the run queue.
    pub fn schedule(self: &Arc<Self>, outbox: Arc<Outbox>) {
        let mut state = lock(&self.state);
        state.runnable.push_back(outbox);
        if state.idle > 0 {
            drop(state);
            self.work.notify_one();
        } else if state.closed {
            // After close nothing starts: the remaining threads, or `drain_here`, deliver it.
        } else if state.threads < CORE {
            state.threads += 1;
            drop(state);
            self.start_thread();
        } else if !state.watching {
            state.watching = true;
            drop(state);
            self.help.notify_one();
        }
    }

    fn start_thread(self: &Arc<Self>) {
        let slot = Arc::new(Slot::default());
        lock(&self.slots).push(slot.clone());
        let pool = self.clone();
        // Dropped unrun only if the runtime is shutting down: then `drain_here` delivers.
        let _ = self.runtime.spawn_blocking(move || pool.thread_main(slot));
    }

    /// Waits for a stream to deliver; None when the thread should leave.
    fn next(&self) -> Option<Arc<Outbox>> {
        let mut state = lock(&self.state);
        loop {
            if let Some(outbox) = state.runnable.pop_front() {
                return Some(outbox);
            }
            if state.closed {
                return None;
            }
            state.idle += 1;
            if state.threads > CORE {
                let (s, timeout) = self.work.wait_timeout(state, EXTRA_IDLE).unwrap_or_else(|p| p.into_inner());
                state = s;
                state.idle -= 1;
                if timeout.timed_out() && state.runnable.is_empty() && state.threads > CORE {
                    return None;
                }
            } else {
                state = self.work.wait(state).unwrap_or_else(|p| p.into_inner());
                state.idle -= 1;
            }
        }
    }

    fn thread_main(self: Arc<Self>, slot: Arc<Slot>) {
        let mut buf = Vec::with_capacity(4096);
        while let Some(outbox) = self.next() {
            slot.busy.store(true, Ordering::Release);
            let pass = outbox.deliver_pass(&mut buf, &slot.progress);
            slot.busy.store(false, Ordering::Release);
            if pass == Pass::More {
                lock(&self.state).runnable.push_back(outbox);
            }
        }
        lock(&self.slots).retain(|s| !Arc::ptr_eq(s, &slot));
        lock(&self.state).threads -= 1;
    }

    /// Threads finish what is queued and leave; the runtime's shutdown joins them.
    pub fn close(&self) {
        lock(&self.state).closed = true;
        self.work.notify_all();
        self.help.notify_one();
    }

    /// After the runtime stopped: delivers, on the calling thread, what streams dropped by the
    /// shutdown queued after the pool threads left (their `error/aborted` events).
    pub fn drain_here(&self) {
        let mut buf = Vec::new();
        let progress = AtomicU64::new(0);
        loop {
            let Some(outbox) = lock(&self.state).runnable.pop_front() else { return };
            while outbox.deliver_pass(&mut buf, &progress) == Pass::More {}
        }
    }

    /// Whether work waits, no thread is free, and too few threads are making progress. `last`
    /// holds each slot's progress at the previous look.
    fn needs_thread(&self, last: &mut Vec<(usize, u64)>) -> bool {
        let (waiting, threads) = {
            let state = lock(&self.state);
            (!state.runnable.is_empty() && state.idle == 0 && !state.closed, state.threads)
        };
        let slots = lock(&self.slots);
        let now: Vec<(usize, u64)> =
            slots.iter().map(|s| (Arc::as_ptr(s) as usize, s.progress.load(Ordering::Relaxed))).collect();
        let stuck = slots
            .iter()
            .zip(&now)
            .filter(|(s, (id, progress))| s.busy.load(Ordering::Acquire) && last.iter().any(|(i, p)| i == id && p == progress))
            .count();
        *last = now;
        waiting && threads < MAX_THREADS && threads - stuck.min(threads) < CORE
    }
}

/// Sleeps until the pool reports work with no free thread, then looks every `WATCH_EVERY` until
/// it is served, adding a thread whenever the busy ones are stuck.
async fn watchdog(pool: Arc<Pool>) {
    loop {
        pool.help.notified().await;
        let mut last = Vec::new();
        loop {
            tokio::time::sleep(WATCH_EVERY).await;
            let grow = pool.needs_thread(&mut last);
            let mut state = lock(&pool.state);
            if state.closed {
                return;
            }
            if grow {
                state.threads += 1;
                drop(state);
                pool.start_thread();
            } else if state.runnable.is_empty() || state.idle > 0 {
                state.watching = false;
                break;
            }
        }
    }
}
