//! The C ABI (version 1.7). Thin by design: check arguments, call inward, map the result once.
//! `include/bedrock_plugin.h` is the contract; `tests/header.rs` checks it against this file.
//!
//! Ownership: `bp_provider_new` → `bp_provider_free`; `bp_stream_start` → `bp_stream_release`;
//! every `char *` the plugin hands out → `bp_string_free`. No function keeps state on the calling
//! thread, so any host thread may call any function.

mod api_table;
mod boundary;
mod mailbox;
mod root_module;
pub mod status;
mod strings;

pub use api_table::bp_get_api;
pub use bedrock_plugin_abi::{BpApi, BpMailbox, BpProvider, BpStream};
pub use mailbox::{bp_mailbox_close, bp_mailbox_free, bp_mailbox_new, bp_mailbox_wait, bp_stream_start_mailbox};

use crate::config;
use crate::error::{Error, Result};
use crate::provider::{Callback, EventFn, EventsFn, FreeOutcome, Inside, Provider, StreamHandle};
use boundary::{guard, guard_void};
use status::Status;
use std::os::raw::{c_char, c_void};
use std::time::Duration;

pub const ABI_MAJOR: u32 = 1;
pub const ABI_MINOR: u32 = 8;
/// Largest `config_json` accepted.
pub const MAX_CONFIG_BYTES: usize = 4 << 20;
/// Largest `request_json` accepted (images travel base64-encoded inside it).
pub const MAX_REQUEST_BYTES: usize = 32 << 20;

/// What a `*mut BpProvider` handed to the host points to.
struct ProviderBox(Provider);
/// What a `*mut BpStream` handed to the host points to.
struct StreamBox(StreamHandle);

/// The provider behind a handle, with the calling thread counted inside it until the guard
/// drops (`free` waits for it); `SHUTTING_DOWN` once `free` has begun.
///
/// # Safety
/// `p` is NULL or a provider handle from `bp_provider_new` whose `bp_provider_free` has not
/// returned.
unsafe fn provider_ref<'a>(p: *mut BpProvider) -> Result<(&'a Provider, Inside<'a>)> {
    let provider = p.cast::<ProviderBox>().as_ref().map(|b| &b.0).ok_or_else(|| Error::invalid("provider is NULL"))?;
    Ok((provider, provider.enter()?))
}

static PLUGIN_INFO: &str = concat!(
    "{\"name\":\"bedrock-plugin\",\"version\":\"",
    env!("CARGO_PKG_VERSION"),
    "\",\"abiVersion\":\"1.8\",\"provider\":\"amazon-bedrock\",\"api\":\"bedrock-converse-stream\"}\0"
);

/// `(major << 16) | minor`.
#[no_mangle]
pub extern "C" fn bp_abi_version() -> u32 {
    (ABI_MAJOR << 16) | ABI_MINOR
}

/// Static JSON describing the plugin; never freed.
#[no_mangle]
pub extern "C" fn bp_plugin_info() -> *const c_char {
    PLUGIN_INFO.as_ptr().cast()
}

fn out_param<T>(out: *mut *mut T, what: &str) -> Result<()> {
    if out.is_null() {
        return Err(Error::invalid(format!("{what} is NULL")));
    }
    // SAFETY: non-NULL `T **` from the host.
    unsafe { *out = std::ptr::null_mut() };
    Ok(())
}

/// Parses the config, starts the runtime thread and builds the AWS client.
///
/// # Safety
/// `config_json` is a NUL-terminated string; `out` and `err_json` are writable (`err_json` may be NULL).
#[no_mangle]
pub unsafe extern "C" fn bp_provider_new(config_json: *const c_char, out: *mut *mut BpProvider, err_json: *mut *mut c_char) -> i32 {
    guard(err_json, || {
        out_param(out, "out")?;
        let text = strings::borrow(config_json, "config_json", MAX_CONFIG_BYTES)?;
        let provider = Provider::new(config::parse(text)?)?;
        *out = Box::into_raw(Box::new(ProviderBox(provider))).cast();
        Ok(Status::Ok)
    })
}

/// Starts one ConverseStream call and returns at once. On success the callback receives every
/// event, in order, on a plugin thread, ending with exactly one `done` or `error` event; after
/// that the plugin never uses `user_data` again. On failure the callback is never called.
/// `out` may be NULL when the host will never cancel or release the stream.
///
/// # Safety
/// `provider` is live; `request_json` is NUL-terminated; `on_event` and `user_data` stay valid
/// until the terminal event.
#[no_mangle]
pub unsafe extern "C" fn bp_stream_start(
    provider: *mut BpProvider,
    request_json: *const c_char,
    on_event: Option<EventFn>,
    user_data: *mut c_void,
    out: *mut *mut BpStream,
    err_json: *mut *mut c_char,
) -> i32 {
    guard(err_json, || {
        let f = on_event.ok_or_else(|| Error::invalid("on_event is NULL"));
        start(provider, request_json, f.map(|f| Callback::Each { f, user_data }), out)
    })
}

