//! The plugin's delivery protocol files, compiled against loom's `Mutex` / `Condvar` instead of
//! std's: `sync` below stands in for `src/provider/sync.rs`, so the model runs the code that
//! ships, not a copy of it. The models are in `tests/`.

pub mod sync {
    pub use loom::sync::{Condvar, Mutex, MutexGuard};

    pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
        m.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// loom has no clock (its `wait_timeout` never times out): a doze ends after the other
    /// threads made any progress at all, roused or not.
    pub fn doze<'a, T>(m: &'a Mutex<T>, _: &Condvar, guard: MutexGuard<'a, T>, _: std::time::Duration, _: impl FnMut(&mut T) -> bool) -> MutexGuard<'a, T> {
        drop(guard);
        loom::thread::yield_now();
        lock(m)
    }

    /// An untimed wait (the protocols' timed waits go through `doze`): a lost notify
    /// deadlocks the model.
    pub fn wait_while_until<'a, T>(
        cv: &Condvar,
        guard: MutexGuard<'a, T>,
        _: Option<std::time::Instant>,
        mut busy: impl FnMut(&mut T) -> bool,
    ) -> (MutexGuard<'a, T>, bool) {
        let mut guard = guard;
        while busy(&mut guard) {
            guard = cv.wait(guard).unwrap_or_else(|p| p.into_inner());
        }
        (guard, true)
    }
}

#[path = "../../../src/provider/run_queue.rs"]
pub mod run_queue;

#[path = "../../../src/provider/outbox_state.rs"]
pub mod outbox_state;

#[path = "../../../src/provider/mailbox_state.rs"]
pub mod mailbox_state;

pub mod before_fix;
