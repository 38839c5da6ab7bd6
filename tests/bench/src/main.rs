//! bedrock-plugin's benchmark: the plugin through its C ABI (dlopen, bp_get_api, a callback)
//! against aws-sdk-bedrockruntime consumed directly, on the same local stand-in, in one run.
//!
//!   cargo run --release -p bench -- [--quick] [--reps N] [--plugin PATH] [--max-streams N] [--only 1,3,...] [--out FILE]
//!   cargo run --release -p bench -- --soak [--plugin PATH]     (see soak.rs)
//!   cargo run --release -p bench -- --capacity [--h1] [--hol] [--quick] [--reps N] [--clients abcdefg]
//!       [--min-streams N] [--max-streams N] [--bisect N] [--runtime-threads N] [--gather-ms N] [--direct-threads N] [--direct-shards N]
//!       [--plugin PATH] [--out FILE]                               (see capacity.rs)
//!
//! The README's capacity figures come from `make ship && cargo run --profile ship -p bench --
//! --capacity`: the direct client is then built the way the plugin ships (fat LTO, one codegen
//! unit, the same per-crate opt-levels), and `--plugin` defaults to the `.so` beside the
//! binary, the shipped one. The release profile builds neither that way (incremental, no LTO).
//!
//! Scenarios (issue 8): 1. one stream of 100,000 deltas: events/s and CPU per event; 2. time to
//! first event over 1,000 sequential short streams; 3. 1 … 10,000 concurrent streams of 1,000
//! deltas: events/s, p99 gap, peak RSS per stream, peak threads; 4. one slow consumer beside 99
//! fast streams; 5. init, discovery (150 models, 60 profiles) and the .so size. Every figure of
//! 1, 3 and 4 is the median of `--reps` (default 5) interleaved repetitions — plugin, direct,
//! plugin, direct … — with its range, and each ratio the median of the per-repetition ratios;
//! `--quick` is a one-minute look (up to 100 streams, shorter streams). Prints a Markdown
//! table and writes it to --out (default target/bench-results.md), with a chart of scenario 3
//! beside it (the same name, .png).

mod capacity;
mod chart;
mod direct;
mod plugin;
mod paced;
mod soak;
mod standin;

use plugin::{Plugin, Sink};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

pub const ACCESS_KEY: &str = "AKIABENCH00000000000";
pub const SECRET_KEY: &str = "bench/secret/key/not/checked/by/the/stand-in";

pub fn now_ns() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

