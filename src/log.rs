//! Diagnostics for operators. By default one line per record on stderr,
//! `bedrock-plugin: <level>: <target>: <text>`, at `BEDROCK_PLUGIN_LOG` = `off`, `error`, `warn`,
//! `info` (default) or `debug`; written with one `write(2)` per line rather than
//! `std::io::stderr`, so no std thread-local state is touched on any thread.
//!
//! `bp_set_log_callback` routes records to the host instead. A host callback may be slow, so
//! records logged on plugin threads while a provider is alive go through a bounded queue to one
//! log thread (a plain pthread, joined when the callback is replaced or the last provider is
//! freed, so unloading stays clean): a stream never waits for the host's logger, and a full queue
//! drops records and says how many. With no provider alive (records from `bp_provider_new` on the
//! host's own thread) the callback is called directly. Callers pass labels and counts, never
//! credential values.

use std::collections::VecDeque;
use std::ffi::CString;
use std::os::raw::{c_char, c_void};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Level {
    Off = 0,
    Error = 1,
    Warn = 2,
    Info = 3,
    Debug = 4,
}

impl Level {
    pub fn from_u32(n: u32) -> Option<Level> {
        Some(match n {
            0 => Level::Off,
            1 => Level::Error,
            2 => Level::Warn,
            3 => Level::Info,
            4 => Level::Debug,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Level::Off => "off",
            Level::Error => "error",
            Level::Warn => "warn",
            Level::Info => "info",
            Level::Debug => "debug",
        }
    }
}

/// `void (*)(void *user_data, uint32_t level, const char *target, const char *message)`.
pub type LogFn = unsafe extern "C" fn(*mut c_void, u32, *const c_char, *const c_char);

/// Records waiting for the log thread at most; beyond it they are dropped and counted.
const QUEUE: usize = 4096;

#[derive(Clone, Copy)]
struct Sink {
    f: LogFn,
    user_data: usize,
}

struct Record {
    level: Level,
    target: &'static str,
    text: String,
}

struct State {
    sink: Option<Sink>,
    queue: VecDeque<Record>,
    dropped: u64,
    /// The log thread, while one runs.
    thread: Option<libc::pthread_t>,
    /// Bumped to tell the running log thread to leave.
    generation: u64,
    providers: usize,
}

static STATE: Mutex<State> = Mutex::new(State { sink: None, queue: VecDeque::new(), dropped: 0, thread: None, generation: 0, providers: 0 });
static WAKE: Condvar = Condvar::new();
/// The most detailed level that is emitted; `u8::MAX` until first read from the environment.
static THRESHOLD: AtomicU8 = AtomicU8::new(u8::MAX);

fn state() -> MutexGuard<'static, State> {
    STATE.lock().unwrap_or_else(|p| p.into_inner())
}

fn threshold() -> Level {
    let now = THRESHOLD.load(Ordering::Relaxed);
    if let Some(level) = Level::from_u32(now.into()) {
        return level;
    }
    let level = match std::env::var("BEDROCK_PLUGIN_LOG").unwrap_or_default().trim().to_ascii_lowercase().as_str() {
        "off" | "none" => Level::Off,
        "error" => Level::Error,
        "warn" | "warning" => Level::Warn,
        "debug" | "trace" => Level::Debug,
        _ => Level::Info,
    };
    let _ = THRESHOLD.compare_exchange(u8::MAX, level as u8, Ordering::Relaxed, Ordering::Relaxed);
    Level::from_u32(THRESHOLD.load(Ordering::Relaxed).into()).unwrap_or(level)
}

/// Whether a record at `level` would go anywhere (to skip formatting it when not).
pub fn enabled(level: Level) -> bool {
    level != Level::Off && level <= threshold()
}

