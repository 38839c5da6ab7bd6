//! The Node binding's own tests (`bindings/node/test`, node:test with pinned pi-ai and
//! pi-agent-core), run against this build of the plugin and an emulator started here, so the
//! project's one test command covers them. The packages come from the npm registry through the
//! committed package-lock.json (`npm ci`) the first time.

mod common;
use common::*;
use std::path::Path;
use std::process::Command;

#[test]
fn the_node_binding_serves_pi_ai_and_pi_agent_core() {
    hermetic_env();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("bindings/node");
    let node = Command::new("node").arg("--version").output().unwrap_or_else(|e| panic!("Node.js 20+ is needed for the binding's tests: {e}"));
    let version = String::from_utf8_lossy(&node.stdout).trim().to_string();
    let major: u32 = version.trim_start_matches('v').split('.').next().and_then(|m| m.parse().ok()).unwrap_or(0);
    assert!(major >= 20, "Node.js 20+ is needed for the binding's tests, found {version}");
    if !dir.join("node_modules/@mariozechner/pi-ai/package.json").is_file() || !dir.join("node_modules/koffi/package.json").is_file() {
        let npm = Command::new("npm").args(["ci", "--no-audit", "--no-fund"]).current_dir(&dir).output().expect("run npm ci");
        assert!(npm.status.success(), "npm ci in bindings/node failed:\n{}{}", String::from_utf8_lossy(&npm.stdout), String::from_utf8_lossy(&npm.stderr));
    }
    let emulator = Emulator::start(EmulatorConfig::default());
    let next = next_plugin_path();
    assert!(next.is_file(), "the second build for the swap test: {}", next.display());
    let out = Command::new("node")
        .args(["--test", "--test-reporter=spec", "test/"])
        .current_dir(&dir)
        .env("BP_EMULATOR", emulator.endpoint())
        .env("BP_PLUGIN", plugin_path())
        .env("BP_PLUGIN_NEXT", &next)
        .output()
        .expect("run node --test");
    let stdout = String::from_utf8_lossy(&out.stdout);
    print!("{stdout}");
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the binding's tests failed (see above)");
    assert!(stdout.contains("pass 17") && stdout.contains("fail 0"), "{stdout}");
}
