//! The capacity scenario (issue 19): how many real-pace streams one core carries, and at what
//! added delay, for (a) the plugin through its C ABI, (b) aws-sdk-bedrockruntime consumed
//! directly, (c) pi-ai's built-in Bedrock provider on @aws-sdk/client-bedrock-runtime in Node,
//! (d) the Node binding (`bindings/node/capacity.js` runs one level of (c) or (d)), (e) the
//! plugin through its C ABI again, taking events from a mailbox instead of callbacks, (f) the
//! plugin with inline callbacks (ABI 1.8: called on the runtime thread that decoded the event),
//! and (g) the SDK consumed directly as the plugin runs its streams: one single-threaded runtime
//! per thread, each with its own client and connection (as many as (b) has workers).
//!
//! A level keeps N streams open for the whole run (a finished stream is replaced by the next of
//! the seeded mix, `paced.rs`), started evenly over the ramp; the window after the ramp is
//! measured: the client's CPU (this process's, or Node's), its peak RSS above the settled
//! baseline per open stream, and the delay it adds to each token (the time it sees the token
//! minus the time the stand-in sent it, one clock). Levels double until the client saturates its
//! share of the cores or its p99 added delay passes 50 ms; then the bracket between a client's
//! last level within that budget and its first past it is bisected (`--bisect`, 4 rounds unless
//! asked), so that two clients a few percent apart are not reported a factor 2 apart.

use crate::paced::monotonic_ns;
use crate::plugin::Plugin;
use crate::{cpu_time, settled_rss, Spread};
use bedrock_plugin_abi::BpStream;
use std::ffi::CString;
use std::os::raw::{c_char, c_void};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

/// Added delays in 50 µs buckets up to 2 s (the last bucket holds the rest), lock-free: every
/// token of every stream lands here.
pub struct Delays {
    buckets: Vec<AtomicU32>,
    pub recording: AtomicBool,
    pub tokens: AtomicU64,
}

const BUCKET_US: u64 = 50;

impl Delays {
    pub fn new() -> Arc<Delays> {
        Arc::new(Delays { buckets: (0..40_001).map(|_| AtomicU32::new(0)).collect(), recording: AtomicBool::new(false), tokens: AtomicU64::new(0) })
    }

    /// A token whose text is the stand-in's send time.
    pub fn token(&self, text: &[u8]) {
        if !self.recording.load(Ordering::Relaxed) {
            return;
        }
        let now = monotonic_ns();
        let sent = text.iter().take_while(|b| b.is_ascii_digit()).fold(0u64, |n, b| n * 10 + u64::from(b - b'0'));
        let us = now.saturating_sub(sent) / 1000;
        self.buckets[((us / BUCKET_US) as usize).min(self.buckets.len() - 1)].fetch_add(1, Ordering::Relaxed);
        self.tokens.fetch_add(1, Ordering::Relaxed);
    }

    /// The delay (µs, upper bucket edge) under which a fraction `p` of the tokens came.
    pub fn percentile(&self, p: f64) -> f64 {
        let counts: Vec<u64> = self.buckets.iter().map(|b| u64::from(b.load(Ordering::Relaxed))).collect();
        let total: u64 = counts.iter().sum();
        let target = ((total as f64) * p).ceil() as u64;
        let mut seen = 0;
        for (i, c) in counts.iter().enumerate() {
            seen += c;
            if seen >= target.max(1) {
                return ((i as u64 + 1) * BUCKET_US) as f64;
            }
        }
        0.0
    }
}

/// Peak RSS (KiB) while it runs, from /proc/self/statm every 20 ms: lighter than the other
/// scenarios' sampler, whose CPU would count as the client's here.
struct PeakRss {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<u64>>,
}

impl PeakRss {
    fn start() -> PeakRss {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let page_kib = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u64 / 1024;
        let thread = std::thread::spawn(move || {
            let mut peak = 0;
            while !s.load(Ordering::Relaxed) {
                let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
                let pages: u64 = statm.split_whitespace().nth(1).and_then(|v| v.parse().ok()).unwrap_or(0);
                peak = peak.max(pages * page_kib);
                std::thread::sleep(Duration::from_millis(20));
            }
            peak
        });
        PeakRss { stop, thread: Some(thread) }
    }

    fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap()
    }
}

/// What one client did at one level, over the window.
#[derive(Clone, Copy, Debug, Default)]
pub struct Level {
    /// CPU seconds per second of one open stream (user + system).
    pub cpu_per_stream_s: f64,
    /// Share of the machine's cores the client used.
    pub cores_used: f64,
    pub kib_per_stream: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub tokens_per_s: f64,
}

