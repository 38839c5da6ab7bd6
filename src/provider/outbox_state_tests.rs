//! The outbox protocol's hand-back of spent events, on real threads. Kept out of
//! `outbox_state.rs`, which `tests/loom` compiles against loom's primitives (usable only inside a
//! model); the protocol itself is model-checked there.

use super::outbox_state::{OutboxState, Take};
use std::sync::{Arc, Mutex};
use std::thread::{self, ThreadId};

/// An event that records which thread dropped it.
struct Traced(Arc<Mutex<Vec<ThreadId>>>);

impl Drop for Traced {
    fn drop(&mut self) {
        self.0.lock().unwrap().push(thread::current().id());
    }
}

#[test]
fn delivered_events_are_dropped_by_the_task_that_made_them() {
    let dropped = Arc::new(Mutex::new(Vec::new()));
    let outbox = Arc::new(OutboxState::new(8));
    let task = thread::current().id();
    let mut pending = vec![Traced(dropped.clone()), Traced(dropped.clone())];
    assert!(outbox.send(&mut pending).claimed);
    let worker = {
        let outbox = outbox.clone();
        thread::spawn(move || {
            let mut batch = Vec::new();
            assert!(matches!(outbox.take(&mut batch), Take::Batch { was_full: false }));
            assert_eq!(batch.len(), 2);
            let drained = outbox.after_batch(&mut batch, true);
            assert!(batch.is_empty(), "the pass's vector is ready for the next pass");
            drained
        })
    };
    assert!(worker.join().unwrap(), "nothing arrived meanwhile: the token was given back");
    assert!(dropped.lock().unwrap().is_empty(), "delivered events wait for the task");
    pending.push(Traced(dropped.clone()));
    assert!(outbox.send(&mut pending).claimed);
    assert!(pending.is_empty());
    assert_eq!(*dropped.lock().unwrap(), vec![task, task], "the task's next send dropped the two delivered");
}

#[test]
fn a_second_pass_before_the_task_sends_again_drops_its_own_events() {
    let dropped = Arc::new(Mutex::new(Vec::new()));
    let count = || dropped.lock().unwrap().len();
    let outbox = OutboxState::new(8);
    let mut batch = Vec::new();
    outbox.send(&mut vec![Traced(dropped.clone())]);
    assert!(matches!(outbox.take(&mut batch), Take::Batch { .. }));
    // More arrived during the pass: the stream is passed on, and its next pass comes before
    // the task sends again.
    outbox.send(&mut vec![Traced(dropped.clone())]);
    assert!(!outbox.after_batch(&mut batch, true), "passed on");
    assert_eq!(count(), 0, "the first pass's event waits for the task");
    assert!(matches!(outbox.take(&mut batch), Take::Batch { .. }));
    assert!(outbox.after_batch(&mut batch, true));
    assert_eq!(count(), 1, "the second pass dropped its own: the first's still waits");
    outbox.send(&mut Vec::new());
    assert_eq!(count(), 2, "the task's next send dropped the first pass's");
}

#[test]
fn a_pass_on_the_tasks_own_thread_drops_what_it_delivered_as_it_ends() {
    let dropped = Arc::new(Mutex::new(Vec::new()));
    let count = || dropped.lock().unwrap().len();
    let outbox = OutboxState::new(8);
    let mut batch = Vec::new();
    let mut pending = vec![Traced(dropped.clone()), Traced(dropped.clone())];
    assert!(outbox.send(&mut pending).claimed);
    assert!(matches!(outbox.take(&mut batch), Take::Batch { was_full: false }));
    assert!(outbox.after_batch(&mut batch, false), "nothing arrived meanwhile");
    assert!(batch.is_empty(), "the pass's vector is ready for the next pass");
    assert_eq!(*dropped.lock().unwrap(), vec![thread::current().id(); 2], "dropped as the pass ended, not kept for the next send");
    pending.push(Traced(dropped.clone()));
    assert!(outbox.send(&mut pending).claimed);
    assert_eq!(count(), 2, "the next send had nothing handed back to drop");
    assert!(matches!(outbox.take(&mut batch), Take::Batch { .. }));
    assert!(outbox.after_batch(&mut batch, false));
    assert_eq!(count(), 3);
}
