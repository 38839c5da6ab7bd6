//! loom models of the delivery protocol: every interleaving of the threads below (up to the
//! preemption bound) runs the plugin's own `run_queue.rs` and `outbox_state.rs`.
//!
//! `cargo test --release -p loom-delivery` (part of the default test command).

use loom::sync::{Arc, Condvar, Mutex};
use loom::thread;
use loom_delivery::before_fix::OldRunQueue;
use loom_delivery::outbox_state::{OutboxState, Take};
use loom_delivery::run_queue::{RunQueue, Scheduled, Watch};
use std::time::Duration;

const LINGER: Duration = Duration::from_secs(1);

/// Every interleaving, with no preemption bound (each model here completes in well under a
/// second); prints how many executions loom explored.
fn model(f: impl Fn() + Sync + Send + 'static) {
    let executions = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = executions.clone();
    let started = std::time::Instant::now();
    loom::model::Builder::new().check(move || {
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        f()
    });
    eprintln!("loom: {} executions in {:?}", executions.load(std::sync::atomic::Ordering::Relaxed), started.elapsed());
}

/// What the lost-wake-up model needs of a run queue, so it runs on the fixed protocol and on
/// the one before the fix.
trait Queue: Send + Sync + 'static {
    fn schedule(&self, item: u32) -> Scheduled;
    fn next(&self, reserved: bool) -> Option<u32>;
    fn coverage(&self) -> (usize, bool);
}

impl Queue for RunQueue<u32> {
    fn schedule(&self, item: u32) -> Scheduled {
        RunQueue::schedule(self, item)
    }
    fn next(&self, reserved: bool) -> Option<u32> {
        RunQueue::next(self, reserved, LINGER)
    }
    fn coverage(&self) -> (usize, bool) {
        RunQueue::coverage(self)
    }
}

impl Queue for OldRunQueue<u32> {
    fn schedule(&self, item: u32) -> Scheduled {
        OldRunQueue::schedule(self, item)
    }
    fn next(&self, reserved: bool) -> Option<u32> {
        OldRunQueue::next(self, reserved, LINGER)
    }
    fn coverage(&self) -> (usize, bool) {
        OldRunQueue::coverage(self)
    }
}

/// The lost wake-up of issue #16: two core workers wait; three streams become runnable before
/// either wakes; each worker takes one and blocks in its callback for good. The third must not
/// wait for them: a worker is reserved for it or the watchdog is watching.
fn lost_wake_up_model<Q: Queue>(make: fn() -> Q) {
    model(move || {
        let q = Arc::new(make());
        assert_eq!(q.schedule(0), Scheduled::StartWorker);
        assert_eq!(q.schedule(1), Scheduled::StartWorker);
        let workers: Vec<_> = (0..2)
            .map(|_| {
                let q = q.clone();
                thread::spawn(move || {
                    let first = q.next(true).expect("started for work");
                    // The second item's callback blocks for good: this worker never comes back.
                    let second = q.next(false).expect("work arrives");
                    [first, second]
                })
            })
            .collect();
        let producer = {
            let q = q.clone();
            thread::spawn(move || [q.schedule(10), q.schedule(11), q.schedule(12)])
        };
        let verdicts = producer.join().unwrap();
        let taken: Vec<u32> = workers.into_iter().flat_map(|w| w.join().unwrap()).collect();
        let (queued, covered) = q.coverage();
        assert_eq!(queued, 1, "taken {taken:?}");
        assert!(covered, "a stream waits behind two blocked workers and nobody will start one for it (schedule said {verdicts:?})");
    });
}

#[test]
fn a_runnable_stream_never_waits_for_a_blocked_worker() {
    lost_wake_up_model(|| RunQueue::new(2, 8));
}

/// The same model on the protocol before the fix (`src/before_fix.rs`): all three schedules saw
/// two idle workers, the third notify woke nobody, and nobody was told.
#[test]
#[should_panic(expected = "nobody will start one for it")]
fn the_model_catches_the_lost_wake_up_of_the_old_protocol() {
    lost_wake_up_model(|| OldRunQueue::new(2));
}

