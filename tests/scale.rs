//! Delivery at gateway scale, through the C ABI and the real SDK: threads follow the callbacks
//! that are running, not the streams that are open; there is no ceiling on streams that receive
//! events; a callback that blocks holds only its own stream.

mod common;
use common::*;
use serde_json::json;
use std::ffi::c_char;
use std::os::raw::c_void;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Each test counts the process's plugin threads: they run one at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn raise_fd_limit(want: u64) {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    assert!(limit.rlim_max >= want, "this test needs {want} file descriptors; the hard limit is {}", limit.rlim_max);
    limit.rlim_cur = limit.rlim_cur.max(want);
    unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) };
}

/// Waits until `done` holds, failing after `timeout` with `what`.
fn wait_until(timeout: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "{what} (waited {timeout:?})");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn fifteen_hundred_open_streams_all_receive_events_on_a_handful_of_threads() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    // Each open stream is a socket on both sides of loopback (the emulator runs in this process).
    const STREAMS: usize = 1500;
    raise_fd_limit(2 * STREAMS as u64 + 512);
    let (emulator, p) = setup();
    // Bedrock's events come 1.5 s apart: the first delta after 1.5 s, the end after 7.5 s. Every
    // stream receives a delta before any stream ends, unless streams wait for others to end (the
    // old design's ceiling was 1,024 streams receiving at once).
    let streams: Vec<Stream> =
        (0..STREAMS).map(|_| start(&p, &request("emulator.echo", "emulator: chunks=2 delay_ms=1500", json!({})))).collect();
    let mut peak_threads = 0;
    wait_until(Duration::from_secs(60), "every open stream receives its first delta", || {
        peak_threads = peak_threads.max(plugin_threads());
        streams.iter().all(|s| s.collector.events.lock().unwrap().iter().any(|e| e["type"] == "text_delta"))
    });
    let ended = streams.iter().filter(|s| s.collector.events.lock().unwrap().iter().any(is_terminal)).count();
    assert_eq!(ended, 0, "all {STREAMS} streams were receiving at once, none had to end first");
    assert!(emulator.stats().max_open_streams >= STREAMS as u64, "peak {} open streams", emulator.stats().max_open_streams);
    // Control thread, the runtime's worker, two stream threads, the delivery pool's two core
    // threads, and a few the pool may add for a moment when the machine is busy: not one per
    // stream.
    assert!(peak_threads <= 12, "{peak_threads} plugin threads for {STREAMS} open streams");
    wait_until(Duration::from_secs(60), "every stream ends", || streams.iter().all(|s| s.collector.events.lock().unwrap().iter().any(is_terminal)));
    for (i, s) in streams.iter().enumerate() {
        let events = s.collector.events.lock().unwrap();
        assert!(s.collector.violations.lock().unwrap().is_empty(), "stream {i}: {:?}", s.collector.violations.lock().unwrap());
        assert_eq!(text_of(&events), "w0 w1 ", "stream {i}");
        assert_eq!(events.iter().filter(|e| is_terminal(e)).count(), 1, "stream {i}");
        assert_eq!(terminal(&events)["reason"], "stop", "stream {i}");
    }
    drop(streams);
    assert_eq!(p.free(10_000), 0);
}

/// A callback that blocks on its first event until the test opens the gate.
struct Gated {
    gate: Arc<(Mutex<bool>, Condvar)>,
    events: Mutex<Vec<serde_json::Value>>,
    done: Condvar,
}

unsafe extern "C" fn gated(user: *mut c_void, json: *const c_char, len: usize) -> i32 {
    let g = &*(user as *const Gated);
    let (open, cv) = &*g.gate;
    let mut is_open = open.lock().unwrap();
    while !*is_open {
        is_open = cv.wait(is_open).unwrap();
    }
    drop(is_open);
    let event: serde_json::Value = serde_json::from_slice(std::slice::from_raw_parts(json.cast::<u8>(), len)).unwrap();
    g.events.lock().unwrap().push(event);
    g.done.notify_all();
    0
}

