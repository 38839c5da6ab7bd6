//! The Rust side of bedrock-plugin's contract, beside `include/bedrock_plugin.h`: the opaque
//! handle types, the `bp_api` function table, and the abi_stable root module. The plugin exports
//! its functions with exactly these types, so each door into it (C symbols, `bp_get_api`, the
//! root module) reaches the same implementation.
//!
//! Two ways in for a Rust host:
//! - [`PluginModuleRef::load_from_file`] (abi_stable): the layout of every field is checked
//!   against the plugin's before anything runs. abi_stable never unloads a library and keeps one
//!   module per type for the whole process, so this door cannot hot-swap.
//! - `libloading` (or `dlopen`) and `bp_get_api` → [`BpApi`]: one table per loaded copy, so copies
//!   can be swapped and never mixed; the ABI version is the only check.

use abi_stable::library::RootModule;
use abi_stable::sabi_types::VersionStrings;
use abi_stable::StableAbi;
use std::os::raw::{c_char, c_void};

/// `bp_provider`: opaque, only ever behind a pointer the plugin handed out.
#[repr(C)]
#[derive(StableAbi)]
pub struct BpProvider {
    _opaque: [u8; 0],
}

/// `bp_stream`: opaque, only ever behind a pointer the plugin handed out.
#[repr(C)]
#[derive(StableAbi)]
pub struct BpStream {
    _opaque: [u8; 0],
}

/// `bp_mailbox` (1.7): opaque, only ever behind a pointer the plugin handed out.
#[repr(C)]
#[derive(StableAbi)]
pub struct BpMailbox {
    _opaque: [u8; 0],
}

/// `bp_event_fn`: receives one event (NUL-terminated JSON, valid only during the call) on a plugin
/// thread; returns 0 to go on, non-zero to cancel the stream.
pub type EventFn = unsafe extern "C" fn(user_data: *mut c_void, event_json: *const c_char, len: usize) -> i32;

/// `bp_events_fn` (1.5): receives every event queued for a stream at once, as NDJSON (one event
/// per line, each line ending in `\n`, the whole NUL-terminated and valid only during the call);
/// `count` is the number of lines. Returns 0 to go on, non-zero to cancel the stream.
pub type EventsFn = unsafe extern "C" fn(user_data: *mut c_void, events_ndjson: *const c_char, len: usize, count: usize) -> i32;

/// `bp_log_fn` (1.6): one log record; `level` 1 error … 4 debug; `target` names the part of the
/// plugin ("discovery", "converse", ...); both strings are valid only during the call.
pub type LogFn = unsafe extern "C" fn(user_data: *mut c_void, level: u32, target: *const c_char, message: *const c_char);

/// The header's `bp_api` (ABI 1.8): every function of one loaded copy. Fields are only ever
/// appended; `size` says which ones a copy has.
#[repr(C)]
pub struct BpApi {
    pub abi_version: u32,
    pub size: u32,
    pub plugin_info: extern "C" fn() -> *const c_char,
    pub provider_new: unsafe extern "C" fn(*const c_char, *mut *mut BpProvider, *mut *mut c_char) -> i32,
    pub stream_start: unsafe extern "C" fn(*mut BpProvider, *const c_char, Option<EventFn>, *mut c_void, *mut *mut BpStream, *mut *mut c_char) -> i32,
    pub discover: unsafe extern "C" fn(*mut BpProvider, *const c_char, *mut *mut c_char, *mut *mut c_char) -> i32,
    pub stream_cancel: unsafe extern "C" fn(*mut BpStream),
    pub stream_release: unsafe extern "C" fn(*mut BpStream),
    pub provider_free: unsafe extern "C" fn(*mut BpProvider, u32) -> i32,
    pub string_free: unsafe extern "C" fn(*mut c_char),
    /// Since 1.4: present when `size` covers it.
    pub embed: unsafe extern "C" fn(*mut BpProvider, *const c_char, *mut *mut c_char, *mut *mut c_char) -> i32,
    /// Since 1.5.
    pub stream_start_batched: unsafe extern "C" fn(*mut BpProvider, *const c_char, Option<EventsFn>, *mut c_void, *mut *mut BpStream, *mut *mut c_char) -> i32,
    /// Since 1.6.
    pub set_log_callback: unsafe extern "C" fn(u32, Option<LogFn>, *mut c_void) -> i32,
    /// Since 1.7: the mailbox functions.
    pub mailbox_new: unsafe extern "C" fn(u32, *mut *mut BpMailbox) -> i32,
    pub stream_start_mailbox: unsafe extern "C" fn(*mut BpProvider, *const c_char, *mut BpMailbox, u64, *mut *mut BpStream, *mut *mut c_char) -> i32,
    pub mailbox_wait: unsafe extern "C" fn(*mut BpMailbox, u32, *mut *const c_char, *mut usize, *mut usize) -> i32,
    pub mailbox_close: unsafe extern "C" fn(*mut BpMailbox),
    pub mailbox_free: unsafe extern "C" fn(*mut BpMailbox),
    /// Since 1.8.
    pub stream_start_inline: unsafe extern "C" fn(*mut BpProvider, *const c_char, Option<EventFn>, *mut c_void, *mut *mut BpStream, *mut *mut c_char) -> i32,
}

