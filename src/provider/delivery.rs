//! The delivery loop of one stream, on a runtime blocking thread (never a worker, so a slow host
//! callback stalls only its own stream). Events are serialized into one reused buffer; the
//! pointer handed to the host is valid only during the call.

use super::control::{Callback, Registry, StreamShared};
use crate::converse::stream::{cancelled, TerminalSlot};
use crate::error::{Error, Kind};
use crate::events::{AssistantMessage, Event};
use std::cell::Cell;
use std::sync::Arc;
use tokio::sync::{mpsc, Notify};

thread_local! {
    // No destructor (a `const` Cell<bool>), so reading it on any thread registers nothing.
    static IN_CALLBACK: Cell<bool> = const { Cell::new(false) };
}

/// Whether the current thread is inside one of this plugin's event callbacks.
pub fn in_callback() -> bool {
    IN_CALLBACK.with(Cell::get)
}

pub struct Delivery {
    rx: mpsc::Receiver<Event>,
    slot: Arc<TerminalSlot>,
    callback: Callback,
    shared: Arc<StreamShared>,
    registry: Arc<Registry>,
    cancel: Arc<Notify>,
    model_id: String,
    buf: Vec<u8>,
}

impl Delivery {
    pub fn new(
        rx: mpsc::Receiver<Event>,
        slot: Arc<TerminalSlot>,
        callback: Callback,
        shared: Arc<StreamShared>,
        registry: Arc<Registry>,
        cancel: Arc<Notify>,
        model_id: String,
    ) -> Delivery {
        Delivery { rx, slot, callback, shared, registry, cancel, model_id, buf: Vec::with_capacity(4096) }
    }

    /// Returns the host's verdict: true to go on, false to cancel the stream.
    fn deliver(&mut self, event: &Event) -> bool {
        self.buf.clear();
        if serde_json::to_writer(&mut self.buf, event).is_err() {
            return true;
        }
        let len = self.buf.len();
        self.buf.push(0);
        IN_CALLBACK.with(|c| c.set(true));
        // SAFETY: the host promised `f` and `user_data` stay valid until the terminal event; the
        // buffer is NUL-terminated and outlives the call.
        let verdict = unsafe { (self.callback.f)(self.callback.user_data, self.buf.as_ptr().cast(), len) };
        IN_CALLBACK.with(|c| c.set(false));
        verdict == 0
    }

    /// Delivers every event in order, then exactly one terminal event. Once a cancel was asked
    /// for (by the callback's return value or `bp_stream_cancel`), later events are dropped and
    /// the terminal event is `error/aborted`, whatever the stream would have ended with.
    pub fn run(mut self) {
        while let Some(event) = self.rx.blocking_recv() {
            if self.shared.cancel_requested() {
                continue;
            }
            if !self.deliver(&event) {
                self.shared.request_cancel();
                self.cancel.notify_one();
            }
        }
        let terminal = self.slot.take().unwrap_or_else(|| {
            let e = Error::new(Kind::Internal, "the stream ended without a result");
            Event::failure(AssistantMessage::new(&self.model_id), &e)
        });
        let terminal = if self.shared.cancel_requested() { into_aborted(terminal, &self.model_id) } else { terminal };
        // Finished once its terminal event is decided: a host that frees the provider the moment
        // it sees that event must find nothing left to drain. `free` still joins this thread.
        self.shared.mark_finished();
        self.registry.finished();
        self.deliver(&terminal);
    }
}

/// `failure` replaces whatever `errorMessage` / `errorInfo` the message had.
fn into_aborted(terminal: Event, model_id: &str) -> Event {
    let message = terminal.into_final_message().unwrap_or_else(|| AssistantMessage::new(model_id));
    Event::failure(message, &cancelled())
}
