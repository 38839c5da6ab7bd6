//! Diagnostics for operators: one line per event on stderr, `bedrock-plugin: <level>: <text>`.
//! `BEDROCK_PLUGIN_LOG` = `off`, `error`, `warn`, `info` (default) or `debug`. Written with one
//! `write(2)` per line rather than `std::io::stderr`, so no std thread-local state is touched on
//! any thread. Callers pass labels and counts, never credential values.

use once_cell::sync::Lazy;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Off,
    Error,
    Warn,
    Info,
    Debug,
}

static LEVEL: Lazy<Level> = Lazy::new(|| match std::env::var("BEDROCK_PLUGIN_LOG").unwrap_or_default().trim().to_ascii_lowercase().as_str() {
    "off" | "none" => Level::Off,
    "error" => Level::Error,
    "warn" | "warning" => Level::Warn,
    "debug" | "trace" => Level::Debug,
    _ => Level::Info,
});

fn emit(level: Level, name: &str, text: &str) {
    if level > *LEVEL {
        return;
    }
    let line = format!("bedrock-plugin: {name}: {}\n", text.replace('\n', " "));
    let mut rest = line.as_bytes();
    while !rest.is_empty() {
        // SAFETY: writing an initialized buffer to fd 2.
        let n = unsafe { libc::write(2, rest.as_ptr().cast(), rest.len()) };
        if n <= 0 {
            return;
        }
        rest = &rest[n as usize..];
    }
}

pub fn warn(text: &str) {
    emit(Level::Warn, "warn", text)
}

pub fn info(text: &str) {
    emit(Level::Info, "info", text)
}
