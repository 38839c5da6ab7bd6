//! The abi_stable door for Rust hosts: a root module whose fields are the exported C functions
//! themselves (one implementation, two doors). abi_stable checks its layout against the host's
//! `bedrock_plugin_abi::PluginModule` when a Rust host loads the plugin; a C host never calls it.

use super::*;
use abi_stable::prefix_type::PrefixTypeTrait;
use bedrock_plugin_abi::{EventCallback, EventsCallback, LogCallback, PluginModule, PluginModuleRef};

/// The module's `stream_start`: the callback arrives wrapped (see `EventCallback`).
unsafe extern "C" fn stream_start(
    provider: *mut BpProvider,
    request_json: *const c_char,
    on_event: EventCallback,
    user_data: *mut c_void,
    out: *mut *mut BpStream,
    err_json: *mut *mut c_char,
) -> i32 {
    bp_stream_start(provider, request_json, Some(on_event.0), user_data, out, err_json)
}

/// The module's `stream_start_batched`: the callback arrives wrapped too.
unsafe extern "C" fn stream_start_batched(
    provider: *mut BpProvider,
    request_json: *const c_char,
    on_events: EventsCallback,
    user_data: *mut c_void,
    out: *mut *mut BpStream,
    err_json: *mut *mut c_char,
) -> i32 {
    bp_stream_start_batched(provider, request_json, Some(on_events.0), user_data, out, err_json)
}

/// The module's `stream_start_inline`: the callback arrives wrapped too.
unsafe extern "C" fn stream_start_inline(
    provider: *mut BpProvider,
    request_json: *const c_char,
    on_event: EventCallback,
    user_data: *mut c_void,
    out: *mut *mut BpStream,
    err_json: *mut *mut c_char,
) -> i32 {
    bp_stream_start_inline(provider, request_json, Some(on_event.0), user_data, out, err_json)
}

/// The module's `set_log_callback`: the callback arrives wrapped, so it is never NULL here.
unsafe extern "C" fn set_log_callback(level: u32, on_record: LogCallback, user_data: *mut c_void) -> i32 {
    bp_set_log_callback(level, Some(on_record.0), user_data)
}

#[abi_stable::export_root_module]
fn root_module() -> PluginModuleRef {
    PluginModule {
        abi_version: bp_abi_version,
        plugin_info: bp_plugin_info,
        provider_new: bp_provider_new,
        stream_start,
        discover: bp_discover,
        stream_cancel: bp_stream_cancel,
        stream_release: bp_stream_release,
        provider_free: bp_provider_free,
        string_free: bp_string_free,
        embed: bp_embed,
        stream_start_batched,
        set_log_callback,
        mailbox_new: bp_mailbox_new,
        stream_start_mailbox: bp_stream_start_mailbox,
        mailbox_wait: bp_mailbox_wait,
        mailbox_close: bp_mailbox_close,
        mailbox_free: bp_mailbox_free,
        stream_start_inline,
    }
    .leak_into_prefix()
}
