//! Shared by the integration tests: the plugin loaded with dlopen (the way a gateway loads it),
//! a hermetic AWS environment, and an event collector per stream.
#![allow(dead_code)]

pub mod proxy;

use serde_json::{json, Value};
use std::ffi::{CStr, CString};
use std::os::raw::{c_char, c_void};
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, Once};
use std::time::{Duration, Instant};

#[allow(unused_imports)]
pub use bedrock_emulator::{Config as EmulatorConfig, Emulator, TEST_ACCESS_KEY, TEST_SECRET_KEY};

pub type EventFn = unsafe extern "C" fn(*mut c_void, *const c_char, usize) -> i32;

/// The ABI, resolved once from one handle.
pub struct Api {
    pub abi_version: unsafe extern "C" fn() -> u32,
    pub plugin_info: unsafe extern "C" fn() -> *const c_char,
    pub provider_new: unsafe extern "C" fn(*const c_char, *mut *mut c_void, *mut *mut c_char) -> i32,
    pub stream_start: unsafe extern "C" fn(*mut c_void, *const c_char, Option<EventFn>, *mut c_void, *mut *mut c_void, *mut *mut c_char) -> i32,
    pub stream_cancel: unsafe extern "C" fn(*mut c_void),
    pub stream_release: unsafe extern "C" fn(*mut c_void),
    pub provider_free: unsafe extern "C" fn(*mut c_void, u32) -> i32,
    pub string_free: unsafe extern "C" fn(*mut c_char),
    pub discover: unsafe extern "C" fn(*mut c_void, *const c_char, *mut *mut c_char, *mut *mut c_char) -> i32,
    pub embed: unsafe extern "C" fn(*mut c_void, *const c_char, *mut *mut c_char, *mut *mut c_char) -> i32,
    pub stream_start_batched: unsafe extern "C" fn(*mut c_void, *const c_char, Option<EventsFn>, *mut c_void, *mut *mut c_void, *mut *mut c_char) -> i32,
    pub set_log_callback: unsafe extern "C" fn(u32, Option<LogFn>, *mut c_void) -> i32,
    pub mailbox_new: unsafe extern "C" fn(u32, *mut *mut c_void) -> i32,
    pub stream_start_mailbox: unsafe extern "C" fn(*mut c_void, *const c_char, *mut c_void, u64, *mut *mut c_void, *mut *mut c_char) -> i32,
    pub mailbox_wait: unsafe extern "C" fn(*mut c_void, u32, *mut *const c_char, *mut usize, *mut usize) -> i32,
    pub mailbox_close: unsafe extern "C" fn(*mut c_void),
    pub mailbox_free: unsafe extern "C" fn(*mut c_void),
    /// 1.8; None in an older build run through `BP_TEST_PLUGIN_FILE`.
    pub stream_start_inline: Option<unsafe extern "C" fn(*mut c_void, *const c_char, Option<EventFn>, *mut c_void, *mut *mut c_void, *mut *mut c_char) -> i32>,
}

pub type LogFn = unsafe extern "C" fn(*mut c_void, u32, *const c_char, *const c_char);

pub type EventsFn = unsafe extern "C" fn(*mut c_void, *const c_char, usize, usize) -> i32;

pub fn target_dir() -> PathBuf {
    // tests run from target/<profile>/deps/<test binary>
    let exe = std::env::current_exe().expect("test binary path");
    exe.parent().and_then(|p| p.parent()).expect("target dir").to_path_buf()
}

/// `cargo test` builds the cdylibs into target/<profile>/deps beside the test binaries and copies
/// them up to target/<profile> only on `cargo build`, so the copies next to this binary are the
/// ones this run built (and the only ones on a clean clone).
fn deps_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    exe.parent().expect("deps dir").to_path_buf()
}

/// The build under test: this run's, or the one `BP_TEST_PLUGIN` names (`.ci/run` points it at
/// the shipped build, so the tests also run against what users install: LTO, stripped).
pub fn plugin_path() -> PathBuf {
    match std::env::var_os("BP_TEST_PLUGIN") {
        Some(path) => std::fs::canonicalize(&path).unwrap_or_else(|e| panic!("BP_TEST_PLUGIN={}: {e}", PathBuf::from(&path).display())),
        None => deps_dir().join("libbedrock_plugin.so"),
    }
}

/// The second build of the same source (`tests/plugin-next`), which also carries the test-only
/// fault hooks (`src/fault.rs`).
pub fn next_plugin_path() -> PathBuf {
    deps_dir().join("libbedrock_plugin_next.so")
}

