//! Every exported function runs its body through `guard`: panics are caught, the typed error is
//! mapped to a status code once, and `err_json` (when the host passed one) receives the details.

use super::status::Status;
use super::strings::to_c_string;
use crate::error::{Error, Result};
use crate::events::ErrorInfo;
use std::os::raw::c_char;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// `*err_json`: a failed message's `errorInfo` with the text beside it (a synchronous failure has
/// no assistant message to carry `errorMessage`).
#[derive(serde::Serialize)]
struct ErrorJson<'a> {
    #[serde(flatten)]
    info: ErrorInfo,
    message: &'a str,
}

/// Runs `body`, writing `{"code","message",...}` to `*err_json` on failure (if non-NULL).
pub fn guard(err_json: *mut *mut c_char, body: impl FnOnce() -> Result<Status>) -> i32 {
    if !err_json.is_null() {
        // SAFETY: the host passed a writable `char **` (or NULL, checked above).
        unsafe { *err_json = std::ptr::null_mut() };
    }
    let result = catch_unwind(AssertUnwindSafe(body)).unwrap_or_else(|_| {
        crate::log::error("ffi", "a panic was caught at the C boundary and reported as BP_ERR_INTERNAL");
        Err(Error::internal("a panic was caught inside bedrock-plugin (this is a bug; please report it)"))
    });
    match result {
        Ok(status) => status as i32,
        Err(e) => {
            if !err_json.is_null() {
                // SAFETY: as above.
                let info = serde_json::to_string(&ErrorJson { info: ErrorInfo::from(&e), message: &e.message }).unwrap_or_default();
                unsafe { *err_json = to_c_string(info) };
            }
            Status::from(e.kind) as i32
        }
    }
}

/// For functions that return nothing: a caught panic is swallowed rather than unwinding into C.
pub fn guard_void(body: impl FnOnce()) {
    if catch_unwind(AssertUnwindSafe(body)).is_err() {
        crate::log::error("ffi", "a panic was caught at the C boundary");
    }
}