impl Level {
    fn of(streams: usize, cpu: Duration, window: Duration, peak_kib: u64, before_kib: u64, delays: &Delays) -> Level {
        let w = window.as_secs_f64();
        Level {
            cpu_per_stream_s: cpu.as_secs_f64() / (streams as f64 * w),
            cores_used: cpu.as_secs_f64() / w,
            kib_per_stream: peak_kib.saturating_sub(before_kib) as f64 / streams as f64,
            p50_us: delays.percentile(0.5),
            p99_us: delays.percentile(0.99),
            tokens_per_s: delays.tokens.load(Ordering::Relaxed) as f64 / w,
        }
    }
}

/// One open stream's place in a level: the callback's user data, reused by the slot's next stream.
struct Slot {
    index: usize,
    /// Sleep this long in every callback (the slow consumer of the head-of-line check); its own
    /// tokens are not counted.
    slow: Option<Duration>,
    delays: Arc<Delays>,
    ended: mpsc::Sender<usize>,
}

unsafe extern "C" fn on_event(user: *mut c_void, json: *const c_char, len: usize) -> i32 {
    let slot = &*(user as *const Slot);
    let event = std::slice::from_raw_parts(json.cast::<u8>(), len);
    const DELTA: &[u8] = b"{\"type\":\"text_delta\"";
    if let Some(pause) = slot.slow {
        std::thread::sleep(pause);
    }
    if event.starts_with(DELTA) {
        if let (None, Some(text)) = (slot.slow, delta_text(event, DELTA.len())) {
            slot.delays.token(text);
        }
    } else if event.starts_with(b"{\"type\":\"done\"") || event.starts_with(b"{\"type\":\"error\"") {
        // The controller may free the slot as soon as the message is visible, while `send` is
        // still running: only what this callback owns is touched after it.
        let (ended, index) = (slot.ended.clone(), slot.index);
        let _ = ended.send(index);
    }
    0
}

/// Where a `text_delta` event's text starts (`head` bytes of it already matched): read as the
/// plugin writes it (`contentIndex`, then `delta`), else searched for. The host's side of a
/// token should cost what direct's does; a byte-by-byte search from the start cost the
/// callback clients ~2% of their samples at 2,400 streams (`docs/performance.md`).
fn delta_text(event: &[u8], head: usize) -> Option<&[u8]> {
    const INDEX: &[u8] = b",\"contentIndex\":";
    const KEY: &[u8] = b",\"delta\":\"";
    let rest = &event[head..];
    if let Some(digits) = rest.strip_prefix(INDEX) {
        let n = digits.iter().take_while(|b| b.is_ascii_digit()).count();
        if let Some(text) = digits[n..].strip_prefix(KEY) {
            return Some(text);
        }
    }
    rest.windows(KEY.len()).position(|w| w == KEY).map(|at| &rest[at + KEY.len()..])
}

/// (a): the plugin through its C ABI, streams started and replaced by one controller thread.
/// With `slow`, the first stream's callback sleeps that long per event. (f), with `inline`: the
/// same callback, started with `bp_stream_start_inline`.
pub fn plugin_level(plugin: &Plugin, provider: &crate::plugin::Provider<'_>, streams: usize, ramp: Duration, window: Duration, seeds: &AtomicU64, slow: Option<Duration>, inline: bool) -> Level {
    let api = plugin.api();
    let start_fn = if inline { api.stream_start_inline } else { api.stream_start };
    let delays = Delays::new();
    let (tx, rx) = mpsc::channel();
    let slots: Vec<Box<Slot>> = (0..streams).map(|index| Box::new(Slot { index, slow: slow.filter(|_| index == 0), delays: delays.clone(), ended: tx.clone() })).collect();
    drive(api, streams, ramp, window, &delays, &rx, |i| {
        let request = CString::new(crate::request_for(&format!("pace-{}", seeds.fetch_add(1, Ordering::Relaxed)))).unwrap();
        let (mut raw, mut err) = (std::ptr::null_mut(), std::ptr::null_mut());
        let user = &*slots[i] as *const Slot as *mut c_void;
        let rc = unsafe { start_fn(provider.raw(), request.as_ptr(), Some(on_event), user, &mut raw, &mut err) };
        assert_eq!(rc, 0, "bp_stream_start{} failed", if inline { "_inline" } else { "" });
        raw
    })
}

