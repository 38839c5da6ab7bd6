//! Calling the host: one event, serialized into the delivering thread's reused buffer; the
//! pointer handed to the host is valid only during the call.

use super::control::Callback;
use crate::events::Event;
use std::cell::Cell;

thread_local! {
    // No destructor (a `const` Cell<bool>), so reading it on any thread registers nothing.
    static IN_CALLBACK: Cell<bool> = const { Cell::new(false) };
}

/// Whether the current thread is inside one of this plugin's event callbacks.
pub fn in_callback() -> bool {
    IN_CALLBACK.with(Cell::get)
}

/// Calls the host with `event`; returns its verdict: true to go on, false to cancel the stream.
pub fn deliver(callback: &Callback, event: &Event, buf: &mut Vec<u8>) -> bool {
    buf.clear();
    if serde_json::to_writer(&mut *buf, event).is_err() {
        return true;
    }
    let len = buf.len();
    buf.push(0);
    IN_CALLBACK.with(|c| c.set(true));
    // SAFETY: the host promised `f` and `user_data` stay valid until the terminal event; the
    // buffer is NUL-terminated and outlives the call.
    let verdict = unsafe { (callback.f)(callback.user_data, buf.as_ptr().cast(), len) };
    IN_CALLBACK.with(|c| c.set(false));
    verdict == 0
}
