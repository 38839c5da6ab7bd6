//! The plugin as a gateway drives it: a private copy loaded with libloading, every call through
//! that copy's `bp_get_api` table, events counted in the callback.

use bedrock_plugin_abi::{BpApi, BpProvider, BpStream, GetApiFn};
use std::ffi::{CStr, CString};
use std::os::raw::{c_char, c_void};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

pub struct Plugin {
    api: &'static BpApi,
    _library: libloading::Library,
}

impl Plugin {
    /// Loads a private copy of `build` (a second load of the same file would return the first
    /// image).
    pub fn load(build: &Path, copy: &Path) -> Plugin {
        std::fs::copy(build, copy).unwrap_or_else(|e| panic!("copy {}: {e}", build.display()));
        Plugin::open(copy)
    }

    /// Loads a private copy already made, and unlinks it once mapped.
    pub fn open(copy: &Path) -> Plugin {
        use libloading::os::unix::{Library, RTLD_LOCAL, RTLD_NOW};
        let library: libloading::Library = unsafe { Library::open(Some(copy), RTLD_NOW | RTLD_LOCAL) }.expect("dlopen the plugin").into();
        let _ = std::fs::remove_file(copy);
        let api = unsafe {
            let get_api = library.get::<GetApiFn>(b"bp_get_api\0").expect("bp_get_api (ABI 1.3+)");
            &*get_api(1)
        };
        Plugin { api, _library: library }
    }

    pub fn api(&self) -> &'static BpApi {
        self.api
    }

    pub fn provider(&self, config: &str) -> Provider<'_> {
        let config = CString::new(config).unwrap();
        let (mut raw, mut err) = (std::ptr::null_mut(), std::ptr::null_mut());
        let rc = unsafe { (self.api.provider_new)(config.as_ptr(), &mut raw, &mut err) };
        assert_eq!(rc, 0, "bp_provider_new: {}", self.take(err));
        Provider { plugin: self, raw }
    }

    fn take(&self, s: *mut c_char) -> String {
        if s.is_null() {
            return String::new();
        }
        let text = unsafe { CStr::from_ptr(s) }.to_string_lossy().into_owned();
        unsafe { (self.api.string_free)(s) };
        text
    }
}

pub struct Provider<'a> {
    plugin: &'a Plugin,
    raw: *mut BpProvider,
}

unsafe impl Sync for Provider<'_> {}

impl Provider<'_> {
    /// Starts a stream of `deltas` text deltas; the sink sees every event.
    pub fn start(&self, deltas: usize, sink: &Arc<Sink>) -> Stream<'_> {
        let request = CString::new(crate::request_json(deltas)).unwrap();
        let (mut raw, mut err) = (std::ptr::null_mut(), std::ptr::null_mut());
        let user = Arc::as_ptr(sink) as *mut c_void;
        let rc = unsafe { (self.plugin.api.stream_start)(self.raw, request.as_ptr(), Some(on_event), user, &mut raw, &mut err) };
        assert_eq!(rc, 0, "bp_stream_start: {}", self.plugin.take(err));
        Stream { plugin: self.plugin, raw, _sink: sink.clone() }
    }

    pub fn raw(&self) -> *mut BpProvider {
        self.raw
    }

    pub fn discover(&self, refresh: bool) -> String {
        let options = CString::new(if refresh { r#"{"refresh":true}"# } else { "{}" }).unwrap();
        let (mut out, mut err) = (std::ptr::null_mut(), std::ptr::null_mut());
        let rc = unsafe { (self.plugin.api.discover)(self.raw, options.as_ptr(), &mut out, &mut err) };
        assert_eq!(rc, 0, "bp_discover: {}", self.plugin.take(err));
        self.plugin.take(out)
    }
}

impl Drop for Provider<'_> {
    fn drop(&mut self) {
        unsafe { (self.plugin.api.provider_free)(self.raw, 60_000) };
    }
}

/// Keeps the sink alive until the handle is released (after the terminal event).
pub struct Stream<'a> {
    plugin: &'a Plugin,
    raw: *mut BpStream,
    _sink: Arc<Sink>,
}

impl Drop for Stream<'_> {
    fn drop(&mut self) {
        unsafe { (self.plugin.api.stream_release)(self.raw) };
    }
}

/// What one stream's callback saw.
pub struct Sink {
    pub events: AtomicU64,
    pub first_ns: AtomicU64,
    last_ns: AtomicU64,
    /// Gaps between consecutive events in µs, when asked for.
    pub gaps: Option<Mutex<Vec<u32>>>,
    /// Sleep this long in every callback (a slow consumer).
    pub sleep: Duration,
    pub done_ns: AtomicU64,
    done: Mutex<bool>,
    cv: Condvar,
}

impl Sink {
    pub fn new(record_gaps: bool, sleep: Duration) -> Arc<Sink> {
        Arc::new(Sink {
            events: AtomicU64::new(0),
            first_ns: AtomicU64::new(0),
            last_ns: AtomicU64::new(0),
            gaps: record_gaps.then(|| Mutex::new(Vec::with_capacity(1024))),
            sleep,
            done_ns: AtomicU64::new(0),
            done: Mutex::new(false),
            cv: Condvar::new(),
        })
    }

    pub fn wait(&self) {
        let mut done = self.done.lock().unwrap();
        while !*done {
            done = self.cv.wait(done).unwrap();
        }
    }
}

unsafe extern "C" fn on_event(user: *mut c_void, json: *const c_char, len: usize) -> i32 {
    let sink = &*(user as *const Sink);
    let now = crate::now_ns();
    let n = sink.events.fetch_add(1, Ordering::Relaxed);
    let last = sink.last_ns.swap(now, Ordering::Relaxed);
    if n == 0 {
        sink.first_ns.store(now, Ordering::Relaxed);
    } else if let Some(gaps) = &sink.gaps {
        gaps.lock().unwrap().push(((now - last) / 1000) as u32);
    }
    if !sink.sleep.is_zero() {
        std::thread::sleep(sink.sleep);
    }
    let head = std::slice::from_raw_parts(json.cast::<u8>(), len.min(16));
    if head.starts_with(b"{\"type\":\"done\"") || head.starts_with(b"{\"type\":\"error\"") {
        sink.done_ns.store(crate::now_ns(), Ordering::Relaxed);
        *sink.done.lock().unwrap() = true;
        sink.cv.notify_all();
    }
    0
}