/// (e): the plugin through its C ABI with a mailbox (ABI 1.7): the same controller, and one
/// host thread that takes every stream's events (`bp_mailbox_wait`) instead of callbacks.
pub fn mailbox_level(plugin: &Plugin, provider: &crate::plugin::Provider<'_>, streams: usize, ramp: Duration, window: Duration, seeds: &AtomicU64) -> Level {
    let api = plugin.api();
    let delays = Delays::new();
    let (tx, rx) = mpsc::channel();
    let mut raw = std::ptr::null_mut();
    assert_eq!(unsafe { (api.mailbox_new)(0, &mut raw) }, 0, "bp_mailbox_new");
    let mailbox = MailboxPtr(raw);
    let taker = {
        let delays = delays.clone();
        std::thread::spawn(move || take_until_closed(api, mailbox, &delays, &tx))
    };
    let level = drive(api, streams, ramp, window, &delays, &rx, |i| {
        let request = CString::new(crate::request_for(&format!("pace-{}", seeds.fetch_add(1, Ordering::Relaxed)))).unwrap();
        let (mut raw, mut err) = (std::ptr::null_mut(), std::ptr::null_mut());
        let rc = unsafe { (api.stream_start_mailbox)(provider.raw(), request.as_ptr(), mailbox.0, i as u64, &mut raw, &mut err) };
        assert_eq!(rc, 0, "bp_stream_start_mailbox failed");
        raw
    });
    unsafe { (api.mailbox_close)(mailbox.0) };
    taker.join().unwrap();
    unsafe { (api.mailbox_free)(mailbox.0) };
    level
}

/// The controller of (a) and (e): `streams` streams started over the ramp (`start(i)` starts
/// stream `i`), each replaced as `ended` reports its end, the window measured; then every open
/// stream cancelled, and its end seen before the caller's state for it goes.
fn drive(api: &bedrock_plugin_abi::BpApi, streams: usize, ramp: Duration, window: Duration, delays: &Delays, ended: &mpsc::Receiver<usize>, start: impl Fn(usize) -> *mut BpStream) -> Level {
    let before = settled_rss();
    let t0 = Instant::now();
    let mut handles: Vec<*mut BpStream> = Vec::with_capacity(streams);
    for i in 0..streams {
        std::thread::sleep((t0 + ramp.mul_f64(i as f64 / streams as f64)).saturating_duration_since(Instant::now()));
        handles.push(start(i));
    }
    let replace = |i: usize, handles: &mut Vec<*mut BpStream>| {
        unsafe { (api.stream_release)(handles[i]) };
        handles[i] = start(i);
    };
    // The rest of the ramp, then the window.
    let window_start = t0 + ramp;
    while let Ok(i) = ended.recv_timeout(window_start.saturating_duration_since(Instant::now())) {
        replace(i, &mut handles);
    }
    let sampler = PeakRss::start();
    let cpu = cpu_time();
    delays.recording.store(true, Ordering::Relaxed);
    let end = Instant::now() + window;
    while let Ok(i) = ended.recv_timeout(end.saturating_duration_since(Instant::now())) {
        replace(i, &mut handles);
    }
    delays.recording.store(false, Ordering::Relaxed);
    let cpu = cpu_time() - cpu;
    let peak = sampler.finish();
    let level = Level::of(streams, cpu, window, peak, before, delays);
    handles.iter().for_each(|h| unsafe { (api.stream_cancel)(*h) });
    for _ in 0..streams {
        let i = ended.recv().unwrap();
        unsafe { (api.stream_release)(handles[i]) };
    }
    level
}

#[derive(Clone, Copy)]
struct MailboxPtr(*mut bedrock_plugin_abi::BpMailbox);
// SAFETY: a mailbox is made for being filed into and taken from on different threads.
unsafe impl Send for MailboxPtr {}
unsafe impl Sync for MailboxPtr {}

/// How often (e)'s host takes at most: what a take finds is gathered over this long, so a take
/// (one wake-up of the host's thread) carries several tokens even when few streams are open,
/// for at most this much added delay. `BENCH_GATHER_MS` overrides it (0: take at once).
fn gather() -> Duration {
    Duration::from_micros(std::env::var("BENCH_GATHER_MS").ok().and_then(|v| v.parse::<f64>().ok()).map_or(2000, |ms| (ms * 1000.0) as u64))
}

