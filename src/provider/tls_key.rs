//! Gives back the pthread key each loaded copy of the plugin takes. Rust std creates one key per
//! image (its thread-local guard, on the copy's first std thread) and never deletes it; glibc
//! has 1,024 keys per process, so a gateway that swapped copies aborted at its 1,023rd swap
//! ("fatal runtime error: out of TLS keys"), and every leaked key kept a destructor pointing
//! into an unloaded copy.
//!
//! The key is identified on one of this copy's own std threads (the runtime's start hook): its
//! value there is std's marker (1), glibc's key table (`__pthread_keys`) says it is in use, and
//! its destructor lies inside this image. It is deleted when the image is unloaded (its
//! `.fini_array` entry runs in `dlclose`), only if it is still this copy's own and no thread of
//! the copy is alive: then nothing can use it again. A pinned copy is never unloaded, so its
//! key stays, as its threads may still run.

use std::os::raw::c_void;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};

/// glibc's `PTHREAD_KEYS_MAX`.
const KEYS: usize = 1024;

/// The key found, or -1.
static KEY: AtomicI64 = AtomicI64::new(-1);
/// Runtime threads of this copy alive (all providers).
static THREADS: AtomicUsize = AtomicUsize::new(0);

/// One entry of glibc's key table (`struct pthread_key_struct`): in use when `seq` is odd.
#[repr(C)]
struct Slot {
    seq: usize,
    destructor: usize,
}

fn table() -> Option<&'static [Slot; KEYS]> {
    // SAFETY: dlsym with a NUL-terminated name; a non-NULL answer is glibc's static key table,
    // PTHREAD_KEYS_MAX entries of two words, alive for the whole process.
    unsafe {
        let p = libc::dlsym(libc::RTLD_DEFAULT, c"__pthread_keys".as_ptr());
        (!p.is_null()).then(|| &*(p as *const [Slot; KEYS]))
    }
}

/// The base address of the image `addr` belongs to.
fn image_of(addr: usize) -> Option<usize> {
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    // SAFETY: dladdr only reads its argument as an address and fills `info`.
    (unsafe { libc::dladdr(addr as *const c_void, &mut info) } != 0).then_some(info.dli_fbase as usize)
}

fn ours(key: usize, table: &[Slot; KEYS]) -> bool {
    let slot = &table[key];
    // SAFETY of the reads: plain words in glibc's table; a racing create/delete of *another* key
    // does not touch this slot.
    slot.seq & 1 == 1 && slot.destructor != 0 && image_of(slot.destructor).is_some_and(|base| Some(base) == image_of(ours as *const () as usize))
}

/// On each runtime thread as it starts (a std thread of this copy): counts it, and finds std's
/// guard key the first time.
pub fn thread_started() {
    THREADS.fetch_add(1, Ordering::AcqRel);
    if KEY.load(Ordering::Acquire) >= 0 {
        return;
    }
    let Some(table) = table() else { return };
    for key in 0..KEYS {
        // SAFETY: reading this thread's value of a key; any key number is allowed.
        let value = unsafe { libc::pthread_getspecific(key as libc::pthread_key_t) } as usize;
        if value == 1 && ours(key, table) {
            let _ = KEY.compare_exchange(-1, key as i64, Ordering::AcqRel, Ordering::Acquire);
            return;
        }
    }
}

pub fn thread_stopping() {
    THREADS.fetch_sub(1, Ordering::AcqRel);
}

/// Runs when the image is unloaded (`dlclose`) or at process exit.
extern "C" fn release_at_unload() {
    let key = KEY.load(Ordering::Acquire);
    if key < 0 || THREADS.load(Ordering::Acquire) > 0 {
        return;
    }
    if let Some(table) = table() {
        if ours(key as usize, table) {
            // SAFETY: the key is this image's own (checked above) and no thread of this image
            // is alive to use it: nothing refers to it once the image is gone.
            unsafe { libc::pthread_key_delete(key as libc::pthread_key_t) };
        }
    }
}

#[used]
#[link_section = ".fini_array"]
static RELEASE_AT_UNLOAD: extern "C" fn() = release_at_unload;

/// Keys a new copy needs beyond what is free before its first thread starts: std's guard key
/// (an abort when it cannot be had), with room for the TLS keys of the libraries it loads.
const HEADROOM: usize = 4;

/// Whether this copy can start its threads: a copy that has not taken std's key yet needs a
/// free pthread key, and std aborts the process when there is none. Counted from glibc's key
/// table (creating keys to count them would take them from other threads for a moment).
pub fn room_for_threads() -> std::result::Result<(), String> {
    if KEY.load(Ordering::Acquire) >= 0 {
        return Ok(());
    }
    let Some(table) = table() else { return Ok(()) };
    let free = table.iter().filter(|slot| slot.seq & 1 == 0).count();
    if free < HEADROOM {
        return Err(format!(
            "the process has {free} pthread keys left and a new copy of the plugin needs {HEADROOM}: refused instead of letting Rust std abort the process"
        ));
    }
    Ok(())
}

/// The key this copy holds, if found (for tests and status).
#[allow(dead_code)]
pub fn key() -> Option<i64> {
    Some(KEY.load(Ordering::Acquire)).filter(|k| *k >= 0)
}
