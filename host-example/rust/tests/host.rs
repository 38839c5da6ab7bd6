//! The Rust example host end to end against the emulator: abi_stable's door for models and chat,
//! and a swap between two builds through libloading and bp_get_api.

use bedrock_emulator::{Config, Emulator, TEST_ACCESS_KEY, TEST_SECRET_KEY};
use std::path::PathBuf;
use std::process::Command;

/// Where cargo put the plugin builds this package depends on.
fn deps_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_bp-host-rs")).parent().unwrap().join("deps")
}

fn host(emulator: &Emulator, args: &[&str]) -> (bool, String) {
    // One file per emulator: the tests run in parallel, each with its own emulator.
    let port = emulator.endpoint().rsplit(':').next().unwrap().to_string();
    let config = std::env::temp_dir().join(format!("bp-host-rs-test-{}-{port}.json", std::process::id()));
    let models = r#"[{"id": "emulator.echo", "name": "Echo", "input": ["text"], "cost": {"input": 1, "output": 2}, "contextWindow": 32000, "maxTokens": 1024}]"#;
    std::fs::write(&config, format!(r#"{{"provider": {{"baseUrl": "{}", "models": {models}}}}}"#, emulator.endpoint())).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_bp-host-rs"))
        .arg("--plugin").arg(deps_dir().join("libbedrock_plugin.so")).arg("--config").arg(&config)
        .args(args)
        .env("AWS_EC2_METADATA_DISABLED", "true").env("AWS_ACCESS_KEY_ID", TEST_ACCESS_KEY).env("AWS_SECRET_ACCESS_KEY", TEST_SECRET_KEY)
        .env("AWS_REGION", "us-east-1").env("AWS_CONFIG_FILE", "/nonexistent").env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
        .env("BEDROCK_PLUGIN_LOG", "off").env_remove("AWS_PROFILE").env_remove("AWS_BEARER_TOKEN_BEDROCK")
        .output()
        .expect("run bp-host-rs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[test]
fn lists_models_and_chats_through_the_abi_stable_module() {
    let emulator = Emulator::start(Config::default());
    let (ok, out) = host(&emulator, &["models"]);
    assert!(ok && out.lines().any(|l| l == "emulator.echo\tEcho"), "{out}");
    let (ok, out) = host(&emulator, &["chat", "--model", "emulator.echo", "emulator: chunks=4"]);
    assert!(ok, "{out}");
    assert!(out.contains("version 0.1.0: w0 w1 w2 w3 \n") && out.contains("version 0.1.0: stop (ok)"), "{out}");
}

#[test]
fn swaps_between_two_builds_through_bp_get_api() {
    let emulator = Emulator::start(Config::default());
    let next = deps_dir().join("libbedrock_plugin_next.so");
    let (ok, out) = host(&emulator, &["swap", "--next", next.to_str().unwrap(), "--model", "emulator.echo", "emulator: chunks=20 delay_ms=10"]);
    assert!(ok, "{out}");
    let text: String = (0..20).map(|k| format!("w{k} ")).collect();
    assert!(out.contains(&format!("generation 1, version 0.1.0: {text}\n")), "{out}");
    assert!(out.contains(&format!("generation 2, version 0.1.0-next: {text}\n")), "{out}");
    assert!(out.contains("generation 1 unmapped: yes"), "{out}");
    assert_eq!(emulator.stats().converse_streams, 2);
}
