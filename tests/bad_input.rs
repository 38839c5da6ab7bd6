//! Bad input at every entry point gets the documented code and a message, never a crash.

mod common;
use common::*;
use serde_json::json;
use std::ffi::CString;
use std::os::raw::c_char;

#[test]
fn abi_version_and_plugin_info() {
    let api = api();
    assert_eq!(unsafe { (api.abi_version)() }, (1 << 16) | 8);
    let info = unsafe { std::ffi::CStr::from_ptr((api.plugin_info)()) }.to_str().unwrap();
    let info: serde_json::Value = serde_json::from_str(info).unwrap();
    assert_eq!(info["provider"], "amazon-bedrock");
    assert_eq!(info["api"], "bedrock-converse-stream");
    assert_eq!(info["abiVersion"], "1.8");
    assert_eq!(info["name"], "bedrock-plugin");
}

fn new_err(config: &str) -> (i32, serde_json::Value) {
    match Provider::try_new(config) {
        Ok(_) => panic!("config was accepted: {config}"),
        Err(e) => e,
    }
}

#[test]
fn invalid_config_names_the_field() {
    hermetic_env();
    let cases = [
        ("{not json", "config is not valid JSON"),
        ("[]", "(top level): expected an object, got an array"),
        ("{}", "provider: is required"),
        (r#"{"provider":{},"extra":1}"#, "extra: unknown field"),
        (r#"{"provider":{"baseUrl":"ftp://x"}}"#, "provider.baseUrl: must be an http:// or https:// URL"),
        (r#"{"provider":{"api":"openai-completions"}}"#, "provider.api: must be \"bedrock-converse-stream\""),
        (r#"{"provider":{"auth":"oauth"}}"#, "provider.auth: must be \"aws-sdk\""),
        (r#"{"provider":{"auth":"api-key"}}"#, "provider.auth: is \"api-key\" but provider.apiKey is missing"),
        (r#"{"provider":{"apiKey":42}}"#, "provider.apiKey: expected a string"),
        (r#"{"provider":{"region":"Not A Region"}}"#, "provider.region: \"Not A Region\" is not an AWS region name"),
        (r#"{"provider":{"models":[{"id":"a","contextWindow":"big"}]}}"#, "provider.models[0].contextWindow: expected an integer, got a string"),
        (r#"{"provider":{"models":[{"id":"a","input":["text","audio"]}]}}"#, "provider.models[0].input[1]: must be \"text\" or \"image\""),
        (r#"{"provider":{"models":[{"id":"a"},{"id":"a"}]}}"#, "provider.models[1].id: duplicate model id"),
        (r#"{"provider":{"models":[{"name":"x"}]}}"#, "provider.models[0].id: is required"),
        (r#"{"provider":{"models":[{"id":".."}]}}"#, "provider.models[0].id: \"..\" is not a model id"),
        // A Bedrock API key never travels in clear text to another host (192.0.2.0/24 is for documentation).
        (r#"{"provider":{"baseUrl":"http://192.0.2.10:8080","apiKey":"bedrock-api-key-SECRET-123"}}"#, "provider.baseUrl is http://192.0.2.10:8080: plain http to another host, and a Bedrock API key (provider.apiKey) is sent only over https or to this machine"),
        (r#"{"provider":{},"discovery":{"refreshInterval":-1}}"#, "discovery.refreshInterval: expected an integer from 0"),
        (r#"{"provider":{"runtimeThreads":0}}"#, "provider.runtimeThreads: must be between 1 and 64"),
        (r#"{"provider":{"runtimeThreads":1000}}"#, "provider.runtimeThreads: expected an integer from 0 to 64, got 1000"),
        (r#"{"provider":{"deliveryGatherMs":51}}"#, "provider.deliveryGatherMs: expected an integer from 0 to 50, got 51"),
        (r#"{"provider":{"deliveryGatherMs":"4"}}"#, "provider.deliveryGatherMs: expected an integer"),
    ];
    for (config, expected) in cases {
        let (rc, err) = new_err(config);
        assert_eq!(rc, 2, "BP_ERR_CONFIG for {config}");
        assert_eq!(err["code"], "config");
        assert!(err["message"].as_str().unwrap().starts_with(expected), "{config}: {err}");
    }
}

#[test]
fn null_pointers_and_bad_strings_are_invalid_arguments() {
    hermetic_env();
    let api = api();
    let mut out = std::ptr::null_mut();
    let mut err: *mut c_char = std::ptr::null_mut();
    unsafe {
        assert_eq!((api.provider_new)(std::ptr::null(), &mut out, &mut err), 1);
        assert!(take_json(err)["message"].as_str().unwrap().contains("config_json is NULL"));
        let cfg = CString::new(config_for("http://127.0.0.1:9").to_string()).unwrap();
        assert_eq!((api.provider_new)(cfg.as_ptr(), std::ptr::null_mut(), &mut err), 1);
        assert!(take_json(err)["message"].as_str().unwrap().contains("out is NULL"));
        // err_json may be NULL: the status alone still says what went wrong
        assert_eq!((api.provider_new)(std::ptr::null(), &mut out, std::ptr::null_mut()), 1);
        let bad_utf8 = b"{\"provider\":{\"baseUrl\":\"http://\xff\"}}\0";
        assert_eq!((api.provider_new)(bad_utf8.as_ptr().cast(), &mut out, &mut err), 1);
        assert!(take_json(err)["message"].as_str().unwrap().contains("not valid UTF-8 (invalid byte at offset 31)"));

        let req = CString::new(request("emulator.echo", "hi", json!({})).to_string()).unwrap();
        assert_eq!((api.stream_start)(std::ptr::null_mut(), req.as_ptr(), Some(collect), std::ptr::null_mut(), &mut out, &mut err), 1);
        assert!(take_json(err)["message"].as_str().unwrap().contains("provider is NULL"));
        (api.stream_cancel)(std::ptr::null_mut());
        (api.stream_release)(std::ptr::null_mut());
        (api.string_free)(std::ptr::null_mut());
        assert_eq!((api.provider_free)(std::ptr::null_mut(), 0), 1);
    }
    let p = Provider::try_new(&config_for("http://127.0.0.1:9").to_string()).unwrap();
    unsafe {
        let req = CString::new(request("emulator.echo", "hi", json!({})).to_string()).unwrap();
        assert_eq!((api.stream_start)(p.0, req.as_ptr(), None, std::ptr::null_mut(), &mut out, &mut err), 1);
        assert!(take_json(err)["message"].as_str().unwrap().contains("on_event is NULL"));
        assert!(out.is_null());
        assert_eq!((api.stream_start)(p.0, std::ptr::null(), Some(collect), std::ptr::null_mut(), &mut out, &mut err), 1);
        assert!(take_json(err)["message"].as_str().unwrap().contains("request_json is NULL"));
    }
}

#[test]
fn invalid_requests_get_clear_codes_and_no_events() {
    hermetic_env();
    let p = Provider::try_new(&config_for("http://127.0.0.1:9").to_string()).unwrap();
    let cases: Vec<(String, i32, &str)> = vec![
        ("{\"model\":".into(), 1, "request is not valid JSON"),
        (json!({"model": "nope", "context": {"messages": []}}).to_string(), 4, "model: unknown model \"nope\""),
        (json!({"model": 5, "context": {"messages": []}}).to_string(), 1, "model: expected a model id or a model object"),
        (json!({"model": "emulator.echo"}).to_string(), 1, "context: is required"),
        (json!({"model": "emulator.echo", "context": {"messages": []}}).to_string(), 1, "context.messages: must contain at least one user message"),
        (json!({"model": "emulator.echo", "context": {"messages": [{"role": "user", "content": 7}]}}).to_string(), 1, "context.messages[0].content: expected a string or an array, got a number"),
        (json!({"model": "emulator.echo", "context": {"messages": [{"role": "user", "content": "x"}]}, "options": {"maxTokens": -3}}).to_string(), 1, "options.maxTokens: expected an integer"),
        (json!({"model": "emulator.echo", "context": {"messages": [{"role": "user", "content": "x"}]}, "options": {"reasoning": "extreme"}}).to_string(), 1, "options.reasoning: must be one of"),
        (json!({"model": "anthropic.claude-sonnet-4-5-20250929-v1:0", "context": {"messages": [{"role": "user", "content": [{"type": "image", "data": "%%%", "mimeType": "image/png"}]}]}}).to_string(), 1, "context.messages[0].content[0]"),
        // Model ids that would not survive as a URL path segment.
        (json!({"model": {"id": ".."}, "context": {"messages": [{"role": "user", "content": "x"}]}}).to_string(), 1, "model.id: \"..\" is not a model id"),
        (json!({"model": {"id": "."}, "context": {"messages": [{"role": "user", "content": "x"}]}}).to_string(), 1, "model.id: \".\" is not a model id"),
        (json!({"model": {"id": "a\u{7}b"}, "context": {"messages": [{"role": "user", "content": "x"}]}}).to_string(), 1, "model.id: must not contain control characters (found U+0007)"),
        // Bedrock's documented ranges, refused before anything is sent.
        (json!({"model": "emulator.echo", "context": {"messages": [{"role": "user", "content": "x"}]}, "options": {"maxTokens": 0}}).to_string(), 1, "options.maxTokens: must be at least 1"),
        (json!({"model": "emulator.echo", "context": {"messages": [{"role": "user", "content": "x"}]}, "options": {"temperature": 1.5}}).to_string(), 1, "options.temperature: must be between 0 and 1, got 1.5"),
        (json!({"model": "emulator.echo", "context": {"messages": [{"role": "user", "content": "x"}]}, "options": {"topP": -0.1}}).to_string(), 1, "options.topP: must be between 0 and 1, got -0.1"),
        (json!({"model": "emulator.echo", "context": {"messages": [{"role": "user", "content": "x"}]}, "options": {"stopSequences": ["END", ""]}}).to_string(), 1, "options.stopSequences[1]: must not be empty"),
        (json!({"model": "emulator.echo", "context": {"messages": [{"role": "user", "content": "x"}]}, "options": {"stopSequences": vec!["x"; 2501]}}).to_string(), 1, "options.stopSequences: at most 2500 stop sequences, got 2501"),
        (json!({"model": "emulator.echo", "context": {"messages": [{"role": "user", "content": "x"}], "tools": [{"name": "", "description": "d", "parameters": {"type": "object"}}]}}).to_string(), 1, "context.tools[0].name: must not be empty"),
    ];
    for (body, code, expected) in cases {
        let collector = Collector::default();
        let req: serde_json::Value = serde_json::from_str(&body).unwrap_or(json!(null));
        let result = if req.is_null() {
            // not JSON at all: send the raw text
            let c = CString::new(body.clone()).unwrap();
            let mut err = std::ptr::null_mut();
            let mut out = std::ptr::null_mut();
            let rc = unsafe { (api().stream_start)(p.0, c.as_ptr(), Some(collect), std::ptr::null_mut(), &mut out, &mut err) };
            Err((rc, take_json(err)))
        } else {
            try_start(&p, &req, collector).map(|_| ())
        };
        let (rc, err) = result.expect_err(&body);
        assert_eq!(rc, code, "{body}: {err}");
        assert!(err["message"].as_str().unwrap().starts_with(expected), "{body}: {err}");
    }
}

#[test]
fn oversized_request_is_refused() {
    hermetic_env();
    let p = Provider::try_new(&config_for("http://127.0.0.1:9").to_string()).unwrap();
    let huge = "x".repeat(33 << 20);
    let (rc, err) = try_start(&p, &request("emulator.echo", &huge, json!({})), Collector::default()).err().unwrap();
    assert_eq!(rc, 15, "BP_ERR_TOO_LARGE");
    assert_eq!(err["code"], "too_large");
}

#[test]
fn model_objects_work_without_being_configured() {
    hermetic_env();
    let emulator = Emulator::start(EmulatorConfig::default());
    let p = Provider::new(&emulator);
    // A model object works without being configured.
    let req = json!({"model": {"id": "mistral.any-model", "name": "Any", "cost": {"input": 1000000.0}},
        "context": {"messages": [{"role": "user", "content": "emulator: chunks=1 input_tokens=2"}]}});
    let events = start(&p, &req).finish();
    assert_eq!(events.last().unwrap()["message"]["usage"]["cost"]["input"], 2.0);
    assert_eq!(emulator.stats().last_model_id.as_deref(), Some("mistral.any-model"));
    assert_eq!(p.free(1000), 0);
}

/// The test-only fault hooks (`src/fault.rs`) exist only in the fault-hook build: the plugin's
/// own build refuses the field like any unknown one. (Calls refused once `free` began:
/// `tests/concurrency.rs::calls_after_free_began_are_refused_with_shutting_down`.)
#[test]
fn the_plugin_build_refuses_fault_hooks() {
    hermetic_env();
    let p = Provider::try_new(&config_for("http://127.0.0.1:9").to_string()).unwrap();
    let mut req = request("emulator.echo", "x", json!({}));
    req["faultHook"] = json!("panicInTask");
    let (code, e) = try_start(&p, &req, Collector::default()).err().expect("refused");
    assert_eq!(code, 1, "{e}");
    assert!(e["message"].as_str().unwrap().contains("faultHook"), "{e}");
}

#[test]
fn an_api_key_goes_only_over_https_or_to_this_machine() {
    hermetic_env();
    let (_, err) = new_err(r#"{"provider":{"baseUrl":"http://192.0.2.10:8080","apiKey":"bedrock-api-key-SECRET-123"}}"#);
    assert!(!err.to_string().contains("SECRET-123"), "the key itself is never echoed: {err}");
    for url in ["http://127.0.0.1:9", "http://localhost:9", "https://bedrock-runtime.us-east-1.amazonaws.com"] {
        let config = json!({"provider": {"baseUrl": url, "apiKey": "bedrock-api-key-SECRET-123"}}).to_string();
        Provider::try_new(&config).unwrap_or_else(|e| panic!("{url} refused: {e:?}"));
    }
}

unsafe extern "C" fn ignore(_: *mut std::os::raw::c_void, _: *const c_char, _: usize) -> i32 {
    0
}

/// The rest of the bad-input table: wrong types at every level of a request, unknown roles and
/// content types, deep nesting, absurd numbers, huge inputs, and the other blocking entry points.
/// Each row: the request, the status, and how its message starts.
#[test]
fn every_level_of_a_request_refuses_what_it_cannot_use() {
    hermetic_env();
    let p = Provider::try_new(&config_for("http://127.0.0.1:9").to_string()).unwrap();
    let user = |content: serde_json::Value| json!({"model": "emulator.echo", "context": {"messages": [{"role": "user", "content": content}]}});
    let with_options = |options: serde_json::Value| json!({"model": "emulator.echo", "context": {"messages": [{"role": "user", "content": "x"}]}, "options": options});
    let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
    let cases: Vec<(String, i32, &str)> = vec![
        ("[]".into(), 1, "(top level): expected an object, got an array"),
        ("\"text\"".into(), 1, "(top level): expected an object, got a string"),
        (json!({"model": "emulator.echo", "context": "hi"}).to_string(), 1, "context: expected an object, got a string"),
        (json!({"model": "emulator.echo", "context": {"messages": {"role": "user"}}}).to_string(), 1, "context.messages: expected an array, got an object"),
        (json!({"model": "emulator.echo", "context": {"messages": ["hi"]}}).to_string(), 1, "context.messages[0]: expected an object, got a string"),
        (json!({"model": "emulator.echo", "context": {"messages": [{"role": 1, "content": "x"}]}}).to_string(), 1, "context.messages[0].role: expected a string"),
        (json!({"model": "emulator.echo", "context": {"messages": [{"role": "system", "content": "x"}]}}).to_string(), 1, "context.messages[0].role"),
        (json!({"model": "emulator.echo", "context": {"messages": [{"content": "x"}]}}).to_string(), 1, "context.messages[0].role: is required"),
        (json!({"model": "emulator.echo", "context": {"systemPrompt": 5, "messages": [{"role": "user", "content": "x"}]}}).to_string(), 1, "context.systemPrompt: expected a string"),
        (json!({"model": "emulator.echo", "context": {"messages": [{"role": "user", "content": "x"}], "tools": {"name": "t"}}}).to_string(), 1, "context.tools: expected an array"),
        (json!({"model": "emulator.echo", "context": {"messages": [{"role": "user", "content": "x"}], "tools": [{"name": "t", "parameters": "object"}]}}).to_string(), 1, "context.tools[0].parameters: expected a JSON schema object"),
        (json!({"model": "emulator.echo", "context": {"messages": [{"role": "user", "content": "x"}], "extra": 1}}).to_string(), 1, "context.extra: unknown field"),
        (json!({"model": "emulator.echo", "context": {"messages": [{"role": "user", "content": "x"}]}, "options": [1]}).to_string(), 1, "options: expected an object, got an array"),
        (user(json!([{"type": "video", "data": "x"}])).to_string(), 1, "context.messages[0].content[0].type: unknown content type \"video\""),
        (user(json!([{"text": "no type"}])).to_string(), 1, "context.messages[0].content[0].type: is required"),
        (user(json!([{"type": "text", "text": 5}])).to_string(), 1, "context.messages[0].content[0].text: expected a string"),
        (json!({"model": {"id": "vision", "input": ["text", "image"]}, "context": {"messages": [{"role": "user", "content": [{"type": "image", "data": "aGk=", "mimeType": "image/tiff"}]}]}}).to_string(), 1, "context.messages[0].content[0].mimeType: unsupported image type"),
        (json!({"model": "emulator.echo", "context": {"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": [{"type": "sound"}]}]}}).to_string(), 1, "context.messages[1].content[0].type: unknown assistant content type"),
        (json!({"model": "emulator.echo", "context": {"messages": [{"role": "toolResult", "content": []}]}}).to_string(), 1, "context.messages[0].toolCallId: is required"),
        (with_options(json!({"maxTokens": 1e300})).to_string(), 1, "options.maxTokens: expected an integer"),
        (with_options(json!({"maxTokens": "100"})).to_string(), 1, "options.maxTokens: expected an integer"),
        (with_options(json!({"temperature": "hot"})).to_string(), 1, "options.temperature: expected a number"),
        (with_options(json!({"idleTimeoutMs": 0})).to_string(), 1, "options.idleTimeoutMs: must be at least 1"),
        (with_options(json!({"cacheRetention": "forever"})).to_string(), 1, "options.cacheRetention: must be none, short or long"),
        (with_options(json!({"toolChoice": 3})).to_string(), 1, "options.toolChoice: must be"),
        (with_options(json!({"thinkingBudgets": {"huge": 1}})).to_string(), 1, "options.thinkingBudgets.huge: unknown field"),
        (with_options(json!({"unknownOption": true})).to_string(), 1, "options.unknownOption: unknown field"),
        (json!({"model": {"id": "x", "contextWindow": -1}, "context": {"messages": [{"role": "user", "content": "x"}]}}).to_string(), 1, "model.contextWindow: expected an integer"),
        (json!({"model": {"id": "x", "cost": {"input": -1}}, "context": {"messages": [{"role": "user", "content": "x"}]}}).to_string(), 1, "model.cost.input: must not be negative"),
        (json!({"model": "emulator.echo", "context": {"messages": [{"role": "user", "content": "x"}]}, "unexpected": {}}).to_string(), 1, "unexpected: unknown field"),
        // Nesting past serde_json's recursion limit is a parse error, not a stack overflow.
        (format!("{{\"model\":\"emulator.echo\",\"context\":{{\"messages\":[]}},\"options\":{{\"x\":{deep}}}}}"), 1, "request is not valid JSON"),
        // 50 MB, past the 32 MB request limit.
        (user(json!("y".repeat(50 << 20))).to_string(), 15, "request_json is"),
    ];
    assert!(cases.len() >= 30);
    for (body, code, expected) in &cases {
        let c = CString::new(body.clone()).unwrap();
        let (mut out, mut err) = (std::ptr::null_mut(), std::ptr::null_mut());
        // A callback that touches nothing: a row that is wrongly accepted fails its assertion
        // instead of crashing the test.
        let rc = unsafe { (api().stream_start)(p.0, c.as_ptr(), Some(ignore), std::ptr::null_mut(), &mut out, &mut err) };
        let shown = &body[..body.len().min(200)];
        assert_eq!(rc, *code, "{shown}");
        assert!(out.is_null(), "no stream for {shown}");
        let err = take_json(err);
        assert!(err["message"].as_str().unwrap().starts_with(expected), "{shown}: {err}");
    }
    // What is big but valid goes through the checks: 100,000 messages and a 1 MB tool schema.
    let many: Vec<serde_json::Value> = (0..100_000).map(|i| json!({"role": if i % 2 == 0 { "user" } else { "assistant" }, "content": if i % 2 == 0 { json!("q") } else { json!([{"type": "text", "text": "a"}]) }})).collect();
    let big = json!({"model": "emulator.echo", "context": {"messages": many}});
    let properties: serde_json::Map<String, serde_json::Value> = (0..20_000).map(|i| (format!("field_{i:05}"), json!({"type": "string", "description": "a field"}))).collect();
    let schema = json!({"type": "object", "properties": properties});
    let tools = json!({"model": "emulator.echo", "context": {"messages": [{"role": "user", "content": "x"}], "tools": [{"name": "big", "parameters": schema}]}});
    assert!(tools.to_string().len() > 1 << 20);
    for ok in [big, tools] {
        let collector = Collector::default();
        let s = try_start(&p, &ok, collector).unwrap_or_else(|(rc, e)| panic!("refused: {rc} {e}"));
        // Nothing listens at 127.0.0.1:9: the stream itself ends as a network error.
        assert_eq!(failure(terminal(&s.finish()))["code"], "network");
    }
}

/// The blocking entry points, the same way: discovery options and embedding requests.
#[test]
fn discover_and_embed_refuse_bad_arguments_with_their_codes() {
    hermetic_env();
    let p = Provider::try_new(&config_for("http://127.0.0.1:9").to_string()).unwrap();
    for (options, expected) in [("[]", "options: expected an object"), ("{\"refresh\":\"yes\"}", "options.refresh: expected a boolean"), ("{\"x\":1}", "options.x: unknown field"), ("{", "options_json is not valid JSON")] {
        let (rc, err) = p.discover(Some(options)).unwrap_err();
        assert_eq!(rc, 1, "{options}: {err}");
        assert!(err["message"].as_str().unwrap().starts_with(expected), "{options}: {err}");
    }
    for (request, code, expected) in [
        (json!([]), 1, "(top level): expected an object"),
        (json!({"texts": "x"}), 1, "texts: expected an array"),
        (json!({"texts": ["x"], "model": 7}), 1, "model: expected a string"),
        (json!({"texts": ["x"], "model": "meta.llama3"}), 4, "model: \"meta.llama3\" is not an embedding model"),
        (json!({"texts": ["x"], "dimensions": 1e20}), 1, "dimensions: expected an integer"),
    ] {
        let (rc, err) = p.embed(&request).unwrap_err();
        assert_eq!(rc, code, "{request}: {err}");
        assert!(err["message"].as_str().unwrap().starts_with(expected), "{request}: {err}");
    }
}

/// What a callback did when it re-entered the ABI.
#[derive(Default)]
struct Reentry {
    provider: std::sync::atomic::AtomicPtr<std::os::raw::c_void>,
    own: std::sync::atomic::AtomicPtr<std::os::raw::c_void>,
    codes: std::sync::Mutex<Vec<(&'static str, i32)>>,
    nested: std::sync::Mutex<Option<Stream>>,
    events: std::sync::Mutex<Vec<serde_json::Value>>,
    done: std::sync::Condvar,
}

unsafe extern "C" fn reenter(user: *mut std::os::raw::c_void, json: *const c_char, len: usize) -> i32 {
    use std::sync::atomic::Ordering;
    let r = &*(user as *const Reentry);
    let event: serde_json::Value = serde_json::from_slice(std::slice::from_raw_parts(json.cast::<u8>(), len)).unwrap();
    let provider = r.provider.load(Ordering::SeqCst);
    let first = r.events.lock().unwrap().is_empty();
    if first {
        let mut codes = r.codes.lock().unwrap();
        codes.push(("free", (api().provider_free)(provider, 0)));
        let (mut out, mut err) = (std::ptr::null_mut(), std::ptr::null_mut());
        let body = CString::new(r#"{"texts":["x"]}"#).unwrap();
        codes.push(("embed", (api().embed)(provider, body.as_ptr(), &mut out, &mut err)));
        let message = take_json(err)["message"].as_str().unwrap_or("").to_string();
        assert!(message.contains("inside an event callback"), "{message}");
        // Starting another stream and cancelling this one are fine from here.
        // A borrowed view of the provider: never dropped, so it frees nothing.
        let view = std::mem::ManuallyDrop::new(Provider(provider));
        let nested = try_start(&view, &request("emulator.echo", "emulator: chunks=2", json!({})), Collector::default());
        codes.push(("start", nested.as_ref().map_or_else(|(rc, _)| *rc, |_| 0)));
        *r.nested.lock().unwrap() = nested.ok();
        // The test publishes the handle right after bp_stream_start returns; wait for it.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while r.own.load(Ordering::SeqCst).is_null() && std::time::Instant::now() < deadline {
            std::thread::yield_now();
        }
        (api().stream_cancel)(r.own.load(Ordering::SeqCst));
        codes.push(("cancel", 0));
    }
    let terminal = is_terminal(&event);
    r.events.lock().unwrap().push(event);
    if terminal {
        // Releasing its own handle from inside its terminal callback.
        (api().stream_release)(r.own.swap(std::ptr::null_mut(), Ordering::SeqCst));
        r.done.notify_all();
    }
    0
}

#[test]
fn a_callback_may_reenter_the_abi_except_to_free_or_block() {
    use std::sync::atomic::Ordering;
    hermetic_env();
    let emulator = Emulator::start(EmulatorConfig::default());
    let p = Provider::new(&emulator);
    let r = std::sync::Arc::new(Reentry::default());
    r.provider.store(p.0, Ordering::SeqCst);
    let body = CString::new(request("emulator.echo", "emulator: chunks=30 delay_ms=20", json!({})).to_string()).unwrap();
    let (mut handle, mut err) = (std::ptr::null_mut(), std::ptr::null_mut());
    // The handle is published before the first event can arrive: the stream waits for the network.
    let rc = unsafe { (api().stream_start)(p.0, body.as_ptr(), Some(reenter), std::sync::Arc::as_ptr(&r) as *mut _, &mut handle, &mut err) };
    assert_eq!(rc, 0);
    r.own.store(handle, Ordering::SeqCst);
    let mut events = r.events.lock().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !events.iter().any(is_terminal) {
        assert!(std::time::Instant::now() < deadline, "the stream ends");
        events = r.done.wait_timeout(events, std::time::Duration::from_millis(100)).unwrap().0;
    }
    let end = events.last().unwrap().clone();
    drop(events);
    assert_eq!((end["type"].as_str(), end["reason"].as_str()), (Some("error"), Some("aborted")), "cancelled from inside its own callback");
    assert_eq!(*r.codes.lock().unwrap(), vec![("free", 1), ("embed", 1), ("start", 0), ("cancel", 0)]);
    let nested = r.nested.lock().unwrap().take().expect("the nested stream started");
    assert_eq!(terminal(&nested.finish())["type"], "done");
    drop(nested);
    assert_eq!(p.free(5000), 0, "the provider is intact after a refused free from inside a callback");
}

/// The C side of the table under valgrind: each row's code and message through `bp_get_api`,
/// NULL in every pointer, a stream cancelled from inside its callback, and no invalid access or
/// definite leak. ("Possibly lost" blocks are the SDK's static token bucket, reachable while the
/// plugin stays loaded; see `example_host_is_valgrind_clean_with_the_plugin_loaded`.)
#[test]
fn the_c_side_of_the_table_is_valgrind_clean() {
    hermetic_env();
    let emulator = Emulator::start(EmulatorConfig::default());
    let exe = compile_c("tests/c/bad_input.c", "bad_input_c");
    let out = std::process::Command::new("valgrind")
        .args(["--leak-check=full", "--errors-for-leak-kinds=definite,indirect", "--error-exitcode=99"])
        .arg(&exe)
        .arg(plugin_path())
        .arg(emulator.endpoint())
        .output()
        .expect("valgrind is installed (.ci/run installs it)");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains(" passed, 0 failed"), "{stdout}\n{stderr}");
    let passed: usize = stdout.split_whitespace().next().unwrap().parse().unwrap();
    assert!(passed >= 60, "the table has its rows: {stdout}");
    assert!(stderr.contains("ERROR SUMMARY: 0 errors"), "{stderr}");
}