/// As `bp_stream_start` (ABI 1.5), but the callback receives every event queued for the stream
/// at once, as NDJSON, with the same order, terminal and cancel guarantees: one host call per
/// delivery pass instead of one per event, for hosts where each call is a thread hop.
///
/// # Safety
/// As `bp_stream_start`.
#[no_mangle]
pub unsafe extern "C" fn bp_stream_start_batched(
    provider: *mut BpProvider,
    request_json: *const c_char,
    on_events: Option<EventsFn>,
    user_data: *mut c_void,
    out: *mut *mut BpStream,
    err_json: *mut *mut c_char,
) -> i32 {
    guard(err_json, || {
        let f = on_events.ok_or_else(|| Error::invalid("on_events is NULL"));
        start(provider, request_json, f.map(|f| Callback::Batched { f, user_data }), out)
    })
}

/// As `bp_stream_start` (ABI 1.8), but the callback runs on the runtime thread that decoded the
/// events, with no hand-over to a delivery thread: the cheapest way in, for a callback that
/// returns at once (it copies or queues the event). While it runs, the other streams on that
/// runtime thread wait.
///
/// # Safety
/// As `bp_stream_start`.
#[no_mangle]
pub unsafe extern "C" fn bp_stream_start_inline(
    provider: *mut BpProvider,
    request_json: *const c_char,
    on_event: Option<EventFn>,
    user_data: *mut c_void,
    out: *mut *mut BpStream,
    err_json: *mut *mut c_char,
) -> i32 {
    guard(err_json, || {
        let f = on_event.ok_or_else(|| Error::invalid("on_event is NULL"));
        start(provider, request_json, f.map(|f| Callback::Inline { f, user_data }), out)
    })
}

/// What the stream starts share once the callback is checked.
unsafe fn start(provider: *mut BpProvider, request_json: *const c_char, callback: Result<Callback>, out: *mut *mut BpStream) -> Result<Status> {
    if !out.is_null() {
        *out = std::ptr::null_mut();
    }
    let (provider, _inside) = provider_ref(provider)?;
    let callback = callback?;
    let text = strings::borrow(request_json, "request_json", MAX_REQUEST_BYTES)?;
    let request = provider.parse_request(text)?;
    let handle = provider.start(request, callback)?;
    if !out.is_null() {
        *out = Box::into_raw(Box::new(StreamBox(handle))).cast();
    }
    Ok(Status::Ok)
}

/// Lists the models this provider can stream: the configured ones first, then those Bedrock's
/// `ListFoundationModels` / `ListInferenceProfiles` report (cached per `discovery.refreshInterval`).
/// Blocks until the answer is ready; any thread, concurrently with streams. `options_json` may be
/// NULL or `{"refresh": true}` to bypass the cache. On `BP_OK`, `*out_json` is the implicit
/// provider config `{"baseUrl", "api", "auth", "models", "discovery": {report}}`.
///
/// # Safety
/// `provider` is live; `options_json` is NULL or NUL-terminated; `out_json` is writable.
#[no_mangle]
pub unsafe extern "C" fn bp_discover(provider: *mut BpProvider, options_json: *const c_char, out_json: *mut *mut c_char, err_json: *mut *mut c_char) -> i32 {
    guard(err_json, || {
        out_param(out_json, "out_json")?;
        let (provider, _inside) = provider_ref(provider)?;
        if crate::provider::in_runtime_callback() {
            return Err(Error::invalid("bp_discover must not be called from inside an inline event callback (it would wait for the runtime thread it holds)"));
        }
        let refresh = if options_json.is_null() {
            false
        } else {
            parse_discover_options(strings::borrow(options_json, "options_json", MAX_CONFIG_BYTES)?)?
        };
        let answer = provider.discover(refresh)?;
        *out_json = strings::to_c_string(answer);
        Ok(Status::Ok)
    })
}

fn parse_discover_options(text: &str) -> Result<bool> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| Error::invalid(format!("options_json is not valid JSON: {e}")))?;
    let options = crate::json::Obj::new(&value, "options", crate::error::Kind::InvalidArgument)?;
    options.only(&["refresh"])?;
    Ok(options.bool("refresh")?.unwrap_or(false))
}

