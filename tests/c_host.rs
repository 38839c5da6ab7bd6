//! The plugin from a C host compiled by the test: load, stream, free, dlclose and unload, 20
//! times in a row, with every export called from a short-lived thread.

mod common;
use common::*;
use std::process::Command;

#[test]
fn unloads_cleanly_twenty_times_in_a_row() {
    hermetic_env();
    let emulator = Emulator::start(EmulatorConfig::default());
    let exe = compile_c("tests/c/unload_host.c", "unload_host");
    let out = Command::new(&exe).arg(plugin_path()).arg(emulator.endpoint()).arg("20").output().expect("run unload_host");
    let stdout = String::from_utf8_lossy(&out.stdout);
    print!("{stdout}");
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "unload host failed (signal or error): {:?}", out.status);
    assert!(stdout.contains("20 passed, 0 failed"));
    // Every chat reached Bedrock; a cancelled second stream may stop before its request is sent.
    let calls = emulator.stats().converse_streams;
    assert!((20..=40).contains(&calls), "{calls} ConverseStream calls");
}