/// Makes `api()` load the fault-hook build instead of the plugin's own: call before anything
/// else in a test binary whose tests all use it.
pub fn use_fault_hook_build() {
    USE_NEXT.store(true, std::sync::atomic::Ordering::SeqCst);
}

static USE_NEXT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Compiles a C host from `tests/c/` against the header, into the target directory.
pub fn compile_c(source: &str, out: &str) -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let exe = target_dir().join(out);
    let status = std::process::Command::new("cc")
        .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-O2", "-pthread", "-I"])
        .arg(root.join("include"))
        .arg(root.join(source))
        .arg("-o")
        .arg(&exe)
        .arg("-ldl")
        .status()
        .expect("cc runs");
    assert!(status.success(), "compiling {source}");
    exe
}

/// Builds the example host with its Makefile, once per test process: tests run in parallel, and
/// concurrent `make`s on a clean clone would race to write (and run) the same binary.
pub fn build_host() -> PathBuf {
    static BUILT: std::sync::OnceLock<Result<PathBuf, String>> = std::sync::OnceLock::new();
    make_host(&BUILT, "bp-host")
}

/// The example host built under AddressSanitizer and UndefinedBehaviorSanitizer
/// (`make bp-host-asan`); run it with `SANITIZERS` in its environment.
pub fn build_host_asan() -> PathBuf {
    static BUILT: std::sync::OnceLock<Result<PathBuf, String>> = std::sync::OnceLock::new();
    make_host(&BUILT, "bp-host-asan")
}

/// The C++ example host (`make bp-host-cpp`: `-std=c++17 -Wall -Wextra -Werror`, ASan + UBSan);
/// run it with `SANITIZERS`.
pub fn build_host_cpp() -> PathBuf {
    static BUILT: std::sync::OnceLock<Result<PathBuf, String>> = std::sync::OnceLock::new();
    make_host(&BUILT, "bp-host-cpp")
}

/// Any finding stops the sanitized host with its report on stderr. Leak checking is off: each
/// loaded copy of the plugin keeps some SDK statics by design (the unload tests measure them).
pub const SANITIZERS: [(&str, &str); 2] =
    [("ASAN_OPTIONS", "detect_leaks=0:abort_on_error=1:halt_on_error=1"), ("UBSAN_OPTIONS", "halt_on_error=1:print_stacktrace=1")];

fn make_host(built: &std::sync::OnceLock<Result<PathBuf, String>>, target: &str) -> PathBuf {
    let built = built.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("host-example");
        let out = std::process::Command::new("make").arg("--quiet").arg("-C").arg(&dir).arg(target).output().expect("make runs");
        if out.status.success() {
            Ok(dir.join(target))
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    });
    built.clone().unwrap_or_else(|e| panic!("make {target} failed:\n{e}"))
}

/// Set in a child process whose environment the parent test chose on purpose.
pub const KEEP_ENV: &str = "BP_TEST_KEEP_ENV";

/// Sets the AWS environment every test process uses: explicit keys and region, no IMDS, no
/// shared config, no retries (tests drive each error path once).
pub fn hermetic_env() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if std::env::var_os(KEEP_ENV).is_some() {
            return;
        }
        for (k, v) in [
            ("AWS_EC2_METADATA_DISABLED", "true"),
            ("AWS_ACCESS_KEY_ID", TEST_ACCESS_KEY),
            ("AWS_SECRET_ACCESS_KEY", TEST_SECRET_KEY),
            ("AWS_REGION", "us-east-1"),
            ("AWS_MAX_ATTEMPTS", "1"),
            ("AWS_CONFIG_FILE", "/nonexistent/bedrock-plugin-tests/config"),
            ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/bedrock-plugin-tests/credentials"),
            ("BEDROCK_PLUGIN_LOG", "off"),
        ] {
            std::env::set_var(k, v);
        }
        for k in ["AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_BEARER_TOKEN_BEDROCK", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_BEDROCK_RUNTIME", "AWS_ENDPOINT_URL_BEDROCK", "AWS_ENDPOINT_URL_STS", "HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy", "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"] {
            std::env::remove_var(k);
        }
    });
}