/// Embeds texts through Bedrock `InvokeModel` (ABI 1.4). `request_json`:
/// `{"model"?, "texts": [...], "purpose"?: "query" | "document", "dimensions"?}`. Blocks until
/// every text is embedded; any thread, concurrently with streams. On `BP_OK`, `*out_json` is
/// `{"model", "dimensions", "embeddings": [[...], ...]}` in input order, each vector L2-normalized
/// (a blank text gets `[]`).
///
/// # Safety
/// `provider` is live; `request_json` is NUL-terminated; `out_json` is writable.
#[no_mangle]
pub unsafe extern "C" fn bp_embed(provider: *mut BpProvider, request_json: *const c_char, out_json: *mut *mut c_char, err_json: *mut *mut c_char) -> i32 {
    guard(err_json, || {
        out_param(out_json, "out_json")?;
        let (provider, _inside) = provider_ref(provider)?;
        if crate::provider::in_callback() {
            return Err(Error::invalid("bp_embed must not be called from inside an event callback (it would block that stream's delivery)"));
        }
        let text = strings::borrow(request_json, "request_json", MAX_REQUEST_BYTES)?;
        *out_json = strings::to_c_string(provider.embed(text)?);
        Ok(Status::Ok)
    })
}

/// Asks the stream to stop; it ends with `error` / `aborted`. Idempotent, callable from any
/// thread (including inside the callback) and after the stream ended.
///
/// # Safety
/// `stream` is NULL or a handle not yet released.
#[no_mangle]
pub unsafe extern "C" fn bp_stream_cancel(stream: *mut BpStream) {
    guard_void(|| {
        if let Some(s) = stream.cast::<StreamBox>().as_ref() {
            s.0.cancel();
        }
    })
}

/// Releases the host's handle; the stream itself runs on to its terminal event. Valid also
/// after `bp_provider_free`.
///
/// # Safety
/// `stream` is NULL or a handle not yet released.
#[no_mangle]
pub unsafe extern "C" fn bp_stream_release(stream: *mut BpStream) {
    guard_void(|| {
        if !stream.is_null() {
            drop(Box::from_raw(stream.cast::<StreamBox>()));
        }
    })
}

/// Refuses new calls on the provider at once (`SHUTTING_DOWN`), cuts discoveries and
/// embeddings in flight short, waits up to `drain_timeout_ms` for streams to end (terminal
/// callbacks included), cancels the rest, stops and joins every plugin thread, and returns
/// within `drain_timeout_ms` + `BP_FREE_GRACE_MS`: `BP_OK` (every stream ended on its own),
/// `BP_ERR_CANCELLED` (streams were cancelled; all released), or `BP_ERR_BUSY` (something could
/// not be stopped in time — a callback that has not returned: the plugin pinned itself, so
/// `dlclose` stays safe, and finishes the stop once the callback returns). Must not be called
/// from inside an event or log callback.
///
/// # Safety
/// `provider` is NULL or a live provider; it must not be used once this call has returned.
#[no_mangle]
pub unsafe extern "C" fn bp_provider_free(provider: *mut BpProvider, drain_timeout_ms: u32) -> i32 {
    guard(std::ptr::null_mut(), || {
        if provider.is_null() {
            return Err(Error::invalid("provider is NULL"));
        }
        if crate::provider::in_callback() {
            return Err(Error::invalid("bp_provider_free must not be called from inside an event callback"));
        }
        if crate::log::on_log_thread() {
            return Err(Error::invalid("bp_provider_free must not be called from inside the log callback"));
        }
        let boxed = provider.cast::<ProviderBox>();
        let freed = (*boxed).0.free(Duration::from_millis(drain_timeout_ms.into()));
        if freed.release {
            drop(Box::from_raw(boxed));
        }
        Ok(match freed.outcome {
            FreeOutcome::Drained => Status::Ok,
            FreeOutcome::CancelledSome => Status::Cancelled,
            FreeOutcome::Pinned => Status::Busy,
            FreeOutcome::AlreadyFreeing => return Err(crate::provider::shutting_down()),
        })
    })
}

/// Routes the plugin's log records at `level` (0 off, 1 error, 2 warn, 3 info, 4 debug) and
/// more severe to `on_record` instead of stderr; NULL goes back to stderr at `level`. Process-wide
/// for this copy of the plugin. Records from plugin threads reach the callback on one log thread
/// through a bounded queue (a slow callback never holds a stream; overflow is dropped and
/// counted); with no provider alive, on the calling thread. Must not be called from inside the
/// log callback.
///
/// # Safety
/// `on_record` and `user_data` stay valid until replaced by another call.
#[no_mangle]
pub unsafe extern "C" fn bp_set_log_callback(level: u32, on_record: Option<crate::log::LogFn>, user_data: *mut c_void) -> i32 {
    guard(std::ptr::null_mut(), || {
        let level = crate::log::Level::from_u32(level).ok_or_else(|| Error::invalid(format!("level {level}: must be 0 (off) to 4 (debug)")))?;
        if !crate::log::set_callback(level, on_record, user_data) {
            return Err(Error::invalid("bp_set_log_callback must not be called from inside the log callback"));
        }
        Ok(Status::Ok)
    })
}

/// Frees a string the plugin returned. NULL is ignored.
///
/// # Safety
/// `s` is NULL or a plugin string not yet freed.
#[no_mangle]
pub unsafe extern "C" fn bp_string_free(s: *mut c_char) {
    guard_void(|| strings::free(s))
}
