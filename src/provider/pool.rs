//! The delivery pool: threads that call host callbacks, as many as callbacks are running, not as
//! many as streams are open. Which worker takes which stream is the run queue's protocol
//! (`run_queue.rs`, model-checked); this file gives it threads, and a watchdog that judges when
//! a worker is stuck.
//!
//! A worker is **stuck** when one host callback has been running for `STUCK` or more. While
//! work waits uncovered and every worker is stuck, the watchdog adds one, up to `MAX_THREADS`:
//! so threads are added only for callbacks that really block, one per `STUCK` at most, and a
//! host that stalls for a moment (a busy JS main thread) adds at most one thread per `STUCK` of
//! stall. Workers beyond `CORE` leave after `EXTRA_IDLE` without work.
//!
//! Why 200 ms: below it, brief stalls that end on their own (a GC pause, a busy event loop)
//! would grow the pool; above it, streams queued behind blocked callbacks wait longer before a
//! worker is added for them. At 200 ms a 1 s stall of every callback adds about five threads,
//! and a stream queued behind two blocked callbacks starts within about 200 ms.
//!
//! Workers are the runtime's blocking threads (named, counted, and joined by its shutdown, as
//! the unload guarantees require); a worker is one long `spawn_blocking` job.

use super::delivery::Runner;
use super::outbox::{Outbox, Pass};
use super::run_queue::{Behind, RunQueue, Scheduled, Watch};
use super::sync::lock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::runtime::Handle;
use tokio::sync::Notify;

/// Workers kept while the provider lives (started by the first streams).
pub const CORE: usize = 2;
/// Delivery threads at most: once this many callbacks block at once, other streams wait.
pub const MAX_THREADS: usize = 512;
/// How long one callback runs before its worker counts as stuck.
pub const STUCK: Duration = Duration::from_millis(200);
/// How long an extra worker stays without work.
const EXTRA_IDLE: Duration = Duration::from_secs(1);
/// How often the watchdog looks while work waits and no callback is running (workers are
/// between callbacks: they will come back on their own).
const LOOK_EVERY: Duration = Duration::from_millis(2);
/// A worker's first doze, and its shortest (or the pool's gather, if shorter).
const FIRST_DOZE: Duration = Duration::from_millis(4);
/// Streams a doze should find for its wake-up to cost little beside their delivery: fewer, and
/// the next doze is longer (up to the pool's gather); twice as many, and it is shorter.
const ENOUGH: usize = 64;
/// Fewer streams than this in one doze are a stream or two at a model's pace (or what another
/// dozer left): a longer doze would only delay them, so the next one is shorter.
const FEW: usize = 3;

/// One worker's sign of life: since when its current host callback runs.
#[derive(Default)]
pub struct Beat {
    /// When the running callback started (`coarse_now`, in nanoseconds), plus one; 0 outside one.
    since: AtomicU64,
}

/// The monotonic clock at its coarse resolution (a few milliseconds, against a 200 ms
/// threshold): read once per host callback, it must cost next to nothing.
fn coarse_now() -> Duration {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: writes the current time into `t`; CLOCK_MONOTONIC_COARSE always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut t) };
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

impl Beat {
    /// A host callback starts.
    pub fn enter(&self) {
        self.since.store(coarse_now().as_nanos() as u64 + 1, Ordering::Relaxed);
    }

    /// The host callback returned.
    pub fn leave(&self) {
        self.since.store(0, Ordering::Relaxed);
    }

    /// How long the running callback has run, if one does.
    fn running_for(&self, now: Duration) -> Option<Duration> {
        match self.since.load(Ordering::Relaxed) {
            0 => None,
            since => Some(now.saturating_sub(Duration::from_nanos(since - 1))),
        }
    }
}

pub struct Pool {
    queue: RunQueue<Arc<Outbox>>,
    /// The longest a worker whose work keeps arriving dozes before it looks again, instead of
    /// waiting to be woken (`run_queue.rs`): the most delay this adds to one event. None: never
    /// (every event wakes a worker at once). How long each doze is: `next_doze`. Why dozing
    /// pays, and its default: `config.rs` (`provider.deliveryGatherMs`).
    gather: Option<Duration>,
    beats: Mutex<Vec<Arc<Beat>>>,
    help: Notify,
    runtime: Handle,
}

