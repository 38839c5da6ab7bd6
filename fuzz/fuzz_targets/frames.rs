//! The event mapping fed with arbitrary ConverseStream bodies through the real SDK: the emulator
//! answers with the frames built from the input, and the stream must end with exactly one
//! terminal event. Input: frames separated by 0xFF; each frame's first byte picks its kind
//! (an event type, an exception, an unknown type, or raw bytes with no framing), the rest is its
//! payload (usually JSON, often not).
#![no_main]

use bedrock_plugin_fuzz::eventstream::{exception, frame};
use libfuzzer_sys::fuzz_target;
use std::time::Duration;

const EVENTS: [&str; 7] = ["messageStart", "contentBlockStart", "contentBlockDelta", "contentBlockStop", "messageStop", "metadata", "somethingNew"];
const EXCEPTIONS: [&str; 4] = ["throttlingException", "modelStreamErrorException", "validationException", "internalServerException"];

/// An event frame with any payload bytes (the emulator's `event` takes JSON values only).
fn event_frame(event_type: &str, payload: &[u8]) -> Vec<u8> {
    frame(&[(":event-type", event_type), (":content-type", "application/json"), (":message-type", "event")], payload)
}

fn body(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for part in data.split(|b| *b == 0xFF) {
        let Some((&kind, payload)) = part.split_first() else { continue };
        let kind = kind as usize;
        if kind < EVENTS.len() * 16 {
            out.extend(event_frame(EVENTS[kind % EVENTS.len()], payload));
        } else if kind < EVENTS.len() * 16 + 32 {
            out.extend(exception(EXCEPTIONS[kind % EXCEPTIONS.len()], &String::from_utf8_lossy(payload)));
        } else if kind < 250 {
            // A frame whose headers say nothing usable.
            out.extend(frame(&[(":message-type", "event")], payload));
        } else {
            out.extend_from_slice(payload);
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let (emulator, p) = bedrock_plugin_fuzz::provider();
    let canned = body(data);
    emulator.reconfigure(|c| c.canned_stream = Some(canned));
    let request = br#"{"model": "emulator.echo", "context": {"messages": [{"role": "user", "content": "hi"}]}, "options": {"idleTimeoutMs": 2000}}"#;
    bedrock_plugin_fuzz::stream(p, request, Duration::from_secs(5));
});
