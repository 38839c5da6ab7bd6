//! The shipped library (`make ship`) stays within its size budget: its size is deterministic for
//! a given toolchain and lock file, so a change that grows it fails here rather than in a user's
//! download. The budget is the measured 8,719,184 bytes plus ~90 KB: 8,498,984 without the
//! HTTP/1.1-only client (`provider.httpVersion: "1.1"`, src/http1), which costs 290,608 on
//! hyper's HTTP/1 connection API (464,448 while it was hyper-util's pooled client, HTTP/2 half
//! included), less once that crate and the ABI's were built for size (−70,408). Issue 19's
//! target is 8,000,000; the one measured step that reached it without that client (the plugin
//! crate at opt-level "s") costs 13-24% CPU per event, and opt-level 2 +12-47% CPU per
//! stream-second at 25-100 streams for 160 KB (docs/performance.md), so the budget comes down
//! as code leaves the build.
//! The `ship` build sits beside the test profile, outside the test command, so this test is
//! ignored there; `.ci/run` runs it after `make ship`:
//!
//!   make ship && cargo test --release --workspace --test ship_size -- --ignored

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

const BUDGET_BYTES: u64 = 8_810_000;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn shipped() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root().join("target"));
    target.join("ship/libbedrock_plugin.so")
}

/// The newest modification among the files the shipped build is made from.
fn newest_source(dir: &Path, newest: &mut SystemTime) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            newest_source(&path, newest);
        } else if let Ok(modified) = entry.metadata().and_then(|m| m.modified()) {
            *newest = (*newest).max(modified);
        }
    }
}

#[test]
#[ignore = "needs `make ship` first (run by .ci/run)"]
fn the_shipped_library_stays_within_its_size_budget_stripped_and_matches_its_digest() {
    let lib = shipped();
    let meta = std::fs::metadata(&lib).unwrap_or_else(|e| panic!("{}: {e} (run `make ship` first)", lib.display()));
    let mut newest = SystemTime::UNIX_EPOCH;
    for dir in ["src", "include/rust/src"] {
        newest_source(&root().join(dir), &mut newest);
    }
    // The sources' times are what cargo itself judges a path crate by; manifests and the lock
    // file are judged by content (a comment or a `git stash` touches them without a relink).
    assert!(meta.modified().unwrap() >= newest, "{} is older than the sources: run `make ship`", lib.display());

    let sections = Command::new("readelf").arg("-SW").arg(&lib).output().expect("readelf (binutils)");
    assert!(sections.status.success(), "readelf: {}", String::from_utf8_lossy(&sections.stderr));
    let sections = String::from_utf8_lossy(&sections.stdout);
    assert!(sections.contains(".text") && !sections.contains(".symtab") && !sections.contains(".debug_"), "not a stripped library:\n{sections}");

    let digest = std::fs::read_to_string(lib.with_extension("so.sha256")).expect("make ship writes the digest beside the library");
    let actual = Command::new("sha256sum").arg(&lib).output().expect("sha256sum");
    let actual = String::from_utf8_lossy(&actual.stdout);
    assert_eq!(digest.split_whitespace().next(), actual.split_whitespace().next(), "the .sha256 beside the library names another build");

    let size = meta.len();
    println!("shipped library: {size} bytes ({:.2} MiB), budget {BUDGET_BYTES}", size as f64 / 1048576.0);
    assert!(size <= BUDGET_BYTES, "the shipped library is {size} bytes, over the {BUDGET_BYTES}-byte budget");
}
