//! The event contract, field by field: every event of every kind of stream, received through the C
//! ABI from the real SDK and the emulator, is checked against pi-ai's published types
//! (`@mariozechner/pi-ai` 0.73.1, `dist/types.d.ts`: `AssistantMessageEvent`, `AssistantMessage`,
//! `TextContent`, `ThinkingContent`, `ToolCall`, `Usage`). A field pi-ai requires that is missing,
//! a field it does not define (a misnamed one) or a value of the wrong type fails the test. The
//! plugin's additions are listed here by name, each with why it exists.
//!
//! A failed stream's `errorMessage` is then classified the way OpenClaw's stack classifies it:
//! pi-ai's `isContextOverflow` (`dist/utils/overflow.js`) and pi's retry check
//! (`AgentSession._isRetryableError` in `@mariozechner/pi-coding-agent` 0.73.1).

mod common;
use common::*;
use regex_lite::Regex;
use serde_json::{json, Map, Value};
use std::time::Duration;

type Check = fn(&Value, &str);

/// One object type of pi-ai's: what it requires, what it may carry, and what the plugin adds.
struct Shape {
    name: &'static str,
    required: &'static [(&'static str, Check)],
    optional: &'static [(&'static str, Check)],
    /// Fields pi-ai does not define (a pi-ai consumer ignores them), with the reason in a comment.
    plugin_adds: &'static [(&'static str, Check)],
    /// Fields pi-ai requires that the plugin leaves to the host binding on purpose.
    rebuilt_by_host: &'static [&'static str],
}

fn object<'a>(v: &'a Value, path: &str) -> &'a Map<String, Value> {
    v.as_object().unwrap_or_else(|| panic!("{path}: expected an object, got {v}"))
}

fn conforms(v: &Value, shape: &Shape, path: &str) {
    let obj = object(v, path);
    for (key, check) in shape.required {
        let value = obj.get(*key).unwrap_or_else(|| panic!("{path}: pi-ai's {} requires `{key}`: {v}", shape.name));
        check(value, &format!("{path}.{key}"));
    }
    for (key, check) in shape.optional.iter().chain(shape.plugin_adds) {
        if let Some(value) = obj.get(*key) {
            check(value, &format!("{path}.{key}"));
        }
    }
    for key in shape.rebuilt_by_host {
        assert!(!obj.contains_key(*key), "{path}: `{key}` is left to the host binding (the stream stays linear): {v}");
    }
    for key in obj.keys() {
        let known = shape.required.iter().chain(shape.optional).chain(shape.plugin_adds).any(|(k, _)| k == key);
        assert!(known, "{path}: `{key}` is not a field of pi-ai's {} (misnamed?): {v}", shape.name);
    }
}

fn string(v: &Value, path: &str) {
    assert!(v.is_string(), "{path}: expected a string, got {v}");
}

fn number(v: &Value, path: &str) {
    assert!(v.as_f64().is_some_and(f64::is_finite), "{path}: expected a finite number, got {v}");
}

fn boolean(v: &Value, path: &str) {
    assert!(v.is_boolean(), "{path}: expected a boolean, got {v}");
}

fn one_of(v: &Value, path: &str, allowed: &[&str]) {
    assert!(v.as_str().is_some_and(|s| allowed.contains(&s)), "{path}: expected one of {allowed:?}, got {v}");
}

fn content_index(v: &Value, path: &str) {
    assert!(v.as_u64().is_some(), "{path}: expected a non-negative integer, got {v}");
}

fn stop_reason(v: &Value, path: &str) {
    one_of(v, path, &["stop", "length", "toolUse", "error", "aborted"]);
}

const COST: Shape = Shape {
    name: "Usage.cost",
    required: &[("input", number), ("output", number), ("cacheRead", number), ("cacheWrite", number), ("total", number)],
    optional: &[],
    plugin_adds: &[],
    rebuilt_by_host: &[],
};

fn cost(v: &Value, path: &str) {
    conforms(v, &COST, path);
}

const USAGE: Shape = Shape {
    name: "Usage",
    required: &[("input", number), ("output", number), ("cacheRead", number), ("cacheWrite", number), ("totalTokens", number), ("cost", cost)],
    optional: &[],
    plugin_adds: &[],
    rebuilt_by_host: &[],
};

fn usage(v: &Value, path: &str) {
    conforms(v, &USAGE, path);
}

fn text_type(v: &Value, path: &str) {
    one_of(v, path, &["text"]);
}

fn thinking_type(v: &Value, path: &str) {
    one_of(v, path, &["thinking"]);
}

fn tool_call_type(v: &Value, path: &str) {
    one_of(v, path, &["toolCall"]);
}

