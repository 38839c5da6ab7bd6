//! A mailbox's protocol (ABI 1.7; the host's side is `mailbox.rs`): the events of many streams,
//! gathered for a host that collects them on a thread of its own (an event loop) instead of
//! being called on the plugin's threads. A stream started into a mailbox has its delivery passes
//! file their NDJSON here; the host takes everything filed at once. For a host where each
//! callback is a hop to another thread (Node, where koffi queues the call to the main thread and
//! blocks the plugin's thread until it returns), one hop per take instead of one per stream per
//! pass.
//!
//! One struct under one lock; `tests/loom` model-checks this file as it is.
//! - **open** → `close` → **closed** (for good).
//! - `file(may_wait, go_on, write)`: open: `write` appends the lines, and the host's taker is
//!   woken if it sleeps (`taker_asleep`: set by each of its checks before sleeping, cleared by
//!   the filing that wakes it and when the take ends). While the box holds `capacity` bytes or
//!   more, a filer that may wait waits for room (a take, or the close), looking at `go_on` now
//!   and then: a cancelled stream's events are dropped rather than wait. A terminal event never
//!   waits, so a provider's drain never depends on the host taking; nor does a stream's own task
//!   filing on a runtime thread, which files only after `has_room` said yes, so the box can pass
//!   its capacity by at most one pass per runtime thread. Closed: nothing is written.
//! - `take(into, deadline)`: one taker at a time (the caller's to ensure: `mailbox.rs`). Waits
//!   until something is filed, the box closes or the deadline passes; then everything filed
//!   moves into `into` (the buffers are swapped, not copied) and the filers waiting for room are
//!   woken. Closed and empty: `Closed`.

use super::sync::{doze, lock, wait_while_until, Condvar, Mutex};
use std::time::{Duration, Instant};

/// A filer waiting for room looks at its stream's cancel this often (a cancel wakes nobody here).
const CANCEL_LOOK: Duration = Duration::from_millis(50);

struct State {
    filed: Vec<u8>,
    count: usize,
    closed: bool,
    /// The taker sleeps on `filed` (the condvar): only then does a filing wake it. A host that
    /// takes every few milliseconds finds its events already there, and its streams' tasks make
    /// no wake-up call at all.
    taker_asleep: bool,
}

pub struct MailboxState {
    state: Mutex<State>,
    /// The taker sleeps here until something is filed or the box closes.
    filed: Condvar,
    /// Filers of a full box sleep here until a take or the close.
    room: Condvar,
    capacity: usize,
}

/// What a take found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Taken {
    /// `count` events moved into the caller's buffer (0: the deadline passed first).
    Events(usize),
    /// Closed, and nothing left to take.
    Closed,
}

impl MailboxState {
    pub fn new(capacity: usize) -> MailboxState {
        MailboxState {
            state: Mutex::new(State { filed: Vec::new(), count: 0, closed: false, taker_asleep: false }),
            filed: Condvar::new(),
            room: Condvar::new(),
            capacity: capacity.max(1),
        }
    }

    /// Files the events `write` appends (it returns how many, each line ending in `\n`); false
    /// when they were dropped (the box is closed, or `go_on` said the stream was cancelled while
    /// it waited for room). With `may_wait` false (a terminal event, or a filer that must not
    /// block: `outbox.rs`), it files at once even into a full box.
    pub fn file(&self, may_wait: bool, go_on: impl Fn() -> bool, write: impl FnOnce(&mut Vec<u8>) -> usize) -> bool {
        let mut s = lock(&self.state);
        while may_wait && !s.closed && s.filed.len() >= self.capacity {
            if !go_on() {
                return false;
            }
            s = doze(&self.state, &self.room, s, CANCEL_LOOK, |s| s.closed || s.filed.len() < self.capacity);
        }
        if s.closed {
            return false;
        }
        // Written in place, under the lock: one copy of each line, not two.
        let count = write(&mut s.filed);
        s.count += count;
        if count > 0 && std::mem::take(&mut s.taker_asleep) {
            self.filed.notify_one();
        }
        count > 0
    }

    /// Whether a filer that may not wait should file now: the box holds less than its capacity.
    pub fn has_room(&self) -> bool {
        let s = lock(&self.state);
        s.closed || s.filed.len() < self.capacity
    }

    /// Takes everything filed into `into` (cleared first), waiting until `deadline` (None: as
    /// long as it takes) for something to be filed.
    pub fn take(&self, into: &mut Vec<u8>, deadline: Option<Instant>) -> Taken {
        let s = lock(&self.state);
        // Each check before sleeping (again) says the taker sleeps; a filing clears it as it
        // wakes the taker, so a filer never makes a wake-up call nobody waits for.
        let waiting = |s: &mut State| {
            s.taker_asleep = s.filed.is_empty() && !s.closed;
            s.taker_asleep
        };
        let mut s = match deadline {
            None => wait_while_until(&self.filed, s, None, waiting).0,
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                doze(&self.state, &self.filed, s, left, |s| !waiting(s))
            }
        };
        s.taker_asleep = false;
        into.clear();
        if s.filed.is_empty() {
            return if s.closed { Taken::Closed } else { Taken::Events(0) };
        }
        std::mem::swap(&mut s.filed, into);
        let count = std::mem::take(&mut s.count);
        self.room.notify_all();
        Taken::Events(count)
    }

    /// Closes the box: a take under way returns, later filings are dropped, filers waiting for
    /// room give up. What was filed can still be taken.
    pub fn close(&self) {
        let mut s = lock(&self.state);
        s.closed = true;
        self.filed.notify_all();
        self.room.notify_all();
    }
}