pub fn api() -> &'static Api {
    static API: once_cell::sync::OnceCell<Api> = once_cell::sync::OnceCell::new();
    API.get_or_init(|| {
        hermetic_env();
        // BP_TEST_PLUGIN_FILE runs a test binary against another build (e.g. an older one, to
        // show which tests failed before a fix).
        let file = match std::env::var_os("BP_TEST_PLUGIN_FILE") {
            Some(file) => PathBuf::from(file),
            None if USE_NEXT.load(std::sync::atomic::Ordering::SeqCst) => next_plugin_path(),
            None => plugin_path(),
        };
        let path = CString::new(file.to_str().unwrap()).unwrap();
        unsafe {
            let handle = libc::dlopen(path.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL);
            assert!(!handle.is_null(), "dlopen {file:?}: {:?}", CStr::from_ptr(libc::dlerror()));
            let sym = |name: &str| {
                let c = CString::new(name).unwrap();
                let p = libc::dlsym(handle, c.as_ptr());
                assert!(!p.is_null(), "missing export {name}");
                p
            };
            Api {
                abi_version: std::mem::transmute(sym("bp_abi_version")),
                plugin_info: std::mem::transmute(sym("bp_plugin_info")),
                provider_new: std::mem::transmute(sym("bp_provider_new")),
                stream_start: std::mem::transmute(sym("bp_stream_start")),
                stream_cancel: std::mem::transmute(sym("bp_stream_cancel")),
                stream_release: std::mem::transmute(sym("bp_stream_release")),
                provider_free: std::mem::transmute(sym("bp_provider_free")),
                string_free: std::mem::transmute(sym("bp_string_free")),
                discover: std::mem::transmute(sym("bp_discover")),
                embed: std::mem::transmute(sym("bp_embed")),
                stream_start_batched: std::mem::transmute(sym("bp_stream_start_batched")),
                set_log_callback: std::mem::transmute(sym("bp_set_log_callback")),
                mailbox_new: std::mem::transmute(sym("bp_mailbox_new")),
                stream_start_mailbox: std::mem::transmute(sym("bp_stream_start_mailbox")),
                mailbox_wait: std::mem::transmute(sym("bp_mailbox_wait")),
                mailbox_close: std::mem::transmute(sym("bp_mailbox_close")),
                mailbox_free: std::mem::transmute(sym("bp_mailbox_free")),
                stream_start_inline: std::mem::transmute(libc::dlsym(handle, c"bp_stream_start_inline".as_ptr())),
            }
        }
    })
}

