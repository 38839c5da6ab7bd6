//! The C++ example host (`host-example/cpp`, through `include/bedrock_plugin.hpp`): built with
//! `-std=c++17 -Wall -Wextra -Werror` under ASan and UBSan, it lists the models, streams a chat,
//! reports a refused start as an exception carrying err_json's code, swaps between two builds
//! with RAII owners (the old copy freed and unloaded once its stream ended), and takes the
//! events of many streams from one mailbox on its main thread.

mod common;
use common::*;
use std::process::Command;

fn run(args: &[&str], config: &std::path::Path) -> (bool, String, String) {
    let out = Command::new(build_host_cpp())
        .arg("--plugin")
        .arg(plugin_path())
        .arg("--config")
        .arg(config)
        .args(args)
        .envs(SANITIZERS)
        .env("TMPDIR", target_dir())
        .output()
        .expect("bp-host-cpp runs");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn the_cpp_host_lists_streams_reports_errors_and_swaps() {
    hermetic_env();
    let emulator = Emulator::start(EmulatorConfig::default());
    let config = target_dir().join("cpp-host-config.json");
    std::fs::write(&config, config_for(&emulator.endpoint()).to_string()).unwrap();

    let (ok, stdout, stderr) = run(&["models"], &config);
    assert!(ok && stdout.lines().any(|l| l == "emulator.echo"), "{stdout}\n{stderr}");

    let (ok, stdout, stderr) = run(&["chat", "--model", "emulator.echo", "emulator: chunks=4"], &config);
    assert!(ok, "{stdout}\n{stderr}");
    assert_eq!(stdout, "w0 w1 w2 w3 \n[stop]\n", "{stderr}");

    let (ok, stdout, stderr) = run(&["chat", "--inline", "--model", "emulator.echo", "emulator: chunks=4"], &config);
    assert!(ok, "{stdout}\n{stderr}");
    assert_eq!(stdout, "w0 w1 w2 w3 \n[stop]\n", "inline (ABI 1.8): {stderr}");

    let (ok, _, stderr) = run(&["chat", "--model", "no.such-model", "hi"], &config);
    assert!(!ok && stderr.contains("error (not_found, status 4): bp_stream_start: model: unknown model"), "{stderr}");

    let next = next_plugin_path();
    let (ok, stdout, stderr) = run(&["swap", "--next", next.to_str().unwrap(), "--model", "emulator.echo", "emulator: chunks=3"], &config);
    assert!(ok, "{stdout}\n{stderr}");
    assert!(stdout.contains("old copy 0.1.0: stop") && stdout.contains("freed with status 0"), "{stdout}");
    assert!(stdout.contains("new copy 0.1.0-next: stop w0 w1 w2 "), "{stdout}");
    assert!(!stderr.contains("ERROR: AddressSanitizer") && !stderr.contains("runtime error:"), "{stderr}");

    let (ok, stdout, stderr) = run(&["fanout", "--count", "12", "--model", "emulator.echo", "emulator: chunks=6 delay_ms=5"], &config);
    assert!(ok, "{stdout}\n{stderr}");
    let want: String = (0..12).map(|tag| format!("{tag}: w0 w1 w2 w3 w4 w5 [stop]\n")).collect();
    assert_eq!(stdout, want, "every stream's text, in order, from one mailbox");
    assert!(!stderr.contains("ERROR: AddressSanitizer") && !stderr.contains("runtime error:"), "{stderr}");
}
