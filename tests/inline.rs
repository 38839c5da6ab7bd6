//! Inline streams (ABI 1.8) through the C ABI and the real SDK: the callback runs on the runtime
//! thread that decoded the events. The same order, terminal and cancel rules as any stream; the
//! calls that would wait are refused from inside it; `free` racing it still ends every stream
//! once; and the header's warning holds: with one runtime thread, a blocked inline callback
//! holds back every other stream.

mod common;
use common::*;
use serde_json::{json, Value};
use std::ffi::CString;
use std::os::raw::{c_char, c_void};
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

fn provider_with(emulator: &Emulator, provider: Value) -> Provider {
    let mut config = config_for(&emulator.endpoint());
    for (k, v) in provider.as_object().unwrap() {
        config["provider"][k] = v.clone();
    }
    Provider::try_new(&config.to_string()).expect("provider")
}

fn start_inline(p: &Provider, prompt: &str, collector: Collector) -> Stream {
    try_start_inline(p, &request("emulator.echo", prompt, json!({})), collector).unwrap_or_else(|(rc, e)| panic!("inline start failed: {rc} {e}"))
}

#[test]
fn inline_streams_deliver_every_event_in_order_and_end_once() {
    let (_e, p) = setup();
    let streams: Vec<_> = (0..30).map(|i| start_inline(&p, &format!("emulator: chunks={} delay_ms=3", 5 + i % 7), Collector::default())).collect();
    for (i, s) in streams.iter().enumerate() {
        let events = s.finish();
        let chunks = 5 + i % 7;
        let expected: String = (0..chunks).map(|k| format!("w{k} ")).collect();
        assert_eq!(text_of(&events), expected, "stream {i}");
        assert_eq!(events[0]["type"], "start");
        let done = terminal(&events);
        assert_eq!((done["type"].as_str(), done["reason"].as_str()), (Some("done"), Some("stop")), "{done}");
        assert_eq!(done["message"]["content"][0]["text"], expected.as_str());
    }
}

#[test]
fn a_non_zero_return_cancels_an_inline_stream_keeping_what_was_shown() {
    let (_e, p) = setup();
    let s = start_inline(&p, "emulator: chunks=200 delay_ms=20", Collector { stop_at: Some(3), ..Default::default() });
    let events = s.finish();
    let e = terminal(&events);
    assert_eq!((e["reason"].as_str(), failure(e)["code"].as_str()), (Some("aborted"), Some("cancelled")));
    assert_eq!(events.len(), 5, "no event after the one that said stop, except the terminal one: {events:?}");
    let kept = e["error"]["content"][0]["text"].as_str().unwrap_or_default();
    assert!(kept.starts_with("w0 w1 "), "the partial answer is kept: {e}");
}

/// What an inline callback did from inside, on its first text delta.
#[derive(Default)]
struct Inside {
    provider: AtomicPtr<c_void>,
    /// The stream's own handle, once `bp_stream_start_inline` has returned it (released inside).
    own: AtomicPtr<c_void>,
    results: Mutex<Option<Vec<(String, i32, Value)>>>,
    nested: Mutex<Option<Stream>>,
    events: Mutex<Vec<Value>>,
    cv: Condvar,
}

