//! The abi_stable door: a Rust host loads the plugin's root module with a checked layout, and a
//! host built against a different module layout is refused with abi_stable's error, not a crash.

mod common;
use abi_stable::library::{LibraryError, RootModule};
use bedrock_plugin_abi::{BpProvider, BpStream, EventCallback, PluginModuleRef};
use common::*;
use serde_json::json;
use std::ffi::{CStr, CString};
use std::os::raw::c_char;
use std::sync::Arc;

#[test]
fn a_rust_host_streams_through_the_layout_checked_module() {
    hermetic_env();
    let emulator = Emulator::start(EmulatorConfig::default());
    let module = PluginModuleRef::load_from_file(&plugin_path()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((module.abi_version())(), (1 << 16) | 8);
    let info = unsafe { CStr::from_ptr((module.plugin_info())()) }.to_str().unwrap();
    assert!(info.contains("\"abiVersion\":\"1.8\""), "{info}");

    let config = CString::new(config_for(&emulator.endpoint()).to_string()).unwrap();
    let (mut provider, mut err): (*mut BpProvider, *mut c_char) = (std::ptr::null_mut(), std::ptr::null_mut());
    assert_eq!(unsafe { (module.provider_new())(config.as_ptr(), &mut provider, &mut err) }, 0);
    let (mut models, mut err): (*mut c_char, *mut c_char) = (std::ptr::null_mut(), err);
    assert_eq!(unsafe { (module.discover())(provider, std::ptr::null(), &mut models, &mut err) }, 0);
    let listed = unsafe { CStr::from_ptr(models) }.to_str().unwrap().to_string();
    unsafe { (module.string_free())(models) };
    assert!(listed.contains("\"id\":\"emulator.echo\""), "{listed}");
    // 1.4's field, read through its optional accessor.
    let embed = module.embed().expect("a 1.4 plugin has embed");
    let (body, mut answer) = (CString::new(r#"{"texts": ["hi"], "dimensions": 256}"#).unwrap(), std::ptr::null_mut());
    assert_eq!(unsafe { embed(provider, body.as_ptr(), &mut answer, &mut err) }, 0);
    let answer: serde_json::Value = serde_json::from_str(unsafe { CStr::from_ptr(answer) }.to_str().unwrap()).unwrap();
    assert_eq!(answer["embeddings"][0].as_array().map(Vec::len), Some(256));

    let collector = Arc::new(Collector::default());
    let body = CString::new(request("emulator.echo", "emulator: chunks=3", json!({})).to_string()).unwrap();
    let mut stream: *mut BpStream = std::ptr::null_mut();
    let rc = unsafe {
        (module.stream_start())(provider, body.as_ptr(), EventCallback(collect), Arc::as_ptr(&collector) as *mut _, &mut stream, &mut err)
    };
    assert_eq!(rc, 0);
    let events = collector.wait_terminal(std::time::Duration::from_secs(30));
    assert_eq!(text_of(&events), "w0 w1 w2 ");
    assert_eq!(terminal(&events)["type"], "done");
    unsafe { (module.stream_release())(stream) };

    // 1.8's inline start, through its optional accessor.
    let inline = module.stream_start_inline().expect("a 1.8 plugin has stream_start_inline");
    let collector = Arc::new(Collector::default());
    assert_eq!(unsafe { inline(provider, body.as_ptr(), EventCallback(collect), Arc::as_ptr(&collector) as *mut _, std::ptr::null_mut(), &mut err) }, 0);
    let events = collector.wait_terminal(std::time::Duration::from_secs(30));
    assert_eq!(text_of(&events), "w0 w1 w2 ");

    // 1.7's mailbox, through its optional accessors.
    let (new, start, wait, free) = (module.mailbox_new().unwrap(), module.stream_start_mailbox().unwrap(), module.mailbox_wait().unwrap(), module.mailbox_free().unwrap());
    let mut mailbox = std::ptr::null_mut();
    assert_eq!(unsafe { new(0, &mut mailbox) }, 0);
    assert_eq!(unsafe { start(provider, body.as_ptr(), mailbox, 7, std::ptr::null_mut(), &mut err) }, 0);
    let mut taken = String::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !taken.contains("\"type\":\"done\"") {
        assert!(std::time::Instant::now() < deadline, "no end through the mailbox: {taken}");
        let (mut text, mut len, mut count) = (std::ptr::null(), 0, 0);
        assert_eq!(unsafe { wait(mailbox, 200, &mut text, &mut len, &mut count) }, 0);
        if count > 0 {
            taken.push_str(unsafe { CStr::from_ptr(text) }.to_str().unwrap());
        }
    }
    assert!(taken.lines().all(|l| l.starts_with("{\"stream\":7,")), "{taken}");
    unsafe {
        free(mailbox);
        assert_eq!((module.provider_free())(provider, 10_000), 0);
    }
}

/// A host compiled against another layout of the module: `abi_version` returning u64 (never
/// called: the load must fail first).
#[allow(dead_code)]
mod other_layout {
    use abi_stable::library::RootModule;
    use abi_stable::sabi_types::VersionStrings;
    use abi_stable::StableAbi;

    #[repr(C)]
    #[derive(StableAbi)]
    #[sabi(kind(Prefix(prefix_ref = PluginModuleRef)))]
    #[sabi(missing_field(panic))]
    pub struct PluginModule {
        #[sabi(last_prefix_field)]
        pub abi_version: extern "C" fn() -> u64,
    }

    impl RootModule for PluginModuleRef {
        abi_stable::declare_root_module_statics! {PluginModuleRef}
        const BASE_NAME: &'static str = "bedrock_plugin";
        const NAME: &'static str = "bedrock-plugin";
        const VERSION_STRINGS: VersionStrings = abi_stable::package_version_strings!();
    }
}

#[test]
fn a_host_built_against_another_module_layout_is_refused() {
    match other_layout::PluginModuleRef::load_from_file(&plugin_path()) {
        Ok(_) => panic!("a module with another layout was accepted"),
        Err(e @ LibraryError::AbiInstability(_)) => {
            let text = e.to_string();
            assert!(text.contains("abi_version") || text.contains("u64"), "the error names what differs: {text}");
            println!("refused as expected:\n{}", text.lines().filter(|l| !l.trim().is_empty()).take(6).collect::<Vec<_>>().join("\n"));
        }
        Err(other) => panic!("refused, but not for its layout: {other}"),
    }
}