/// The host's event loop of (e): every token's delay recorded, every stream's end reported.
fn take_until_closed(api: &bedrock_plugin_abi::BpApi, mailbox: MailboxPtr, delays: &Delays, ended: &mpsc::Sender<usize>) {
    const DELTA: &[u8] = b" \"type\":\"text_delta\"";
    let gather = gather();
    let mut last = Instant::now();
    loop {
        std::thread::sleep((last + gather).saturating_duration_since(Instant::now()));
        let (mut text, mut len, mut count): (*const c_char, usize, usize) = (std::ptr::null(), 0, 0);
        if unsafe { (api.mailbox_wait)(mailbox.0, 50, &mut text, &mut len, &mut count) } != 0 {
            return;
        }
        last = Instant::now();
        if count == 0 {
            continue;
        }
        let lines = unsafe { std::slice::from_raw_parts(text.cast::<u8>(), len) };
        for line in lines.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            // `{"stream":<tag>, <the event's members>}`
            let digits = &line[10..];
            let tag_len = digits.iter().take_while(|b| b.is_ascii_digit()).count();
            let event = &digits[tag_len + 1..];
            if event.starts_with(DELTA) {
                if let Some(text) = delta_text(event, DELTA.len()) {
                    delays.token(text);
                }
            } else if event.starts_with(b" \"type\":\"done\"") || event.starts_with(b" \"type\":\"error\"") {
                let tag = digits[..tag_len].iter().fold(0usize, |n, b| n * 10 + usize::from(b - b'0'));
                let _ = ended.send(tag);
            }
        }
    }
}

/// (b) and (g): the SDK consumed directly, one task per open stream, on one runtime of two workers
/// or (with shards) dealt in turn to one-thread runtimes.
pub fn direct_level(direct: &crate::direct::Direct, streams: usize, ramp: Duration, window: Duration, seeds: &Arc<AtomicU64>) -> Level {
    let delays = Delays::new();
    let stop = Arc::new(AtomicBool::new(false));
    let before = settled_rss();
    let t0 = Instant::now();
    let tasks: Vec<_> = (0..streams)
        .map(|i| {
            let (handle, client) = match direct.shards.get(i % direct.shards.len().max(1)) {
                Some((h, c)) => (h.clone(), c.clone()),
                None => (direct.rt.handle().clone(), direct.client.clone()),
            };
            let (delays, stop, seeds) = (delays.clone(), stop.clone(), seeds.clone());
            handle.spawn(async move {
                tokio::time::sleep_until((t0 + ramp.mul_f64(i as f64 / streams as f64)).into()).await;
                while !stop.load(Ordering::Relaxed) {
                    crate::direct::paced_stream(&client, seeds.fetch_add(1, Ordering::Relaxed), &delays).await;
                }
            })
        })
        .collect();
    std::thread::sleep((t0 + ramp).saturating_duration_since(Instant::now()));
    let sampler = PeakRss::start();
    let cpu = cpu_time();
    delays.recording.store(true, Ordering::Relaxed);
    std::thread::sleep(window);
    delays.recording.store(false, Ordering::Relaxed);
    let cpu = cpu_time() - cpu;
    let peak = sampler.finish();
    let level = Level::of(streams, cpu, window, peak, before, &delays);
    stop.store(true, Ordering::Relaxed);
    tasks.iter().for_each(|t| t.abort());
    direct.rt.block_on(async {
        for t in tasks {
            let _ = t.await;
        }
    });
    level
}

/// (c) and (d): one level in a Node process of its own (`bindings/node/capacity.js`).
pub fn node_level(node: &str, script: &std::path::Path, client: &str, env: &[(&str, String)], streams: usize, ramp: Duration, window: Duration, seed: u64) -> Option<Level> {
    let output = std::process::Command::new(node)
        .arg(script)
        .args([client, &streams.to_string(), &ramp.as_millis().to_string(), &window.as_millis().to_string(), &seed.to_string()])
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .map_err(|e| eprintln!("{node} {}: {e}", script.display()))
        .ok()?;
    let text = String::from_utf8_lossy(&output.stdout);
    let Some(v) = text.lines().last().and_then(|l| serde_json::from_str::<serde_json::Value>(l).ok()) else {
        eprintln!("capacity.js {client} {streams}: no result ({}): {}", output.status, String::from_utf8_lossy(&output.stderr));
        return None;
    };
    let f = |k: &str| v[k].as_f64().unwrap_or(0.0);
    let w = window.as_secs_f64();
    Some(Level {
        cpu_per_stream_s: f("cpuS") / (streams as f64 * w),
        cores_used: f("cpuS") / w,
        kib_per_stream: f("rssKibAbove") / streams as f64,
        p50_us: f("p50Us"),
        p99_us: f("p99Us"),
        tokens_per_s: f("tokens") / w,
    })
}

/// Median and range of each figure over a level's repetitions.
pub struct Summary {
    pub cpu_per_stream_s: Spread,
    pub cores_used: Spread,
    pub kib_per_stream: Spread,
    pub p50_us: Spread,
    pub p99_us: Spread,
    pub tokens_per_s: Spread,
}