#[test]
fn callbacks_that_block_hold_only_their_own_streams() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let (_emulator, p) = setup();
    let before = plugin_threads();
    let gate = Arc::new((Mutex::new(false), Condvar::new()));
    // More blocked callbacks than the pool's core threads: the others can go on only if the
    // pool adds threads for them.
    let blocked: Vec<(Arc<Gated>, *mut c_void)> = (0..4)
        .map(|_| {
            let g = Arc::new(Gated { gate: gate.clone(), events: Mutex::default(), done: Condvar::new() });
            let body = std::ffi::CString::new(request("emulator.echo", "emulator: chunks=5", json!({})).to_string()).unwrap();
            let (mut handle, mut err) = (std::ptr::null_mut(), std::ptr::null_mut());
            let rc = unsafe { (api().stream_start)(p.0, body.as_ptr(), Some(gated), Arc::as_ptr(&g) as *mut c_void, &mut handle, &mut err) };
            assert_eq!(rc, 0);
            (g, handle)
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let free: Vec<Stream> = (0..40).map(|_| start(&p, &request("emulator.echo", "emulator: chunks=20", json!({})))).collect();
    for s in &free {
        let events = s.finish();
        assert_eq!(terminal(&events)["reason"], "stop");
        assert_eq!(events.iter().filter(|e| e["type"] == "text_delta").count(), 20);
    }
    assert!(blocked.iter().all(|(g, _)| g.events.lock().unwrap().is_empty()), "the blocked callbacks are still in their first call");
    let during = plugin_threads();
    assert!(during > before, "the pool grew beside the blocked callbacks ({before} → {during} threads)");

    *gate.0.lock().unwrap() = true;
    gate.1.notify_all();
    for (g, handle) in &blocked {
        let mut events = g.events.lock().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while !events.iter().any(is_terminal) {
            assert!(Instant::now() < deadline, "a released stream ends");
            events = g.done.wait_timeout(events, Duration::from_millis(100)).unwrap().0;
        }
        assert_eq!(text_of(&events), "w0 w1 w2 w3 w4 ");
        assert_eq!(events.iter().filter(|e| is_terminal(e)).count(), 1);
        unsafe { (api().stream_release)(*handle) };
    }
    // Threads added for blocked callbacks leave once idle: the pool's two core threads (started
    // with the first stream) stay.
    wait_until(Duration::from_secs(30), "the pool shrinks back once nothing blocks", || plugin_threads() <= before + 2);
    drop(free);
    assert_eq!(p.free(10_000), 0);
}

/// Sockets this process holds (the emulator's side included: it runs in this process).
fn open_sockets() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok()).filter(|l| l.to_string_lossy().starts_with("socket:")).count())
        .unwrap_or(0)
}

