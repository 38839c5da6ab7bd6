//! The two doors into the plugin behind one set of calls: abi_stable's layout-checked root
//! module, or one loaded copy's `bp_get_api` table. Both reach the same exported functions.

use abi_stable::library::RootModule;
use bedrock_plugin_abi::{BpApi, BpProvider, BpStream, EventCallback, GetApiFn, PluginModuleRef};
use std::ffi::{CStr, CString};
use std::os::raw::{c_char, c_void};
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};

const ABI_MAJOR: u32 = 1;

pub enum Door {
    /// abi_stable's module: layout checked on load, never unloaded.
    Module(PluginModuleRef),
    /// One loaded copy and its table; dropping the door unloads the copy. `api` points into the
    /// library, which is dropped after it.
    Table { api: &'static BpApi, _library: libloading::Library },
}

/// One stream's events as they arrive: the text so far, and the terminal event once it came.
#[derive(Default)]
struct ChatState {
    progress: Mutex<(String, Option<serde_json::Value>)>,
    ended: Condvar,
}

pub struct Chat {
    state: Arc<ChatState>,
    stream: *mut BpStream,
}

impl Chat {
    /// Blocks until the terminal event; returns the streamed text and that event.
    pub fn wait(&self) -> (String, serde_json::Value) {
        let mut progress = self.state.progress.lock().unwrap();
        while progress.1.is_none() {
            progress = self.state.ended.wait(progress).unwrap();
        }
        (progress.0.clone(), progress.1.clone().unwrap_or_default())
    }
}

unsafe extern "C" fn on_event(user_data: *mut c_void, event_json: *const c_char, len: usize) -> i32 {
    let state = &*(user_data as *const ChatState);
    let bytes = std::slice::from_raw_parts(event_json.cast::<u8>(), len);
    let Ok(event) = serde_json::from_slice::<serde_json::Value>(bytes) else { return 0 };
    let mut progress = state.progress.lock().unwrap();
    match event["type"].as_str() {
        Some("text_delta") => progress.0.push_str(event["delta"].as_str().unwrap_or("")),
        Some("done" | "error") => {
            progress.1 = Some(event);
            state.ended.notify_all();
        }
        _ => {}
    }
    0
}

/// Takes a string the plugin returned.
fn take(door: &Door, s: *mut c_char) -> String {
    if s.is_null() {
        return String::new();
    }
    let text = unsafe { CStr::from_ptr(s) }.to_string_lossy().into_owned();
    door.string_free(s);
    text
}

impl Door {
    /// Loads the plugin through abi_stable, which refuses a module whose layout differs.
    pub fn checked_module(path: &Path) -> Result<Door, String> {
        PluginModuleRef::load_from_file(path).map(Door::Module).map_err(|e| format!("abi_stable refused {}: {e}", path.display()))
    }

    /// Loads a private copy of a build that passes the deploy checks (`deploy::take`): the loader
    /// hands back an already-loaded image for the same path or file, so only a copy gives a
    /// second one. The copy is unlinked once mapped.
    pub fn private_copy(build: &Path, copy: &Path, policy: &crate::deploy::Policy) -> Result<Door, String> {
        crate::deploy::take(build, copy, policy)?;
        use libloading::os::unix::{Library, RTLD_LOCAL, RTLD_NOW};
        let library = unsafe { Library::open(Some(copy), RTLD_NOW | RTLD_LOCAL) }.map_err(|e| format!("loading {}: {e}", build.display()));
        let _ = std::fs::remove_file(copy);
        let library: libloading::Library = library?.into();
        let table = unsafe {
            let get_api = library.get::<GetApiFn>(b"bp_get_api\0").map_err(|e| format!("{} has no bp_get_api (ABI 1.3 or later is needed): {e}", build.display()))?;
            get_api(ABI_MAJOR)
        };
        if table.is_null() {
            return Err(format!("{} implements no ABI {ABI_MAJOR}.x", build.display()));
        }
        // SAFETY: the table is static in the library, which this door owns and drops last.
        let api: &'static BpApi = unsafe { &*table };
        Ok(Door::Table { api, _library: library })
    }

