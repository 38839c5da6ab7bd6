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
//! - `file(lines, count, terminal, go_on)`: open: the lines are appended, and the host's taker is
//!   woken when the box was empty. While the box holds `capacity` bytes or more, a filer waits
//!   for room (a take, or the close), looking at `go_on` now and then: a cancelled stream's
//!   events are dropped rather than wait. A terminal event never waits, so a provider's drain
//!   never depends on the host taking. Closed: the lines are dropped.
//! - `take(into, deadline)`: one taker at a time (the caller's to ensure: `mailbox.rs`). Waits until something is filed, the box closes
//!   or the deadline passes; then everything filed moves into `into` (the buffers are swapped,
//!   not copied) and the filers waiting for room are woken. Closed and empty: `Closed`.

use super::sync::{doze, lock, wait_while_until, Condvar, Mutex};
use std::time::{Duration, Instant};

/// A filer waiting for room looks at its stream's cancel this often (a cancel wakes nobody here).
const CANCEL_LOOK: Duration = Duration::from_millis(50);

struct State {
    filed: Vec<u8>,
    count: usize,
    closed: bool,
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
            state: Mutex::new(State { filed: Vec::new(), count: 0, closed: false }),
            filed: Condvar::new(),
            room: Condvar::new(),
            capacity: capacity.max(1),
        }
    }

    /// Files `count` events (`lines`, each ending in `\n`); false when they were dropped (the box
    /// is closed, or `go_on` said the stream was cancelled while it waited for room).
    pub fn file(&self, lines: &[u8], count: usize, terminal: bool, go_on: impl Fn() -> bool) -> bool {
        let mut s = lock(&self.state);
        while !terminal && !s.closed && s.filed.len() >= self.capacity {
            if !go_on() {
                return false;
            }
            s = doze(&self.state, &self.room, s, CANCEL_LOOK, |s| s.closed || s.filed.len() < self.capacity);
        }
        if s.closed {
            return false;
        }
        let was_empty = s.filed.is_empty();
        s.filed.extend_from_slice(lines);
        s.count += count;
        if was_empty {
            self.filed.notify_one();
        }
        true
    }

    /// Takes everything filed into `into` (cleared first), waiting until `deadline` (None: as
    /// long as it takes) for something to be filed.
    pub fn take(&self, into: &mut Vec<u8>, deadline: Option<Instant>) -> Taken {
        let s = lock(&self.state);
        let waiting = |s: &mut State| s.filed.is_empty() && !s.closed;
        let mut s = match deadline {
            None => wait_while_until(&self.filed, s, None, waiting).0,
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                doze(&self.state, &self.filed, s, left, |s| !waiting(s))
            }
        };
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
