//! Gives the memory a burst used back to the system once the provider has gone quiet.
//!
//! A burst of streams leaves its buffers free inside the C allocator's arenas, and the pool's
//! idle connections (with their buffers and TLS state) go only when its timer closes them, at
//! most one idle timeout after their last use (`http_client.rs`). glibc keeps freed memory for
//! reuse, so a gateway that bursts to 2,000 streams and goes quiet stayed at ~100 MB, not ~15.
//!
//! So once streams have run and none is open, the allocator's free memory is read once a second,
//! and `malloc_trim` runs whenever it grew by a MiB since its lowest point: one second into the
//! quiet (the streams' buffers) and in the second after the pool's tick that closes the
//! connections, wherever that tick falls. Trimming on a fixed schedule (one second in, then after
//! each timeout) missed a tick that fell between two trims: the soak still held 76.9 MiB 20 s
//! after a 2,000-stream burst, against 15.4 at its start.
//! Reading stops one timeout and two seconds into the quiet, when no pooled connection is left.
//! A trim only returns free pages: nothing anyone holds is touched.

use super::control::Live;
use std::sync::Arc;
use std::time::Duration;

/// Freed memory below this is not worth a trim (it walks every arena).
const WORTH_TRIMMING: usize = 1 << 20;

/// Runs on the provider's runtime for its lifetime.
pub async fn when_quiet(live: Arc<Live>, idle_timeout: Duration) {
    let mut watch = Watch::new(idle_timeout);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if watch.look(!live.is_empty(), free_bytes) {
            release_free_memory();
            crate::log::debug("provider", &format!("{} s into the quiet, the allocator held {} KiB free: given back to the system", watch.quiet_for, watch.low / 1024));
        }
    }
}

/// When to trim, apart from the clock and the allocator. One `look` a second.
#[derive(Debug)]
struct Watch {
    /// Seconds of quiet after which no pooled connection is left to close.
    window: u64,
    /// Seconds of quiet looked at; `window` until streams have run (nothing to watch).
    quiet_for: u64,
    /// The least free memory seen since this quiet began or its last trim began (streams reuse
    /// free memory, so a busy spell starts the count again). What a trim gives back stays counted
    /// as free (only the arena's top leaves the count), and what is freed while it runs
    /// (connections still closing) is counted as growth at the next look.
    low: usize,
}

impl Watch {
    fn new(idle_timeout: Duration) -> Watch {
        let window = idle_timeout.as_secs().max(1) + 2;
        Watch { window, quiet_for: window, low: 0 }
    }

    /// Streams ran since the quiet was last watched to its end.
    fn watching(&self) -> bool {
        self.quiet_for < self.window
    }

    /// Whether to trim now (the caller then does). `free` is only read while a quiet is being
    /// watched.
    fn look(&mut self, busy: bool, free: impl FnOnce() -> usize) -> bool {
        if busy {
            self.quiet_for = 0;
            self.low = 0;
            return false;
        }
        if !self.watching() {
            return false;
        }
        self.quiet_for += 1;
        let free = free();
        self.low = self.low.min(free);
        if free - self.low < WORTH_TRIMMING {
            return false;
        }
        self.low = free;
        true
    }
}

/// Bytes free inside the allocator's arenas (all of them).
fn free_bytes() -> usize {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallinfo2 only reads the arenas' statistics, under their locks.
    return unsafe { libc::mallinfo2() }.fordblks;
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    0
}

fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only gives free pages back to the kernel.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: usize = 1 << 20;

    /// Drives a `Watch` (10 s idle timeout) through `seconds`, each a (busy, free bytes) pair;
    /// returns the seconds at which it trimmed (from 1).
    fn trims(seconds: &[(bool, usize)]) -> Vec<usize> {
        let mut watch = Watch::new(Duration::from_secs(10));
        let mut at = Vec::new();
        for (i, &(busy, free)) in seconds.iter().enumerate() {
            if watch.look(busy, || free) {
                at.push(i + 1);
            }
        }
        at
    }

    /// A burst, then the quiet: its buffers freed at once, then the pool's closing tick `close_at`
    /// seconds into the quiet frees the connections.
    fn burst_then_close(close_at: usize) -> Vec<(bool, usize)> {
        let mut seconds = vec![(true, 2 * MIB); 5];
        seconds.extend((1..=30).map(|s| (false, if s < close_at { 40 * MIB } else { 70 * MIB })));
        seconds
    }

    #[test]
    fn it_trims_once_the_quiet_begins_and_after_the_closing_tick_wherever_it_falls() {
        // The defect: trims at 1, 11 and 21 s missed a tick at 15 s until 21 s, after the soak
        // looked at 20 s. Whatever second the tick falls on, the trim follows within a second.
        for close_at in [2, 5, 9, 10] {
            assert_eq!(trims(&burst_then_close(close_at)), [6, 5 + close_at], "closing tick at {close_at} s");
        }
    }

    #[test]
    fn what_is_freed_while_a_trim_runs_is_trimmed_at_the_next_look() {
        // A trim gives back the arena's top (half a MiB leaves the count): no second trim. The
        // soak's connections still closing while a trim ran left 3.4 MiB held when the mark was
        // taken after the trim.
        let top_only = [(true, 0), (false, 40 * MIB), (false, 40 * MIB - MIB / 2), (false, 40 * MIB - MIB / 2)];
        assert_eq!(trims(&top_only), [2]);
        let freed_meanwhile = [(true, 0), (false, 40 * MIB), (false, 43 * MIB), (false, 43 * MIB)];
        assert_eq!(trims(&freed_meanwhile), [2, 3]);
    }

    #[test]
    fn each_quiet_trims_what_its_streams_freed_even_below_the_last_quiets_mark() {
        // The first quiet ends with 100 MiB counted free; the streams after it reuse most of it.
        let mut seconds = vec![(true, 0), (false, 100 * MIB), (true, 0)];
        seconds.extend([(false, 30 * MIB), (false, 30 * MIB)]);
        assert_eq!(trims(&seconds), [2, 4]);
    }

    #[test]
    fn a_quiet_process_is_not_trimmed_and_not_read() {
        let mut watch = Watch::new(Duration::from_secs(10));
        for _ in 0..100 {
            assert!(!watch.look(false, || unreachable!("no stream ran: nothing to watch")));
        }
    }

    #[test]
    fn small_frees_and_reuse_do_not_trim_but_memory_freed_again_after_reuse_does() {
        let mut seconds = vec![(true, 0); 2];
        // Free memory wanders below a MiB, falls as something reuses it, then rises by two.
        seconds.extend([100_000, 900_000, 500_000, 0, MIB / 2, 2 * MIB].map(|free| (false, free)));
        assert_eq!(trims(&seconds), [8]);
    }

    #[test]
    fn it_stops_reading_after_the_last_possible_closing_tick_until_streams_run_again() {
        let mut watch = Watch::new(Duration::from_secs(10));
        assert!(!watch.look(true, || 0));
        for second in 1..=12 {
            watch.look(false, || 0);
            assert_eq!(watch.watching(), second < 12, "second {second}");
        }
        assert!(!watch.look(false, || unreachable!("the quiet was watched to its end")));
        assert!(!watch.look(true, || 0));
        assert!(watch.look(false, || 5 * MIB), "streams ran again: the next quiet is watched");
    }
}
