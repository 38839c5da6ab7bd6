//! Asking for a stream's cold state before its token reaches it. At hundreds of open streams a
//! stream's state has left the caches by its next token (tens of ms later), and the plugin's
//! per-token path touched it line after line, each first touch a wait for memory. Asked for as
//! the stream's task wakes, those lines come in while the SDK decodes the token.
//!
//! A prefetch is a hint: it never faults and changes nothing the program computes, whatever the
//! address. Other architectures than x86-64 skip it.

const LINE: usize = 64;

/// Asks for the cache lines `value` spans.
#[inline(always)]
pub fn lines_of<T>(value: &T) {
    span(value as *const T as *const u8, std::mem::size_of::<T>());
}

/// Asks for the cache lines of `len` bytes from `start`.
#[inline(always)]
pub fn span(start: *const u8, len: usize) {
    if len == 0 {
        return;
    }
    let first = start as usize & !(LINE - 1);
    let last = (start as usize).wrapping_add(len - 1);
    let mut at = first;
    while at <= last {
        line(at as *const u8);
        match at.checked_add(LINE) {
            Some(next) => at = next,
            None => break,
        }
    }
}

/// Asks for the cache line holding `at`.
#[inline(always)]
pub fn line(at: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: PREFETCHT0 reads nothing the program sees and never faults, on any address.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(at.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = at;
}

#[cfg(test)]
mod tests {
    #[test]
    fn any_address_is_only_a_hint() {
        // Null, dangling and unaligned addresses: a prefetch must not fault on any of them.
        super::span(std::ptr::null(), 4096);
        super::span(usize::MAX as *const u8, 1);
        super::line(0x1234_5679 as *const u8);
        let v = [0u8; 200];
        super::lines_of(&v);
        super::span(v.as_ptr().wrapping_add(3), 0);
    }
}
