//! `bp_stream_start` with any bytes as the request, against the emulator: refused with a clear
//! error and no events, or streamed to exactly one terminal event.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::time::Duration;

fuzz_target!(|data: &[u8]| {
    let (_emulator, p) = bedrock_plugin_fuzz::provider();
    bedrock_plugin_fuzz::stream(p, data, Duration::from_secs(2));
});
