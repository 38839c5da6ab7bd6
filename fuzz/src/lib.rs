//! What the three targets share: a hermetic environment, one emulator and one provider for the
//! process, and a callback that checks the event contract (every event is JSON, exactly one
//! terminal event, nothing after it). A broken contract panics, which libFuzzer reports.

use bedrock_plugin::ffi::{self, BpProvider, BpStream};
use std::ffi::{c_char, c_void, CStr, CString};
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::Duration;

pub use bedrock_emulator::{eventstream, Config as EmulatorConfig, Emulator};

/// Test credentials, an explicit region, no IMDS, no logs: nothing leaves 127.0.0.1.
pub fn hermetic() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        for (k, v) in [
            ("AWS_EC2_METADATA_DISABLED", "true"),
            ("AWS_ACCESS_KEY_ID", bedrock_emulator::TEST_ACCESS_KEY),
            ("AWS_SECRET_ACCESS_KEY", bedrock_emulator::TEST_SECRET_KEY),
            ("AWS_REGION", "us-east-1"),
            ("AWS_MAX_ATTEMPTS", "1"),
            ("AWS_CONFIG_FILE", "/nonexistent/fuzz"),
            ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/fuzz"),
            ("BEDROCK_PLUGIN_LOG", "off"),
        ] {
            std::env::set_var(k, v);
        }
        for k in ["AWS_PROFILE", "AWS_BEARER_TOKEN_BEDROCK", "AWS_CA_BUNDLE", "HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"] {
            std::env::remove_var(k);
        }
    });
}

/// The process's emulator and a provider pointed at it.
pub fn provider() -> (&'static Emulator, *mut BpProvider) {
    struct Shared(&'static Emulator, usize);
    static SHARED: OnceLock<Shared> = OnceLock::new();
    let shared = SHARED.get_or_init(|| {
        hermetic();
        let emulator: &'static Emulator = Box::leak(Box::new(Emulator::start(EmulatorConfig::default())));
        let config = serde_json::json!({"provider": {"baseUrl": emulator.endpoint(), "models": [
            {"id": "emulator.echo", "name": "Echo", "contextWindow": 32000, "maxTokens": 4096}
        ]}, "discovery": {"enabled": false}});
        let config = CString::new(config.to_string()).unwrap();
        let mut p = std::ptr::null_mut();
        let rc = unsafe { ffi::bp_provider_new(config.as_ptr(), &mut p, std::ptr::null_mut()) };
        assert_eq!(rc, 0, "the fuzz provider starts");
        Shared(emulator, p as usize)
    });
    (shared.0, shared.1 as *mut BpProvider)
}

/// Frees a plugin string, if any.
pub fn free_string(s: *mut c_char) {
    unsafe { ffi::bp_string_free(s) };
}

#[derive(Default)]
struct Seen {
    events: usize,
    terminal: Option<String>,
    after_terminal: usize,
}

#[derive(Default)]
pub struct Watch {
    seen: Mutex<Seen>,
    cv: Condvar,
}

unsafe extern "C" fn on_event(user: *mut c_void, json: *const c_char, len: usize) -> i32 {
    let watch = &*(user as *const Watch);
    assert_eq!(*json.add(len), 0, "event JSON is NUL-terminated");
    let text = CStr::from_ptr(json).to_str().expect("events are UTF-8");
    assert_eq!(text.len(), len);
    let event: serde_json::Value = serde_json::from_str(text).expect("events are JSON");
    let kind = event["type"].as_str().expect("events have a type").to_string();
    let mut seen = watch.seen.lock().unwrap();
    seen.events += 1;
    if seen.terminal.is_some() {
        seen.after_terminal += 1;
    } else if kind == "done" || kind == "error" {
        if kind == "error" {
            assert!(event["error"]["errorInfo"]["code"].is_string(), "an error names its code: {text}");
        }
        seen.terminal = Some(kind);
    }
    watch.cv.notify_all();
    0
}

/// Runs one stream of `request` (JSON text, or any bytes) through `bp_stream_start` and checks
/// the event contract. A stream still running after `patience` is cancelled and must then end.
pub fn stream(p: *mut BpProvider, request: &[u8], patience: Duration) {
    let Ok(request) = CString::new(request) else { return };
    let watch = Box::new(Watch::default());
    let (mut handle, mut err): (*mut BpStream, *mut c_char) = (std::ptr::null_mut(), std::ptr::null_mut());
    let user = &*watch as *const Watch as *mut c_void;
    let rc = unsafe { ffi::bp_stream_start(p, request.as_ptr(), Some(on_event), user, &mut handle, &mut err) };
    if rc != 0 {
        assert!(!err.is_null(), "a refused request says why");
        let why: serde_json::Value = serde_json::from_str(unsafe { CStr::from_ptr(err) }.to_str().unwrap()).expect("err_json is JSON");
        assert!(why["code"].is_string() && why["message"].is_string(), "{why}");
        free_string(err);
        assert!(watch.seen.lock().unwrap().events == 0, "no events for a refused request");
        return;
    }
    let wait = |limit: Duration| {
        let seen = watch.seen.lock().unwrap();
        watch.cv.wait_timeout_while(seen, limit, |s| s.terminal.is_none()).unwrap().0.terminal.is_some()
    };
    if !wait(patience) {
        unsafe { ffi::bp_stream_cancel(handle) };
        assert!(wait(Duration::from_secs(10)), "a cancelled stream ends");
    }
    unsafe { ffi::bp_stream_release(handle) };
    // An event after the terminal one would come right behind it.
    std::thread::sleep(Duration::from_micros(200));
    let seen = watch.seen.lock().unwrap();
    assert_eq!(seen.after_terminal, 0, "nothing after the terminal event");
    drop(seen);
    retire(watch);
}

/// Frees a stream's watch only 64 streams later: its callback may still be returning from the
/// terminal event when the waiter wakes, and it is certainly gone by then.
fn retire(watch: Box<Watch>) {
    static RETIRED: Mutex<std::collections::VecDeque<Box<Watch>>> = Mutex::new(std::collections::VecDeque::new());
    let mut retired = RETIRED.lock().unwrap();
    retired.push_back(watch);
    if retired.len() > 64 {
        retired.pop_front();
    }
}
