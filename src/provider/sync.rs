//! The synchronisation primitives the delivery protocol is written against. The plugin uses
//! std's; `tests/loom` compiles the protocol files (`run_queue.rs`, `outbox_state.rs`) against a
//! module of the same name that re-exports loom's, so the model checks the code that ships.

pub use std::sync::{Condvar, Mutex, MutexGuard};

/// Locks, ignoring poison: a panic on another thread must not take the whole provider down
/// (every state behind these locks is left consistent between transitions).
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
