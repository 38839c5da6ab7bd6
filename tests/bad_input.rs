//! Bad input at every entry point gets the documented code and a message, never a crash.

mod common;
use common::*;
use serde_json::json;
use std::ffi::CString;
use std::os::raw::c_char;

#[test]
fn abi_version_and_plugin_info() {
    let api = api();
    assert_eq!(unsafe { (api.abi_version)() }, (1 << 16) | 5);
    let info = unsafe { std::ffi::CStr::from_ptr((api.plugin_info)()) }.to_str().unwrap();
    let info: serde_json::Value = serde_json::from_str(info).unwrap();
    assert_eq!(info["provider"], "amazon-bedrock");
    assert_eq!(info["api"], "bedrock-converse-stream");
    assert_eq!(info["abiVersion"], "1.5");
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
        (json!({"model": "emulator.echo", "context": {"messages": [{"role": "user", "content": "x"}]}, "options": {"reasoning": "max"}}).to_string(), 1, "options.reasoning: must be one of"),
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
fn streams_after_free_began_are_refused_and_model_objects_work() {
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