impl Pool {
    /// `gather`: the longest a worker whose work keeps arriving dozes (zero: it never does).
    pub fn new(runtime: Handle, gather: Duration) -> Arc<Pool> {
        let pool = Arc::new(Pool {
            queue: RunQueue::with_warm(CORE, MAX_THREADS, |outbox, ahead| outbox.warm_ahead(ahead)),
            gather: Some(gather).filter(|g| !g.is_zero()),
            beats: Mutex::default(),
            help: Notify::new(),
            runtime: runtime.clone(),
        });
        runtime.spawn(watchdog(pool.clone()));
        pool
    }

    /// Puts a stream whose token the caller holds on the run queue; `urgent`: it should not wait
    /// for a dozing worker's doze to end. Called on plugin threads only (telling the watchdog
    /// wakes a tokio task).
    pub fn schedule(self: &Arc<Self>, outbox: Arc<Outbox>, urgent: bool) {
        match self.queue.schedule(outbox, urgent) {
            Scheduled::StartWorker => self.start_worker(),
            Scheduled::TellWatchdog => self.help.notify_one(),
            Scheduled::Covered | Scheduled::Woken | Scheduled::Roused | Scheduled::Queued => {}
        }
    }

    /// A queued stream's work became urgent: a dozing worker takes it now.
    pub fn rouse(&self) {
        self.queue.rouse();
    }

    /// Starts a worker the run queue has already counted (reserved).
    fn start_worker(self: &Arc<Self>) {
        let beat = Arc::new(Beat::default());
        lock(&self.beats).push(beat.clone());
        let start = WorkerStart { pool: Some(self.clone()), beat };
        // Dropped unrun only if the runtime is shutting down: `WorkerStart::drop` uncounts it.
        let _ = self.runtime.spawn_blocking(move || start.run());
    }

    fn worker_main(self: &Arc<Self>, beat: &Beat) {
        let mut buf = Vec::with_capacity(4096);
        let mut doze = None;
        let mut next = self.next(true, &mut doze);
        while let Some(outbox) = next {
            next = match outbox.guarded_pass(&mut buf, beat, Runner::Worker) {
                Pass::More => Some(self.queue.pass_on(outbox)),
                Pass::Idle | Pass::Finished => self.next(false, &mut doze),
            };
        }
    }

    /// A worker's next stream; `doze` says how long this worker dozes first (None: it waits to
    /// be woken), and is updated for its next call. A worker dozes while work keeps arriving:
    /// its last wait was shorter than a first doze, or its doze found work. A few streams, or
    /// one at a model's pace, wait longer than that between tokens, and are woken for each (a
    /// doze would find nothing).
    fn next(self: &Arc<Self>, reserved: bool, doze: &mut Option<Duration>) -> Option<Arc<Outbox>> {
        let asked = Instant::now();
        let (item, behind) = self.queue.next(reserved, EXTRA_IDLE, *doze);
        self.cover_behind(behind);
        *doze = self.gather.and_then(|gather| {
            let first = FIRST_DOZE.min(gather);
            let dozed = doze.unwrap_or(first);
            if behind.found > 0 {
                return Some(next_doze(dozed, behind.found, first, gather));
            }
            // No doze found work: either this call took what was already queued (the length
            // stands), or it waited, and a wait as long as a first doze means too few streams
            // to gather (a doze that found nothing lasted that long too).
            (asked.elapsed() < first).then_some(dozed)
        });
        item
    }

    fn cover_behind(self: &Arc<Self>, behind: Behind) {
        for _ in 0..behind.start_workers {
            self.start_worker();
        }
        if behind.tell_watchdog {
            self.help.notify_one();
        }
    }

    /// Workers finish what is queued and leave; the runtime's shutdown joins them.
    pub fn close(&self) {
        self.queue.close();
        self.help.notify_one();
    }

