//! A runtime thread's buffer for the events an inline stream's own task serializes (a mailbox
//! stream's task files its lines straight into the box's buffer). One per thread, not one per
//! stream: at a model's pace a stream's own buffer was last written a token ago, by which time
//! the other streams' tokens have pushed it out of the cache, and every token began with a
//! write miss; a thread's buffer is written by every token the thread handles, so it stays hot.
//!
//! No thread-exit destructor (a `ManuallyDrop` and a `Cell`, so std registers none): one would
//! keep the plugin's image mapped after `dlclose` (shared/PLUGIN-NOTES.md). The runtime's
//! thread-stop hook frees the buffer instead, and only threads that hook covers keep one; any
//! other thread (a runtime being dropped runs the last passes on the thread that drops it)
//! gets a buffer for the one pass.

use std::cell::{Cell, RefCell};
use std::mem::ManuallyDrop;

/// The most a thread keeps between passes: deltas fit many times over; a large final message
/// is not kept for the thread's life.
const KEPT: usize = 16 << 10;

thread_local! {
    static BUF: RefCell<ManuallyDrop<Vec<u8>>> = const { RefCell::new(ManuallyDrop::new(Vec::new())) };
    /// Set between the runtime's thread-start and thread-stop hooks.
    static KEEPS: Cell<bool> = const { Cell::new(false) };
}

/// On each runtime thread as it starts: from now on it keeps its buffer.
pub fn thread_started() {
    KEEPS.with(|k| k.set(true));
}

/// On each runtime thread as it stops: its buffer is freed.
pub fn thread_stopping() {
    KEEPS.with(|k| k.set(false));
    BUF.with(|b| {
        if let Ok(mut b) = b.try_borrow_mut() {
            drop(std::mem::take(&mut **b));
        }
    });
}

/// Runs `f` with this thread's buffer (empty: its contents are the caller's to leave behind),
/// or with a buffer of its own when the thread keeps none or the buffer is in use further up
/// the stack.
pub fn with<R>(f: impl FnOnce(&mut Vec<u8>) -> R) -> R {
    BUF.with(|cell| match cell.try_borrow_mut() {
        Ok(mut kept) if KEEPS.with(Cell::get) => {
            let buf: &mut Vec<u8> = &mut kept;
            buf.clear();
            let r = f(buf);
            if buf.capacity() > KEPT {
                *buf = Vec::new();
            }
            r
        }
        _ => f(&mut Vec::new()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kept_buffer_is_reused_and_a_nested_use_gets_its_own() {
        std::thread::spawn(|| {
            thread_started();
            let first = with(|buf| {
                buf.extend_from_slice(b"hello");
                buf.as_ptr() as usize
            });
            // Reused, handed over empty.
            assert_eq!(with(|buf| (buf.is_empty(), buf.as_ptr() as usize)), (true, first));
            let (outer, inner) = with(|outer| {
                outer.push(1);
                let inner = with(|inner| {
                    inner.push(2);
                    inner.as_ptr() as usize
                });
                assert_eq!(outer, &[1]);
                (outer.as_ptr() as usize, inner)
            });
            assert_eq!(outer, first);
            assert_ne!(inner, first);
            // Too large to keep: freed after the pass.
            with(|buf| buf.resize(KEPT * 2, 0));
            assert_eq!(with(|buf| buf.capacity()), 0);
            thread_stopping();
            assert_eq!(BUF.with(|b| b.borrow().capacity()), 0);
            // A thread that keeps none gets a fresh buffer every time.
            let a = with(|buf| {
                buf.push(1);
                buf.capacity()
            });
            assert!(a > 0);
            assert_eq!(BUF.with(|b| b.borrow().capacity()), 0);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn it_registers_no_thread_exit_destructor() {
        assert!(!std::mem::needs_drop::<RefCell<ManuallyDrop<Vec<u8>>>>());
        assert!(!std::mem::needs_drop::<Cell<bool>>());
    }
}
