//! Calling the host: the events of one delivery pass, serialized into the delivering thread's
//! reused buffer, one call per event or one call for all of them (NDJSON); the pointer handed to
//! the host is valid only during the call. A mailbox stream's events are filed instead, and the
//! host takes them on its own thread. An inline stream's callback runs on the stream's own task.

use super::control::Callback;
use super::pool::Beat;
use crate::events::Event;
use std::cell::Cell;

thread_local! {
    // No destructor (a `const` Cell), so reading it on any thread registers nothing.
    static IN_CALLBACK: Cell<Option<Runner>> = const { Cell::new(None) };
}

/// Whether the current thread is inside one of this plugin's event callbacks.
pub fn in_callback() -> bool {
    IN_CALLBACK.with(Cell::get).is_some()
}

/// Whether the current thread is a runtime thread inside an inline stream's callback: waiting
/// there for the runtime's work could wait for this very thread.
pub fn in_runtime_callback() -> bool {
    IN_CALLBACK.with(Cell::get) == Some(Runner::Task)
}

fn call(callback: &Callback, buf: &[u8], count: usize, beat: &Beat, runner: Runner) -> bool {
    IN_CALLBACK.with(|c| c.set(Some(runner)));
    // SAFETY: the host promised `f` and `user_data` stay valid until the terminal event; `buf`
    // is NUL-terminated (its length excludes the NUL) and outlives the call.
    let verdict = watched(beat, runner, || unsafe {
        match *callback {
            Callback::Each { f, user_data } | Callback::Inline { f, user_data } => f(user_data, buf.as_ptr().cast(), buf.len() - 1),
            Callback::Batched { f, user_data } => f(user_data, buf.as_ptr().cast(), buf.len() - 1, count),
            // Filed by `deliver`, never called.
            Callback::Mailbox { .. } => 0,
        }
    });
    IN_CALLBACK.with(|c| c.set(None));
    verdict == 0
}

/// Runs `f`, a wait for the host, under the watchdog's eye when a pool worker runs it. A
/// stream's own task is not watched (its host promised not to block, and filing there never
/// waits), so it reads no clock.
fn watched<R>(beat: &Beat, runner: Runner, f: impl FnOnce() -> R) -> R {
    if runner != Runner::Worker {
        return f();
    }
    beat.enter();
    let r = f();
    beat.leave();
    r
}

/// What a delivery did: how many of the events the host was handed (the first `shown`), and
/// whether it asked to cancel.
pub struct Delivered {
    pub shown: usize,
    pub go_on: bool,
}

/// Which thread runs a delivery pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runner {
    /// A delivery pool worker: it may call the host, and wait for room in a full mailbox.
    Worker,
    /// The stream's own task, on a runtime thread (a mailbox or inline stream: `outbox.rs`): it
    /// must never wait.
    Task,
}

/// Delivers `events` in order; stops early when `go_on` says the stream was cancelled (those
/// left are dropped).
pub fn deliver(callback: &Callback, events: &[Event], buf: &mut Vec<u8>, beat: &Beat, runner: Runner, go_on: impl Fn() -> bool) -> Delivered {
    let mut shown = 0;
    match callback {
        Callback::Each { .. } | Callback::Inline { .. } => {
            for (i, event) in events.iter().enumerate() {
                if !go_on() {
                    break;
                }
                buf.clear();
                if !event.write_json(buf) {
                    continue;
                }
                buf.push(0);
                shown = i + 1;
                if !call(callback, buf, 1, beat, runner) {
                    return Delivered { shown, go_on: false };
                }
            }
        }
        Callback::Batched { .. } => {
            if events.is_empty() || !go_on() {
                return Delivered { shown, go_on: true };
            }
            buf.clear();
            let mut count = 0;
            for event in events {
                if event.write_json(buf) {
                    buf.push(b'\n');
                    count += 1;
                }
            }
            buf.push(0);
            shown = events.len();
            if !call(callback, buf, count, beat, runner) {
                return Delivered { shown, go_on: false };
            }
        }
        Callback::Mailbox { mailbox, tag } => {
            if events.is_empty() || !go_on() {
                return Delivered { shown, go_on: true };
            }
            // A full box keeps a worker waiting for the host: the watchdog counts it as a
            // callback that has not returned. A stream's own task never waits for room.
            shown = watched(beat, runner, || mailbox.file(*tag, events, runner == Runner::Worker, go_on));
        }
    }
    Delivered { shown, go_on: true }
}