fn emit(level: Level, target: &'static str, text: &str) {
    if !enabled(level) {
        return;
    }
    let mut s = state();
    let Some(sink) = s.sink else {
        drop(s);
        return write_stderr(level, target, text);
    };
    if s.providers == 0 {
        drop(s);
        return deliver(sink, &Record { level, target, text: text.to_string() });
    }
    if s.queue.len() >= QUEUE {
        s.dropped += 1;
        return;
    }
    s.queue.push_back(Record { level, target, text: text.to_string() });
    if s.thread.is_none() {
        start_thread(&mut s);
    }
    drop(s);
    WAKE.notify_all();
}

fn write_stderr(level: Level, target: &str, text: &str) {
    let line = format!("bedrock-plugin: {}: {target}: {}\n", level.name(), text.replace('\n', " "));
    let mut rest = line.as_bytes();
    while !rest.is_empty() {
        // SAFETY: writing an initialized buffer to fd 2.
        let n = unsafe { libc::write(2, rest.as_ptr().cast(), rest.len()) };
        if n <= 0 {
            return;
        }
        rest = &rest[n as usize..];
    }
}

fn deliver(sink: Sink, record: &Record) {
    let target = CString::new(record.target).unwrap_or_default();
    let text = CString::new(record.text.replace('\0', " ")).unwrap_or_default();
    // A panic cannot cross the host's frame; a host callback that unwinds is the host's bug, but
    // the record is not worth aborting the process for.
    let _ = std::panic::catch_unwind(|| {
        // SAFETY: the host registered `f` with `user_data` through bp_set_log_callback and keeps
        // both valid until it replaces them; the strings live for the call.
        unsafe { (sink.f)(sink.user_data as *mut c_void, record.level as u32, target.as_ptr(), text.as_ptr()) }
    });
}

fn start_thread(s: &mut State) {
    extern "C" fn main(arg: *mut c_void) -> *mut c_void {
        run(arg as u64);
        std::ptr::null_mut()
    }
    let mut thread: libc::pthread_t = 0;
    // SAFETY: `main` has the signature pthread expects; the argument is a plain integer.
    let rc = unsafe { libc::pthread_create(&mut thread, std::ptr::null(), main, s.generation as usize as *mut c_void) };
    if rc == 0 {
        // SAFETY: naming a thread this function just created.
        unsafe { libc::pthread_setname_np(thread, c"bp-log".as_ptr()) };
        s.thread = Some(thread);
    } else {
        // No thread to be had: these records go to stderr rather than nowhere.
        for r in s.queue.drain(..) {
            write_stderr(r.level, r.target, &r.text);
        }
    }
}

/// The log thread: hands queued records to the host one at a time until its generation ends.
fn run(generation: u64) {
    let mut s = state();
    loop {
        if s.generation != generation {
            return;
        }
        let Some(sink) = s.sink else { return };
        if s.dropped > 0 {
            let lost = std::mem::take(&mut s.dropped);
            let note = Record { level: Level::Warn, target: "log", text: format!("{lost} log records were dropped: the host's log callback fell behind") };
            drop(s);
            deliver(sink, &note);
            s = state();
            continue;
        }
        match s.queue.pop_front() {
            Some(record) => {
                drop(s);
                deliver(sink, &record);
                s = state();
            }
            None => s = WAKE.wait(s).unwrap_or_else(|p| p.into_inner()),
        }
    }
}

/// Stops the log thread, if one runs, and hands what is still queued to the sink from here.
/// Refuses (returns false) on the log thread itself, which cannot join itself. With a
/// `deadline`, a log thread still inside the host's callback then is left to leave on its own
/// (detached; it exits when the callback returns) and false is returned: the caller must then
/// keep this image mapped.
fn stop_thread(deadline: Option<std::time::Instant>) -> bool {
    let mut s = state();
    let Some(thread) = s.thread else { return true };
    // SAFETY: pthread_self has no preconditions; comparing two thread ids.
    if unsafe { libc::pthread_equal(thread, libc::pthread_self()) } != 0 {
        return false;
    }
    s.thread = None;
    s.generation += 1;
    drop(s);
    WAKE.notify_all();
    if !join_by(thread, deadline) {
        return false;
    }
    let mut s = state();
    let left: Vec<Record> = if s.thread.is_none() { s.queue.drain(..).collect() } else { Vec::new() };
    let sink = s.sink;
    drop(s);
    for r in &left {
        match sink {
            Some(sink) => deliver(sink, r),
            None => write_stderr(r.level, r.target, &r.text),
        }
    }
    true
}

