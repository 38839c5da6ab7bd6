//! `include/bedrock_plugin.h` is the contract: it must compile as C11 and C++17 with every
//! warning an error, declare exactly the functions the library exports, and give every status
//! the value the Rust side uses.

mod common;
use bedrock_plugin::ffi::status::ALL;
use std::path::PathBuf;
use std::process::Command;

fn header() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("include/bedrock_plugin.h")
}

fn compiles(compiler: &str, std: &str, ext: &str) {
    let dir = common::target_dir().join("header-check");
    std::fs::create_dir_all(&dir).unwrap();
    let src = dir.join(format!("check.{ext}"));
    std::fs::write(&src, "#include \"bedrock_plugin.h\"\nint main(void) { bp_status s = BP_OK; bp_event_fn f = 0; (void)f; return (int)s; }\n").unwrap();
    let out = Command::new(compiler)
        .args([std, "-Wall", "-Wextra", "-Werror", "-pedantic", "-fsyntax-only", "-I"])
        .arg(header().parent().unwrap())
        .arg(&src)
        .output()
        .expect("compiler runs");
    assert!(out.status.success(), "{compiler} {std}: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn compiles_as_c11() {
    compiles("cc", "-std=c11", "c");
}

#[test]
fn compiles_as_cxx17() {
    compiles("c++", "-std=c++17", "cpp");
}

#[test]
fn status_values_match_the_rust_side() {
    let text = std::fs::read_to_string(header()).unwrap();
    for (status, name) in ALL {
        let line = text.lines().find(|l| l.trim_start().starts_with(&format!("{name} ="))).unwrap_or_else(|| panic!("{name} missing"));
        let value: i32 = line.split('=').nth(1).unwrap().trim().split(|c: char| !c.is_ascii_digit()).next().unwrap().parse().unwrap();
        assert_eq!(value, status as i32, "{name}");
    }
}

#[test]
fn declares_exactly_the_exported_functions() {
    let text = std::fs::read_to_string(header()).unwrap();
    let mut declared: Vec<String> = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("typedef") && !l.trim_start().starts_with('*') && !l.trim_start().starts_with("/*"))
        .filter(|l| l.contains('('))
        .filter_map(|l| l.split('(').next())
        .filter_map(|head| head.split(|c: char| c == ' ' || c == '*').last())
        .filter(|name| name.starts_with("bp_"))
        .map(str::to_string)
        .collect();
    declared.sort();
    let nm = Command::new("nm").args(["-D", "--defined-only"]).arg(common::plugin_path()).output().expect("nm runs");
    let mut exported: Vec<String> = String::from_utf8_lossy(&nm.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().last())
        .filter(|s| s.starts_with("bp_"))
        .map(str::to_string)
        .collect();
    exported.sort();
    assert_eq!(declared, exported);
    assert_eq!(declared.len(), 19);
}

/// The header's version, `bp_abi_version`, `bp_plugin_info`'s `abiVersion`, the README's ABI
/// heading, the C ABI page and the changelog are one number.
#[test]
fn abi_version_agrees_everywhere() {
    let text = std::fs::read_to_string(header()).unwrap();
    let define = |name: &str| -> u32 {
        let line = text.lines().find(|l| l.starts_with(&format!("#define {name} "))).unwrap_or_else(|| panic!("{name} missing"));
        line.split_whitespace().nth(2).unwrap().parse().unwrap()
    };
    let (major, minor) = (define("BP_ABI_VERSION_MAJOR"), define("BP_ABI_VERSION_MINOR"));
    let api = common::api();
    assert_eq!(unsafe { (api.abi_version)() }, (major << 16) | minor);
    let info = unsafe { std::ffi::CStr::from_ptr((api.plugin_info)()) }.to_str().unwrap();
    let info: serde_json::Value = serde_json::from_str(info).unwrap();
    assert_eq!(info["abiVersion"], format!("{major}.{minor}"));
    assert!(text.contains(&format!("ABI version {major}.{minor})")), "the header's opening comment names {major}.{minor}");
    let readme = std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    assert!(readme.contains(&format!("## The C ABI (version {major}.{minor})")), "README's ABI heading names {major}.{minor}");
    let docs = std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/c-abi.md")).unwrap();
    assert!(docs.contains(&format!("## The C ABI (version {major}.{minor})")), "docs/c-abi.md names {major}.{minor}");
    let changelog = std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("CHANGELOG.md")).unwrap();
    assert!(changelog.contains(&format!("- **ABI {major}.{minor}**")), "CHANGELOG.md has an entry for {major}.{minor}");
}

/// A C host reads the table `bp_get_api` returns with the header's layout.
#[test]
fn the_api_table_is_this_copys_exports_in_the_headers_layout() {
    let exe = common::compile_c("tests/c/api_table.c", "api_table");
    let out = Command::new(&exe).arg(common::plugin_path()).output().expect("run api_table");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("26 passed, 0 failed"), "{stdout}");
}
