//! The delivery pool's protocol: which worker runs which stream, and who is responsible for work
//! that waits. One struct under one lock; every transition below is one locked step, and the
//! wake-up a transition promises is decided inside it (never a separate step a racing thread can
//! slip between). `tests/loom` model-checks this file as it is.
//!
//! Workers are in one of four states:
//! - **available**: waiting for work, promised to nobody;
//! - **dozing**: asleep for one short `doze`, after which it looks at the queue again without
//!   being woken — so while one dozes, producers wake nobody, unless their work is urgent: then
//!   one dozer is **roused** (its doze ends now; `rousing` counts the dozers asked to, never
//!   more than doze);
//! - **reserved**: promised to queued work — woken for it, or being started for it — and not yet
//!   running it;
//! - **busy**: running a delivery pass (possibly blocked in a host callback for a long time).
//!
//! Why dozing: at a model's real pace every token is its own delivery, and waking a worker for
//! each one (a futex wake and two context switches) cost more than the delivery itself. A
//! worker whose work keeps arriving dozes instead of waiting, and takes what came meanwhile in
//! one wake-up; the price is at most one `doze` of added delay per event. Where that price is
//! not worth paying, the producer says its work is urgent (a stream's first token and its end;
//! a stream whose queue is full and that stopped reading the network): a rouse costs the
//! wake-up a doze saves, and only those events pay it. The worker decides when to doze
//! (`pool.rs`) and the producer what is urgent (`outbox.rs`); this file keeps the promise below
//! whichever they choose. A rouse is a shortcut, never a promise: a doze ends on its own anyway.
//!
//! Transitions:
//! - `schedule(item, urgent)`: the item joins the queue; if a worker dozes, an urgent item
//!   rouses one not yet roused; if none dozes and the queue now holds more items than reserved
//!   workers, one available worker becomes reserved and is woken; with none available a worker
//!   is started (reserved) while there are fewer than `core`; otherwise the watchdog is told.
//! - `rouse`: queued work became urgent (its stream's queue filled up): with work queued, a
//!   dozer not yet roused is roused.
//! - `next`: a reserved or busy worker takes the oldest item (becomes busy); with none it dozes
//!   (if asked to) and looks again, then becomes available and waits; with none and closing it
//!   leaves. A dozing worker wakes when its doze is over or it is roused (it takes one rouse with
//!   it either way); if it finds work, it takes the oldest; if it was the last one
//!   dozing, the items behind it are covered again as `schedule` covers one (its caller starts
//!   the workers or tells the watchdog, as `Behind` says).
//! - `watch(stuck)`: the watchdog starts a worker (reserved) when work waits uncovered and every
//!   worker is stuck in a host callback; it stands down once every queued item is covered.
//! - `close`: no worker is started any more; dozes end; workers deliver what is queued, then
//!   leave.
//!
//! The invariant the model checks: unless closing, every queued item is covered — by a reserved
//! worker, a dozing one, or the watchdog watching. So work never waits for a busy worker to come
//! back.

use super::sync::{doze, lock, Condvar, Mutex, MutexGuard};
use std::collections::VecDeque;
use std::time::Duration;

/// What `schedule` asks of its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheduled {
    /// A worker already reserved will take it.
    Covered,
    /// An available worker was reserved for it and woken.
    Woken,
    /// Urgent: a dozing worker was roused (it looks at the queue now).
    Roused,
    /// Start a worker (already counted as reserved): call `next(true, ..)` on it first.
    StartWorker,
    /// Wake the watchdog: work waits and every worker is busy.
    TellWatchdog,
    /// The watchdog already watches, or the queue is closing.
    Queued,
}

/// What a worker that woke from a doze owes the items queued behind the one it took, and what
/// its doze found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Behind {
    /// Workers to start (already counted as reserved).
    pub start_workers: usize,
    /// Wake the watchdog.
    pub tell_watchdog: bool,
    /// Items waiting when the doze ended, the one taken among them (0: no doze, or it found
    /// nothing): whether dozing gathers work is the worker's to judge (`pool.rs`).
    pub found: usize,
}

/// Where an item a worker is asked to warm stands behind the one it took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ahead {
    /// Taken next: its own lines were asked for at the last take.
    First,
    /// Taken after that.
    Second,
}

/// The watchdog's verdict at one look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Watch {
    /// Start a worker (already counted as reserved).
    StartWorker,
    /// Work still waits; look again later.
    Keep,
    /// Every queued item is covered (or the queue closed): stop looking until told again.
    StandDown,
}

