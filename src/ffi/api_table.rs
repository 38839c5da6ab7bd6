//! `bp_get_api`: every export of this copy of the plugin in one `#[repr(C)]` table, so a host that
//! loads several copies at once (a hot swap) resolves one symbol per copy and can never call a
//! function of one copy with a handle of another. `BpApi` itself is defined once, in the
//! interface crate (`include/rust`), beside the header it mirrors.

use super::*;

static API: BpApi = BpApi {
    abi_version: (ABI_MAJOR << 16) | ABI_MINOR,
    size: std::mem::size_of::<BpApi>() as u32,
    plugin_info: bp_plugin_info,
    provider_new: bp_provider_new,
    stream_start: bp_stream_start,
    discover: bp_discover,
    stream_cancel: bp_stream_cancel,
    stream_release: bp_stream_release,
    provider_free: bp_provider_free,
    string_free: bp_string_free,
    embed: bp_embed,
    stream_start_batched: bp_stream_start_batched,
    set_log_callback: bp_set_log_callback,
    mailbox_new: bp_mailbox_new,
    stream_start_mailbox: bp_stream_start_mailbox,
    mailbox_wait: bp_mailbox_wait,
    mailbox_close: bp_mailbox_close,
    mailbox_free: bp_mailbox_free,
    stream_start_inline: bp_stream_start_inline,
};

/// The function table of this copy for ABI major `abi_major`, or NULL when this copy does not
/// implement that major. Static: valid while the copy stays loaded, never freed.
#[no_mangle]
pub extern "C" fn bp_get_api(abi_major: u32) -> *const BpApi {
    if abi_major == ABI_MAJOR {
        &API
    } else {
        std::ptr::null()
    }
}