unsafe extern "C" fn call_from_inside(user: *mut c_void, json: *const c_char, len: usize) -> i32 {
    let inside = &*(user as *const Inside);
    let event: Value = serde_json::from_slice(std::slice::from_raw_parts(json.cast::<u8>(), len)).unwrap();
    let first_delta = event["type"] == "text_delta" && inside.results.lock().unwrap().is_none();
    if first_delta {
        let api = api();
        let p = inside.provider.load(Ordering::SeqCst);
        let mut results = Vec::new();
        let (mut out, mut err) = (std::ptr::null_mut(), std::ptr::null_mut());
        let rc = (api.discover)(p, std::ptr::null(), &mut out, &mut err);
        results.push(("bp_discover".to_string(), rc, if err.is_null() { Value::Null } else { take_json(err) }));
        let body = CString::new(r#"{"texts":["hi"]}"#).unwrap();
        let (mut out, mut err) = (std::ptr::null_mut(), std::ptr::null_mut());
        let rc = (api.embed)(p, body.as_ptr(), &mut out, &mut err);
        results.push(("bp_embed".to_string(), rc, if err.is_null() { Value::Null } else { take_json(err) }));
        let mut mailbox = std::ptr::null_mut();
        assert_eq!((api.mailbox_new)(0, &mut mailbox), 0);
        let (mut text, mut n, mut count) = (std::ptr::null(), 0, 0);
        let rc = (api.mailbox_wait)(mailbox, 1000, &mut text, &mut n, &mut count);
        results.push(("bp_mailbox_wait".to_string(), rc, Value::Null));
        (api.mailbox_free)(mailbox);
        let rc = (api.provider_free)(p, 0);
        results.push(("bp_provider_free".to_string(), rc, Value::Null));
        // Starting another stream does not wait: allowed, and it runs to its end.
        let provider = std::mem::ManuallyDrop::new(Provider(p));
        let nested = try_start_inline(&provider, &request("emulator.echo", "emulator: chunks=3", json!({})), Collector::default());
        results.push(("bp_stream_start_inline".to_string(), nested.as_ref().map_or_else(|e| e.0, |_| 0), Value::Null));
        *inside.nested.lock().unwrap() = nested.ok();
        // And so is cancelling this very stream.
        let own = inside.own.load(Ordering::SeqCst);
        assert!(!own.is_null(), "the handle was published before the first delta");
        (api.stream_cancel)(own);
        // And releasing its handle: the stream runs on to its end.
        (api.stream_release)(own);
        *inside.results.lock().unwrap() = Some(results);
    }
    inside.events.lock().unwrap().push(event);
    inside.cv.notify_all();
    0
}

#[test]
fn calls_that_wait_are_refused_inside_an_inline_callback_and_the_others_work() {
    let (_e, p) = setup();
    let inside = Arc::new(Inside::default());
    inside.provider.store(p.0, Ordering::SeqCst);
    let body = CString::new(request("emulator.echo", "emulator: chunks=100 first_delay_ms=300 delay_ms=20", json!({})).to_string()).unwrap();
    let (mut handle, mut err) = (std::ptr::null_mut(), std::ptr::null_mut());
    let start = api().stream_start_inline.unwrap();
    assert_eq!(unsafe { start(p.0, body.as_ptr(), Some(call_from_inside), Arc::as_ptr(&inside) as *mut c_void, &mut handle, &mut err) }, 0);
    inside.own.store(handle, Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut events = inside.events.lock().unwrap();
    while !events.iter().any(is_terminal) {
        assert!(Instant::now() < deadline, "no end: {:?}", events.last());
        events = inside.cv.wait_timeout(events, Duration::from_millis(100)).unwrap().0;
    }
    let end = events.last().unwrap().clone();
    drop(events);
    assert_eq!((end["reason"].as_str(), failure(&end)["code"].as_str()), (Some("aborted"), Some("cancelled")), "cancelled from inside: {end}");
    let results = inside.results.lock().unwrap().take().expect("the callback saw a delta");
    for (call, rc, err) in &results[..4] {
        assert_eq!(*rc, 1, "{call} from inside an inline callback is BP_ERR_INVALID_ARGUMENT: {err}");
    }
    let discover = &results[0].2;
    assert_eq!(discover["code"], "invalid_argument", "{discover}");
    assert!(discover["message"].as_str().unwrap().contains("inline event callback"), "{discover}");
    assert_eq!(results[4], ("bp_stream_start_inline".to_string(), 0, Value::Null));
    let nested = inside.nested.lock().unwrap().take().expect("the nested stream started");
    assert_eq!(text_of(&nested.finish()), "w0 w1 w2 ");
    // The provider was not freed from inside, and outside the callback the same calls work.
    p.discover(None).expect("bp_discover from a host thread");
}

#[test]
fn with_one_runtime_thread_a_blocked_inline_callback_holds_back_every_stream() {
    let e = Emulator::start(EmulatorConfig::default());
    let p = provider_with(&e, json!({"runtimeThreads": 1}));
    let gate = Arc::new((Mutex::new(true), Condvar::new()));
    let blocked = start_inline(&p, "emulator: chunks=3", Collector { gate: Some(gate.clone()), ..Default::default() });
    let deadline = Instant::now() + Duration::from_secs(10);
    // Its first event (`start`) enters the callback, which does not return while the gate is
    // closed.
    while !blocked.collector.busy.load(Ordering::SeqCst) {
        assert!(Instant::now() < deadline, "the blocked stream's callback was never entered");
        std::thread::sleep(Duration::from_millis(5));
    }
    let other = start(&p, &request("emulator.echo", "emulator: chunks=3", json!({})));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(other.collector.count(), 0, "the one runtime thread is held by the inline callback: nothing else moves");
    *gate.0.lock().unwrap() = false;
    gate.1.notify_all();
    assert_eq!(text_of(&blocked.finish()), "w0 w1 w2 ");
    assert_eq!(text_of(&other.finish()), "w0 w1 w2 ", "the other stream goes on once the callback returned");
}

#[test]
fn free_racing_inline_callbacks_ends_every_stream_once_and_calls_nothing_after() {
    let (_e, p) = setup();
    let streams: Vec<_> = (0..40).map(|i| start_inline(&p, &format!("emulator: chunks=400 delay_ms={}", 1 + i % 3), Collector::default())).collect();
    std::thread::sleep(Duration::from_millis(60));
    let rc = p.free(0);
    assert_eq!(rc, 7, "streams were running: BP_ERR_CANCELLED");
    // Free has returned: every stream has ended, and nothing more arrives.
    let counts: Vec<usize> = streams.iter().map(|s| s.collector.count()).collect();
    for s in &streams {
        let events = s.collector.wait_terminal(Duration::from_millis(1));
        let e = terminal(&events);
        assert!(e["type"] == "done" || failure(e)["code"] == "cancelled", "{e}");
    }
    std::thread::sleep(Duration::from_millis(200));
    let after: Vec<usize> = streams.iter().map(|s| s.collector.count()).collect();
    assert_eq!(counts, after, "no callback after bp_provider_free returned");
}

#[test]
fn an_inline_callback_that_never_returns_makes_free_busy_within_its_bound() {
    let (_e, p) = setup();
    let gate = Arc::new((Mutex::new(true), Condvar::new()));
    let stuck = start_inline(&p, "emulator: chunks=3", Collector { gate: Some(gate.clone()), ..Default::default() });
    let _ok = start_inline(&p, "emulator: chunks=3", Collector::default());
    std::thread::sleep(Duration::from_millis(300));
    let began = Instant::now();
    let rc = p.free(100);
    let took = began.elapsed();
    assert_eq!(rc, 16, "a callback had not returned: BP_ERR_BUSY");
    assert!(took < Duration::from_millis(100 + 2000 + 1000), "free returned within drain + BP_FREE_GRACE_MS (took {took:?})");
    *gate.0.lock().unwrap() = false;
    gate.1.notify_all();
    // The stop finishes on its own once the callback returns; the stream still ends once.
    let events = stuck.finish();
    assert!(is_terminal(terminal(&events)));
}

#[test]
fn bad_arguments_to_an_inline_start_are_refused_never_a_crash() {
    let (_e, p) = setup();
    let start = api().stream_start_inline.unwrap();
    let body = CString::new(request("emulator.echo", "hi", json!({})).to_string()).unwrap();
    let mut err = std::ptr::null_mut();
    let user = std::ptr::null_mut();
    assert_eq!(unsafe { start(p.0, body.as_ptr(), None, user, std::ptr::null_mut(), &mut err) }, 1);
    assert!(take_json(err)["message"].as_str().unwrap().contains("on_event is NULL"));
    let mut err = std::ptr::null_mut();
    assert_eq!(unsafe { start(std::ptr::null_mut(), body.as_ptr(), Some(collect), user, std::ptr::null_mut(), &mut err) }, 1);
    assert_eq!(take_json(err)["code"], "invalid_argument");
    for (text, status) in [(r#"{"model": "#.to_string(), 1), (request("no.such-model", "hi", json!({})).to_string(), 4)] {
        let body = CString::new(text).unwrap();
        let mut err = std::ptr::null_mut();
        assert_eq!(unsafe { start(p.0, body.as_ptr(), Some(collect), user, std::ptr::null_mut(), &mut err) }, status);
        assert!(!take_json(err)["message"].as_str().unwrap().is_empty());
    }
}
