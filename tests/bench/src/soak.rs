//! The soak (issue 10): 10,000 sequential then 2,000 concurrent streams through the C ABI against
//! the stand-in, printing throughput, p99 latency (start → terminal event), plugin threads and RSS
//! at the start and the end. Both should end where they started. About a minute: the end is
//! measured 20 s after the last burst (the pool's 10 s idle timeout and 10 s to spare), with no
//! further request.
//!
//!   cargo run --release -p bench -- --soak [--plugin PATH] [--gather-ms N] [--runtime-threads N]

use crate::plugin::{Provider, Sink};
use crate::{percentile, proc_status, threads_named};
use std::time::{Duration, Instant};

const DELTAS: usize = 20;

fn snapshot() -> (u64, u64) {
    (threads_named("bp-"), proc_status("VmRSS:"))
}

fn latency_ms(sink: &Sink, started_ns: u64) -> f64 {
    (sink.done_ns.load(std::sync::atomic::Ordering::Relaxed).saturating_sub(started_ns)) as f64 / 1e6
}

/// `n` streams at once; returns (streams/s, p99 latency in ms, peak plugin threads).
fn concurrent(provider: &Provider<'_>, n: usize) -> (f64, f64, u64) {
    let sinks: Vec<_> = (0..n).map(|_| Sink::new(false, Duration::ZERO)).collect();
    let t = Instant::now();
    let started = crate::now_ns();
    let streams: Vec<_> = sinks.iter().map(|s| provider.start(DELTAS, s)).collect();
    let mut peak = 0;
    for s in &sinks {
        peak = peak.max(threads_named("bp-"));
        s.wait();
    }
    let rate = n as f64 / t.elapsed().as_secs_f64();
    let mut latencies: Vec<f64> = sinks.iter().map(|s| latency_ms(s, started)).collect();
    drop(streams);
    (rate, percentile(&mut latencies, 0.99), peak)
}

pub fn run(provider: &Provider<'_>) {
    // The steady state: the delivery pool's core threads and the SDK's connection pool exist.
    concurrent(provider, 100);
    std::thread::sleep(Duration::from_secs(2));
    let (threads0, rss0) = snapshot();
    let fds0 = std::fs::read_dir("/proc/self/fd").map(|d| d.count()).unwrap_or(0);
    println!("| phase | streams | streams/s | p99 latency, ms | plugin threads | RSS, MiB |\n|---|---|---|---|---|---|");
    println!("| start | | | | {threads0} | {:.1} |", rss0 as f64 / 1024.0);

    let mut latencies = Vec::with_capacity(10_000);
    let t = Instant::now();
    for _ in 0..10_000 {
        let sink = Sink::new(false, Duration::ZERO);
        let started = crate::now_ns();
        let stream = provider.start(DELTAS, &sink);
        sink.wait();
        latencies.push(latency_ms(&sink, started));
        drop(stream);
    }
    let rate = 10_000.0 / t.elapsed().as_secs_f64();
    let (threads, rss) = snapshot();
    println!("| sequential | 10,000 | {rate:.0} | {:.2} | {threads} | {:.1} |", percentile(&mut latencies, 0.99), rss as f64 / 1024.0);

    for round in 1..=2 {
        let (rate, p99, peak) = concurrent(provider, 2_000);
        let rss = proc_status("VmRSS:");
        println!("| concurrent, round {round} | 2,000 | {rate:.0} | {p99:.2} | {peak} (peak) | {:.1} |", rss as f64 / 1024.0);
    }

    // Extra delivery threads leave after a second idle, tokio's blocking threads after ten; the
    // pool closes connections idle for its timeout (10 s by default) on its own timer, so 20 s
    // after the burst everything should be back without another request.
    let open_fds = || std::fs::read_dir("/proc/self/fd").map(|d| d.count()).unwrap_or(0);
    // Sampled each second, so the figure shows when memory came back, not only whether it had by
    // the end (the pool's closing tick falls anywhere from half the idle timeout to all of it).
    let mut trace = Vec::with_capacity(20);
    for _ in 0..20 {
        std::thread::sleep(Duration::from_secs(1));
        // SAFETY: mallinfo2 only reads the allocator's statistics.
        trace.push((open_fds(), proc_status("VmRSS:"), unsafe { libc::mallinfo2() }.fordblks));
    }
    let (fds_early, rss_early, _) = trace[1];
    let fds = trace[19].0;
    let (threads1, rss1) = snapshot();
    println!("| end (20 s idle, no request) | | | | {threads1} | {:.1} |", rss1 as f64 / 1024.0);
    // What the allocator keeps for reuse, not what anything still holds.
    // SAFETY: malloc_trim only releases free memory.
    unsafe { libc::malloc_trim(0) };
    let rss2 = proc_status("VmRSS:");
    println!("| end, after malloc_trim(0) | | | | {threads1} | {:.1} |", rss2 as f64 / 1024.0);
    println!("\nopen file descriptors: {fds0} at the start, {fds_early} 2 s after the burst (pooled connections, RSS {:.1} MiB), {fds} after 20 s idle with no request", rss_early as f64 / 1024.0);
    let back = |near: &dyn Fn(usize, u64) -> bool| trace.iter().position(|&(f, r, _)| near(f, r)).map_or("not within 20 s".into(), |i| format!("after {} s", i + 1));
    println!("back near the start (RSS within 2 MiB of it): {}; descriptors within 10 of it: {}", back(&|_, r| r <= rss0 + 2048), back(&|f, _| f <= fds0 + 10));
    println!(
        "each second after the burst, RSS MiB / free in the allocator MiB (descriptors): {}",
        trace.iter().map(|&(f, r, free)| format!("{:.1} / {:.1} ({f})", r as f64 / 1024.0, free as f64 / 1048576.0)).collect::<Vec<_>>().join(", ")
    );
    println!(
        "threads {threads0} → {threads1}; RSS {:.1} → {:.1} MiB after 20 s idle → {:.1} once malloc_trim returned free memory",
        rss0 as f64 / 1024.0,
        rss1 as f64 / 1024.0,
        rss2 as f64 / 1024.0
    );
}
