//! The Rust example host end to end against the emulator: abi_stable's door for models and chat,
//! and a swap between two builds through libloading and bp_get_api.

use bedrock_emulator::{Config, Emulator, TEST_ACCESS_KEY, TEST_SECRET_KEY};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where cargo put the plugin builds this package depends on.
fn deps_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_bp-host-rs")).parent().unwrap().join("deps")
}

fn host(emulator: &Emulator, args: &[&str]) -> (bool, String) {
    host_with(emulator, &deps_dir().join("libbedrock_plugin.so"), args)
}

fn host_with(emulator: &Emulator, plugin: &Path, args: &[&str]) -> (bool, String) {
    // One file per emulator: the tests run in parallel, each with its own emulator.
    let port = emulator.endpoint().rsplit(':').next().unwrap().to_string();
    let config = std::env::temp_dir().join(format!("bp-host-rs-test-{}-{port}.json", std::process::id()));
    let models = r#"[{"id": "emulator.echo", "name": "Echo", "input": ["text"], "cost": {"input": 1, "output": 2}, "contextWindow": 32000, "maxTokens": 1024}]"#;
    std::fs::write(&config, format!(r#"{{"provider": {{"baseUrl": "{}", "models": {models}}}}}"#, emulator.endpoint())).unwrap();
    let _config = Scratch(config.clone());
    let out = Command::new(env!("CARGO_BIN_EXE_bp-host-rs"))
        .arg("--plugin").arg(plugin).arg("--config").arg(&config)
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

/// A build placed in `dir` as `make install` leaves it: the library and its `.sha256`.
fn installed(build: &Path, dir: &Path, name: &str) -> PathBuf {
    let to = dir.join(name);
    std::fs::copy(build, &to).unwrap();
    write_digest(&to, &to);
    to
}

/// Writes `<of>.sha256` naming the bytes of `bytes_of`, in sha256sum's format.
fn write_digest(of: &Path, bytes_of: &Path) {
    let out = Command::new("sha256sum").arg(bytes_of).output().expect("sha256sum runs");
    let digest = String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap().to_string();
    std::fs::write(format!("{}.sha256", of.display()), format!("{digest}  {}\n", of.file_name().unwrap().to_string_lossy())).unwrap();
}

/// A file or directory of one test, gone when the test ends, failed or not: the swap tests copy
/// two builds (over 200 MB with debug info), so each run of the suite would otherwise leave them.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = if self.0.is_dir() { std::fs::remove_dir_all(&self.0) } else { std::fs::remove_file(&self.0) };
    }
}

fn scratch(name: &str) -> Scratch {
    let dir = std::env::temp_dir().join(format!("bp-host-rs-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    Scratch(dir)
}

#[test]
fn swaps_between_two_builds_through_bp_get_api() {
    let emulator = Emulator::start(Config::default());
    let work = scratch("swap");
    let dir = work.0.as_path();
    let first = installed(&deps_dir().join("libbedrock_plugin.so"), dir, "first.so");
    let next = installed(&deps_dir().join("libbedrock_plugin_next.so"), dir, "next.so");
    let (ok, out) = host_with(&emulator, &first, &["swap", "--next", next.to_str().unwrap(), "--model", "emulator.echo", "emulator: chunks=20 delay_ms=10"]);
    assert!(ok, "{out}");
    let text: String = (0..20).map(|k| format!("w{k} ")).collect();
    assert!(out.contains(&format!("generation 1, version 0.1.0: {text}\n")), "{out}");
    assert!(out.contains(&format!("generation 2, version 0.1.0-next: {text}\n")), "{out}");
    assert!(out.contains("generation 1 unmapped: yes"), "{out}");
    assert_eq!(emulator.stats().converse_streams, 2);
}

/// Issue #17: `bp-host-rs swap` gets `bp-host serve`'s deploy checks. A file that is not the one
/// consistent build its `.sha256` names (the first half of one build, the rest of the other), a
/// build with no digest, and a truncated build (with `--no-digest`) are each refused with the
/// reason, and generation 1 finishes its stream and serves the next one, exact.
#[test]
fn swap_refuses_a_build_that_is_not_one_consistent_build_and_the_first_keeps_serving() {
    let emulator = Emulator::start(Config::default());
    let work = scratch("refusals");
    let dir = work.0.as_path();
    let first = installed(&deps_dir().join("libbedrock_plugin.so"), dir, "first.so");
    let (a, b) = (std::fs::read(deps_dir().join("libbedrock_plugin.so")).unwrap(), std::fs::read(deps_dir().join("libbedrock_plugin_next.so")).unwrap());
    let mixed = dir.join("mixed.so");
    let half = a.len().min(b.len()) / 2;
    std::fs::write(&mixed, [&a[..half], &b[half..]].concat()).unwrap();
    std::fs::write(dir.join("next-whole.so"), &b).unwrap();
    write_digest(&mixed, &dir.join("next-whole.so"));
    let undigested = dir.join("undigested.so");
    std::fs::write(&undigested, &b).unwrap();
    let truncated = dir.join("truncated.so");
    std::fs::write(&truncated, &b[..b.len() / 3]).unwrap();
    let text: String = (0..6).map(|k| format!("w{k} ")).collect();
    let cases: [(&Path, &[&str], &str); 3] = [
        (&mixed, &[], "a mix of two builds"),
        (&undigested, &[], "no digest beside"),
        (&truncated, &["--no-digest"], "the file is truncated"),
    ];
    for (next, flags, reason) in cases {
        let mut args = vec!["swap"];
        args.extend_from_slice(flags);
        args.extend(["--next", next.to_str().unwrap(), "--model", "emulator.echo", "emulator: chunks=6 delay_ms=5"]);
        let (ok, out) = host_with(&emulator, &first, &args);
        assert!(!ok, "a refused swap exits non-zero: {out}");
        assert!(out.contains("swap refused, generation 1 keeps serving: ") && out.contains(reason), "{reason}: {out}");
        assert!(out.contains(&format!("generation 1, version 0.1.0: {text}\n")), "{out}");
        assert!(out.contains(&format!("generation 1 after the refusal, version 0.1.0: {text}\n")), "{out}");
        assert!(!out.contains("generation 2"), "{out}");
    }
}