/// Takes a plugin string, parses it as JSON and frees it.
pub fn take_json(s: *mut c_char) -> Value {
    assert!(!s.is_null(), "expected an error string");
    let text = unsafe { CStr::from_ptr(s) }.to_str().unwrap().to_string();
    unsafe { (api().string_free)(s) };
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

pub fn models() -> Value {
    json!([
        {"id": "anthropic.claude-sonnet-4-5-20250929-v1:0", "name": "Claude Sonnet 4.5", "reasoning": true, "input": ["text", "image"],
         "cost": {"input": 3.0, "output": 15.0, "cacheRead": 0.3, "cacheWrite": 3.75}, "contextWindow": 200000, "maxTokens": 8192},
        {"id": "emulator.echo", "name": "Echo", "reasoning": false, "input": ["text"],
         "cost": {"input": 1.0, "output": 2.0, "cacheRead": 0.5, "cacheWrite": 4.0}, "contextWindow": 32000, "maxTokens": 1024}
    ])
}

pub fn config_for(endpoint: &str) -> Value {
    json!({"provider": {"baseUrl": endpoint, "api": "bedrock-converse-stream", "auth": "aws-sdk", "models": models()}})
}

/// A default emulator and a provider pointed at it, in the hermetic environment.
pub fn setup() -> (Emulator, Provider) {
    hermetic_env();
    let emulator = Emulator::start(EmulatorConfig::default());
    let provider = Provider::new(&emulator);
    (emulator, provider)
}

pub struct Provider(pub *mut c_void);
unsafe impl Send for Provider {}
unsafe impl Sync for Provider {}

impl Provider {
    pub fn try_new(config: &str) -> Result<Provider, (i32, Value)> {
        let c = CString::new(config).unwrap();
        let mut out = std::ptr::null_mut();
        let mut err = std::ptr::null_mut();
        let rc = unsafe { (api().provider_new)(c.as_ptr(), &mut out, &mut err) };
        if rc == 0 {
            assert!(err.is_null());
            Ok(Provider(out))
        } else {
            assert!(out.is_null());
            Err((rc, take_json(err)))
        }
    }

    pub fn new(emulator: &Emulator) -> Provider {
        Provider::try_new(&config_for(&emulator.endpoint()).to_string()).expect("provider")
    }

    /// `bp_discover`; `options` is passed as is (None → NULL).
    pub fn discover(&self, options: Option<&str>) -> Result<Value, (i32, Value)> {
        let options = options.map(|o| CString::new(o).unwrap());
        let mut out = std::ptr::null_mut();
        let mut err = std::ptr::null_mut();
        let rc = unsafe { (api().discover)(self.0, options.as_ref().map_or(std::ptr::null(), |o| o.as_ptr()), &mut out, &mut err) };
        if rc == 0 {
            assert!(err.is_null());
            Ok(take_json(out))
        } else {
            assert!(out.is_null());
            Err((rc, take_json(err)))
        }
    }

    /// `bp_embed`: the answer, or the status and error JSON.
    pub fn embed(&self, request: &Value) -> Result<Value, (i32, Value)> {
        let body = CString::new(request.to_string()).unwrap();
        let (mut out, mut err) = (std::ptr::null_mut(), std::ptr::null_mut());
        let rc = unsafe { (api().embed)(self.0, body.as_ptr(), &mut out, &mut err) };
        if rc == 0 {
            assert!(err.is_null());
            Ok(take_json(out))
        } else {
            assert!(out.is_null(), "no answer on failure");
            Err((rc, take_json(err)))
        }
    }

    pub fn free(self, drain_ms: u32) -> i32 {
        let p = self.0;
        std::mem::forget(self);
        unsafe { (api().provider_free)(p, drain_ms) }
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        unsafe { (api().provider_free)(self.0, 10_000) };
    }
}

/// Events of one stream, as the callback received them.
#[derive(Default)]
pub struct Collector {
    pub events: Mutex<Vec<Value>>,
    pub cv: Condvar,
    /// Return a non-zero verdict on the event with this index (cancel through the callback).
    pub stop_at: Option<usize>,
    /// Sleep this long in every callback (a slow consumer).
    pub delay: Duration,
    /// While it holds true, every callback waits (a consumer stuck in its callback).
    pub gate: Option<Arc<(Mutex<bool>, Condvar)>>,
    /// Set when the callback saw two calls at once or anything after the terminal event.
    pub violations: Mutex<Vec<String>>,
    pub busy: std::sync::atomic::AtomicBool,
}

pub unsafe extern "C" fn collect(user: *mut c_void, json: *const c_char, len: usize) -> i32 {
    let c = &*(user as *const Collector);
    if c.busy.swap(true, std::sync::atomic::Ordering::SeqCst) {
        c.violations.lock().unwrap().push("two callbacks at once".into());
    }
    let bytes = std::slice::from_raw_parts(json as *const u8, len);
    assert_eq!(*json.add(len), 0, "event JSON is NUL-terminated");
    let v: Value = serde_json::from_slice(bytes).expect("event is JSON");
    if !c.delay.is_zero() {
        std::thread::sleep(c.delay);
    }
    if let Some(gate) = &c.gate {
        let (closed, cv) = &**gate;
        let _open = cv.wait_while(closed.lock().unwrap(), |closed| *closed).unwrap();
    }
    let mut events = c.events.lock().unwrap();
    if events.iter().any(is_terminal) {
        c.violations.lock().unwrap().push(format!("event after the terminal one: {v}"));
    }
    let index = events.len();
    events.push(v);
    c.busy.store(false, std::sync::atomic::Ordering::SeqCst);
    c.cv.notify_all();
    i32::from(c.stop_at == Some(index))
}

pub fn is_terminal(v: &Value) -> bool {
    matches!(v["type"].as_str(), Some("done" | "error"))
}

impl Collector {
    pub fn wait_terminal(&self, timeout: Duration) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        let mut events = self.events.lock().unwrap();
        while !events.iter().any(is_terminal) {
            let now = Instant::now();
            assert!(now < deadline, "no terminal event within {timeout:?}; got {} events: {:?}", events.len(), events.last());
            events = self.cv.wait_timeout(events, deadline - now).unwrap().0;
        }
        drop(events);
        // Let a stray late event (a bug) show up before checking.
        std::thread::sleep(Duration::from_millis(20));
        let events = self.events.lock().unwrap().clone();
        assert!(self.violations.lock().unwrap().is_empty(), "{:?}", self.violations.lock().unwrap());
        assert_eq!(events.iter().filter(|e| is_terminal(e)).count(), 1, "exactly one terminal event");
        assert!(is_terminal(events.last().unwrap()), "terminal event is last");
        events
    }

    pub fn count(&self) -> usize {
        self.events.lock().unwrap().len()
    }
}