/// `bp_get_api`'s signature, for hosts that resolve it by name.
pub type GetApiFn = unsafe extern "C" fn(abi_major: u32) -> *const BpApi;

/// The event callback as a field type of the root module: abi_stable's layout check refuses a
/// function pointer nested in another function pointer's signature, but takes one wrapped.
#[repr(transparent)]
#[derive(StableAbi, Clone, Copy)]
pub struct EventCallback(pub unsafe extern "C" fn(user_data: *mut c_void, event_json: *const c_char, len: usize) -> i32);

/// The batched callback as a field type of the root module (see `EventCallback`).
#[repr(transparent)]
#[derive(StableAbi, Clone, Copy)]
pub struct EventsCallback(pub unsafe extern "C" fn(user_data: *mut c_void, events_ndjson: *const c_char, len: usize, count: usize) -> i32);

/// The log callback as a field type of the root module (see `EventCallback`).
#[repr(transparent)]
#[derive(StableAbi, Clone, Copy)]
pub struct LogCallback(pub unsafe extern "C" fn(user_data: *mut c_void, level: u32, target: *const c_char, message: *const c_char));

/// The root module abi_stable loads: the C functions' behaviour, with checked layouts. Fields up
/// to `string_free` exist in every plugin that exports the module; later minor versions append
/// fields after it (a host reads those through the generated accessors, which say when a plugin
/// is too old to have them).
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = PluginModuleRef)))]
#[sabi(missing_field(panic))]
pub struct PluginModule {
    /// `(major << 16) | minor`.
    pub abi_version: extern "C" fn() -> u32,
    /// Static JSON; never freed.
    pub plugin_info: extern "C" fn() -> *const c_char,
    pub provider_new: unsafe extern "C" fn(*const c_char, *mut *mut BpProvider, *mut *mut c_char) -> i32,
    pub stream_start: unsafe extern "C" fn(*mut BpProvider, *const c_char, EventCallback, *mut c_void, *mut *mut BpStream, *mut *mut c_char) -> i32,
    pub discover: unsafe extern "C" fn(*mut BpProvider, *const c_char, *mut *mut c_char, *mut *mut c_char) -> i32,
    pub stream_cancel: unsafe extern "C" fn(*mut BpStream),
    pub stream_release: unsafe extern "C" fn(*mut BpStream),
    pub provider_free: unsafe extern "C" fn(*mut BpProvider, u32) -> i32,
    #[sabi(last_prefix_field)]
    pub string_free: unsafe extern "C" fn(*mut c_char),
    /// Since 1.4 (`bp_embed`); read through `embed()`, which is None for an older plugin.
    #[sabi(missing_field(option))]
    pub embed: unsafe extern "C" fn(*mut BpProvider, *const c_char, *mut *mut c_char, *mut *mut c_char) -> i32,
    /// Since 1.5 (`bp_stream_start_batched`); None for an older plugin.
    #[sabi(missing_field(option))]
    pub stream_start_batched: unsafe extern "C" fn(*mut BpProvider, *const c_char, EventsCallback, *mut c_void, *mut *mut BpStream, *mut *mut c_char) -> i32,
    /// Since 1.6 (`bp_set_log_callback`, never with a NULL callback); None for an older plugin.
    #[sabi(missing_field(option))]
    pub set_log_callback: unsafe extern "C" fn(u32, LogCallback, *mut c_void) -> i32,
    /// Since 1.7 (`bp_mailbox_new`); None for an older plugin, as are the four below.
    #[sabi(missing_field(option))]
    pub mailbox_new: unsafe extern "C" fn(u32, *mut *mut BpMailbox) -> i32,
    #[sabi(missing_field(option))]
    pub stream_start_mailbox: unsafe extern "C" fn(*mut BpProvider, *const c_char, *mut BpMailbox, u64, *mut *mut BpStream, *mut *mut c_char) -> i32,
    #[sabi(missing_field(option))]
    pub mailbox_wait: unsafe extern "C" fn(*mut BpMailbox, u32, *mut *const c_char, *mut usize, *mut usize) -> i32,
    #[sabi(missing_field(option))]
    pub mailbox_close: unsafe extern "C" fn(*mut BpMailbox),
    #[sabi(missing_field(option))]
    pub mailbox_free: unsafe extern "C" fn(*mut BpMailbox),
    /// Since 1.8 (`bp_stream_start_inline`); None for an older plugin.
    #[sabi(missing_field(option))]
    pub stream_start_inline: unsafe extern "C" fn(*mut BpProvider, *const c_char, EventCallback, *mut c_void, *mut *mut BpStream, *mut *mut c_char) -> i32,
}

impl RootModule for PluginModuleRef {
    abi_stable::declare_root_module_statics! {PluginModuleRef}
    /// `libbedrock_plugin.so` / `.dylib`.
    const BASE_NAME: &'static str = "bedrock_plugin";
    const NAME: &'static str = "bedrock-plugin";
    const VERSION_STRINGS: VersionStrings = abi_stable::package_version_strings!();
}
