//! One stream's outbox: its protocol state (`outbox_state.rs`: queued events, terminal event,
//! scheduling token) joined to what delivery needs — the host's callback, the run queue, the
//! backpressure wake-up, and the registry that `free` drains. Whoever claims the token runs the
//! pass or hands it on: a pool worker for callbacks (host code runs there), the stream's own
//! task for a mailbox with room and for an inline callback (`hand_over`).

use super::control::{lock, Callback, Live, Registry, StreamShared};
use super::delivery::{deliver, Runner};
use super::mailbox::Mailbox;
use super::outbox_state::{OutboxState, Take};
use super::pool::{Beat, Pool};
use super::run_queue::Ahead;
use super::shown::Shown;
use crate::converse::outlet::Outlet;
use crate::converse::stream::cancelled;
use crate::error::{Error, Kind};
use crate::events::{AssistantMessage, Event};
use crate::fault::Fault;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

/// Events queued per stream before its task stops reading the network.
const QUEUE: usize = 128;

/// What only the delivering thread touches.
struct Receiver {
    callback: Callback,
    /// The batch being delivered; kept to reuse its allocation.
    batch: Vec<Event>,
    /// What the host has been handed, for the final message of a cancelled stream.
    shown: Shown,
}

/// Who runs a stream's delivery passes.
enum PassesOn {
    /// A pool worker: host code runs there, isolated from the runtime. `host_data` as in `Task`.
    Pool { host_data: usize },
    /// The stream's own task while its mailbox has room (filing runs no host code); a pool
    /// worker waits out a full box.
    TaskWhileRoom(Arc<Mailbox>),
    /// The stream's own task (inline: the host promised a callback that returns at once).
    /// `host_data`: the address of the host's `user_data`, only for asking for its line
    /// (`warm`), never read.
    Task { host_data: usize },
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
    state: OutboxState<Event>,
    receiver: Mutex<Receiver>,
    room: Notify,
    pool: Arc<Pool>,
    registry: Arc<Registry>,
    live: Arc<Live>,
    model_id: String,
    /// Set just before the terminal callback: a stream ends once, even after a panic.
    ended: AtomicBool,
    /// Set once a send carried the first of the answer (a delta or a block's end): until then,
    /// what this stream sends rouses a dozing worker (`run_queue.rs`), so dozing never delays
    /// a stream's first token. Only the stream's task sends.
    first_token_sent: AtomicBool,
    /// Who runs this stream's delivery passes, fixed by its callback.
    passes_on: PassesOn,
    /// Where the events the task queued last are: for a worker to ask for before it comes to
    /// this stream (`warm_ahead`). Written only for streams a pool worker delivers.
    queued: Whereabouts,
    /// Where the events a worker last handed back are: for the task to ask for as it wakes, so
    /// its next send drops them warm (`outbox_state.rs`).
    spent: Whereabouts,
    fault: Fault,
}

impl Outbox {
    pub fn new(
        shared: Arc<StreamShared>,
        callback: Callback,
        pool: Arc<Pool>,
        registry: Arc<Registry>,
        live: Arc<Live>,
        model_id: String,
        fault: Fault,
    ) -> Arc<Outbox> {
        let passes_on = match &callback {
            Callback::Mailbox { mailbox, .. } => PassesOn::TaskWhileRoom(mailbox.clone()),
            Callback::Inline { user_data, .. } => PassesOn::Task { host_data: *user_data as usize },
            Callback::Each { user_data, .. } | Callback::Batched { user_data, .. } => PassesOn::Pool { host_data: *user_data as usize },
        };
        Arc::new(Outbox {
            shared,
            state: OutboxState::new(QUEUE),
            receiver: Mutex::new(Receiver { callback, batch: Vec::new(), shown: Shown::default() }),
            room: Notify::new(),
            pool,
            registry,
            live,
            model_id,
            ended: AtomicBool::new(false),
            first_token_sent: AtomicBool::new(false),
            passes_on,
            queued: Whereabouts::default(),
            spent: Whereabouts::default(),
            fault,
        })
    }

