//! Strings across the boundary: borrowed NUL-terminated UTF-8 in, plugin-allocated strings out
//! (freed with `bp_string_free`).

use crate::error::{Error, Kind, Result};
use std::ffi::{CStr, CString};
use std::os::raw::c_char;

/// Borrows a host string, refusing NULL, oversized input and invalid UTF-8 with a clear message.
///
/// # Safety
/// `ptr` is NULL or points to a NUL-terminated string that outlives the returned borrow.
pub unsafe fn borrow<'a>(ptr: *const c_char, what: &str, max_bytes: usize) -> Result<&'a str> {
    if ptr.is_null() {
        return Err(Error::invalid(format!("{what} is NULL")));
    }
    let bytes = CStr::from_ptr(ptr).to_bytes();
    if bytes.len() > max_bytes {
        return Err(Error::new(Kind::TooLarge, format!("{what} is {} bytes; the limit is {max_bytes}", bytes.len())));
    }
    std::str::from_utf8(bytes).map_err(|e| Error::invalid(format!("{what} is not valid UTF-8 (invalid byte at offset {})", e.valid_up_to())))
}

/// Hands a string to the host; interior NULs (impossible in our JSON) are stripped.
pub fn to_c_string(s: String) -> *mut c_char {
    let c = CString::new(s).unwrap_or_else(|e| {
        let mut bytes = e.into_vec();
        bytes.retain(|b| *b != 0);
        CString::new(bytes).unwrap_or_default()
    });
    c.into_raw()
}

/// # Safety
/// `s` is NULL or a string returned by this plugin and not yet freed.
pub unsafe fn free(s: *mut c_char) {
    if !s.is_null() {
        drop(CString::from_raw(s));
    }
}