    /// Streams left queued once the workers are gone: none unless a stream was dropped by the
    /// runtime's shutdown after its workers left, which `free`'s order rules out.
    pub fn left_behind(&self) -> usize {
        std::iter::from_fn(|| self.queue.take_queued()).count()
    }

    /// Workers blocked in one host callback for `STUCK` or more, and how long until the next
    /// running callback reaches `STUCK` (the watchdog's next look).
    fn stuck(&self) -> (usize, Duration) {
        let now = coarse_now();
        let mut stuck = 0;
        let mut next_look = STUCK;
        let mut running = false;
        for beat in lock(&self.beats).iter() {
            if let Some(ran) = beat.running_for(now) {
                running = true;
                if ran >= STUCK {
                    stuck += 1;
                } else {
                    next_look = next_look.min(STUCK - ran);
                }
            }
        }
        (stuck, if running { next_look.max(Duration::from_millis(1)) } else { LOOK_EVERY })
    }
}

/// How long a worker's next doze is, after one of `dozed` that found `found` streams waiting: a
/// wake-up costs a delivery thread what delivering a few dozen tokens does, so a doze that finds
/// several streams but fewer than `ENOUGH` is doubled (up to `gather`), and one that finds twice
/// as many is halved (down to `first`). At a few dozen streams a 4 ms doze finds a handful of
/// tokens, and its wake-up cost more than delivering them; from some hundreds of streams up,
/// `first` finds plenty. A doze that found fewer than `FEW` is halved too: halving rather than
/// starting over, because two workers dozing side by side each find only part of what came.
fn next_doze(dozed: Duration, found: usize, first: Duration, gather: Duration) -> Duration {
    if (FEW..ENOUGH).contains(&found) {
        (dozed * 2).min(gather)
    } else if found < FEW || found >= 2 * ENOUGH {
        (dozed / 2).max(first)
    } else {
        dozed
    }
}

/// A worker on its way to a blocking thread; uncounts itself if the runtime never ran it.
struct WorkerStart {
    pool: Option<Arc<Pool>>,
    beat: Arc<Beat>,
}

impl WorkerStart {
    fn run(mut self) {
        let pool = self.pool.take().expect("run once");
        pool.worker_main(&self.beat);
        lock(&pool.beats).retain(|b| !Arc::ptr_eq(b, &self.beat));
    }
}

impl Drop for WorkerStart {
    fn drop(&mut self) {
        if let Some(pool) = self.pool.take() {
            pool.queue.start_failed();
            lock(&pool.beats).retain(|b| !Arc::ptr_eq(b, &self.beat));
        }
    }
}

