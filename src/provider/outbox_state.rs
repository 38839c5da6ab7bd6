//! One stream's outbox protocol: the events its task decoded that the host has not seen, the one
//! terminal event, and the stream's scheduling token. One struct under one lock; `tests/loom`
//! model-checks this file as it is.
//!
//! The token (`scheduled`) is held from the moment a producer claims it until a delivery pass
//! gives it back; whoever claimed it must hand the stream to the run queue, and only its holder
//! delivers. So a stream is never on two workers at once and its events keep their order.
//!
//! States: **idle** (nothing queued, token free) → `send` / `finish` claims the token →
//! **scheduled** (on the run queue or being delivered) → a pass takes everything queued:
//! - nothing queued and the task still runs: the token is given back (**idle**);
//! - events: they are delivered; afterwards the token is given back if nothing new arrived,
//!   else the stream is passed on (still **scheduled**);
//! - nothing queued and the task finished: the terminal event is taken (**finished**; the token
//!   is never given back, so nothing is delivered after it).
//!
//! Backpressure: `send` reports whether the queue has room; a pass that empties a full queue says
//! so, and the caller wakes the producer.
//!
//! Spent events go back: a pool worker's pass leaves what it delivered in `spent`, and the task's
//! next `send` takes it and drops it. The task made those events, so their memory returns to its
//! own thread's allocator cache, where its next token's allocations find it; dropped by a pool
//! worker, every token's memory crossed threads through the allocator's slow path both ways. A
//! pass on the task's own thread (inline, or a mailbox with room) drops them as it ends. The
//! vectors circulate (pending → queued → batch → spent → pending), so none is allocated per
//! token.

use super::sync::{lock, Mutex};

pub struct OutboxState<E> {
    state: Mutex<State<E>>,
    capacity: usize,
}

struct State<E> {
    queued: Vec<E>,
    /// Delivered, for the task to drop; empty while the task has not sent since.
    spent: Vec<E>,
    scheduled: bool,
    /// The task has finished; `terminal` holds its last word until taken.
    closed: bool,
    terminal: Option<E>,
}

/// What `send` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sent {
    /// The caller took the token: it must schedule the stream.
    pub claimed: bool,
    /// The queue still has room.
    pub room: bool,
}

/// What a delivery pass takes.
#[derive(Debug, PartialEq, Eq)]
pub enum Take<E> {
    /// Nothing to deliver; the token was given back.
    Idle,
    /// A batch (moved into the caller's vector); `was_full`: the producer may be waiting for room.
    Batch { was_full: bool },
    /// The terminal event (None: the task closed without one — the caller makes one).
    Terminal(Option<E>),
}

impl<E> OutboxState<E> {
    pub fn new(capacity: usize) -> OutboxState<E> {
        OutboxState { state: Mutex::new(State { queued: Vec::new(), spent: Vec::new(), scheduled: false, closed: false, terminal: None }), capacity }
    }

    /// Queues `events` (draining the vector), in order, and drops the events delivered since the
    /// last call.
    pub fn send(&self, events: &mut Vec<E>) -> Sent {
        let mut s = lock(&self.state);
        if s.queued.is_empty() {
            std::mem::swap(&mut s.queued, events);
        } else {
            s.queued.append(events);
        }
        if !s.spent.is_empty() {
            std::mem::swap(&mut s.spent, events);
        }
        let claimed = !std::mem::replace(&mut s.scheduled, true);
        let sent = Sent { claimed, room: s.queued.len() < self.capacity };
        drop(s);
        events.clear();
        sent
    }

    /// Records the terminal event; true when the caller took the token and must schedule the
    /// stream. A second `finish` is ignored.
    pub fn finish(&self, terminal: E) -> bool {
        let mut s = lock(&self.state);
        if s.closed {
            return false;
        }
        s.closed = true;
        s.terminal = Some(terminal);
        !std::mem::replace(&mut s.scheduled, true)
    }

    pub fn has_room(&self) -> bool {
        lock(&self.state).queued.len() < self.capacity
    }

    /// The start of a pass (token holder only): everything queued moves into `batch` (which must
    /// be empty), or the terminal event once nothing is left before it.
    pub fn take(&self, batch: &mut Vec<E>) -> Take<E> {
        let mut s = lock(&self.state);
        if s.queued.is_empty() {
            if !s.closed {
                s.scheduled = false;
                return Take::Idle;
            }
            return Take::Terminal(s.terminal.take());
        }
        let was_full = s.queued.len() >= self.capacity;
        std::mem::swap(&mut s.queued, batch);
        Take::Batch { was_full }
    }

    /// The end of a pass that delivered `batch`: its events go back to the task when
    /// `hand_back` (a pool worker's pass), else they are dropped here (a pass on the task's own
    /// thread, which made them a moment ago: dropped now, they are still in its cache; handed
    /// back, the task's next send would find them cold). `batch` is left empty, ready for the
    /// next pass. True when the token was given back (nothing arrived meanwhile); false when
    /// the stream must be passed on.
    pub fn after_batch(&self, batch: &mut Vec<E>, hand_back: bool) -> bool {
        let mut s = lock(&self.state);
        // Full only if the task has not sent since the last pass: then these are dropped here.
        if hand_back && s.spent.is_empty() {
            std::mem::swap(&mut s.spent, batch);
        }
        let drained = s.queued.is_empty() && !s.closed;
        if drained {
            s.scheduled = false;
        }
        drop(s);
        batch.clear();
        drained
    }
}
