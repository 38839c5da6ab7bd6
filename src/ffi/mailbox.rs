//! The mailbox functions (ABI 1.7): a host that runs an event loop takes the events of many
//! streams at once, on its own thread, instead of being called on the plugin's threads. The
//! handle is a reference to the mailbox; every stream filing into it holds another, so a host can
//! free its handle at any time and streams still running only drop what they file.

use super::*;
use crate::provider::mailbox::{Mailbox, NotTaken, DEFAULT_CAPACITY};
use std::sync::Arc;

/// The mailbox behind a handle.
///
/// # Safety
/// `m` is NULL or a handle from `bp_mailbox_new` not yet freed.
unsafe fn mailbox_ref<'a>(m: *mut BpMailbox) -> Result<&'a Mailbox> {
    m.cast::<Mailbox>().cast_const().as_ref().ok_or_else(|| Error::invalid("mailbox is NULL"))
}

/// A new, open mailbox holding up to `capacity_bytes` of events before filers wait (0: 8 MiB).
///
/// # Safety
/// `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn bp_mailbox_new(capacity_bytes: u32, out: *mut *mut BpMailbox) -> i32 {
    guard(std::ptr::null_mut(), || {
        out_param(out, "out")?;
        let capacity = if capacity_bytes == 0 { DEFAULT_CAPACITY } else { capacity_bytes as usize };
        *out = Arc::into_raw(Arc::new(Mailbox::new(capacity))).cast_mut().cast();
        Ok(Status::Ok)
    })
}

/// As `bp_stream_start_batched`, but the stream's events are filed into `mailbox` under `tag`.
///
/// # Safety
/// As `bp_stream_start`; `mailbox` is a live mailbox handle.
#[no_mangle]
pub unsafe extern "C" fn bp_stream_start_mailbox(
    provider: *mut BpProvider,
    request_json: *const c_char,
    mailbox: *mut BpMailbox,
    tag: u64,
    out: *mut *mut BpStream,
    err_json: *mut *mut c_char,
) -> i32 {
    guard(err_json, || {
        let callback = mailbox_ref(mailbox).map(|_| {
            let ptr = mailbox.cast::<Mailbox>().cast_const();
            // SAFETY: the handle is one `Arc` reference (`bp_mailbox_new`); the stream takes another.
            Arc::increment_strong_count(ptr);
            Callback::Mailbox { mailbox: Arc::from_raw(ptr), tag }
        });
        start(provider, request_json, callback, out)
    })
}

/// Takes every event filed, waiting up to `timeout_ms` for one. On `BP_OK`, `*events_ndjson`
/// (valid until the next wait on this mailbox, or its free) holds `*count` lines, `*len` bytes
/// without the NUL; 0 lines when the time ran out. `BP_ERR_SHUTTING_DOWN` once the mailbox is
/// closed and empty; `BP_ERR_BUSY` while another wait on it is under way.
///
/// # Safety
/// `mailbox` is a live handle; the three out-pointers are writable.
#[no_mangle]
pub unsafe extern "C" fn bp_mailbox_wait(mailbox: *mut BpMailbox, timeout_ms: u32, events_ndjson: *mut *const c_char, len: *mut usize, count: *mut usize) -> i32 {
    guard(std::ptr::null_mut(), || {
        if events_ndjson.is_null() || len.is_null() || count.is_null() {
            return Err(Error::invalid("events_ndjson, len and count must not be NULL"));
        }
        (*events_ndjson, *len, *count) = (std::ptr::null(), 0, 0);
        let mailbox = mailbox_ref(mailbox)?;
        if crate::provider::in_callback() {
            return Err(Error::invalid("bp_mailbox_wait must not be called from inside an event callback"));
        }
        let deadline = std::time::Instant::now().checked_add(Duration::from_millis(timeout_ms.into()));
        match mailbox.take(deadline) {
            Ok(lines) => {
                (*events_ndjson, *len, *count) = (lines.ptr.cast(), lines.len, lines.count);
                Ok(Status::Ok)
            }
            Err(NotTaken::Busy) => Err(Error::new(crate::error::Kind::Busy, "another bp_mailbox_wait on this mailbox is under way")),
            Err(NotTaken::Closed) => Err(Error::new(crate::error::Kind::ShuttingDown, "the mailbox is closed and empty")),
        }
    })
}

/// Closes a mailbox: a wait under way returns, what is filed can still be taken, and what
/// streams file from now on is dropped. Idempotent; NULL is ignored.
///
/// # Safety
/// `mailbox` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn bp_mailbox_close(mailbox: *mut BpMailbox) {
    guard_void(|| {
        if let Ok(m) = mailbox_ref(mailbox) {
            m.close();
        }
    })
}

/// Closes the mailbox and drops the host's handle (streams still filing hold their own
/// reference). NULL is ignored.
///
/// # Safety
/// `mailbox` is NULL or a live handle; no wait on it is under way, and it is not used again.
#[no_mangle]
pub unsafe extern "C" fn bp_mailbox_free(mailbox: *mut BpMailbox) {
    guard_void(|| {
        if let Ok(m) = mailbox_ref(mailbox) {
            m.close();
            drop(Arc::from_raw(mailbox.cast::<Mailbox>().cast_const()));
        }
    })
}