/// Sleeps until the pool reports uncovered work, then looks until it is covered, adding a
/// worker whenever every worker is stuck.
async fn watchdog(pool: Arc<Pool>) {
    loop {
        pool.help.notified().await;
        loop {
            let (stuck, next_look) = pool.stuck();
            match pool.queue.watch(stuck) {
                Watch::StandDown => break,
                Watch::StartWorker => pool.start_worker(),
                Watch::Keep => tokio::time::sleep(next_look).await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::run_queue::{RunQueue, Scheduled};
    use std::sync::mpsc;
    use std::sync::Arc;
    use std::thread;
    use std::time::Duration;

    /// A doze long enough that a worker still asleep after `ROUSED_WITHIN` was not roused.
    const LONG_DOZE: Duration = Duration::from_secs(120);
    const ROUSED_WITHIN: Duration = Duration::from_secs(30);

    /// A doze doubles while it finds several streams but not enough, and halves when it finds
    /// plenty or only a stream or two; never outside `first..=gather`.
    #[test]
    fn a_doze_lengthens_while_it_gathers_few_streams_and_shortens_when_it_gathers_many() {
        let ms = Duration::from_millis;
        let (first, gather) = (ms(4), ms(16));
        let mut doze = first;
        for expect in [ms(8), ms(16), ms(16)] {
            doze = super::next_doze(doze, 10, first, gather);
            assert_eq!(doze, expect, "25 streams' tokens, a handful per doze");
        }
        assert_eq!(super::next_doze(ms(16), super::ENOUGH, first, gather), ms(16), "enough: kept");
        assert_eq!(super::next_doze(ms(16), 2 * super::ENOUGH, first, gather), ms(8), "plenty: halved");
        assert_eq!(super::next_doze(ms(4), 1000, first, gather), ms(4), "never below the first");
        assert_eq!(super::next_doze(ms(16), 1, first, gather), ms(8), "a stream or two: halved");
        assert_eq!(super::next_doze(ms(8), 0, first, gather), ms(4), "and back to the first");
        assert_eq!(super::next_doze(ms(4), 10, ms(4), ms(4)), ms(4), "a gather of 4 ms dozes 4 ms, as before");
    }

    /// A worker that takes a stream asks for the two queued behind it: the next one's pointees
    /// (`Ahead::First`: its own lines were asked for a take earlier) and the one after's own
    /// lines (`Ahead::Second`); with one left behind, only that one; with none, nothing.
    #[test]
    fn a_worker_taking_a_stream_asks_for_the_two_behind_it() {
        use super::super::run_queue::Ahead;
        type Asked = std::sync::Mutex<Vec<(u32, Ahead)>>;
        let asked = Arc::new(Asked::default());
        let q = RunQueue::with_warm(1, 1, |item: &(u32, Arc<Asked>), ahead| item.1.lock().unwrap().push((item.0, ahead)));
        assert_eq!(q.schedule((1, asked.clone()), false), Scheduled::StartWorker);
        for i in 2..=4 {
            q.schedule((i, asked.clone()), false);
        }
        let mut taken = vec![q.next(true, super::EXTRA_IDLE, None).0.expect("queued").0];
        while taken.len() < 4 {
            taken.push(q.next(false, super::EXTRA_IDLE, None).0.expect("queued").0);
        }
        assert_eq!(taken, [1, 2, 3, 4]);
        assert_eq!(
            *asked.lock().unwrap(),
            [(2, Ahead::First), (3, Ahead::Second), (3, Ahead::First), (4, Ahead::Second), (4, Ahead::First)]
        );
    }

    /// The loom models end a doze at any point; this is the std side they cannot check: an
    /// urgent item and a `rouse` really end a doze, and an ordinary item does not.
    #[test]
    fn urgent_work_ends_a_doze_and_other_work_does_not() {
        let q = Arc::new(RunQueue::new(1, 1));
        assert_eq!(q.schedule(0u32, false), Scheduled::StartWorker);
        let (taken, got) = mpsc::channel();
        let worker = {
            let q = q.clone();
            thread::spawn(move || {
                assert_eq!(q.next(true, super::EXTRA_IDLE, None).0, Some(0));
                // Back from a callback, with nothing queued: this worker dozes.
                while let (Some(item), _) = q.next(false, super::EXTRA_IDLE, Some(LONG_DOZE)) {
                    taken.send(item).unwrap();
                }
            })
        };
        // Each item goes in once the worker dozes (until then it would be woken, not roused).
        let when_dozing = |item: u32, urgent: bool| loop {
            match q.schedule(item, urgent) {
                Scheduled::Roused | Scheduled::Covered => return,
                _ => {
                    assert_eq!(got.recv_timeout(ROUSED_WITHIN), Ok(item), "woken, not dozing yet");
                    thread::sleep(Duration::from_millis(10));
                }
            }
        };
        when_dozing(1, true);
        assert_eq!(got.recv_timeout(ROUSED_WITHIN), Ok(1), "an urgent item did not end the doze");

        when_dozing(2, false);
        assert_eq!(got.recv_timeout(Duration::from_millis(300)), Err(mpsc::RecvTimeoutError::Timeout), "an ordinary item ended the doze");
        q.rouse();
        assert_eq!(got.recv_timeout(ROUSED_WITHIN), Ok(2), "a rouse did not end the doze");

        // Closing ends a doze too: the worker leaves now, not in two minutes.
        q.close();
        worker.join().unwrap();
    }
}
