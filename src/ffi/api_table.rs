//! `bp_get_api`: every export of this copy of the plugin in one `#[repr(C)]` table, so a host that
//! loads several copies at once (a hot swap) resolves one symbol per copy and can never call a
//! function of one copy with a handle of another.

use super::*;

/// `bp_api` in the header. Fields are only ever appended; `size` tells a host built against a
/// newer header which fields this copy has.
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
}

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