impl Summary {
    pub fn of(runs: &[Level]) -> Summary {
        let col = |f: fn(&Level) -> f64| Spread::of(&runs.iter().map(f).collect::<Vec<_>>());
        Summary {
            cpu_per_stream_s: col(|l| l.cpu_per_stream_s),
            cores_used: col(|l| l.cores_used),
            kib_per_stream: col(|l| l.kib_per_stream),
            p50_us: col(|l| l.p50_us),
            p99_us: col(|l| l.p99_us),
            tokens_per_s: col(|l| l.tokens_per_s),
        }
    }

    /// Streams one core would carry at this level's CPU per stream-second.
    pub fn streams_per_core(&self) -> f64 {
        1.0 / self.cpu_per_stream_s.median
    }
}

/// CPU seconds (user + system) a child process has used so far.
fn child_cpu(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are stat fields 14 and 15: indices 11 and 12 of what follows the name.
    (ticks(11) + ticks(12)) / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

pub struct Options {
    pub build: std::path::PathBuf,
    pub copy: std::path::PathBuf,
    pub reps: usize,
    pub quick: bool,
    pub http1: bool,
    pub clients: Vec<char>,
    pub max_streams: usize,
    /// The ladder's first level (25 unless asked): one level alone, to profile it.
    pub min_streams: usize,
    /// The plugin's `provider.runtimeThreads` (its default unless asked).
    pub runtime_threads: Option<usize>,
    /// The plugin's `provider.deliveryGatherMs` (its default unless asked).
    pub gather_ms: Option<u64>,
    /// The direct client's runtime workers (2, as the plugin's default, unless asked).
    pub direct_threads: usize,
    /// Runtimes of one thread each for the direct client instead (0: the one runtime above).
    pub direct_shards: usize,
    /// Rounds of bisection between each client's last level within the delay budget and its
    /// first past it (4 unless asked: the bracket narrowed to a factor 1.0625).
    pub bisect: usize,
    /// Only the head-of-line check: (a) at `max_streams` streams, with and without one slow
    /// consumer among them.
    pub hol: bool,
}

const CLIENTS: [(char, &str); 7] = [
    ('a', "plugin (C ABI)"),
    ('b', "Rust SDK direct"),
    ('c', "pi-ai built-in (Node)"),
    ('d', "Node binding"),
    ('e', "plugin (C ABI, mailbox)"),
    ('f', "plugin (C ABI, inline)"),
    ('g', "Rust SDK direct, a runtime per thread"),
];

fn client_name(c: char) -> &'static str {
    CLIENTS.iter().find(|(k, _)| *k == c).map(|(_, n)| *n).unwrap_or("?")
}

/// The added delay a client may reach at a level and still carry it: 50 ms p99, the median of the
/// repetitions.
fn within_budget(s: &Summary) -> bool {
    s.p99_us.median <= 50_000.0
}

