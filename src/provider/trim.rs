//! Gives the memory a burst used back to the system once the provider has gone quiet.
//!
//! A burst of streams leaves its buffers free inside the C allocator's arenas, and the pool's
//! idle connections (with their buffers and TLS state) go only when its timer closes them,
//! between one and two idle timeouts after their last use. glibc keeps freed memory for reuse,
//! so a gateway that bursts to 2,000 streams and goes quiet stayed at ~120 MB instead of ~20.
//! So while no stream is open, `malloc_trim` runs one second into the quiet and again after
//! each of the pool's two possible closing ticks; not again until streams have run. It only
//! returns free pages: nothing anyone holds is touched, and a quiet process pays it three times.

use super::control::Live;
use std::sync::Arc;
use std::time::Duration;

/// Runs on the provider's runtime for its lifetime.
pub async fn when_quiet(live: Arc<Live>, idle_timeout: Duration) {
    let idle = idle_timeout.as_secs().max(1);
    let trim_at = [1, idle + 1, 2 * idle + 1];
    let mut quiet_for = 0u64;
    let mut ran = false;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if !live.is_empty() {
            quiet_for = 0;
            ran = true;
            continue;
        }
        quiet_for += 1;
        if ran && trim_at.contains(&quiet_for) {
            release_free_memory();
            ran = quiet_for < 2 * idle + 1;
        }
    }
}

fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only gives free pages back to the kernel.
    unsafe {
        libc::malloc_trim(0);
    }
}
