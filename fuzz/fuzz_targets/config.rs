//! `bp_provider_new` with any bytes as the config: a clear error or a provider that frees
//! cleanly, never a crash or a hang.
#![no_main]

use bedrock_plugin::ffi;
use libfuzzer_sys::fuzz_target;
use std::ffi::{CStr, CString};

fuzz_target!(|data: &[u8]| {
    bedrock_plugin_fuzz::hermetic();
    let Ok(config) = CString::new(data) else { return };
    let (mut p, mut err) = (std::ptr::null_mut(), std::ptr::null_mut());
    let rc = unsafe { ffi::bp_provider_new(config.as_ptr(), &mut p, &mut err) };
    if rc == 0 {
        assert!(!p.is_null() && err.is_null());
        assert_eq!(unsafe { ffi::bp_provider_free(p, 1000) }, 0, "an idle provider frees at once");
    } else {
        assert!(p.is_null(), "no provider on failure");
        let why: serde_json::Value = serde_json::from_str(unsafe { CStr::from_ptr(err) }.to_str().unwrap()).expect("err_json is JSON");
        assert!(why["code"].is_string() && why["message"].is_string(), "{why}");
        bedrock_plugin_fuzz::free_string(err);
    }
});
