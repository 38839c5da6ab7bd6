//! Each service fault a thousand times through the C ABI: every stream ends with exactly one
//! terminal event carrying the fault's code, and the plugin's threads and memory come back to
//! where they were (no leak that grows with streams).

mod common;
use common::*;
use serde_json::{json, Value};
use std::ffi::{c_char, c_void, CString};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// Counts terminal events by code; anything after a terminal event is a violation.
#[derive(Default)]
struct Tally {
    ended: Mutex<Vec<String>>,
    cv: Condvar,
    violations: AtomicUsize,
}

/// One stream's state: whether its terminal event arrived.
struct One<'a> {
    tally: &'a Tally,
    ended: std::sync::atomic::AtomicBool,
}

unsafe extern "C" fn count(user: *mut c_void, json: *const c_char, len: usize) -> i32 {
    let one = &*(user as *const One);
    let head = std::slice::from_raw_parts(json.cast::<u8>(), len);
    if !(head.starts_with(b"{\"type\":\"done\"") || head.starts_with(b"{\"type\":\"error\"")) {
        return 0;
    }
    if one.ended.swap(true, Ordering::SeqCst) {
        one.tally.violations.fetch_add(1, Ordering::SeqCst);
        return 0;
    }
    let event: Value = serde_json::from_slice(head).unwrap();
    let code = if event["type"] == "done" { "done".to_string() } else { event["error"]["errorInfo"]["code"].as_str().unwrap_or("?").to_string() };
    one.tally.ended.lock().unwrap().push(code);
    one.tally.cv.notify_all();
    0
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse().ok()).unwrap()
}

/// Runs `n` streams of `prompt`, 100 at a time, and returns the codes they ended with.
fn run(p: &Provider, prompt: &str, n: usize) -> Vec<String> {
    run_with(p, prompt, json!({}), n)
}

fn run_with(p: &Provider, prompt: &str, options: Value, n: usize) -> Vec<String> {
    let tally = Tally::default();
    let body = CString::new(request("emulator.echo", prompt, options).to_string()).unwrap();
    // Kept until the end: a callback may still be returning when its terminal event is counted.
    let mut all: Vec<Box<One>> = Vec::with_capacity(n);
    for batch in 0..n.div_ceil(100) {
        let streams: Vec<Box<One>> = (0..100.min(n - batch * 100)).map(|_| Box::new(One { tally: &tally, ended: Default::default() })).collect();
        let mut handles = Vec::new();
        for one in &streams {
            let (mut handle, mut err) = (std::ptr::null_mut(), std::ptr::null_mut());
            let user = &**one as *const One as *mut c_void;
            let rc = unsafe { (api().stream_start)(p.0, body.as_ptr(), Some(count), user, &mut handle, &mut err) };
            assert_eq!(rc, 0);
            handles.push(handle);
        }
        let want = batch * 100 + streams.len();
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut ended = tally.ended.lock().unwrap();
        while ended.len() < want {
            assert!(Instant::now() < deadline, "{prompt}: {} of {want} streams ended", ended.len());
            ended = tally.cv.wait_timeout(ended, Duration::from_millis(100)).unwrap().0;
        }
        drop(ended);
        for h in handles {
            unsafe { (api().stream_release)(h) };
        }
        all.extend(streams);
    }
    assert_eq!(tally.violations.load(Ordering::SeqCst), 0, "{prompt}: an event after the terminal one");
    // Every callback has returned once the provider's streams are all finished; give the last
    // one a moment before its state goes.
    std::thread::sleep(Duration::from_millis(20));
    drop(all);
    let codes = tally.ended.lock().unwrap().clone();
    codes
}

#[test]
fn each_fault_a_thousand_times_ends_cleanly_and_leaks_nothing() {
    hermetic_env();
    let emulator = Emulator::start(EmulatorConfig::default());
    let p = Provider::new(&emulator);
    let scenarios = [
        ("emulator: chunks=3", "done"),
        ("emulator: error=throttling", "throttled"),
        ("emulator: chunks=5 error=throttling at=mid after=3", "throttled"),
        ("emulator: error=serviceUnavailable", "unavailable"),
        ("emulator: chunks=3 error=modelStreamError at=mid after=2", "model_error"),
        ("emulator: error=contextOverflow", "context_overflow"),
        ("emulator: chunks=5 drop=3", "network"),
        ("emulator: chunks=5 end=3", "truncated"),
        ("emulator: chunks=4 corrupt=crc after=3", "network"),
        ("emulator: chunks=4 corrupt=json after=3", "network"),
        // The wrong content type: a captive portal's page, and a proxy's error page.
        ("emulator: html=200", "network"),
        ("emulator: html=502", "unavailable"),
    ];
    // Warm up: the runtime, the pool's threads, the SDK's lazily built state.
    run(&p, "emulator: chunks=3", 200);
    let (threads, rss) = (plugin_threads(), rss_kib());
    let check = |what: &str, codes: Vec<String>, code: &str| {
        assert_eq!(codes.len(), 1000, "{what}");
        assert!(codes.iter().all(|c| c == code), "{what}: {:?}", codes.iter().filter(|c| *c != code).take(3).collect::<Vec<_>>());
    };
    for (prompt, code) in scenarios {
        check(prompt, run(&p, prompt, 1000), code);
    }
    // Faults of the network itself, each with a provider of its own: a port nothing listens on
    // (refused at once), and a server that accepts and never answers (the idle timeout ends it).
    let refused = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let nowhere = Provider::try_new(&config_for(&format!("http://{refused}")).to_string()).unwrap();
    check("connection refused", run(&nowhere, "hi", 1000), "network");
    assert_eq!(nowhere.free(5000), 0);
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_addr = silent.local_addr().unwrap();
    let held = std::thread::spawn(move || silent.incoming().take(1000).filter_map(Result::ok).collect::<Vec<_>>());
    let mute = Provider::try_new(&config_for(&format!("http://{silent_addr}")).to_string()).unwrap();
    check("accepted, never answered", run_with(&mute, "hi", json!({"idleTimeoutMs": 100}), 1000), "timeout");
    assert_eq!(mute.free(5000), 0);
    drop(std::net::TcpStream::connect(silent_addr)); // lets the holder reach its count if it has not
    drop(held);
    // A TLS endpoint whose certificate no trusted CA signed (no bundle configured).
    let untrusted = Emulator::start(EmulatorConfig { tls: true, ..EmulatorConfig::default() });
    let strict = Provider::new(&untrusted);
    check("untrusted certificate", run(&strict, "hi", 1000), "network");
    assert_eq!(strict.free(5000), 0);
    assert_eq!(untrusted.stats().converse_streams, 0, "nothing was sent over the untrusted connection");
    // Extra pool threads leave after a second idle; tokio's after another.
    let deadline = Instant::now() + Duration::from_secs(10);
    while plugin_threads() > threads && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let (threads_after, rss_after) = (plugin_threads(), rss_kib());
    println!("14,000 faulty streams: plugin threads {threads} -> {threads_after}, RSS {rss} -> {rss_after} KiB");
    assert!(threads_after <= threads, "threads came back: {threads} -> {threads_after}");
    // A leak of even 5 KiB per stream would show as 50 MB; allocator noise stays far below that.
    assert!(rss_after < rss + 48 * 1024, "RSS grew from {rss} to {rss_after} KiB over 14,000 streams");
    assert_eq!(p.free(5000), 0);
}