/// `Record<string, any>`.
fn arguments(v: &Value, path: &str) {
    object(v, path);
}

const TEXT_CONTENT: Shape = Shape {
    name: "TextContent",
    required: &[("type", text_type), ("text", string)],
    optional: &[("textSignature", string)],
    plugin_adds: &[],
    rebuilt_by_host: &[],
};

const THINKING_CONTENT: Shape = Shape {
    name: "ThinkingContent",
    required: &[("type", thinking_type), ("thinking", string)],
    optional: &[("thinkingSignature", string), ("redacted", boolean)],
    plugin_adds: &[],
    rebuilt_by_host: &[],
};

const TOOL_CALL: Shape = Shape {
    name: "ToolCall",
    required: &[("type", tool_call_type), ("id", string), ("name", string), ("arguments", arguments)],
    optional: &[("thoughtSignature", string)],
    plugin_adds: &[],
    rebuilt_by_host: &[],
};

fn tool_call(v: &Value, path: &str) {
    conforms(v, &TOOL_CALL, path);
}

/// `(TextContent | ThinkingContent | ToolCall)[]`.
fn content(v: &Value, path: &str) {
    let blocks = v.as_array().unwrap_or_else(|| panic!("{path}: expected an array, got {v}"));
    for (i, block) in blocks.iter().enumerate() {
        let path = format!("{path}[{i}]");
        match block["type"].as_str() {
            Some("text") => conforms(block, &TEXT_CONTENT, &path),
            Some("thinking") => conforms(block, &THINKING_CONTENT, &path),
            Some("toolCall") => conforms(block, &TOOL_CALL, &path),
            _ => panic!("{path}: not a content type of an AssistantMessage: {block}"),
        }
    }
}

fn assistant_role(v: &Value, path: &str) {
    one_of(v, path, &["assistant"]);
}

fn api_name(v: &Value, path: &str) {
    one_of(v, path, &["bedrock-converse-stream"]);
}

fn provider_name(v: &Value, path: &str) {
    one_of(v, path, &["amazon-bedrock"]);
}

fn array(v: &Value, path: &str) {
    assert!(v.is_array(), "{path}: expected an array, got {v}");
}

const ERROR_INFO: Shape = Shape {
    name: "errorInfo (the plugin's)",
    required: &[("code", string), ("retryable", boolean)],
    optional: &[("httpStatus", number), ("requestId", string), ("awsErrorType", string)],
    plugin_adds: &[],
    rebuilt_by_host: &[],
};

fn error_info(v: &Value, path: &str) {
    conforms(v, &ERROR_INFO, path);
}

const ASSISTANT_MESSAGE: Shape = Shape {
    name: "AssistantMessage",
    required: &[
        ("role", assistant_role),
        ("content", content),
        ("api", api_name),
        ("provider", provider_name),
        ("model", string),
        ("usage", usage),
        ("stopReason", stop_reason),
        ("timestamp", number),
    ],
    optional: &[("responseModel", string), ("responseId", string), ("diagnostics", array), ("errorMessage", string)],
    // The code, retryability and AWS details of a failure, so that C hosts need not parse text.
    plugin_adds: &[("errorInfo", error_info)],
    rebuilt_by_host: &[],
};

fn assistant_message(v: &Value, path: &str) {
    conforms(v, &ASSISTANT_MESSAGE, path);
}

fn event_type(_: &Value, _: &str) {}

fn done_reason(v: &Value, path: &str) {
    one_of(v, path, &["stop", "length", "toolUse"]);
}

fn error_reason(v: &Value, path: &str) {
    one_of(v, path, &["error", "aborted"]);
}