pub fn raise_fd_limit() {
    unsafe {
        let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

/// A bp_stream_start request for a stream of `deltas` deltas (any model object is accepted).
pub fn request_json(deltas: usize) -> String {
    request_for(&format!("bench-{deltas}"))
}

/// A bp_stream_start request for the stand-in's model `model_id`.
pub fn request_for(model_id: &str) -> String {
    serde_json::json!({
        "model": {"id": model_id, "name": "bench", "input": ["text"], "contextWindow": 100000, "maxTokens": 4096,
                  "cost": {"input": 3, "output": 15, "cacheRead": 0.3, "cacheWrite": 3.75}},
        "context": {"messages": [{"role": "user", "content": "go"}]}
    })
    .to_string()
}

/// User + system CPU time of this process.
fn cpu_time() -> Duration {
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let tv = |t: libc::timeval| Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

fn proc_status(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status.lines().find(|l| l.starts_with(field)).and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// Threads of this process whose name starts with `prefix` (the plugin names its threads
/// `bp-…`, the baseline's runtime `direct-sdk`).
fn threads_named(prefix: &str) -> u64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return 0 };
    tasks.filter_map(Result::ok).filter(|t| std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.starts_with(prefix))).count() as u64
}

/// Peak RSS (KiB) and peak threads named `prefix` while it runs, sampled every 10 ms.
struct Sampler {
    stop: Arc<AtomicBool>,
    peak_rss: Arc<AtomicU64>,
    peak_threads: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Sampler {
    fn start(prefix: &'static str) -> Sampler {
        let (stop, peak_rss, peak_threads) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let (s, r, t) = (stop.clone(), peak_rss.clone(), peak_threads.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                r.fetch_max(proc_status("VmRSS:"), Ordering::Relaxed);
                t.fetch_max(threads_named(prefix), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        Sampler { stop, peak_rss, peak_threads, thread: Some(thread) }
    }

    /// (peak RSS KiB, peak threads)
    fn finish(mut self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap();
        (self.peak_rss.load(Ordering::Relaxed), self.peak_threads.load(Ordering::Relaxed))
    }
}

fn percentile(values: &mut [f64], p: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(|a, b| a.partial_cmp(b).unwrap());
    values[((values.len() - 1) as f64 * p).round() as usize]
}

/// RSS once the allocator has given back what earlier runs freed: with plugin and direct runs
/// interleaved in one process, memory one run freed would otherwise be counted as the next run's
/// baseline and hide its peak.
fn settled_rss() -> u64 {
    // SAFETY: malloc_trim only releases free memory.
    unsafe { libc::malloc_trim(0) };
    proc_status("VmRSS:")
}

fn p99_gap_us(mut gaps: Vec<u32>) -> f64 {
    if gaps.is_empty() {
        return 0.0;
    }
    gaps.sort_unstable();
    gaps[(gaps.len() - 1) * 99 / 100] as f64
}

/// One figure over interleaved repetitions: its median and range.
#[derive(Clone, Copy, Debug, Default)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Spread {
    fn of(values: &[f64]) -> Spread {
        let mut v = values.to_vec();
        let median = percentile(&mut v, 0.5);
        Spread { median, min: v.first().copied().unwrap_or(0.0), max: v.last().copied().unwrap_or(0.0) }
    }

    /// "median (min–max)" with `decimals` places.
    fn show(&self, decimals: usize) -> String {
        format!("{:.d$} ({:.d$}–{:.d$})", self.median, self.min, self.max, d = decimals)
    }
}

/// The paired ratio of each repetition (plugin / direct), as a spread.
fn ratios(plugin: &[f64], direct: &[f64]) -> Spread {
    Spread::of(&plugin.iter().zip(direct).map(|(p, d)| p / d).collect::<Vec<_>>())
}

struct Bench<'a> {
    provider: plugin::Provider<'a>,
    direct: direct::Direct,
    rows: Vec<[String; 4]>,
    levels: Vec<chart::Level>,
    /// Interleaved repetitions of every measured figure (plugin, direct, plugin, direct, …).
    reps: usize,
}

impl Bench<'_> {
    fn row(&mut self, figure: impl Into<String>, plugin: impl Into<String>, direct: impl Into<String>, ratio: impl Into<String>) {
        let row = [figure.into(), plugin.into(), direct.into(), ratio.into()];
        println!("| {} | {} | {} | {} |", row[0], row[1], row[2], row[3]);
        self.rows.push(row);
    }

    /// Scenario 1: events/s and CPU µs per event for the plugin and the SDK alone, interleaved.
    fn one_long_stream(&mut self, deltas: usize) {
        let (mut p_rate, mut p_cpu, mut d_rate, mut d_cpu) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for _ in 0..self.reps {
            let sink = Sink::new(false, Duration::ZERO);
            let (cpu, t) = (cpu_time(), Instant::now());
            let stream = self.provider.start(deltas, &sink);
            sink.wait();
            let (wall, cpu) = (t.elapsed(), cpu_time() - cpu);
            drop(stream);
            let events = sink.events.load(Ordering::Relaxed) as f64;
            p_rate.push(events / wall.as_secs_f64());
            p_cpu.push(cpu.as_secs_f64() * 1e6 / events);

            let (cpu, t) = (cpu_time(), Instant::now());
            let seen = self.direct.rt.block_on(direct::stream(self.direct.client.clone(), deltas, false));
            let (wall, cpu) = (t.elapsed(), cpu_time() - cpu);
            let events = seen.events as f64;
            d_rate.push(events / wall.as_secs_f64());
            d_cpu.push(cpu.as_secs_f64() * 1e6 / events);
        }
        let rate = ratios(&p_rate, &d_rate);
        let cpu = ratios(&p_cpu, &d_cpu);
        self.row(format!("1. one stream of {deltas} deltas, events/s"), Spread::of(&p_rate).show(0), Spread::of(&d_rate).show(0), format!("{:.0}% ({:.0}–{:.0}%) of direct", 100.0 * rate.median, 100.0 * rate.min, 100.0 * rate.max));
        self.row("1. CPU per event (user+sys), µs", Spread::of(&p_cpu).show(2), Spread::of(&d_cpu).show(2), format!("{}× direct", cpu.show(2)));
    }

    /// Scenario 2: time to the first event over `n` sequential 3-delta streams.
    fn time_to_first_event(&mut self, n: usize) {
        let mut plugin_us = Vec::with_capacity(n);
        let mut direct_us = Vec::with_capacity(n);
        for _ in 0..n {
            let sink = Sink::new(false, Duration::ZERO);
            let t = now_ns();
            let stream = self.provider.start(3, &sink);
            sink.wait();
            plugin_us.push((sink.first_ns.load(Ordering::Relaxed) - t) as f64 / 1e3);
            drop(stream);
            let t = now_ns();
            let seen = self.direct.rt.block_on(direct::stream(self.direct.client.clone(), 3, false));
            direct_us.push((seen.first_ns - t) as f64 / 1e3);
        }
        let (pm, dm) = (percentile(&mut plugin_us, 0.5), percentile(&mut direct_us, 0.5));
        let (pp, dp) = (percentile(&mut plugin_us, 0.99), percentile(&mut direct_us, 0.99));
        self.row(format!("2. time to first event, median of {n}, µs"), format!("{pm:.0}"), format!("{dm:.0}"), format!("{:+.0} µs", pm - dm));
        self.row(format!("2. time to first event, p99 of {n}, µs"), format!("{pp:.0}"), format!("{dp:.0}"), format!("{:+.0} µs", pp - dp));
    }

    /// Scenario 3 at one level of concurrency, plugin and direct interleaved `reps` times:
    /// (events/s, p99 gap µs, peak RSS KiB per open stream, peak threads, CPU µs per event).
    fn concurrent(&mut self, streams: usize, deltas: usize) {
        let mut plugin_runs = Vec::new();
        let mut direct_runs = Vec::new();
        for _ in 0..self.reps {
            plugin_runs.push(self.concurrent_plugin(streams, deltas));
            direct_runs.push(self.concurrent_direct(streams, deltas));
        }
        let col = |runs: &[[f64; 5]], i: usize| runs.iter().map(|r| r[i]).collect::<Vec<f64>>();
        let (p_rate, d_rate) = (col(&plugin_runs, 0), col(&direct_runs, 0));
        let (p_kib, d_kib) = (col(&plugin_runs, 2), col(&direct_runs, 2));
        let (p_cpu, d_cpu) = (col(&plugin_runs, 4), col(&direct_runs, 4));
        let peak = |runs: &[[f64; 5]]| runs.iter().map(|r| r[3]).fold(0.0, f64::max);
        self.levels.push(chart::Level {
            streams,
            plugin_events_per_s: Spread::of(&p_rate),
            direct_events_per_s: Spread::of(&d_rate),
            plugin_kib_per_stream: Spread::of(&p_kib),
            direct_kib_per_stream: Spread::of(&d_kib),
        });
        let rate = ratios(&p_rate, &d_rate);
        let cpu = ratios(&p_cpu, &d_cpu);
        self.row(format!("3. {streams} streams × {deltas} deltas, events/s"), Spread::of(&p_rate).show(0), Spread::of(&d_rate).show(0), format!("{:.0}% ({:.0}–{:.0}%)", 100.0 * rate.median, 100.0 * rate.min, 100.0 * rate.max));
        self.row(format!("3. {streams} streams, CPU per event (user+sys), µs"), Spread::of(&p_cpu).show(2), Spread::of(&d_cpu).show(2), format!("{}×", cpu.show(2)));
        self.row(format!("3. {streams} streams, p99 gap between events, µs"), Spread::of(&col(&plugin_runs, 1)).show(0), Spread::of(&col(&direct_runs, 1)).show(0), "");
        self.row(format!("3. {streams} streams, peak RSS per open stream, KiB"), Spread::of(&p_kib).show(1), Spread::of(&d_kib).show(1), "");
        self.row(format!("3. {streams} streams, peak threads (the plugin's / the SDK runtime's)"), format!("{:.0}", peak(&plugin_runs)), format!("{:.0}", peak(&direct_runs)), "");
    }

    fn concurrent_plugin(&mut self, streams: usize, deltas: usize) -> [f64; 5] {
        let rss_before = settled_rss();
        let sampler = Sampler::start("bp-");
        let (cpu, t) = (cpu_time(), Instant::now());
        let sinks: Vec<Arc<Sink>> = (0..streams).map(|_| Sink::new(true, Duration::ZERO)).collect();
        let handles: Vec<_> = sinks.iter().map(|s| self.provider.start(deltas, s)).collect();
        sinks.iter().for_each(|s| s.wait());
        let (wall, cpu) = (t.elapsed(), cpu_time() - cpu);
        let (peak_rss, peak_threads) = sampler.finish();
        drop(handles);
        let events: u64 = sinks.iter().map(|s| s.events.load(Ordering::Relaxed)).sum();
        let gaps: Vec<u32> = sinks.iter().flat_map(|s| std::mem::take(&mut *s.gaps.as_ref().unwrap().lock().unwrap())).collect();
        let kib = peak_rss.saturating_sub(rss_before) as f64 / streams as f64;
        [events as f64 / wall.as_secs_f64(), p99_gap_us(gaps), kib, peak_threads as f64, cpu.as_secs_f64() * 1e6 / events as f64]
    }

    fn concurrent_direct(&mut self, streams: usize, deltas: usize) -> [f64; 5] {
        let rss_before = settled_rss();
        let sampler = Sampler::start("direct-sdk");
        let (cpu, t) = (cpu_time(), Instant::now());
        let seen: Vec<direct::Seen> = self.direct.rt.block_on(async {
            let tasks: Vec<_> = (0..streams).map(|_| tokio::spawn(direct::stream(self.direct.client.clone(), deltas, true))).collect();
            let mut all = Vec::with_capacity(streams);
            for task in tasks {
                all.push(task.await.unwrap());
            }
            all
        });
        let (wall, cpu) = (t.elapsed(), cpu_time() - cpu);
        let (peak_rss, peak_threads) = sampler.finish();
        let events: u64 = seen.iter().map(|s| s.events).sum();
        let gaps: Vec<u32> = seen.into_iter().flat_map(|s| s.gaps).collect();
        let kib = peak_rss.saturating_sub(rss_before) as f64 / streams as f64;
        [events as f64 / wall.as_secs_f64(), p99_gap_us(gaps), kib, peak_threads as f64, cpu.as_secs_f64() * 1e6 / events as f64]
    }

    /// Scenario 4: 99 fast streams beside one whose callback sleeps 10 ms per event, against 100
    /// fast streams alone: the fast streams' events/s.
    fn slow_neighbour(&mut self) {
        let fast_rate = |with_slow: bool| {
            let slow = with_slow.then(|| Sink::new(false, Duration::from_millis(10)));
            let slow_stream = slow.as_ref().map(|s| self.provider.start(200, s));
            let fast: Vec<Arc<Sink>> = (0..if with_slow { 99 } else { 100 }).map(|_| Sink::new(false, Duration::ZERO)).collect();
            let t = now_ns();
            let handles: Vec<_> = fast.iter().map(|s| self.provider.start(1000, s)).collect();
            fast.iter().for_each(|s| s.wait());
            let end = fast.iter().map(|s| s.done_ns.load(Ordering::Relaxed)).max().unwrap();
            let events: u64 = fast.iter().map(|s| s.events.load(Ordering::Relaxed)).sum();
            drop(handles);
            if let Some(s) = &slow {
                s.wait();
            }
            drop(slow_stream);
            events as f64 / ((end - t) as f64 / 1e9)
        };
        let (mut alone, mut beside) = (Vec::new(), Vec::new());
        for _ in 0..self.reps {
            alone.push(fast_rate(false));
            beside.push(fast_rate(true));
        }
        let kept = ratios(&beside, &alone);
        self.row(
            "4. 99 fast streams beside a 10 ms/event consumer, events/s",
            Spread::of(&beside).show(0),
            format!("{} (100 fast alone)", Spread::of(&alone).show(0)),
            format!("{:.1}% ({:.1}–{:.1}%) lost", 100.0 * (1.0 - kept.median), 100.0 * (1.0 - kept.max), 100.0 * (1.0 - kept.min)),
        );
    }
}

/// This binary again with `args` (a stand-in mode), once it says its port; closing its stdin
/// stops it.
fn start_standin(args: &[&str]) -> (std::process::Child, String) {
    let mut child = Command::new(std::env::current_exe().unwrap()).args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().expect("start the stand-in");
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
    let port = line.trim().strip_prefix("listening on ").expect("the stand-in's port").to_string();
    (child, port)
}

fn size_mib(path: &Path) -> Option<f64> {
    std::fs::metadata(path).ok().map(|m| m.len() as f64 / (1024.0 * 1024.0))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--serve") {
        standin::serve();
        return;
    }
    if args.iter().any(|a| a == "--serve-paced") {
        paced::serve(!args.iter().any(|a| a == "--h1"));
        return;
    }
    let value = |flag: &str| args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)).cloned();
    let exe_dir = std::env::current_exe().unwrap().parent().unwrap().to_path_buf();
    let build = value("--plugin").map(PathBuf::from).unwrap_or_else(|| exe_dir.join("libbedrock_plugin.so"));
    // A one-minute look: fewer levels and shorter streams, the same interleaved repetitions.
    let quick = args.iter().any(|a| a == "--quick");
    let max_streams: usize = value("--max-streams").and_then(|v| v.parse().ok()).unwrap_or(if quick { 100 } else { 10_000 });
    let reps: usize = value("--reps").and_then(|v| v.parse().ok()).filter(|r| *r >= 1).unwrap_or(5);
    // Scenarios to run (all by default), for looking at one while changing the plugin.
    let only: Vec<u32> = value("--only").map(|v| v.split(',').filter_map(|n| n.trim().parse().ok()).collect()).unwrap_or_default();
    let run = |scenario: u32| only.is_empty() || only.contains(&scenario);
    let out = value("--out").map(PathBuf::from).unwrap_or_else(|| exe_dir.join("../bench-results.md"));
    for (k, v) in [
        ("AWS_EC2_METADATA_DISABLED", "true"), ("AWS_ACCESS_KEY_ID", ACCESS_KEY), ("AWS_SECRET_ACCESS_KEY", SECRET_KEY),
        ("AWS_REGION", "us-east-1"), ("AWS_MAX_ATTEMPTS", "1"),
        ("AWS_CONFIG_FILE", "/nonexistent/bench"), ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/bench"),
    ] {
        std::env::set_var(k, v);
    }
    // Quiet unless asked for (`BEDROCK_PLUGIN_LOG=debug` to see what the plugin does meanwhile).
    if std::env::var_os("BEDROCK_PLUGIN_LOG").is_none() {
        std::env::set_var("BEDROCK_PLUGIN_LOG", "off");
    }
    std::env::remove_var("AWS_PROFILE");
    std::env::remove_var("AWS_BEARER_TOKEN_BEDROCK");
    raise_fd_limit();
    assert!(build.is_file(), "no plugin at {} (build it, or pass --plugin)", build.display());
    if args.iter().any(|a| a == "--capacity") {
        let copies = std::env::temp_dir().join(format!("bedrock-bench.{}", std::process::id()));
        std::fs::create_dir_all(&copies).unwrap();
        let options = capacity::Options {
            build: build.clone(),
            copy: copies.join("capacity.so"),
            reps,
            quick,
            http1: args.iter().any(|a| a == "--h1"),
            clients: value("--clients").map(|v| v.chars().filter(|c| ('a'..='g').contains(c)).collect()).unwrap_or_else(|| vec!['a', 'f', 'e', 'b', 'g', 'c', 'd']),
            max_streams: value("--max-streams").and_then(|v| v.parse().ok()).unwrap_or(if quick { 400 } else { 16_000 }),
            min_streams: value("--min-streams").and_then(|v| v.parse().ok()).filter(|n| *n >= 1).unwrap_or(25),
            runtime_threads: value("--runtime-threads").and_then(|v| v.parse().ok()),
            gather_ms: value("--gather-ms").and_then(|v| v.parse().ok()),
            direct_threads: value("--direct-threads").and_then(|v| v.parse().ok()).filter(|n| *n >= 1).unwrap_or(2),
            direct_shards: value("--direct-shards").and_then(|v| v.parse().ok()).unwrap_or(0),
            hol: args.iter().any(|a| a == "--hol"),
            bisect: value("--bisect").and_then(|v| v.parse().ok()).unwrap_or(4),
        };
        let md = capacity::run(&options);
        let _ = std::fs::remove_dir_all(&copies);
        let out = value("--out").map(PathBuf::from).unwrap_or_else(|| exe_dir.join("../capacity-results.md"));
        std::fs::write(&out, md).unwrap_or_else(|e| eprintln!("cannot write {}: {e}", out.display()));
        println!("\nwritten to {}", out.display());
        return;
    }
    let (mut standin, port) = start_standin(&["--serve"]);
    let endpoint = format!("http://127.0.0.1:{port}");
    let copies = std::env::temp_dir().join(format!("bedrock-bench.{}", std::process::id()));
    std::fs::create_dir_all(&copies).unwrap();

    // 5. init: a fresh copy loaded and a provider ready, five times.
    let config = serde_json::json!({"provider": {"baseUrl": endpoint, "models": []}, "discovery": {"enabled": false}}).to_string();
    let mut init_ms = Vec::new();
    for i in 0..5 {
        let copy = copies.join(format!("init-{i}.so"));
        std::fs::copy(&build, &copy).unwrap();
        let t = Instant::now();
        let plugin = Plugin::open(&copy);
        let provider = plugin.provider(&config);
        init_ms.push(t.elapsed().as_secs_f64() * 1e3);
        drop(provider);
    }

    if args.iter().any(|a| a == "--soak") {
        // The provider's threads and doze as `--capacity` takes them, to see what each costs here.
        let mut soak_config: serde_json::Value = serde_json::from_str(&config).unwrap();
        for (flag, key) in [("--runtime-threads", "runtimeThreads"), ("--gather-ms", "deliveryGatherMs")] {
            if let Some(n) = value(flag).and_then(|v| v.parse::<u64>().ok()) {
                soak_config["provider"][key] = n.into();
            }
        }
        let plugin = Plugin::load(&build, &copies.join("soak.so"));
        let provider = plugin.provider(&soak_config.to_string());
        let warm = Sink::new(false, Duration::ZERO);
        drop({
            let s = provider.start(20, &warm);
            warm.wait();
            s
        });
        println!("bedrock-plugin soak: plugin {}, stand-in {endpoint}\n", build.display());
        soak::run(&provider);
        drop(provider);
        drop(standin.stdin.take());
        let _ = standin.wait();
        return;
    }
    println!("bedrock-plugin benchmark: plugin {} vs aws-sdk-bedrockruntime direct, stand-in {endpoint}\n", build.display());
    println!("| figure | plugin | direct SDK | plugin vs direct |\n|---|---|---|---|");
    let plugin = Plugin::load(&build, &copies.join("bench.so"));
    let mut bench = Bench { provider: plugin.provider(&config), direct: direct::Direct::new(&endpoint), rows: Vec::new(), levels: Vec::new(), reps };
    // Warm both paths (connections, lazily built state) before measuring.
    let warm = Sink::new(false, Duration::ZERO);
    drop({
        let s = bench.provider.start(1000, &warm);
        warm.wait();
        s
    });
    bench.direct.rt.block_on(direct::stream(bench.direct.client.clone(), 1000, false));

    println!("(each figure: the median of {reps} interleaved repetitions, plugin then direct, with its range)\n");
    if run(1) {
        bench.one_long_stream(if quick { 20_000 } else { 100_000 });
    }
    if run(2) {
        bench.time_to_first_event(if quick { 200 } else { 1000 });
    }
    for streams in [1, 10, 100, 1000, 10_000].into_iter().filter(|s| *s <= max_streams && run(3)) {
        bench.concurrent(streams, if quick { 200 } else { 1000 });
    }
    if run(4) {
        bench.slow_neighbour();
    }
    bench.row("5. init: dlopen → provider ready, median of 5, ms", format!("{:.1}", percentile(&mut init_ms, 0.5)), "", "");

    // 5. discovery against the emulator with 150 models and 60 profiles.
    let mut catalog = bedrock_emulator::Config::default();
    catalog.access_key = ACCESS_KEY.into();
    catalog.secret_key = SECRET_KEY.into();
    catalog.foundation_models = (0..150).map(|i| {
        let id = format!("vendor{}.model-{i}-v1:0", i % 7);
        serde_json::json!({"modelArn": format!("arn:aws:bedrock:us-east-1::foundation-model/{id}"), "modelId": id, "modelName": format!("Model {i}"),
            "providerName": format!("Vendor{}", i % 7), "inputModalities": ["TEXT"], "outputModalities": ["TEXT"], "responseStreamingSupported": true,
            "inferenceTypesSupported": ["ON_DEMAND"], "modelLifecycle": {"status": "ACTIVE"}})
    }).collect();
    catalog.inference_profiles = (0..60).map(|i| bedrock_emulator::catalog::system_profile("us", &format!("US Model {i}"), &format!("vendor{}.model-{i}-v1:0", i % 7), &["us-east-1"])).collect();
    let emulator = bedrock_emulator::Emulator::start(catalog);
    let listed = serde_json::json!({"provider": {"baseUrl": emulator.endpoint(), "models": []}, "discovery": {"enabled": true}}).to_string();
    let discovering = plugin.provider(&listed);
    let t = Instant::now();
    let answer = discovering.discover(true);
    let uncached = t.elapsed();
    let t = Instant::now();
    discovering.discover(false);
    let cached = t.elapsed();
    let models = serde_json::from_str::<serde_json::Value>(&answer).ok().and_then(|v| v["models"].as_array().map(Vec::len)).unwrap_or(0);
    drop(discovering);
    bench.row(format!("5. discovery, 150 models + 60 profiles ({models} listed), uncached, ms"), format!("{:.1}", uncached.as_secs_f64() * 1e3), "", "");
    bench.row("5. discovery from the cache, µs", format!("{:.0}", cached.as_secs_f64() * 1e6), "", "");

    // 5. size: this build as is, stripped, and the shipped build if present.
    let stripped = copies.join("stripped.so");
    let strip_ok = Command::new("strip").arg("-o").arg(&stripped).arg(&build).status().map(|s| s.success()).unwrap_or(false);
    let ship = exe_dir.join("../ship/libbedrock_plugin.so");
    bench.row(
        "5. .so size, MiB (this build / stripped / `ship` profile)",
        format!(
            "{:.1} / {} / {}",
            size_mib(&build).unwrap_or(0.0),
            if strip_ok { format!("{:.1}", size_mib(&stripped).unwrap_or(0.0)) } else { "n/a".into() },
            size_mib(&ship).map(|s| format!("{s:.1}")).unwrap_or_else(|| "not built (make ship)".into())
        ),
        "",
        "",
    );
    let rows = std::mem::take(&mut bench.rows);
    let levels = std::mem::take(&mut bench.levels);
    drop(bench);
    drop(plugin);
    let _ = std::fs::remove_dir_all(&copies);
    drop(standin.stdin.take());
    let _ = standin.wait();

    let cpu = std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|c| c.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())).unwrap_or_default();
    let mut md = format!("Machine: {} cores, {cpu}. Plugin: {}. Each figure: median (min–max) of {reps} interleaved repetitions.\n\n| figure | plugin | direct SDK | plugin vs direct |\n|---|---|---|---|\n", std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0), build.display());
    for r in rows {
        md.push_str(&format!("| {} | {} | {} | {} |\n", r[0], r[1], r[2], r[3]));
    }
    std::fs::File::create(&out).and_then(|mut f| f.write_all(md.as_bytes())).unwrap_or_else(|e| eprintln!("cannot write {}: {e}", out.display()));
    println!("\nwritten to {}", out.display());
    let png = out.with_extension("png");
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    match chart::draw(&png, &levels, &format!("{cores} cores, {cpu}")) {
        Ok(()) => println!("chart: {}", png.display()),
        Err(e) => eprintln!("no chart ({}): {e}", png.display()),
    }
}
