//! The run queue's protocol as it was before issue #16 (`src/provider/pool.rs` at 1ce29a3),
//! kept with the same surface as `run_queue.rs` so the same model runs on both: it shows the
//! model catches the lost wake-up (`tests/delivery.rs`, `the_model_catches_the_lost_wake_up_
//! of_the_old_protocol`). `schedule` saw `idle > 0` and notified without reserving the idle
//! worker; `next` took itself out of `idle` only once awake.

use crate::run_queue::Scheduled;
use crate::sync::{lock, Condvar, Mutex};
use std::collections::VecDeque;
use std::time::Duration;

struct State<T> {
    runnable: VecDeque<T>,
    threads: usize,
    idle: usize,
    watching: bool,
    closed: bool,
}

pub struct OldRunQueue<T> {
    state: Mutex<State<T>>,
    work: Condvar,
    core: usize,
}

impl<T> OldRunQueue<T> {
    pub fn new(core: usize) -> OldRunQueue<T> {
        OldRunQueue {
            state: Mutex::new(State { runnable: VecDeque::new(), threads: 0, idle: 0, watching: false, closed: false }),
            work: Condvar::new(),
            core,
        }
    }

    pub fn schedule(&self, item: T) -> Scheduled {
        let mut state = lock(&self.state);
        state.runnable.push_back(item);
        if state.idle > 0 {
            drop(state);
            self.work.notify_one();
            Scheduled::Woken
        } else if state.closed {
            Scheduled::Queued
        } else if state.threads < self.core {
            state.threads += 1;
            Scheduled::StartWorker
        } else if !state.watching {
            state.watching = true;
            Scheduled::TellWatchdog
        } else {
            Scheduled::Queued
        }
    }

    pub fn next(&self, _reserved: bool, _linger: Duration) -> Option<T> {
        let mut state = lock(&self.state);
        loop {
            if let Some(item) = state.runnable.pop_front() {
                return Some(item);
            }
            if state.closed {
                return None;
            }
            state.idle += 1;
            state = self.work.wait(state).unwrap_or_else(|p| p.into_inner());
            state.idle -= 1;
        }
    }

    /// Items waiting, and whether someone will come for them: in this protocol only the
    /// watchdog, once told (a woken idle thread has already taken its item).
    pub fn coverage(&self) -> (usize, bool) {
        let s = lock(&self.state);
        (s.runnable.len(), s.closed || s.watching || s.runnable.is_empty())
    }
}
