//! `bp_set_log_callback` through the C ABI: records reach the host with level and target, a
//! host logger that blocks never holds a stream, overflow is dropped and counted, and the log
//! thread is gone once the last provider is freed. One test: the log sink is process-wide.

mod common;

use common::*;
use serde_json::json;
use std::ffi::CStr;
use std::os::raw::{c_char, c_void};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

#[derive(Default)]
struct Sink {
    records: Mutex<Vec<(u32, String, String)>>,
    /// While true, the callback waits (a host logger stuck on a full pipe).
    blocked: Mutex<bool>,
    unblocked: Condvar,
    /// Set to make the callback try to replace itself; holds the status it got.
    reentry: Mutex<Option<i32>>,
    try_reentry: Mutex<bool>,
    /// Set to make the callback try to free this provider; holds the status it got.
    try_free: Mutex<Option<usize>>,
    free_status: Mutex<Option<i32>>,
}

unsafe extern "C" fn on_log(user: *mut c_void, level: u32, target: *const c_char, message: *const c_char) {
    let sink = &*(user as *const Sink);
    let mut blocked = sink.blocked.lock().unwrap();
    while *blocked {
        blocked = sink.unblocked.wait(blocked).unwrap();
    }
    drop(blocked);
    if std::mem::take(&mut *sink.try_reentry.lock().unwrap()) {
        let rc = (api().set_log_callback)(3, Some(on_log), user);
        *sink.reentry.lock().unwrap() = Some(rc);
    }
    if let Some(p) = sink.try_free.lock().unwrap().take() {
        *sink.free_status.lock().unwrap() = Some((api().provider_free)(p as *mut c_void, 0));
    }
    let target = CStr::from_ptr(target).to_string_lossy().into_owned();
    let message = CStr::from_ptr(message).to_string_lossy().into_owned();
    sink.records.lock().unwrap().push((level, target, message));
}

fn log_threads() -> usize {
    threads_where(|name| name == "bp-log")
}

/// The terminal event's type, without `finish`'s pause for stray events (thousands of streams).
fn ended(s: &Stream) -> String {
    let c = &s.collector;
    let events = c.cv.wait_timeout_while(c.events.lock().unwrap(), Duration::from_secs(60), |e| !e.iter().any(is_terminal)).unwrap().0;
    events.iter().find(|e| is_terminal(e)).map(|e| e["type"].as_str().unwrap_or_default().to_string()).unwrap_or_default()
}

fn settle_log_threads() -> usize {
    for _ in 0..40 {
        if log_threads() == 0 {
            return 0;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    log_threads()
}

#[test]
fn log_records_reach_the_host_without_ever_holding_a_stream() {
    let api = api();
    let sink: &'static Sink = Box::leak(Box::default());
    let user = sink as *const Sink as *mut c_void;
    unsafe {
        assert_eq!((api.set_log_callback)(5, Some(on_log), user), 1, "level 5 is refused");
        assert_eq!((api.set_log_callback)(3, Some(on_log), user), 0);
    }

    // Records with their level and target: the start-up line, and a warning from a stream.
    let emulator = Emulator::start(EmulatorConfig::default());
    let p = Provider::new(&emulator);
    let events = chat(&p, "emulator: tool=get_weather tool_input=broken", json!({}));
    assert_eq!(terminal(&events)["type"], "done");
    assert_eq!(p.free(5000), 0);
    assert_eq!(settle_log_threads(), 0, "the log thread ends with the last provider");
    let records = std::mem::take(&mut *sink.records.lock().unwrap());
    assert!(records.iter().any(|(l, t, m)| *l == 3 && t == "provider" && m.contains("provider starting: region us-east-1")), "{records:?}");
    assert!(records.iter().any(|(l, t, m)| *l == 2 && t == "converse" && m.contains("not valid JSON")), "{records:?}");
    assert!(records.iter().all(|(l, _, _)| *l <= 3), "nothing below the level asked for: {records:?}");

    // A host logger that blocks: every stream still finishes; records beyond the queue are
    // dropped and counted once the logger moves again.
    unsafe { assert_eq!((api.set_log_callback)(4, Some(on_log), user), 0) };
    *sink.blocked.lock().unwrap() = true;
    let p = Provider::new(&emulator);
    let streams = 2200; // two debug records each: more than the queue's 4,096
    for chunk in 0..streams / 100 {
        let open: Vec<Stream> = (0..100).map(|i| start(&p, &request("emulator.echo", &format!("s{chunk}-{i}"), json!({})))).collect();
        for s in &open {
            assert_eq!(ended(s), "done");
        }
    }
    assert!(sink.records.lock().unwrap().is_empty(), "every stream finished while the logger was blocked");
    *sink.blocked.lock().unwrap() = false;
    sink.unblocked.notify_all();
    assert_eq!(p.free(5000), 0);
    let records = std::mem::take(&mut *sink.records.lock().unwrap());
    assert!(records.iter().any(|(l, t, m)| *l == 4 && t == "converse" && m.contains("stream done")), "debug records arrive");
    let dropped = records.iter().find(|(_, t, m)| t == "log" && m.contains("log records were dropped")).unwrap_or_else(|| panic!("no drop note among {} records", records.len()));
    let lost: usize = dropped.2.split_whitespace().next().unwrap().parse().unwrap();
    assert!(lost > 0 && records.len() + lost >= streams * 2, "{} delivered + {lost} dropped", records.len());
    assert!(records.len() <= 4096 + 2, "the queue is bounded: {}", records.len());
    assert_eq!(settle_log_threads(), 0);

    // The callback may not replace itself from inside (it would join its own thread).
    *sink.try_reentry.lock().unwrap() = true;
    let p = Provider::new(&emulator);
    chat(&p, "hello", json!({}));
    assert_eq!(p.free(5000), 0);
    assert_eq!(*sink.reentry.lock().unwrap(), Some(1), "refused from inside the callback");

    // Nor free a provider from inside (freeing the last one would leave the log thread running
    // into a later dlclose): refused, and the provider goes on; a proper free then stops the
    // log thread.
    let p = Provider::new(&emulator);
    *sink.try_free.lock().unwrap() = Some(p.0 as usize);
    assert_eq!(terminal(&chat(&p, "hello", json!({})))["type"], "done");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while sink.free_status.lock().unwrap().is_none() {
        assert!(std::time::Instant::now() < deadline, "the callback ran");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(*sink.free_status.lock().unwrap(), Some(1), "refused from inside the log callback");
    assert_eq!(terminal(&chat(&p, "again", json!({})))["type"], "done", "the provider still serves");
    assert_eq!(p.free(5000), 0);
    assert_eq!(settle_log_threads(), 0);

    // Back to stderr; with no provider alive nothing of the logger runs.
    unsafe { assert_eq!((api.set_log_callback)(2, None, std::ptr::null_mut()), 0) };
    let before = sink.records.lock().unwrap().len();
    let p = Provider::new(&emulator);
    chat(&p, "emulator: tool=get_weather tool_input=broken", json!({}));
    assert_eq!(p.free(5000), 0);
    assert_eq!(sink.records.lock().unwrap().len(), before, "no records after the callback was removed");
    assert_eq!(settle_log_threads(), 0);
}