/// The Node clients' packages (pi-ai, koffi), installed from the committed lock file the first
/// time, as the binding's test does: without them a fresh checkout would run the bench with two
/// clients fewer and say so only level by level.
fn node_packages(dir: &std::path::Path) -> Result<(), String> {
    if dir.join("node_modules/@mariozechner/pi-ai/package.json").is_file() && dir.join("node_modules/koffi/package.json").is_file() {
        return Ok(());
    }
    println!("installing bindings/node's packages (npm ci) for the Node clients");
    let out = std::process::Command::new("npm").args(["ci", "--no-audit", "--no-fund"]).current_dir(dir).output().map_err(|e| format!("npm: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("npm ci in {} failed ({}): {}", dir.display(), out.status, String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// Runs the scenario and returns its Markdown section.
pub fn run(o: &Options) -> String {
    let certs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../emulator/certs/ca.pem");
    let ca = std::fs::canonicalize(&certs).expect("the emulator's test CA");
    let script = std::fs::canonicalize(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bindings/node/capacity.js")).expect("bindings/node/capacity.js");
    let (mut standin, port) = crate::start_standin(if o.http1 { &["--serve-paced", "--h1"] } else { &["--serve-paced"] });
    let endpoint = format!("https://127.0.0.1:{port}");
    let protocol = if o.http1 { "HTTP/1.1" } else { "HTTP/2" };
    println!("capacity: real-pace streams over HTTPS ({protocol}), stand-in {endpoint} (pid {})", standin.id());

    let plugin = Plugin::load(&o.build, &o.copy);
    let mut config = serde_json::json!({"provider": {"baseUrl": endpoint, "caBundle": ca, "models": []}, "discovery": {"enabled": false}});
    if let Some(n) = o.runtime_threads {
        config["provider"]["runtimeThreads"] = n.into();
    }
    if let Some(ms) = o.gather_ms {
        config["provider"]["deliveryGatherMs"] = ms.into();
    }
    let config = config.to_string();
    let provider = plugin.provider(&config);
    let ca_pem = std::fs::read(&ca).unwrap();
    let direct = crate::direct::Direct::with_ca(&endpoint, &ca_pem, o.direct_threads, o.direct_shards);
    // (g): the SDK run as the plugin runs its streams, one runtime per thread, each with its own
    // connection (as many as (b) has workers).
    let per_thread = o.clients.contains(&'g').then(|| crate::direct::Direct::with_ca(&endpoint, &ca_pem, 1, o.direct_threads));
    let node = std::env::var("BENCH_NODE").unwrap_or_else(|_| "node".into());
    let mut node_env = vec![
        ("CAPACITY_ENDPOINT", endpoint.clone()),
        ("BP_PLUGIN", o.build.display().to_string()),
        ("NODE_EXTRA_CA_CERTS", ca.display().to_string()),
        ("AWS_CA_BUNDLE", ca.display().to_string()),
    ];
    if o.http1 {
        node_env.push(("AWS_BEDROCK_FORCE_HTTP1", "1".into()));
    }
    let (ramp, window) = if o.quick { (Duration::from_millis(1500), Duration::from_secs(4)) } else { (Duration::from_secs(2), Duration::from_secs(6)) };
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) as f64;
    let seeds = Arc::new(AtomicU64::new(1));
    if o.hol {
        let md = head_of_line(&plugin, &provider, o, ramp, window, &seeds, protocol);
        drop(provider);
        drop(plugin);
        drop(standin.stdin.take());
        let _ = standin.wait();
        return md;
    }
    let mut active: Vec<char> = o.clients.clone();
    if active.iter().any(|c| matches!(c, 'c' | 'd')) {
        if let Err(why) = node_packages(script.parent().unwrap()) {
            println!("(c) and (d) skipped: {why}");
            active.retain(|c| !matches!(c, 'c' | 'd'));
        }
    }
    if plugin.api().abi_version & 0xffff < 8 && active.contains(&'f') {
        println!("(f) skipped: the plugin under test is older than ABI 1.8 (no bp_stream_start_inline)");
        active.retain(|c| *c != 'f');
    }
    let mut table = String::from("| client | open streams | streams per core (1 / CPU per stream-second) | CPU per stream-second, ms | cores used | RSS per open stream, KiB | added delay p50 / p99, ms | tokens/s | stand-in cores |\n|---|---|---|---|---|---|---|---|---|\n");
    // Per client: its highest level within 50 ms p99, with that level's summary.
    let mut best: std::collections::BTreeMap<char, (usize, Summary)> = Default::default();
    // Every repetition's CPU per stream-second, per level and client, with the round it ran in:
    // within a round, repetition i of two clients ran back to back, so their ratio leaves out
    // most of the machine's drift that a ratio of medians keeps.
    let mut cpu_reps: std::collections::BTreeMap<(usize, char), (usize, Vec<f64>)> = Default::default();
    let mut rounds = 0;
    // Per client: the lowest level past the delay budget (the ladder's, then the bisection's).
    let mut past: std::collections::BTreeMap<char, usize> = Default::default();
    // One round: every repetition runs every planned client at its level, interleaved.
    let mut round = |plan: &[(char, usize)]| -> Vec<(char, usize, Summary)> {
        rounds += 1;
        let mut runs: std::collections::BTreeMap<char, Vec<Level>> = Default::default();
        let mut standin_cores: std::collections::BTreeMap<char, Vec<f64>> = Default::default();
        for rep in 0..o.reps {
            for &(c, streams) in plan {
                // Every client gets the same streams of the mix, level by level.
                let base = 1 + (streams as u64) * 1_000_000 + rep as u64 * 100_000;
                seeds.store(base, Ordering::Relaxed);
                let (s0, t) = (child_cpu(standin.id()), Instant::now());
                let level = match c {
                    'a' => Some(plugin_level(&plugin, &provider, streams, ramp, window, &seeds, None, false)),
                    'f' => Some(plugin_level(&plugin, &provider, streams, ramp, window, &seeds, None, true)),
                    'b' => Some(direct_level(&direct, streams, ramp, window, &seeds)),
                    'g' => per_thread.as_ref().map(|d| direct_level(d, streams, ramp, window, &seeds)),
                    'e' => Some(mailbox_level(&plugin, &provider, streams, ramp, window, &seeds)),
                    'c' => node_level(&node, &script, "pi-ai", &node_env, streams, ramp, window, base),
                    _ => node_level(&node, &script, "binding", &node_env, streams, ramp, window, base),
                };
                standin_cores.entry(c).or_default().push((child_cpu(standin.id()) - s0) / t.elapsed().as_secs_f64());
                if let Some(level) = level {
                    runs.entry(c).or_default().push(level);
                }
            }
        }
        let mut out = Vec::new();
        for &(c, streams) in plan {
            let name = client_name(c);
            let Some(levels) = runs.get(&c) else { continue };
            let s = Summary::of(levels);
            cpu_reps.insert((streams, c), (rounds, levels.iter().map(|l| l.cpu_per_stream_s).collect()));
            let sc = Spread::of(&standin_cores[&c]);
            let row = format!(
                "| ({c}) {name} | {streams} | {:.0} | {} | {} | {} | {:.1} / {:.1} ({:.1}–{:.1}) | {:.0} | {:.2} |\n",
                s.streams_per_core(),
                Spread { median: s.cpu_per_stream_s.median * 1e3, min: s.cpu_per_stream_s.min * 1e3, max: s.cpu_per_stream_s.max * 1e3 }.show(3),
                s.cores_used.show(2),
                s.kib_per_stream.show(1),
                s.p50_us.median / 1e3,
                s.p99_us.median / 1e3,
                s.p99_us.min / 1e3,
                s.p99_us.max / 1e3,
                s.tokens_per_s.median,
                sc.median,
            );
            print!("{row}");
            table.push_str(&row);
            out.push((c, streams, s));
        }
        out
    };
    let mut streams = o.min_streams;
    while !active.is_empty() && streams <= o.max_streams {
        let plan: Vec<(char, usize)> = active.iter().map(|&c| (c, streams)).collect();
        let mut done: std::collections::BTreeMap<char, Summary> = round(&plan).into_iter().map(|(c, _, s)| (c, s)).collect();
        for &c in &active.clone() {
            let Some(s) = done.remove(&c) else {
                active.retain(|k| *k != c);
                continue;
            };
            let within = within_budget(&s);
            // Saturated: past the delay budget, or using (nearly) all of a client's cores.
            if !within || s.cores_used.median >= 0.9 * cores {
                active.retain(|k| *k != c);
            }
            if within {
                best.insert(c, (streams, s));
            } else {
                past.insert(c, streams);
            }
        }
        streams *= 2;
    }
    // A doubling ladder puts a client's capacity somewhere in [last level within budget, first
    // past it]: two clients a few percent apart land a whole factor 2 apart whenever the line
    // falls between them. Bisecting each client's bracket (interleaved as above) narrows it to
    // a factor 1.5, 1.25, 1.125, then 1.0625 of its lower end: between 3,200 and 6,400 streams
    // the last step is 200. Three rounds leave steps of 400 there, 12.5%, coarser than the 10%
    // that the capacity target is about: two clients a step apart read 0.89× whatever their gap.
    for _ in 0..o.bisect {
        let plan: Vec<(char, usize)> = past
            .iter()
            .filter_map(|(&c, &hi)| {
                let lo = best.get(&c).map_or(0, |(n, _)| *n);
                let mid = (lo + hi) / 2;
                (lo > 0 && mid > lo && mid < hi).then_some((c, mid))
            })
            .collect();
        if plan.is_empty() {
            break;
        }
        for (c, streams, s) in round(&plan) {
            if within_budget(&s) {
                best.insert(c, (streams, s));
            } else {
                past.insert(c, streams);
            }
        }
    }
    drop(provider);
    drop(plugin);
    drop(standin.stdin.take());
    let _ = standin.wait();

    let mut md = format!("### Capacity: real-pace streams over HTTPS ({protocol})\n\nEach figure: median of {} interleaved repetitions (range in brackets); ramp {} s, window {} s per level.\n\n", o.reps, ramp.as_secs_f64(), window.as_secs_f64());
    md.push_str("| client | most open streams within 50 ms p99 (this machine) | CPU per stream-second there, ms | streams per core there | RSS per open stream, KiB | added delay p50 / p99, ms |\n|---|---|---|---|---|---|\n");
    for (c, (n, s)) in &best {
        let name = client_name(*c);
        md.push_str(&format!(
            "| ({c}) {name} | {n} | {:.3} | {:.0} | {:.1} | {:.1} / {:.1} |\n",
            s.cpu_per_stream_s.median * 1e3,
            s.streams_per_core(),
            s.kib_per_stream.median,
            s.p50_us.median / 1e3,
            s.p99_us.median / 1e3
        ));
    }
    let per_core = |c: char| best.get(&c).map(|(_, s)| s.streams_per_core());
    let most = |c: char| best.get(&c).map(|(n, _)| *n as f64);
    md.push('\n');
    for (x, y) in [('a', 'b'), ('e', 'b'), ('f', 'b'), ('a', 'g'), ('f', 'g'), ('a', 'c'), ('e', 'c'), ('f', 'c'), ('d', 'c')] {
        if let (Some(px), Some(py), Some(nx), Some(ny)) = (per_core(x), per_core(y), most(x), most(y)) {
            md.push_str(&format!("- ({x}) / ({y}): {:.2}× the streams per core, {:.1}× the open streams within the delay budget\n", px / py, nx / ny));
        }
    }
    let median = |v: &[f64]| Spread::of(v).median;
    for (x, y) in [('a', 'b'), ('e', 'b'), ('f', 'b'), ('a', 'g'), ('f', 'g')] {
        let same: Vec<String> = cpu_reps
            .iter()
            .filter(|((_, c), _)| *c == x)
            .filter_map(|((n, _), (round_a, a))| {
                let (round_b, b) = cpu_reps.get(&(*n, y))?;
                let ratio = median(a) / median(b);
                // Runs of different rounds were not beside each other: no pairs to form.
                if round_a != round_b {
                    return Some(format!("{n}: {ratio:.2}× (not paired)"));
                }
                let paired = crate::ratios(a, b);
                Some(format!("{n}: {ratio:.2}× (paired {:.2}×, {:.2}–{:.2})", paired.median, paired.min, paired.max))
            })
            .collect();
        if !same.is_empty() {
            md.push_str(&format!("- ({x}) / ({y}) CPU per stream-second at the same level, the ratio of the medians (the median of each repetition's ratio to ({y})'s run beside it, and their range): {}\n", same.join(", ")));
        }
    }
    md.push_str("\nEvery level:\n\n");
    md.push_str(&table);
    md
}

/// One consumer that takes 50 ms over every event (it falls behind a 50–100 tokens/s stream at
/// once) among `max_streams` streams of the plugin: the other streams' added delay, against the
/// same level with no slow consumer, interleaved. Over HTTP/2 they share its connection.
fn head_of_line(plugin: &Plugin, provider: &crate::plugin::Provider<'_>, o: &Options, ramp: Duration, window: Duration, seeds: &AtomicU64, protocol: &str) -> String {
    let streams = o.max_streams;
    let (mut alone, mut beside) = (Vec::new(), Vec::new());
    for rep in 0..o.reps {
        seeds.store(1 + rep as u64 * 100_000, Ordering::Relaxed);
        alone.push(plugin_level(plugin, provider, streams, ramp, window, seeds, None, false));
        seeds.store(1 + rep as u64 * 100_000, Ordering::Relaxed);
        beside.push(plugin_level(plugin, provider, streams, ramp, window, seeds, Some(Duration::from_millis(50)), false));
    }
    let (a, b) = (Summary::of(&alone), Summary::of(&beside));
    let mut md = format!("### Head of line ({protocol}): {streams} streams of the plugin, one of them consumed at 50 ms per event\n\nMedian of {} interleaved repetitions (range).\n\n| | added delay p50, ms | p99, ms | tokens/s of the others |\n|---|---|---|---|\n", o.reps);
    for (label, s) in [("no slow consumer", &a), ("one slow consumer (its tokens not counted)", &b)] {
        let ms = |x: &Spread| Spread { median: x.median / 1e3, min: x.min / 1e3, max: x.max / 1e3 }.show(1);
        let row = format!("| {label} | {} | {} | {:.0} |\n", ms(&s.p50_us), ms(&s.p99_us), s.tokens_per_s.median);
        print!("{row}");
        md.push_str(&row);
    }
    md
}

#[cfg(test)]
mod tests {
    use super::delta_text;

    #[test]
    fn a_deltas_text_is_read_as_the_plugin_writes_it_and_found_in_any_other_order() {
        let head = br#"{"type":"text_delta""#.len();
        let written = br#"{"type":"text_delta","contentIndex":12,"delta":"123 "}"#;
        assert_eq!(delta_text(written, head), Some(&br#"123 "}"#[..]));
        let reordered = br#"{"type":"text_delta","delta":"9 ","contentIndex":0}"#;
        assert_eq!(delta_text(reordered, head), Some(&br#"9 ","contentIndex":0}"#[..]));
        assert_eq!(delta_text(br#"{"type":"text_delta","contentIndex":0}"#, head), None);
        // A mailbox line's members, after its `{"stream":<tag>,`.
        let filed = br#" "type":"text_delta","contentIndex":0,"delta":"7"}"#;
        assert_eq!(delta_text(filed, br#" "type":"text_delta""#.len()), Some(&br#"7"}"#[..]));
    }
}