/// Issue #19: after a burst, every stream's connection sat in the SDK's pool until the next
/// request came (a gateway that bursts and goes quiet held ~2,000 sockets and ~100 MB). Now the
/// pool's timer closes idle connections within `idleConnectionSeconds` of their last use, with no
/// further request: 300 concurrent streams, then the sockets go back to where they were. Given
/// the whole setting, hyper's pool ticks once per setting and a burst's last connections, a tick
/// too young, stayed up to twice the setting (5.9 s of a 3 s timeout here); now at most the
/// setting, and a second's slack is allowed for a loaded machine. A provider with an hour's idle
/// timeout keeps them, which shows the count sees pooled connections at all.
#[test]
fn idle_pooled_connections_are_closed_on_their_timeout_without_traffic() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    const STREAMS: usize = 300;
    raise_fd_limit(4 * STREAMS as u64 + 512);
    hermetic_env();
    let emulator = Emulator::start(EmulatorConfig::default());
    let burst = |idle: u64, http_version: &str| {
        let mut config = config_for(&emulator.endpoint());
        config["provider"]["idleConnectionSeconds"] = json!(idle);
        config["provider"]["httpVersion"] = json!(http_version);
        let p = Provider::try_new(&config.to_string()).expect("provider");
        let before = open_sockets();
        let streams: Vec<Stream> = (0..STREAMS).map(|_| start(&p, &request("emulator.echo", "emulator: chunks=2 delay_ms=300", json!({})))).collect();
        wait_until(Duration::from_secs(60), "every stream ends", || streams.iter().all(|s| s.collector.events.lock().unwrap().iter().any(is_terminal)));
        assert!(streams.iter().all(|s| text_of(&s.collector.events.lock().unwrap()) == "w0 w1 "));
        drop(streams);
        let pooled = open_sockets();
        (p, before, pooled)
    };
    let (kept, before, pooled) = burst(3600, "2");
    assert!(pooled >= before + STREAMS, "the burst's connections are pooled: {before} sockets before, {pooled} after");
    std::thread::sleep(Duration::from_secs(3));
    assert!(open_sockets() >= before + STREAMS, "an hour's idle timeout keeps them: {} sockets", open_sockets());
    drop(kept);
    // The SDK's client (the default) and the HTTP/1.1-only one (`httpVersion: "1.1"`) alike.
    const IDLE: u64 = 3;
    for (round, http_version) in ["2", "1.1"].into_iter().enumerate() {
        let (p, before, pooled) = burst(IDLE, http_version);
        assert!(pooled >= before + STREAMS, "httpVersion {http_version}: {before} sockets before, {pooled} after the burst");
        let idle = Instant::now();
        wait_until(Duration::from_secs(IDLE + 10), "the idle connections are closed without another request", || open_sockets() <= before + 4);
        let took = idle.elapsed();
        println!("httpVersion {http_version}: {pooled} sockets after the burst, {} {:.1} s later with no request ({IDLE} s idle timeout)", open_sockets(), took.as_secs_f64());
        assert!(took < Duration::from_secs(IDLE + 1), "httpVersion {http_version}: the last idle connection closed {took:?} after the burst, later than its {IDLE} s timeout");
        assert_eq!(emulator.stats().converse_streams, (2 + round) as u64 * STREAMS as u64, "no request was made while waiting");
        drop(p);
    }
}

/// The HTTP/1.1 client's pool (`src/http1`) takes a connection back only once its answer was read
/// to the end: a stream cancelled halfway leaves its connection mid-answer, so it must be closed,
/// not pooled for the next request and not left open waiting. 40 streams cancelled after their
/// first token with an hour's idle timeout: their sockets go at once, and the next request runs.
#[test]
fn http1_streams_cancelled_halfway_close_their_connections() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    const STREAMS: usize = 40;
    raise_fd_limit(4 * STREAMS as u64 + 512);
    hermetic_env();
    let emulator = Emulator::start(EmulatorConfig::default());
    let mut config = config_for(&emulator.endpoint());
    config["provider"]["idleConnectionSeconds"] = json!(3600);
    config["provider"]["httpVersion"] = json!("1.1");
    let p = Provider::try_new(&config.to_string()).expect("provider");
    let before = open_sockets();
    let streams: Vec<Stream> = (0..STREAMS).map(|_| start(&p, &request("emulator.echo", "emulator: chunks=50 delay_ms=200", json!({})))).collect();
    wait_until(Duration::from_secs(30), "every stream has its first token", || streams.iter().all(|s| !text_of(&s.collector.events.lock().unwrap()).is_empty()));
    assert!(open_sockets() >= before + STREAMS, "one connection per open stream");
    streams.iter().for_each(Stream::cancel);
    wait_until(Duration::from_secs(30), "every stream ends", || streams.iter().all(|s| s.collector.events.lock().unwrap().iter().any(is_terminal)));
    drop(streams);
    wait_until(Duration::from_secs(5), "the cancelled streams' connections are closed", || open_sockets() <= before + 1);
    let connections = emulator.stats().connections;
    assert_eq!(text_of(&chat(&p, "emulator: chunks=2", json!({}))), "w0 w1 ");
    assert_eq!(emulator.stats().connections, connections + 1, "the next request took a new connection, not a half-read one");
}

