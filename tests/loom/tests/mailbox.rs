//! loom models of the mailbox protocol (`src/provider/mailbox_state.rs`, compiled as it ships):
//! filers and the host's taker, a full box, and the close, in every interleaving. A filer's
//! wait for room is timed (it looks at its stream's cancel now and then), so waking it is a
//! shortcut the models cannot miss; what they check is that no wait outlives what it waits for
//! and no event is lost, doubled or reordered.
//!
//! `cargo test --release -p loom-delivery` (part of the default test command).

use loom::sync::Arc;
use loom::thread;
use loom_delivery::mailbox_state::{MailboxState, Taken};

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(3);
    builder.check(f);
}

/// Files one event, `line`, as a delivery pass would.
fn put(b: &MailboxState, line: &'static [u8], may_wait: bool, go_on: impl Fn() -> bool) -> bool {
    b.file(may_wait, go_on, |into| {
        into.extend_from_slice(line);
        1
    })
}

/// Takes (without a deadline) until `want` events came; the bytes, in the order taken.
fn take_all(b: &MailboxState, want: usize) -> Vec<u8> {
    let (mut got, mut bytes, mut buf) = (0, Vec::new(), Vec::new());
    while got < want {
        match b.take(&mut buf, None) {
            Taken::Events(n) => {
                got += n;
                bytes.extend_from_slice(&buf);
            }
            other => panic!("the box said {other:?} with {got} of {want} events taken"),
        }
    }
    bytes
}

#[test]
fn a_taker_never_misses_what_two_filers_file() {
    // A lost wake-up leaves the untimed take asleep with events filed: loom reports the deadlock.
    model(|| {
        let b = Arc::new(MailboxState::new(1 << 20));
        let filers: Vec<_> = [b"a\n", b"b\n"]
            .into_iter()
            .map(|line| {
                let b = b.clone();
                thread::spawn(move || assert!(put(&b, line, true, || true)))
            })
            .collect();
        let mut bytes = take_all(&b, 2);
        for f in filers {
            f.join().unwrap();
        }
        bytes.sort();
        assert_eq!(bytes, b"\n\nab");
    });
}

#[test]
fn a_full_box_holds_its_filer_until_a_take_and_keeps_the_order() {
    model(|| {
        let b = Arc::new(MailboxState::new(2));
        let filer = {
            let b = b.clone();
            thread::spawn(move || {
                assert!(put(&b, b"1\n", true, || true));
                // The box holds its capacity now: this one waits for the take.
                assert!(put(&b, b"2\n", true, || true));
            })
        };
        assert_eq!(take_all(&b, 2), b"1\n2\n");
        filer.join().unwrap();
    });
}

#[test]
fn a_close_ends_a_take_and_frees_a_filer_waiting_for_room() {
    model(|| {
        let b = Arc::new(MailboxState::new(2));
        assert!(put(&b, b"x\n", true, || true));
        let filer = {
            let b = b.clone();
            // Full and never taken from: only the close lets it go, and its event is dropped.
            thread::spawn(move || put(&b, b"y\n", true, || true))
        };
        let other = Arc::new(MailboxState::new(2));
        let taker = {
            let other = other.clone();
            thread::spawn(move || other.take(&mut Vec::new(), None))
        };
        b.close();
        other.close();
        assert!(!filer.join().unwrap(), "filed into a closed box");
        assert_eq!(taker.join().unwrap(), Taken::Closed);
        // What was filed before the close is still there, once.
        let mut buf = Vec::new();
        assert_eq!(b.take(&mut buf, None), Taken::Events(1));
        assert_eq!(buf, b"x\n");
        assert_eq!(b.take(&mut buf, None), Taken::Closed);
    });
}

#[test]
fn a_cancelled_filer_gives_up_and_a_terminal_event_never_waits() {
    model(|| {
        let b = Arc::new(MailboxState::new(2));
        assert!(put(&b, b"x\n", true, || true));
        let cancelled = Arc::new(loom::sync::atomic::AtomicBool::new(false));
        let filer = {
            let (b, cancelled) = (b.clone(), cancelled.clone());
            thread::spawn(move || {
                let filed = put(&b, b"y\n", true, || !cancelled.load(loom::sync::atomic::Ordering::SeqCst));
                // Its end goes in although the box is still full.
                assert!(put(&b, b"end\n", false, || true));
                filed
            })
        };
        cancelled.store(true, loom::sync::atomic::Ordering::SeqCst);
        assert!(!filer.join().unwrap(), "a cancelled filer's event went in with the box full");
        let mut buf = Vec::new();
        assert_eq!(b.take(&mut buf, None), Taken::Events(2));
        assert_eq!(buf, b"x\nend\n");
    });
}

#[test]
fn a_filer_that_may_not_wait_files_past_the_capacity_and_one_that_may_still_waits() {
    // A stream's own task files only after `has_room` (else a pool worker files for it);
    // another filer can fill the box between the two, and the task must still not wait (it
    // would hold a runtime thread). A filer that may wait waits while the box is full.
    model(|| {
        let b = Arc::new(MailboxState::new(2));
        let worker = {
            let b = b.clone();
            thread::spawn(move || {
                assert!(put(&b, b"w\n", true, || true));
                assert!(put(&b, b"v\n", true, || true));
            })
        };
        // This thread is the task: it files at once, or not at all (the pool's worker would).
        let filed = b.has_room() && put(&b, b"t\n", false, || true);
        let text = String::from_utf8(take_all(&b, 2 + usize::from(filed))).unwrap();
        worker.join().unwrap();
        // The worker's events keep their order, and each event went in once.
        assert!(text.find('w').unwrap() < text.find('v').unwrap(), "{text:?}");
        assert_eq!(text.len(), 2 * (2 + usize::from(filed)), "{text:?}");
        assert_eq!(text.contains('t'), filed, "{text:?}");
    });
}