    fn string_free(&self, s: *mut c_char) {
        match self {
            Door::Module(m) => unsafe { (m.string_free())(s) },
            Door::Table { api, .. } => unsafe { (api.string_free)(s) },
        }
    }

    /// `version` from `bp_plugin_info`.
    pub fn version(&self) -> String {
        let info = match self {
            Door::Module(m) => (m.plugin_info())(),
            Door::Table { api, .. } => (api.plugin_info)(),
        };
        let info: serde_json::Value = serde_json::from_str(&unsafe { CStr::from_ptr(info) }.to_string_lossy()).unwrap_or_default();
        info["version"].as_str().unwrap_or("?").to_string()
    }

    pub fn provider_new(&self, config: &str) -> Result<*mut BpProvider, String> {
        let config = CString::new(config).map_err(|_| "the config contains a NUL byte")?;
        let (mut provider, mut err) = (std::ptr::null_mut(), std::ptr::null_mut());
        let rc = match self {
            Door::Module(m) => unsafe { (m.provider_new())(config.as_ptr(), &mut provider, &mut err) },
            Door::Table { api, .. } => unsafe { (api.provider_new)(config.as_ptr(), &mut provider, &mut err) },
        };
        if rc == 0 { Ok(provider) } else { Err(format!("bp_provider_new: {}", take(self, err))) }
    }

    pub fn discover(&self, provider: *mut BpProvider) -> Result<String, String> {
        let (mut out, mut err) = (std::ptr::null_mut(), std::ptr::null_mut());
        let rc = match self {
            Door::Module(m) => unsafe { (m.discover())(provider, std::ptr::null(), &mut out, &mut err) },
            Door::Table { api, .. } => unsafe { (api.discover)(provider, std::ptr::null(), &mut out, &mut err) },
        };
        if rc == 0 { Ok(take(self, out)) } else { Err(format!("bp_discover: {}", take(self, err))) }
    }

    pub fn start(&self, provider: *mut BpProvider, request: &str) -> Result<Chat, String> {
        let request = CString::new(request).map_err(|_| "the request contains a NUL byte")?;
        let state = Arc::new(ChatState::default());
        // The plugin holds this reference until the terminal event; `finish` takes it back.
        let user = Arc::into_raw(state.clone()) as *mut c_void;
        let (mut stream, mut err) = (std::ptr::null_mut(), std::ptr::null_mut());
        let rc = match self {
            Door::Module(m) => unsafe { (m.stream_start())(provider, request.as_ptr(), EventCallback(on_event), user, &mut stream, &mut err) },
            Door::Table { api, .. } => unsafe { (api.stream_start)(provider, request.as_ptr(), Some(on_event), user, &mut stream, &mut err) },
        };
        if rc != 0 {
            drop(unsafe { Arc::from_raw(user as *const ChatState) }); // never called back
            return Err(format!("bp_stream_start: {}", take(self, err)));
        }
        Ok(Chat { state, stream })
    }

    /// Releases a chat whose terminal event has arrived.
    pub fn finish(&self, chat: Chat) {
        chat.wait();
        match self {
            Door::Module(m) => unsafe { (m.stream_release())(chat.stream) },
            Door::Table { api, .. } => unsafe { (api.stream_release)(chat.stream) },
        }
        drop(unsafe { Arc::from_raw(Arc::as_ptr(&chat.state)) });
    }

    pub fn provider_free(&self, provider: *mut BpProvider) {
        match self {
            Door::Module(m) => unsafe { (m.provider_free())(provider, 30_000) },
            Door::Table { api, .. } => unsafe { (api.provider_free)(provider, 30_000) },
        };
    }
}
