//! `make install`: the .so, the header and a pkg-config file land under PREFIX, and a C host
//! built from nothing but `pkg-config --cflags --libs bedrock-plugin` links and runs.

mod common;
use common::*;
use std::path::PathBuf;
use std::process::Command;

#[test]
fn a_c_host_builds_from_the_installed_files_alone() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let prefix = target_dir().join("install-test");
    let _ = std::fs::remove_dir_all(&prefix);
    // LIB: the build this test run made, so that no cargo runs inside the tests.
    let out = Command::new("make")
        .arg("-C").arg(&root).arg("--quiet").arg("install")
        .arg(format!("PREFIX={}", prefix.display())).arg(format!("LIB={}", plugin_path().display()))
        .output()
        .expect("make runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for file in ["lib/libbedrock_plugin.so", "lib/libbedrock_plugin.so.sha256", "include/bedrock_plugin.h", "lib/pkgconfig/bedrock-plugin.pc"] {
        assert!(prefix.join(file).is_file(), "{file} installed");
    }
    // The digest `bp-host serve` checks a build against, in sha256sum's format: it verifies.
    let check = Command::new("sha256sum").arg("--check").arg("libbedrock_plugin.so.sha256").current_dir(prefix.join("lib")).output().expect("sha256sum runs");
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stdout));
    let pc = std::fs::read_to_string(prefix.join("lib/pkgconfig/bedrock-plugin.pc")).unwrap();
    assert!(pc.contains(&format!("prefix={}", prefix.display())) && pc.contains(&format!("Version: {}", env!("CARGO_PKG_VERSION"))), "{pc}");

    let flags = Command::new("pkg-config")
        .args(["--cflags", "--libs", "bedrock-plugin"])
        .env("PKG_CONFIG_PATH", prefix.join("lib/pkgconfig"))
        .output()
        .expect("pkg-config runs");
    assert!(flags.status.success(), "{}", String::from_utf8_lossy(&flags.stderr));
    let flags = String::from_utf8(flags.stdout).unwrap();
    let exe = prefix.join("linked_host");
    let built = Command::new("cc")
        .args(["-std=c11", "-Wall", "-Werror"])
        .arg(root.join("tests/c/linked_host.c"))
        .args(flags.split_whitespace())
        .arg(format!("-Wl,-rpath,{}", prefix.join("lib").display()))
        .arg("-o").arg(&exe)
        .output()
        .expect("cc runs");
    assert!(built.status.success(), "{}", String::from_utf8_lossy(&built.stderr));
    let ran = Command::new(&exe).output().expect("the linked host runs");
    let stdout = String::from_utf8_lossy(&ran.stdout);
    assert!(ran.status.success(), "{stdout}");
    assert!(stdout.starts_with("abi 1.") && stdout.contains("\"name\":\"bedrock-plugin\""), "{stdout}");
}
