//! Self-pinning: when a plugin thread cannot be stopped, a later `dlclose` must not unmap the
//! code it runs. Re-opening our own image with `RTLD_NODELETE` makes that `dlclose` a no-op.

pub fn pin_image() {
    super::copy_heap::keep_forever();
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    let anchor = pin_image as *const libc::c_void;
    // SAFETY: dladdr/dlopen with a pointer into this image and the path glibc reports for it.
    unsafe {
        if libc::dladdr(anchor, &mut info) != 0 && !info.dli_fname.is_null() {
            libc::dlopen(info.dli_fname, libc::RTLD_NOW | libc::RTLD_NOLOAD | libc::RTLD_NODELETE);
        }
    }
}