struct State<T> {
    queue: VecDeque<T>,
    workers: usize,
    available: usize,
    dozing: usize,
    /// Dozers asked to wake now that have not yet woken (at most `dozing`).
    rousing: usize,
    reserved: usize,
    /// Reservations made for available workers that no waiting worker has claimed yet.
    signalled: usize,
    watching: bool,
    closing: bool,
}

pub struct RunQueue<T> {
    state: Mutex<State<T>>,
    work: Condvar,
    /// Where dozers sleep: a rouse wakes one of them, and never an available worker.
    dozers: Condvar,
    core: usize,
    max: usize,
    /// Asks for the items a worker takes next, as it takes one: a hint only (see `with_warm`).
    warm: Option<fn(&T, Ahead)>,
}

impl<T> RunQueue<T> {
    pub fn new(core: usize, max: usize) -> RunQueue<T> {
        RunQueue {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                workers: 0,
                available: 0,
                dozing: 0,
                rousing: 0,
                reserved: 0,
                signalled: 0,
                watching: false,
                closing: false,
            }),
            work: Condvar::new(),
            dozers: Condvar::new(),
            core,
            max,
            warm: None,
        }
    }

    /// A queue whose workers, each time one takes an item, call `warm` on the two items queued
    /// behind it (under the lock: it must only ask for memory, never block). A queued stream's
    /// state has gone cold by its turn; fetched while the worker delivers the one before, it is
    /// there when the worker comes to it. Two deep, because what a stream's state points to can
    /// be asked for only once the state itself is in: the second item behind is asked for first
    /// (`Ahead::Second`), and by the next take, when it is the first behind (`Ahead::First`),
    /// what it points to. It changes no transition, so the models run without it.
    pub fn with_warm(core: usize, max: usize, warm: fn(&T, Ahead)) -> RunQueue<T> {
        RunQueue { warm: Some(warm), ..RunQueue::new(core, max) }
    }

    /// Takes the oldest item and asks for the two behind it.
    fn take(&self, s: &mut State<T>) -> Option<T> {
        let item = s.queue.pop_front()?;
        if let Some(warm) = self.warm {
            if let Some(first) = s.queue.front() {
                warm(first, Ahead::First);
            }
            if let Some(second) = s.queue.get(1) {
                warm(second, Ahead::Second);
            }
        }
        Some(item)
    }

    /// Queues `item` (whose stream token the caller holds) and says what the caller must do;
    /// `urgent`: the item should not wait for a doze to end.
    pub fn schedule(&self, item: T, urgent: bool) -> Scheduled {
        let mut s = lock(&self.state);
        s.queue.push_back(item);
        let verdict = self.cover(&mut s, urgent);
        drop(s);
        match verdict {
            Scheduled::Woken => self.work.notify_one(),
            Scheduled::Roused => self.dozers.notify_one(),
            _ => {}
        }
        verdict
    }

    /// Queued work became urgent: a dozer looks now instead of at the end of its doze.
    pub fn rouse(&self) {
        let mut s = lock(&self.state);
        let roused = !s.queue.is_empty() && Self::rouse_one(&mut s);
        drop(s);
        if roused {
            self.dozers.notify_one();
        }
    }

    /// Asks one more dozer to wake now, if one is left to ask.
    fn rouse_one(s: &mut State<T>) -> bool {
        let can = s.dozing > s.rousing;
        if can {
            s.rousing += 1;
        }
        can
    }

    /// Makes sure the newest queued item is covered.
    fn cover(&self, s: &mut State<T>, urgent: bool) -> Scheduled {
        if s.dozing > 0 {
            return if urgent && Self::rouse_one(s) { Scheduled::Roused } else { Scheduled::Covered };
        }
        if s.queue.len() <= s.reserved {
            return Scheduled::Covered;
        }
        if s.available > 0 {
            s.available -= 1;
            s.reserved += 1;
            s.signalled += 1;
            return Scheduled::Woken;
        }
        if s.closing {
            return Scheduled::Queued;
        }
        if s.workers < self.core {
            s.workers += 1;
            s.reserved += 1;
            return Scheduled::StartWorker;
        }
        if !s.watching {
            s.watching = true;
            return Scheduled::TellWatchdog;
        }
        Scheduled::Queued
    }

    /// The next item for a worker; None when it should leave. `reserved` is true on a worker's
    /// first call (it was started reserved). With nothing queued, a worker given `doze` first
    /// dozes that long and looks again; a worker beyond `core` leaves after `linger` idle.
    pub fn next(&self, reserved: bool, linger: Duration, doze_for: Option<Duration>) -> (Option<T>, Behind) {
        let mut s = lock(&self.state);
        if reserved {
            s.reserved -= 1;
        }
        if let Some(d) = doze_for.filter(|_| s.queue.is_empty() && !s.closing) {
            s.dozing += 1;
            s = doze(&self.state, &self.dozers, s, d, |s| s.rousing > 0 || s.closing);
            s.dozing -= 1;
            // Roused or not, this dozer is awake: one rouse is spent (keeps `rousing <= dozing`).
            s.rousing = s.rousing.saturating_sub(1);
            let found = s.queue.len();
            if let Some(item) = self.take(&mut s) {
                let behind = self.cover_behind(&mut s);
                return (Some(item), Behind { found, ..behind });
            }
        }
        (self.wait_next(s, linger), Behind::default())
    }

    /// Covers every queued item again once no worker dozes: the wake-ups, starts and the
    /// watchdog that `schedule` would have asked for, had the items arrived now.
    fn cover_behind(&self, s: &mut State<T>) -> Behind {
        let mut behind = Behind::default();
        let mut woken = 0;
        // Each step covers one more item; once the watchdog watches, the rest answer `Queued`.
        loop {
            match self.cover(s, false) {
                Scheduled::Woken => woken += 1,
                Scheduled::StartWorker => behind.start_workers += 1,
                Scheduled::TellWatchdog => behind.tell_watchdog = true,
                Scheduled::Covered | Scheduled::Roused | Scheduled::Queued => break,
            }
        }
        for _ in 0..woken {
            self.work.notify_one();
        }
        behind
    }

    fn wait_next(&self, mut s: MutexGuard<'_, State<T>>, linger: Duration) -> Option<T> {
        loop {
            if let Some(item) = self.take(&mut s) {
                return Some(item);
            }
            if s.closing {
                s.workers -= 1;
                return None;
            }
            s.available += 1;
            let timed_out = if s.workers > self.core {
                let (guard, result) = self.work.wait_timeout(s, linger).unwrap_or_else(|p| p.into_inner());
                s = guard;
                result.timed_out()
            } else {
                s = self.work.wait(s).unwrap_or_else(|p| p.into_inner());
                false
            };
            if s.signalled > 0 {
                // Claim a reservation (made for some available worker; any waiter may take it).
                s.signalled -= 1;
                s.reserved -= 1;
            } else {
                s.available -= 1;
                if timed_out && s.queue.is_empty() && s.workers > self.core {
                    s.workers -= 1;
                    return None;
                }
            }
        }
    }

    /// A busy worker's stream has more to deliver: it goes behind the others and the worker
    /// takes the oldest item, in one step. The queue's length and reservations do not change, so
    /// what was covered stays covered.
    pub fn pass_on(&self, item: T) -> T {
        let mut s = lock(&self.state);
        s.queue.push_back(item);
        self.take(&mut s).expect("an item was just queued")
    }

    /// The watchdog's look: `stuck` workers are blocked in a host callback.
    pub fn watch(&self, stuck: usize) -> Watch {
        let mut s = lock(&self.state);
        if s.closing || s.dozing > 0 || s.queue.len() <= s.reserved {
            s.watching = false;
            return Watch::StandDown;
        }
        let busy = s.workers - s.available - s.reserved;
        let progressing = s.workers - stuck.min(busy);
        if s.workers < self.max && (s.workers < self.core || progressing == 0) {
            s.workers += 1;
            s.reserved += 1;
            return Watch::StartWorker;
        }
        Watch::Keep
    }

    /// A worker that was counted (StartWorker) could not be started.
    pub fn start_failed(&self) {
        let mut s = lock(&self.state);
        s.workers -= 1;
        s.reserved -= 1;
    }

    /// No worker starts any more; the workers deliver what is queued, then leave.
    pub fn close(&self) {
        lock(&self.state).closing = true;
        self.work.notify_all();
        self.dozers.notify_all();
    }

    /// Takes what is queued (after the workers left): for a caller that delivers it itself.
    pub fn take_queued(&self) -> Option<T> {
        lock(&self.state).queue.pop_front()
    }

    /// For the loom models' checks.
    #[allow(dead_code)]
    pub fn workers(&self) -> usize {
        lock(&self.state).workers
    }

    /// Items waiting, and whether each is covered (by a reserved worker, a dozing one, the
    /// watchdog or closing): the models' invariant.
    #[allow(dead_code)]
    pub fn coverage(&self) -> (usize, bool) {
        let s = lock(&self.state);
        assert!(s.rousing <= s.dozing, "more dozers roused than doze");
        (s.queue.len(), s.closing || s.watching || s.dozing > 0 || s.queue.len() <= s.reserved)
    }
}