    /// Delivers what is queued now (the terminal event too, once everything before it is out).
    /// Only the holder of the scheduling token calls this; `beat` tells the pool which callback
    /// is running and since when.
    fn deliver_pass(&self, buf: &mut Vec<u8>, beat: &Beat, runner: Runner) -> Pass {
        // Read at every event; the run queue asked only for the outbox's own lines.
        crate::prefetch::lines_of(&*self.shared);
        let mut receiver = lock(&self.receiver);
        let receiver = &mut *receiver;
        match self.state.take(&mut receiver.batch) {
            Take::Idle => Pass::Idle,
            Take::Batch { was_full } => {
                if was_full {
                    self.room.notify_one();
                }
                self.fault.hit(Fault::PanicInDelivery);
                // Once a cancel was asked for, later events are dropped: the end is error/aborted.
                let delivered = deliver(&receiver.callback, &receiver.batch, buf, beat, runner, || !self.shared.cancel_requested());
                receiver.shown.note(&receiver.batch[..delivered.shown]);
                if !delivered.go_on && self.shared.request_cancel() {
                    self.shared.cancel.notify_one();
                }
                if runner == Runner::Worker {
                    self.spent.note(&receiver.batch);
                }
                if self.state.after_batch(&mut receiver.batch, runner == Runner::Worker) {
                    Pass::Idle
                } else {
                    Pass::More
                }
            }
            Take::Terminal(terminal) => {
                let terminal = terminal.unwrap_or_else(|| self.failure(Error::new(Kind::Internal, "the stream ended without a result")));
                let terminal = if self.shared.cancel_requested() { into_aborted(terminal, &mut receiver.shown, &self.model_id) } else { terminal };
                self.end(&receiver.callback, terminal, buf, beat, runner);
                Pass::Finished
            }
        }
    }

    /// Ends the stream with its terminal event, once. The registry counts the stream until the
    /// terminal callback has returned, so `free` drains that callback too.
    fn end(&self, callback: &Callback, terminal: Event, buf: &mut Vec<u8>, beat: &Beat, runner: Runner) {
        if self.ended.swap(true, Ordering::AcqRel) {
            return;
        }
        // Decided: a cancel from now on has nothing left to stop.
        self.shared.mark_finished();
        self.live.remove(self.shared.id);
        let _counted = Finished(&self.registry);
        deliver(callback, std::slice::from_ref(&terminal), buf, beat, runner, || true);
    }

    /// After a panic inside a delivery pass (a plugin bug): the stream ends with `internal`, and
    /// its task is told to stop. Its token is never given back, so nothing follows.
    fn fail_after_panic(&self, buf: &mut Vec<u8>, beat: &Beat, runner: Runner) {
        if self.shared.request_cancel() {
            self.shared.cancel.notify_one();
        }
        let terminal = self.failure(Error::new(Kind::Internal, "internal error: the plugin failed while delivering this stream's events"));
        let receiver = lock(&self.receiver);
        self.end(&receiver.callback, terminal, buf, beat, runner);
    }

    /// Hands a stream whose token the caller (its task) just claimed to whoever delivers it. A
    /// mailbox stream whose box has room is filed here, on its own task: filing runs no host
    /// code, so a delivery thread would add a wake-up and isolate nothing. Only a full box,
    /// which its filer must wait out, goes to the pool. An inline stream's host promised a
    /// callback that returns at once, so its passes always run here.
    fn hand_over(self: &Arc<Self>, urgent: bool) {
        if !self.runs_on_task() {
            return self.pool.schedule(self.clone(), urgent);
        }
        let beat = Beat::default();
        let more = super::scratch::with(|buf| loop {
            match self.guarded_pass(buf, &beat, Runner::Task) {
                Pass::Idle | Pass::Finished => return false,
                Pass::More if self.runs_on_task() => continue,
                Pass::More => return true,
            }
        });
        if more {
            self.pool.schedule(self.clone(), urgent);
        }
    }

    /// Whether the stream's next pass runs on its own task rather than on a pool worker.
    fn runs_on_task(&self) -> bool {
        match &self.passes_on {
            PassesOn::Pool { .. } => false,
            PassesOn::TaskWhileRoom(mailbox) => mailbox.has_room(),
            PassesOn::Task { .. } => true,
        }
    }

    /// Asks for what a worker's pass over this stream will touch, as the run queue puts it
    /// `ahead` of the worker (`RunQueue::with_warm`): the outbox itself when it is second in
    /// line; once first, what the outbox points to (its lines were asked for at the last take,
    /// unless it was queued too late to be second): the shared state, the queued events and their
    /// text, the host's data for its callback.
    pub fn warm_ahead(&self, ahead: Ahead) {
        match ahead {
            Ahead::Second => crate::prefetch::lines_of(self),
            Ahead::First => {
                crate::prefetch::lines_of(&*self.shared);
                self.queued.ask();
                if let PassesOn::Pool { host_data } = self.passes_on {
                    crate::prefetch::line(host_data as *const u8);
                }
            }
        }
    }