/// Issue #19: Bedrock's runtime endpoint speaks HTTP/2 and the SDK's client offers it first (ALPN
/// `h2`, then `http/1.1`), so over TLS concurrent streams share a connection instead of taking one
/// each (a socket, a TLS session and its buffers per stream). A burst of 100 concurrent streams,
/// the first on a cold pool, against the emulator serving HTTPS with `h2` offered: all HTTP/2, on
/// one connection per stream thread (`runtimeThreads`, 2), every stream exact. (The pool learns
/// only from a finished handshake that the host speaks h2: without a stream thread's first
/// request opening its connection alone, the burst took 51 connections, `converse/connecting.rs`.)
/// With HTTP/1.1 only, one connection per stream: when
/// the server speaks only HTTP/1.1, or when the plugin is told to (`httpVersion: "1.1"`, the
/// switch for a network that mishandles HTTP/2) although the server offers h2.
#[test]
fn concurrent_streams_share_one_http2_connection_over_tls() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    const STREAMS: usize = 100;
    raise_fd_limit(4 * STREAMS as u64 + 512);
    hermetic_env();
    for (server_h2, http_version) in [(true, None), (false, None), (true, Some("1.1"))] {
        let http2 = server_h2 && http_version.is_none();
        let emulator = Emulator::start(EmulatorConfig { tls: true, http2: server_h2, ..EmulatorConfig::default() });
        let mut config = config_for(&emulator.endpoint());
        config["provider"]["caBundle"] = json!(bedrock_emulator::test_ca_path());
        if let Some(v) = http_version {
            config["provider"]["httpVersion"] = json!(v);
        }
        let p = Provider::try_new(&config.to_string()).expect("provider");
        let streams: Vec<Stream> = (0..STREAMS).map(|_| start(&p, &request("emulator.echo", "emulator: chunks=4 delay_ms=150", json!({})))).collect();
        wait_until(Duration::from_secs(60), "every stream ends", || streams.iter().all(|s| s.collector.events.lock().unwrap().iter().any(is_terminal)));
        for (i, s) in streams.iter().enumerate() {
            let events = s.collector.events.lock().unwrap();
            assert_eq!(terminal(&events)["type"], "done", "stream {i} over {}: {}", if http2 { "h2" } else { "http/1.1" }, terminal(&events));
            assert_eq!(text_of(&events), "w0 w1 w2 w3 ", "stream {i}");
        }
        let stats = emulator.stats();
        let case = match (server_h2, http_version) {
            (true, None) => "h2 offered",
            (false, _) => "server HTTP/1.1 only",
            (true, Some(_)) => "h2 offered, httpVersion 1.1",
        };
        println!("{STREAMS} concurrent streams over TLS, {case}: {} connections, {} of {} requests over HTTP/2, peak {} open", stats.connections, stats.http2_requests, stats.requests, stats.max_open_streams);
        assert!(stats.max_open_streams >= STREAMS as u64 / 2, "the streams overlapped: peak {}", stats.max_open_streams);
        if http2 {
            assert_eq!(stats.http2_requests, stats.requests, "every request over HTTP/2");
            assert_eq!(stats.connections, 2, "{} connections for a burst of {STREAMS} streams on two stream threads", stats.connections);
        } else {
            assert_eq!(stats.http2_requests, 0);
            assert!(stats.connections >= stats.max_open_streams, "one connection per open stream: {} for a peak of {}", stats.connections, stats.max_open_streams);
            // Their connections wait in the pool: the next requests, one after another, reuse them.
            for _ in 0..5 {
                assert_eq!(text_of(&chat(&p, "emulator: chunks=1", json!({}))), "w0 ");
            }
            assert_eq!(emulator.stats().connections, stats.connections, "{case}: five more requests on pooled connections");
        }
        drop(streams);
        drop(p);
    }
}
