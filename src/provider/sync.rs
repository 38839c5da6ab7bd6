//! The synchronisation primitives the delivery protocol is written against. The plugin uses
//! std's; `tests/loom` compiles the protocol files (`run_queue.rs`, `outbox_state.rs`) against a
//! module of the same name that re-exports loom's, so the model checks the code that ships.

pub use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Instant;

/// Locks, ignoring poison: a panic on another thread must not take the whole provider down
/// (every state behind these locks is left consistent between transitions).
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A dozing worker's sleep (`run_queue.rs`): `d` at most, ended early once `roused` holds (the
/// guard is released meanwhile). The loom model replaces it with a yield: a doze ends at any
/// point of the other threads' progress, which covers both ways of ending it. The mutex is
/// unused here; the model needs it to release the guard and take the lock again itself.
pub fn doze<'a, T>(_: &'a Mutex<T>, cv: &Condvar, guard: MutexGuard<'a, T>, d: std::time::Duration, mut roused: impl FnMut(&mut T) -> bool) -> MutexGuard<'a, T> {
    cv.wait_timeout_while(guard, d, |s| !roused(s)).unwrap_or_else(|p| p.into_inner()).0
}

/// Waits on `cv` while `busy` holds, until `deadline` (None: as long as it takes). Returns the
/// guard, and whether `busy` stopped holding.
pub fn wait_while_until<'a, T>(
    cv: &Condvar,
    guard: MutexGuard<'a, T>,
    deadline: Option<Instant>,
    mut busy: impl FnMut(&mut T) -> bool,
) -> (MutexGuard<'a, T>, bool) {
    let mut guard = match deadline {
        None => cv.wait_while(guard, &mut busy).unwrap_or_else(|p| p.into_inner()),
        Some(deadline) => {
            let left = deadline.saturating_duration_since(Instant::now());
            cv.wait_timeout_while(guard, left, &mut busy).unwrap_or_else(|p| p.into_inner()).0
        }
    };
    let done = !busy(&mut guard);
    (guard, done)
}