/// The watchdog's side: with every worker stuck, it starts one for the waiting stream, and
/// stands down once that worker is reserved for it.
#[test]
fn the_watchdog_starts_a_worker_past_stuck_ones_and_stands_down() {
    model(|| {
        let q = Arc::new(RunQueue::new(2, 8));
        assert_eq!(q.schedule(0), Scheduled::StartWorker);
        assert_eq!(q.schedule(1), Scheduled::StartWorker);
        assert_eq!(q.next(true, LINGER), Some(0));
        assert_eq!(q.next(true, LINGER), Some(1));
        // Both workers are now stuck in callbacks.
        let producer = {
            let q = q.clone();
            thread::spawn(move || q.schedule(2))
        };
        let watchdog = {
            let q = q.clone();
            thread::spawn(move || {
                let mut started = 0;
                // Bounded looks: the model has no clock; each look is one watchdog pass.
                for _ in 0..3 {
                    match q.watch(2) {
                        Watch::StartWorker => {
                            started += 1;
                            assert_eq!(q.next(true, LINGER), Some(2));
                        }
                        Watch::StandDown | Watch::Keep => {}
                    }
                }
                started
            })
        };
        let verdict = producer.join().unwrap();
        let started = watchdog.join().unwrap();
        assert_eq!(verdict, Scheduled::TellWatchdog);
        let (queued, _) = q.coverage();
        // Either the watchdog looked after the stream arrived (started one worker, which took
        // it) or it looked only before (stream still queued, still watched).
        assert!(started <= 1, "one stream, {started} workers started");
        assert_eq!(queued, 1 - started);
        assert_eq!(q.coverage().1, true);
    });
}

/// Closing while streams are scheduled: workers deliver everything queued, then leave; none
/// is left waiting.
#[test]
fn close_delivers_what_is_queued_and_every_worker_leaves() {
    model(|| {
        let q = Arc::new(RunQueue::new(1, 4));
        assert_eq!(q.schedule(0), Scheduled::StartWorker);
        let worker = {
            let q = q.clone();
            thread::spawn(move || {
                let mut got = vec![q.next(true, LINGER).expect("started for work")];
                while let Some(item) = q.next(false, LINGER) {
                    got.push(item);
                }
                got
            })
        };
        let producer = {
            let q = q.clone();
            thread::spawn(move || {
                q.schedule(1);
                q.schedule(2);
            })
        };
        producer.join().unwrap();
        q.close();
        let got = worker.join().unwrap();
        assert_eq!(got, vec![0, 1, 2]);
        assert_eq!(q.workers(), 0);
    });
}

/// tokio's `Notify` as the stream task uses it: a notify with nobody waiting leaves a permit.
#[derive(Default)]
struct Notify {
    permit: Mutex<bool>,
    cv: Condvar,
}

impl Notify {
    fn notify_one(&self) {
        *self.permit.lock().unwrap() = true;
        self.cv.notify_all();
    }

    fn notified(&self) {
        let mut permit = self.permit.lock().unwrap();
        while !*permit {
            permit = self.cv.wait(permit).unwrap();
        }
        *permit = false;
    }
}

enum Item {
    Start,
    Stream,
}

/// One stream end to end: its task sends events into a queue of one (so it waits for room)
/// and finishes; a worker delivers passes, passing the stream on when more arrived. Every
/// event arrives once, in order, the terminal event once and last, and the task is never left
/// waiting for room.
#[test]
fn a_stream_delivers_every_event_once_in_order_then_its_end() {
    model(|| {
        let outbox = Arc::new(OutboxState::<u32>::new(1));
        let room = Arc::new(Notify::default());
        let q = Arc::new(RunQueue::new(1, 4));
        assert_eq!(q.schedule(Item::Start), Scheduled::StartWorker);
        let worker = {
            let (q, outbox, room) = (q.clone(), outbox.clone(), room.clone());
            thread::spawn(move || {
                let mut delivered = Vec::new();
                let mut batch = Vec::new();
                let mut next = q.next(true, LINGER);
                loop {
                    match next.expect("a scheduled stream is always delivered") {
                        Item::Start => next = q.next(false, LINGER),
                        Item::Stream => match outbox.take(&mut batch) {
                            Take::Idle => next = q.next(false, LINGER),
                            Take::Batch { was_full } => {
                                if was_full {
                                    room.notify_one();
                                }
                                delivered.append(&mut batch);
                                next = if outbox.after_batch() { q.next(false, LINGER) } else { Some(q.pass_on(Item::Stream)) };
                            }
                            Take::Terminal(end) => {
                                delivered.push(end.expect("the task's terminal event"));
                                return delivered;
                            }
                        },
                    }
                }
            })
        };
        for event in [1, 2] {
            let sent = outbox.send(&mut vec![event]);
            if sent.claimed {
                q.schedule(Item::Stream);
            }
            if !sent.room {
                while !outbox.has_room() {
                    room.notified();
                }
            }
        }
        if outbox.finish(99) {
            q.schedule(Item::Stream);
        }
        assert!(!outbox.finish(100), "a second end is ignored");
        let delivered = worker.join().unwrap();
        assert_eq!(delivered, vec![1, 2, 99]);
    });
}