const fn delta_event(name: &'static str, required: &'static [(&'static str, Check)], plugin_adds: &'static [(&'static str, Check)]) -> Shape {
    // pi-ai puts the message so far in `partial` on every one of these; the host binding rebuilds
    // it from the deltas, so that a long stream costs linear, not quadratic, bytes.
    Shape { name, required, optional: &[], plugin_adds, rebuilt_by_host: &["partial"] }
}

const TEXT_START: Shape = delta_event("text_start", &[("type", event_type), ("contentIndex", content_index)], &[]);
const DELTA: Shape = delta_event("*_delta", &[("type", event_type), ("contentIndex", content_index), ("delta", string)], &[]);
const BLOCK_END: Shape = delta_event("text_end/thinking_end", &[("type", event_type), ("contentIndex", content_index), ("content", string)], &[]);
// `id` and `name` as soon as the call starts, for hosts that keep no `partial`.
const TOOLCALL_START: Shape = delta_event("toolcall_start", &[("type", event_type), ("contentIndex", content_index)], &[("id", string), ("name", string)]);
const TOOLCALL_END: Shape = delta_event("toolcall_end", &[("type", event_type), ("contentIndex", content_index), ("toolCall", tool_call)], &[]);

const START: Shape = Shape { name: "start", required: &[("type", event_type), ("partial", assistant_message)], optional: &[], plugin_adds: &[], rebuilt_by_host: &[] };
const DONE: Shape = Shape {
    name: "done",
    required: &[("type", event_type), ("reason", done_reason), ("message", assistant_message)],
    optional: &[],
    plugin_adds: &[],
    rebuilt_by_host: &[],
};
const ERROR: Shape = Shape {
    name: "error",
    required: &[("type", event_type), ("reason", error_reason), ("error", assistant_message)],
    optional: &[],
    plugin_adds: &[],
    rebuilt_by_host: &[],
};

/// Checks one stream's events against pi-ai's protocol: each event's shape, `start` first, one
/// terminal event last whose message agrees with its `reason`.
fn check_stream(events: &[Value], what: &str) {
    for (i, e) in events.iter().enumerate() {
        let path = format!("{what}: event {i} ({})", e["type"]);
        let shape = match e["type"].as_str() {
            Some("start") => &START,
            Some("text_start" | "thinking_start") => &TEXT_START,
            Some("text_delta" | "thinking_delta" | "toolcall_delta") => &DELTA,
            Some("text_end" | "thinking_end") => &BLOCK_END,
            Some("toolcall_start") => &TOOLCALL_START,
            Some("toolcall_end") => &TOOLCALL_END,
            Some("done") => &DONE,
            Some("error") => &ERROR,
            _ => panic!("{path}: not an AssistantMessageEvent type: {e}"),
        };
        conforms(e, shape, &path);
    }
    let last = terminal(events);
    let message = final_message(last);
    assert_eq!(message["stopReason"], last["reason"], "{what}: the final message's stopReason is the event's reason");
    if last["type"] == "error" {
        assert!(message["errorMessage"].as_str().is_some_and(|m| !m.is_empty()), "{what}: a failed message says why: {last}");
    } else {
        assert!(message.get("errorMessage").is_none() && message.get("errorInfo").is_none(), "{what}: {last}");
    }
    if events.len() > 1 {
        assert_eq!(events[0]["type"], "start", "{what}: a stream that produced anything begins with start");
    }
}

#[test]
fn every_event_of_every_kind_of_stream_has_pi_ai_shape() {
    let (_e, p) = setup();
    let scenarios = [
        ("text with usage", "emulator: chunks=3 input_tokens=100 cache_read=5 cache_write=7", "done"),
        ("tool call", "emulator: tool=get_weather reply=Checking.", "done"),
        ("thinking with a signature", "emulator: reasoning=1 chunks=2", "done"),
        ("redacted thinking", "emulator: reasoning=redacted chunks=1", "done"),
        ("length", "emulator: chunks=2 stop=max_tokens", "done"),
        ("throttled before the stream", "emulator: error=throttling", "error"),
        ("throttled mid-stream", "emulator: chunks=5 error=throttling at=mid after=3", "error"),
        ("context overflow", "emulator: error=contextOverflow", "error"),
        ("content filtered", "emulator: chunks=2 stop=guardrail_intervened", "error"),
        ("connection dropped", "emulator: chunks=5 drop=3", "error"),
    ];
    for (what, prompt, ends) in scenarios {
        let events = chat(&p, prompt, json!({}));
        check_stream(&events, what);
        assert_eq!(terminal(&events)["type"], ends, "{what}: {}", terminal(&events));
    }
}

#[test]
fn redacted_thinking_keeps_its_payload_in_the_signature() {
    let (_e, p) = setup();
    let events = chat(&p, "emulator: reasoning=redacted chunks=1", json!({}));
    let thinking = &final_message(terminal(&events))["content"][0];
    // pi-ai: "The opaque encrypted payload is stored in `thinkingSignature`" (base64 of the blob).
    assert_eq!(*thinking, json!({"type": "thinking", "thinking": "", "thinkingSignature": "cmVkYWN0ZWQtZW11bGF0b3ItMQ==", "redacted": true}));
}

#[test]
fn an_aborted_stream_ends_with_pi_ai_shape() {
    let (_e, p) = setup();
    let s = start(&p, &request("emulator.echo", "emulator: chunks=200 delay_ms=20", json!({})));
    while s.collector.count() < 4 {
        std::thread::sleep(Duration::from_millis(5));
    }
    s.cancel();
    let events = s.finish();
    check_stream(&events, "aborted");
    let e = terminal(&events);
    assert_eq!((e["reason"].as_str(), e["error"]["stopReason"].as_str()), (Some("aborted"), Some("aborted")));
    assert_eq!(failure(e)["code"], "cancelled");
    assert!(e["error"]["content"][0]["text"].as_str().unwrap().starts_with("w0 w1 "), "the content so far: {e}");
}

#[test]
fn a_model_served_through_an_inference_profile_reports_it_as_response_model() {
    hermetic_env();
    let emulator = Emulator::start(EmulatorConfig { profile_only_models: vec!["emulator.echo".into()], ..EmulatorConfig::default() });
    let p = Provider::new(&emulator);
    let events = chat(&p, "emulator: chunks=2", json!({}));
    check_stream(&events, "served by a profile");
    let m = final_message(terminal(&events));
    assert_eq!((m["model"].as_str(), m["responseModel"].as_str()), (Some("emulator.echo"), Some("us.emulator.echo")), "{m}");
}

#[test]
fn synchronous_errors_keep_the_err_json_shape() {
    let (_e, p) = setup();
    let (rc, err) = try_start(&p, &request("no.such-model", "hi", json!({})), Collector::default()).err().expect("unknown model refused");
    assert_eq!(rc, 4, "BP_ERR_NOT_FOUND");
    let mut keys: Vec<&String> = object(&err, "err_json").keys().collect();
    keys.sort();
    assert_eq!(keys, ["code", "message", "retryable"], "{err}");
    assert_eq!(err["code"], "not_found");
}

// ---- how OpenClaw's stack classifies a failure ---------------------------------------------

/// pi-ai 0.73.1 `isContextOverflow(message)`: the patterns it needs for Bedrock and the
/// exclusions that keep rate limits from looking like overflows.
fn is_context_overflow(message: &Value) -> bool {
    let overflow = Regex::new(r"(?i)prompt is too long|input is too long for requested model|exceeds the context window|context[_ ]length[_ ]exceeded|too many tokens|token limit exceeded|model_context_window_exceeded").unwrap();
    let not_overflow = Regex::new(r"(?i)^(Throttling error|Service unavailable):|rate limit|too many requests").unwrap();
    let text = message["errorMessage"].as_str().unwrap_or_default();
    message["stopReason"] == "error" && !not_overflow.is_match(text) && overflow.is_match(text)
}

/// pi-coding-agent 0.73.1 `AgentSession._isRetryableError(message)`.
fn pi_retries(message: &Value) -> bool {
    let retryable = Regex::new(r"(?i)overloaded|provider.?returned.?error|rate.?limit|too many requests|429|500|502|503|504|service.?unavailable|server.?error|internal.?error|network.?error|connection.?error|connection.?refused|connection.?lost|websocket.?closed|websocket.?error|other side closed|fetch failed|upstream.?connect|reset before headers|socket hang up|ended without|http2 request did not get a response|timed? out|timeout|terminated|retry delay").unwrap();
    let text = message["errorMessage"].as_str().unwrap_or_default();
    message["stopReason"] == "error" && !is_context_overflow(message) && retryable.is_match(text)
}

#[test]
fn pi_ai_and_pi_classify_each_failure_as_the_plugin_does() {
    let (_e, p) = setup();
    // (scenario, overflow?, retried by pi?) — pi's verdict must agree with `errorInfo.retryable`
    // for every failure the plugin itself words, and with pi-ai's own Bedrock provider for
    // Bedrock's exceptions (same prefixes, same AWS message).
    let cases = [
        ("emulator: chunks=5 error=throttling at=mid after=3", false, true),
        ("emulator: error=throttling", false, true),
        ("emulator: error=contextOverflow", true, false),
        ("emulator: chunks=3 error=contextOverflow at=mid after=2", true, false),
        ("emulator: error=validation", false, false),
        ("emulator: error=serviceUnavailable", false, true),
        ("emulator: error=internalServer", false, true),
        ("emulator: error=accessDenied", false, false),
        ("emulator: chunks=5 drop=3", false, true),
        ("emulator: chunks=3 delay_ms=1500", false, true),
    ];
    for (prompt, overflow, retried) in cases {
        let events = chat(&p, prompt, json!({"idleTimeoutMs": 500}));
        let message = final_message(terminal(&events));
        assert_eq!(is_context_overflow(message), overflow, "isContextOverflow for {prompt}: {message}");
        assert_eq!(pi_retries(message), retried, "pi's retry check for {prompt}: {message}");
        assert_eq!(failure(terminal(&events))["retryable"].as_bool(), Some(retried), "errorInfo.retryable for {prompt}: {message}");
    }
    // The case pi-ai's exclusion exists for: Bedrock's throttling text mentions "too many tokens".
    let throttled = json!({"stopReason": "error", "errorMessage": "Throttling error: Too many tokens, please wait before trying again."});
    assert!(!is_context_overflow(&throttled));
}