    /// A delivery pass that a panic (a plugin bug) cannot take further than this stream: it
    /// ends with `internal` instead, and the pass counts as finished.
    pub fn guarded_pass(&self, buf: &mut Vec<u8>, beat: &Beat, runner: Runner) -> Pass {
        if let Ok(pass) = std::panic::catch_unwind(AssertUnwindSafe(|| self.deliver_pass(buf, beat, runner))) {
            return pass;
        }
        beat.leave();
        crate::log::error("provider", "a delivery pass panicked (a plugin bug): the stream ends with an internal error");
        if std::panic::catch_unwind(AssertUnwindSafe(|| self.fail_after_panic(buf, beat, runner))).is_err() {
            beat.leave();
        }
        Pass::Finished
    }

    fn failure(&self, e: Error) -> Event {
        Event::failure(AssistantMessage::new(&self.model_id), &e)
    }
}

/// Tells the registry a stream is over when dropped: after its terminal callback returned, or
/// while unwinding from it.
struct Finished<'a>(&'a Registry);

impl Drop for Finished<'_> {
    fn drop(&mut self) {
        self.0.finished();
    }
}

impl Outlet for Outbox {
    fn send(self: &Arc<Self>, events: &mut Vec<Event>) -> bool {
        let first = !self.first_token_sent.load(Ordering::Relaxed);
        if first && events.iter().any(carries_answer) {
            self.first_token_sent.store(true, Ordering::Relaxed);
        }
        if let PassesOn::Pool { .. } = self.passes_on {
            self.queued.note(events);
        }
        let sent = self.state.send(events);
        // A full queue stops the task reading the network: a doze must not hold it up too.
        if sent.claimed {
            self.hand_over(first || !sent.room);
        } else if !sent.room {
            self.pool.rouse();
        }
        sent.room
    }

    fn has_room(&self) -> bool {
        self.state.has_room()
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
        // Urgent, as the first token is: what the host does next (run the tool called, start
        // the next turn) waits for the end. Held for a doze, it added up to one to every stream:
        // short streams one after another ran at a tenth of the rate. Once per stream, so the
        // wake-up it costs is not paid per token.
        if self.state.finish(terminal) {
            self.hand_over(true);
        } else {
            // Already on the run queue: a dozing worker takes it now.
            self.pool.rouse();
        }
    }

    fn warm(&self) {
        crate::prefetch::lines_of(self);
        crate::prefetch::lines_of(&*self.shared);
        match self.passes_on {
            // An inline callback runs next on this thread, and a host's callback reads its own
            // per-stream data first.
            PassesOn::Task { host_data } => crate::prefetch::line(host_data as *const u8),
            // The events a worker handed back, which this wake's send drops.
            PassesOn::Pool { .. } => self.spent.ask(),
            PassesOn::TaskWhileRoom(_) => {}
        }
    }

    fn fault(&self) -> Fault {
        self.fault
    }
}

/// Where a batch of events is, and the text of its last delta: written by the thread that had
/// them last, for the thread that touches them next to ask for (`prefetch.rs`) before it does.
/// Hints only: never read through, and wrong at worst (another batch has taken the place).
#[derive(Default)]
struct Whereabouts {
    events: AtomicUsize,
    text: AtomicUsize,
}

impl Whereabouts {
    fn note(&self, events: &[Event]) {
        self.events.store(events.as_ptr() as usize, Ordering::Relaxed);
        let text = events.iter().rev().find_map(|e| match e {
            Event::TextDelta { delta, .. } | Event::ThinkingDelta { delta, .. } | Event::ToolcallDelta { delta, .. } => Some(delta.as_ptr() as usize),
            _ => None,
        });
        self.text.store(text.unwrap_or(0), Ordering::Relaxed);
    }

    /// Asks for the first event, and for the text with the allocator's header before it (freeing
    /// the text writes there).
    fn ask(&self) {
        crate::prefetch::span(self.events.load(Ordering::Relaxed) as *const u8, std::mem::size_of::<Event>());
        crate::prefetch::span((self.text.load(Ordering::Relaxed) as *const u8).wrapping_sub(8), 16);
    }
}

/// Whether the host learns something of the answer from `event`: anything but the stream's
/// `start` and a block's `*_start` (which carry nothing the model said).
fn carries_answer(event: &Event) -> bool {
    !matches!(event, Event::Start { .. } | Event::TextStart { .. } | Event::ThinkingStart { .. } | Event::ToolcallStart { .. })
}

/// The end of a cancelled stream: its final message as far as the host was shown it (`failure`
/// replaces whatever `errorMessage` / `errorInfo` the message had).
fn into_aborted(terminal: Event, shown: &mut Shown, model_id: &str) -> Event {
    let mut message = terminal.into_final_message().unwrap_or_else(|| AssistantMessage::new(model_id));
    shown.trim(&mut message);
    Event::failure(message, &cancelled())
}