pub struct Stream {
    pub handle: *mut c_void,
    pub collector: Arc<Collector>,
}
unsafe impl Send for Stream {}
unsafe impl Sync for Stream {}

impl Stream {
    pub fn cancel(&self) {
        unsafe { (api().stream_cancel)(self.handle) };
    }
    pub fn finish(&self) -> Vec<Value> {
        self.collector.wait_terminal(Duration::from_secs(60))
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        unsafe { (api().stream_release)(self.handle) };
    }
}

pub fn request(model: &str, prompt: &str, options: Value) -> Value {
    json!({"model": model, "context": {"messages": [{"role": "user", "content": prompt, "timestamp": 0}]}, "options": options})
}

pub fn try_start(p: &Provider, request: &Value, collector: Collector) -> Result<Stream, (i32, Value)> {
    try_start_with(api().stream_start, p, request, collector)
}

/// As `try_start`, through `bp_stream_start_inline` (ABI 1.8): the callback runs on a runtime
/// thread.
pub fn try_start_inline(p: &Provider, request: &Value, collector: Collector) -> Result<Stream, (i32, Value)> {
    try_start_with(api().stream_start_inline.expect("the build under test exports bp_stream_start_inline"), p, request, collector)
}

type StartFn = unsafe extern "C" fn(*mut c_void, *const c_char, Option<EventFn>, *mut c_void, *mut *mut c_void, *mut *mut c_char) -> i32;

fn try_start_with(start: StartFn, p: &Provider, request: &Value, collector: Collector) -> Result<Stream, (i32, Value)> {
    let collector = Arc::new(collector);
    let body = CString::new(request.to_string()).unwrap();
    let mut handle = std::ptr::null_mut();
    let mut err = std::ptr::null_mut();
    let user = Arc::as_ptr(&collector) as *mut c_void;
    let rc = unsafe { start(p.0, body.as_ptr(), Some(collect), user, &mut handle, &mut err) };
    if rc != 0 {
        return Err((rc, take_json(err)));
    }
    Ok(Stream { handle, collector })
}

pub fn start(p: &Provider, request: &Value) -> Stream {
    try_start(p, request, Collector::default()).unwrap_or_else(|(rc, e)| panic!("stream_start failed: {rc} {e}"))
}

/// Streams one prompt to the echo model and returns all events.
pub fn chat(p: &Provider, prompt: &str, options: Value) -> Vec<Value> {
    start(p, &request("emulator.echo", prompt, options)).finish()
}

pub fn text_of(events: &[Value]) -> String {
    events.iter().filter(|e| e["type"] == "text_delta").map(|e| e["delta"].as_str().unwrap()).collect()
}

pub fn terminal(events: &[Value]) -> &Value {
    events.last().unwrap()
}

/// The final message of a terminal event: `done.message`, or `error.error` (pi-ai's shape).
pub fn final_message(event: &Value) -> &Value {
    match event["type"].as_str() {
        Some("done") => &event["message"],
        Some("error") => &event["error"],
        _ => panic!("not a terminal event: {event}"),
    }
}

/// What a failed stream reports: its final message's `errorInfo` with `message` set to the
/// message's `errorMessage`, after checking that the event has exactly pi-ai's error shape.
pub fn failure(event: &Value) -> Value {
    assert_eq!(event["type"], "error", "expected an error event: {event}");
    let mut keys: Vec<&String> = event.as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(keys, ["error", "reason", "type"], "pi-ai's error event has exactly these members: {event}");
    let message = &event["error"];
    assert_eq!(message["role"], "assistant", "`error` is the final assistant message: {event}");
    assert_eq!(message["stopReason"], event["reason"], "{event}");
    let text = message["errorMessage"].as_str().unwrap_or_else(|| panic!("no errorMessage: {event}"));
    let mut info = message["errorInfo"].clone();
    assert!(info.is_object(), "no errorInfo: {event}");
    info["message"] = Value::from(text);
    info
}

/// Threads of this process the plugin started: it names every one `bp-…`.
pub fn plugin_threads() -> usize {
    threads_where(|name| name.starts_with("bp-"))
}

/// Threads of this process whose name passes `keep`.
pub fn threads_where(keep: impl Fn(&str) -> bool) -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(Result::ok)
        .filter(|t| std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| keep(c.trim_end())))
        .count()
}
