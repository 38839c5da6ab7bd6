//! The example host users meet first: built with its Makefile, it lists the configured models and
//! streams a chat, and it is valgrind-clean (no invalid access, no definite leaks).

mod common;
use common::*;
use std::path::PathBuf;
use std::process::Command;

fn build_host() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("host-example");
    let status = Command::new("make").arg("--quiet").arg("-C").arg(&dir).arg("bp-host").status().expect("make runs");
    assert!(status.success(), "make bp-host");
    dir.join("bp-host")
}

fn write_config(emulator: &Emulator, name: &str) -> PathBuf {
    let path = target_dir().join(name);
    std::fs::write(&path, config_for(&emulator.endpoint()).to_string()).unwrap();
    path
}

#[test]
fn lists_models_and_streams_a_chat() {
    hermetic_env();
    let emulator = Emulator::start(EmulatorConfig::default());
    let host = build_host();
    let config = write_config(&emulator, "example-config.json");
    let out = Command::new(&host).arg("--plugin").arg(plugin_path()).arg("--config").arg(&config).arg("models").output().unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(table.lines().any(|l| l.starts_with("anthropic.claude-sonnet-4-5-20250929-v1:0") && l.contains("text+image") && l.contains("200000") && l.ends_with("yes")), "{table}");
    assert!(table.lines().any(|l| l.starts_with("emulator.echo") && l.contains("32000") && l.ends_with("no")), "{table}");

    let out = Command::new(&host)
        .arg("--plugin").arg(plugin_path()).arg("--config").arg(&config)
        .args(["chat", "--model", "emulator.echo", "emulator: reply=Caf\u{e9} \"quoted\"\tand more"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text} {}", String::from_utf8_lossy(&out.stderr));
    assert!(text.starts_with("Caf\u{e9} \"quoted\"\tand more\n\n"), "{text:?}");
    assert!(text.contains("stop reason: stop"), "{text}");
    assert!(text.contains("tokens: 11 in, 3 out"), "{text}");

    let out = Command::new(&host)
        .arg("--plugin").arg(plugin_path()).arg("--config").arg(&config)
        .args(["chat", "--model", "emulator.echo", "emulator: error=throttling"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("error (error, throttled): ThrottlingException"));
}

fn valgrind_chat(keep_loaded: bool, leak_kinds: &str) -> (Option<i32>, String) {
    hermetic_env();
    let emulator = Emulator::start(EmulatorConfig::default());
    let host = build_host();
    let config = write_config(&emulator, &format!("valgrind-config-{keep_loaded}.json"));
    let out = Command::new("valgrind")
        .args(["--leak-check=full", "--error-exitcode=99"])
        .arg(format!("--errors-for-leak-kinds={leak_kinds}"))
        .arg(&host)
        .arg("--plugin").arg(plugin_path()).arg("--config").arg(&config)
        .args(["chat", "--model", "emulator.echo", "emulator: chunks=5"])
        .env("BP_HOST_KEEP_LOADED", if keep_loaded { "1" } else { "0" })
        .output()
        .expect("valgrind is installed (.ci/run installs it)");
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("w0 w1 w2 w3 w4 "));
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn example_host_is_valgrind_clean_with_the_plugin_loaded() {
    // No invalid access and no definite or indirect leak. ("Possibly lost" blocks are interior
    // pointers into the SDK's static retry token bucket, which stays mapped and reachable.)
    let (code, stderr) = valgrind_chat(true, "definite,indirect");
    assert_eq!(code, Some(0), "valgrind reported errors:\n{stderr}");
    assert!(stderr.contains("ERROR SUMMARY: 0 errors"), "{stderr}");
}

#[test]
fn example_host_has_no_invalid_access_across_dlclose() {
    // After dlclose the SDK's process statics can no longer be reached and count as lost; that
    // cost is paid once per load (see README). Invalid reads or writes would still fail here.
    let (code, stderr) = valgrind_chat(false, "none");
    assert_eq!(code, Some(0), "valgrind reported errors:\n{stderr}");
    let lost = stderr.lines().find(|l| l.contains("definitely lost:")).unwrap_or("");
    println!("statics left behind by one load/unload: {}", lost.split("==").last().unwrap_or("").trim());
}
