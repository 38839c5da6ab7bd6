//! One stream's outbox: the events its task decoded and the host has not seen yet, and the one
//! terminal event. The task fills it; a delivery thread of the pool empties it a batch at a time.
//! The `scheduled` flag is the stream's token: whoever set it (and only they) may deliver, so a
//! stream is never on two threads at once and its events keep their order.

use super::control::{lock, Callback, Live, Registry, StreamShared};
use super::delivery::deliver;
use super::pool::Pool;
use crate::converse::outlet::Outlet;
use crate::converse::stream::cancelled;
use crate::error::{Error, Kind};
use crate::events::{AssistantMessage, Event};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

/// Events queued per stream before its task stops reading the network.
const QUEUE: usize = 128;

struct State {
    queued: Vec<Event>,
    /// On the pool's run queue or being delivered.
    scheduled: bool,
    /// The task has finished; `terminal` holds its last word until delivered.
    closed: bool,
    terminal: Option<Event>,
}

/// What only the delivering thread touches.
struct Receiver {
    callback: Callback,
    /// The batch being delivered; kept to reuse its allocation.
    batch: Vec<Event>,
}

/// What a delivery pass left to do.
#[derive(Debug, PartialEq, Eq)]
pub enum Pass {
    /// Nothing queued: the stream is off the pool until its task sends more.
    Idle,
    /// More arrived meanwhile: run again (after the others waiting).
    More,
    /// The terminal event was delivered.
    Finished,
}

pub struct Outbox {
    shared: Arc<StreamShared>,
    state: Mutex<State>,
    receiver: Mutex<Receiver>,
    room: Notify,
    pool: Arc<Pool>,
    registry: Arc<Registry>,
    live: Arc<Live>,
    model_id: String,
}

impl Outbox {
    pub fn new(
        shared: Arc<StreamShared>,
        callback: Callback,
        pool: Arc<Pool>,
        registry: Arc<Registry>,
        live: Arc<Live>,
        model_id: String,
    ) -> Arc<Outbox> {
        Arc::new(Outbox {
            shared,
            state: Mutex::new(State { queued: Vec::new(), scheduled: false, closed: false, terminal: None }),
            receiver: Mutex::new(Receiver { callback, batch: Vec::new() }),
            room: Notify::new(),
            pool,
            registry,
            live,
            model_id,
        })
    }

    /// Takes the scheduling token if nobody holds it: the caller must then hand the stream to the pool.
    fn claim(state: &mut State) -> bool {
        !std::mem::replace(&mut state.scheduled, true)
    }

    /// Gives the token back when nothing is queued and the task still runs (its next `send`
    /// claims it again); true if it did.
    fn unschedule_if_drained(state: &mut State) -> bool {
        let drained = state.queued.is_empty() && !state.closed;
        if drained {
            state.scheduled = false;
        }
        drained
    }

    /// Delivers what is queued now (the terminal event too, once everything before it is out).
    /// Only the holder of the scheduling token calls this. `progress` counts callbacks, so the
    /// pool can tell a busy thread from one stuck in a callback.
    pub fn deliver_pass(&self, buf: &mut Vec<u8>, progress: &AtomicU64) -> Pass {
        let mut receiver = lock(&self.receiver);
        let receiver = &mut *receiver;
        let terminal = {
            let mut state = lock(&self.state);
            if Outbox::unschedule_if_drained(&mut state) {
                return Pass::Idle;
            }
            let was_full = state.queued.len() >= QUEUE;
            std::mem::swap(&mut state.queued, &mut receiver.batch);
            if was_full {
                self.room.notify_one();
            }
            if receiver.batch.is_empty() {
                state.terminal.take().or_else(|| Some(self.missing_terminal()))
            } else {
                None
            }
        };
        // Once a cancel was asked for, later events are dropped: the end is error/aborted.
        let (calls, go_on) = deliver(&receiver.callback, &receiver.batch, buf, || !self.shared.cancel_requested());
        receiver.batch.clear();
        progress.fetch_add(calls, Ordering::Relaxed);
        if !go_on && self.shared.request_cancel() {
            self.shared.cancel.notify_one();
        }
        let Some(terminal) = terminal else {
            return if Outbox::unschedule_if_drained(&mut lock(&self.state)) { Pass::Idle } else { Pass::More };
        };
        let terminal = if self.shared.cancel_requested() { into_aborted(terminal, &self.model_id) } else { terminal };
        // Finished once its terminal event is decided: a host that frees the provider the moment
        // it sees that event must find nothing left to drain. `free` still joins this thread.
        self.shared.mark_finished();
        self.live.remove(self.shared.id);
        self.registry.finished();
        deliver(&receiver.callback, std::slice::from_ref(&terminal), buf, || true);
        progress.fetch_add(1, Ordering::Relaxed);
        Pass::Finished
    }

    fn missing_terminal(&self) -> Event {
        let e = Error::new(Kind::Internal, "the stream ended without a result");
        Event::failure(AssistantMessage::new(&self.model_id), &e)
    }
}

impl Outlet for Outbox {
    fn send(self: &Arc<Self>, events: &mut Vec<Event>) -> bool {
        let (claimed, room) = {
            let mut state = lock(&self.state);
            if state.queued.is_empty() {
                std::mem::swap(&mut state.queued, events);
            } else {
                state.queued.append(events);
            }
            (Outbox::claim(&mut state), state.queued.len() < QUEUE)
        };
        if claimed {
            self.pool.schedule(self.clone());
        }
        room
    }

    fn has_room(&self) -> bool {
        lock(&self.state).queued.len() < QUEUE
    }

    fn room(&self) -> &Notify {
        &self.room
    }

    fn cancel_requested(&self) -> bool {
        self.shared.cancel_requested()
    }

    fn cancelled(&self) -> &Notify {
        &self.shared.cancel
    }

    fn finish(self: &Arc<Self>, terminal: Event) {
        let claimed = {
            let mut state = lock(&self.state);
            if state.closed {
                return;
            }
            state.closed = true;
            state.terminal = Some(terminal);
            Outbox::claim(&mut state)
        };
        if claimed {
            self.pool.schedule(self.clone());
        }
    }
}

/// `failure` replaces whatever `errorMessage` / `errorInfo` the message had.
fn into_aborted(terminal: Event, model_id: &str) -> Event {
    let message = terminal.into_final_message().unwrap_or_else(|| AssistantMessage::new(model_id));
    Event::failure(message, &cancelled())
}