/// Joins `thread`, by `deadline` if one is given; false (and the thread detached) past it.
fn join_by(thread: libc::pthread_t, deadline: Option<std::time::Instant>) -> bool {
    let Some(deadline) = deadline else {
        // SAFETY: a joinable thread this module created, joined once (its handle was taken).
        unsafe { libc::pthread_join(thread, std::ptr::null_mut()) };
        return true;
    };
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: writing the current CLOCK_REALTIME time (pthread_timedjoin_np's clock) into `now`.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut now) };
    let wait = deadline.saturating_duration_since(std::time::Instant::now());
    let mut until = libc::timespec {
        tv_sec: now.tv_sec + wait.as_secs() as libc::time_t,
        tv_nsec: now.tv_nsec + wait.subsec_nanos() as libc::c_long,
    };
    if until.tv_nsec >= 1_000_000_000 {
        until.tv_sec += 1;
        until.tv_nsec -= 1_000_000_000;
    }
    // SAFETY: as above; on timeout the handle is detached instead, never used again.
    unsafe {
        if libc::pthread_timedjoin_np(thread, std::ptr::null_mut(), &until) == 0 {
            return true;
        }
        libc::pthread_detach(thread);
    }
    false
}

/// Whether the calling thread is the log thread (inside the host's log callback).
pub fn on_log_thread() -> bool {
    // SAFETY: pthread_self has no preconditions; comparing two thread ids.
    state().thread.is_some_and(|t| unsafe { libc::pthread_equal(t, libc::pthread_self()) } != 0)
}

/// `bp_set_log_callback`: records at `level` and above go to `f` (or to stderr when `f` is
/// None). Fails only when called from inside the log callback.
pub fn set_callback(level: Level, f: Option<LogFn>, user_data: *mut c_void) -> bool {
    if !stop_thread(None) {
        return false;
    }
    state().sink = f.map(|f| Sink { f, user_data: user_data as usize });
    THRESHOLD.store(level as u8, Ordering::Relaxed);
    true
}

/// Held by each live provider: while any is held, records from plugin threads go through the
/// log thread; when the last is released (after the provider's threads stopped) the log thread
/// stops, so nothing of this module runs once every provider is freed.
pub struct ProviderAlive(bool);

impl ProviderAlive {
    pub fn new() -> ProviderAlive {
        state().providers += 1;
        ProviderAlive(true)
    }

    /// Lets go; when it was the last, stops the log thread by `deadline`. False when the log
    /// thread was still inside the host's callback then (it leaves when that returns).
    pub fn release(mut self, deadline: std::time::Instant) -> bool {
        self.0 = false;
        let last = {
            let mut s = state();
            s.providers -= 1;
            s.providers == 0
        };
        !last || stop_thread(Some(deadline))
    }
}

impl Drop for ProviderAlive {
    fn drop(&mut self) {
        if !std::mem::take(&mut self.0) {
            return;
        }
        let last = {
            let mut s = state();
            s.providers -= 1;
            s.providers == 0
        };
        if last {
            stop_thread(None);
        }
    }
}

pub fn error(target: &'static str, text: &str) {
    emit(Level::Error, target, text)
}

pub fn warn(target: &'static str, text: &str) {
    emit(Level::Warn, target, text)
}

pub fn info(target: &'static str, text: &str) {
    emit(Level::Info, target, text)
}

pub fn debug(target: &'static str, text: &str) {
    emit(Level::Debug, target, text)
}
