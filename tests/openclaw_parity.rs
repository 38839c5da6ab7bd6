//! OpenClaw 2026.9.6's Bedrock documentation (`docs/providers/bedrock.md` in the `openclaw` npm
//! package), row by row, through the C ABI against the emulator: the behaviours live in the
//! library, so every host gets them, not only OpenClaw. The embedding rows of its memory
//! reference are in `tests/embed.rs`.

mod common;
use bedrock_emulator::catalog::{application_profile, system_profile};
use common::*;
use serde_json::{json, Value};
use std::ffi::CStr;
use std::os::raw::{c_char, c_void};
use std::sync::Mutex;

/// Warnings the plugin logged (through `bp_set_log_callback`; the sink is process-wide).
static WARNINGS: Mutex<Vec<String>> = Mutex::new(Vec::new());

unsafe extern "C" fn on_log(_user: *mut c_void, _level: u32, _target: *const c_char, message: *const c_char) {
    WARNINGS.lock().unwrap().push(CStr::from_ptr(message).to_string_lossy().into_owned());
}

/// A model object as a host passes it (OpenClaw's `models.providers` entry).
fn model(id: &str, reasoning: bool) -> Value {
    json!({"id": id, "name": id, "reasoning": reasoning, "input": ["text", "image"], "contextWindow": 1000000, "maxTokens": 128000})
}

fn ask(model: Value, prompt: &str, options: Value) -> Value {
    json!({"model": model, "context": {"messages": [{"role": "user", "content": prompt}]}, "options": options})
}

/// Streams `request` to the end and returns the body Bedrock received.
fn sent(emulator: &Emulator, p: &Provider, request: &Value) -> Value {
    let events = start(p, request).finish();
    assert_eq!(terminal(&events)["type"], "done", "{request}: {events:?}");
    emulator.stats().last_body.expect("a ConverseStream body")
}

#[test]
fn opus_5_4_8_and_4_7_get_no_temperature_under_any_name() {
    let (emulator, p) = setup();
    let sampling = json!({"temperature": 0.3, "topP": 0.9});
    for id in [
        "anthropic.claude-opus-5",
        "global.anthropic.claude-opus-5",
        "anthropic.claude-opus-4-8-v1:0",
        "us.anthropic.claude-opus-4-7-v1:0",
        "eu.anthropic.claude-opus-4-8-v1:0",
        "ap.anthropic.claude-opus-4-7-v1:0",
        "apac.anthropic.claude-opus-4-7-v1:0",
        "au.anthropic.claude-opus-4-7-v1:0",
        "jp.anthropic.claude-opus-4-8-v1:0",
        "us.anthropic.claude-opus-4.7",
        "anthropic.claude-opus-4.8",
    ] {
        let body = sent(&emulator, &p, &ask(model(id, false), "hi", sampling.clone()));
        let config = &body["inferenceConfig"];
        assert!(config.get("temperature").is_none() && config.get("topP").is_none(), "{id}: {config}");
    }
    // The rule is the route's, not Claude's: Opus 4.6 keeps the host's temperature.
    let body = sent(&emulator, &p, &ask(model("us.anthropic.claude-opus-4-6-v1", false), "hi", sampling.clone()));
    assert_eq!(body["inferenceConfig"]["temperature"].as_f64().map(|t| (t * 10.0).round()), Some(3.0), "{body}");

    // An application profile whose ARN says nothing: GetInferenceProfile names Opus 4.7.
    let mut catalog = EmulatorConfig::default();
    catalog.inference_profiles.push(application_profile("team-o/prod", "Team O production", "anthropic.claude-opus-4-7-v1:0"));
    let emulator = Emulator::start(catalog);
    let p = Provider::try_new(&json!({"provider": {"baseUrl": emulator.endpoint()}, "discovery": {"enabled": false}}).to_string()).unwrap();
    let arn = "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/team-o/prod";
    let body = sent(&emulator, &p, &ask(json!({"id": arn, "name": "prod"}), "hi", sampling));
    assert!(body["inferenceConfig"].get("temperature").is_none(), "{body}");
    assert_eq!(emulator.stats().get_inference_profile, 1);
    assert_eq!(emulator.stats().last_model_id.as_deref(), Some(arn), "the profile is what is invoked");
}

/// The thinking fields Bedrock got: `(type, effort)`, or None for no thinking.
fn thinking(body: &Value) -> Option<(String, String)> {
    let fields = body.get("additionalModelRequestFields")?;
    let kind = fields["thinking"]["type"].as_str()?.to_string();
    Some((kind, fields["output_config"]["effort"].as_str().unwrap_or("").to_string()))
}

#[test]
fn claude_5_routes_think_adaptively_at_their_documented_efforts() {
    let (emulator, p) = setup();
    let adaptive = |e: &str| Some(("adaptive".to_string(), e.to_string()));
    // (model, reasoning option, what Bedrock gets)
    let rows: &[(&str, Option<&str>, Option<(String, String)>)] = &[
        // Sonnet 5 and Mythos 5 cannot stop thinking: high by default, off/minimal → low.
        ("us.anthropic.claude-sonnet-5", None, adaptive("high")),
        ("us.anthropic.claude-sonnet-5", Some("off"), adaptive("low")),
        ("us.anthropic.claude-sonnet-5", Some("minimal"), adaptive("low")),
        ("us.anthropic.claude-sonnet-5", Some("medium"), adaptive("medium")),
        ("us.anthropic.claude-sonnet-5", Some("xhigh"), adaptive("xhigh")),
        ("us.anthropic.claude-sonnet-5", Some("max"), adaptive("max")),
        ("global.anthropic.claude-mythos-5", None, adaptive("high")),
        ("global.anthropic.claude-mythos-5", Some("off"), adaptive("low")),
        // Fable 5: medium by default.
        ("anthropic.claude-fable-5", None, adaptive("medium")),
        ("anthropic.claude-fable-5", Some("off"), adaptive("low")),
        ("anthropic.claude-fable-5", Some("high"), adaptive("high")),
        // Opus 5: high by default, and "off" really turns thinking off.
        ("global.anthropic.claude-opus-5", None, adaptive("high")),
        ("global.anthropic.claude-opus-5", Some("off"), None),
        ("global.anthropic.claude-opus-5", Some("xhigh"), adaptive("xhigh")),
        ("global.anthropic.claude-opus-5", Some("max"), adaptive("max")),
        // Opus 4.6 has no xhigh of its own (max), and thinks only when asked.
        ("us.anthropic.claude-opus-4-6-v1", Some("xhigh"), adaptive("max")),
        ("us.anthropic.claude-opus-4-6-v1", None, None),
    ];
    for (id, reasoning, want) in rows {
        let options = reasoning.map_or(json!({}), |r| json!({"reasoning": r}));
        let body = sent(&emulator, &p, &ask(model(id, true), "hi", options));
        assert_eq!(&thinking(&body), want, "{id} with reasoning {reasoning:?}: {}", body["additionalModelRequestFields"]);
    }
    // A route that always thinks does so even when the host's entry says it does not reason;
    // Opus 5, which can stop, gets no default thinking from such an entry.
    let body = sent(&emulator, &p, &ask(model("anthropic.claude-sonnet-5", false), "hi", json!({})));
    assert_eq!(thinking(&body), adaptive("high"));
    let body = sent(&emulator, &p, &ask(model("global.anthropic.claude-opus-5", false), "hi", json!({})));
    assert_eq!(thinking(&body), None);
}

#[test]
fn claude_5_models_are_discovered_with_1m_context_and_128k_output() {
    hermetic_env();
    let mut catalog = EmulatorConfig::default();
    for (id, name) in [
        ("anthropic.claude-opus-5", "Claude Opus 5"),
        ("anthropic.claude-sonnet-5", "Claude Sonnet 5"),
        ("anthropic.claude-fable-5", "Claude Fable 5"),
        ("anthropic.claude-mythos-5", "Claude Mythos 5"),
    ] {
        catalog.foundation_models.push(json!({
            "modelArn": format!("arn:aws:bedrock:us-east-1::foundation-model/{id}"), "modelId": id, "modelName": name,
            "providerName": "Anthropic", "inputModalities": ["TEXT", "IMAGE"], "outputModalities": ["TEXT"],
            "responseStreamingSupported": true, "customizationsSupported": [], "inferenceTypesSupported": ["INFERENCE_PROFILE"],
            "modelLifecycle": {"status": "ACTIVE"}
        }));
        catalog.inference_profiles.push(system_profile("us", &format!("US {name}"), id, &["us-east-1", "us-west-2"]));
        catalog.inference_profiles.push(system_profile("global", &format!("Global {name}"), id, &["us-east-1", "eu-west-1"]));
    }
    let emulator = Emulator::start(catalog);
    let p = Provider::try_new(&json!({"provider": {"baseUrl": emulator.endpoint()}, "discovery": {"enabled": true}}).to_string()).unwrap();
    let found = p.discover(None).unwrap();
    for family in ["opus-5", "sonnet-5", "fable-5", "mythos-5"] {
        for prefix in ["", "us.", "global."] {
            let id = format!("{prefix}anthropic.claude-{family}");
            let m = found["models"].as_array().unwrap().iter().find(|m| m["id"] == id.as_str()).unwrap_or_else(|| panic!("{id} in {found}"));
            assert_eq!((&m["contextWindow"], &m["maxTokens"], &m["reasoning"]), (&json!(1000000), &json!(128000), &json!(true)), "{id}: {m}");
            assert_eq!(m["input"], json!(["text", "image"]), "{id}");
        }
    }
}

#[test]
fn a_forced_tool_choice_is_left_out_where_the_route_refuses_it() {
    let (emulator, p) = setup();
    let tools = json!([{"name": "get_weather", "description": "Weather by city", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}]);
    let with_tools = |id: &str, choice: Value| {
        json!({"model": model(id, true), "context": {"messages": [{"role": "user", "content": "hi"}], "tools": tools}, "options": {"toolChoice": choice}})
    };
    for id in ["anthropic.claude-sonnet-5", "us.anthropic.claude-fable-5", "anthropic.claude-mythos-5", "us.anthropic.claude-opus-4-7-v1:0", "anthropic.claude-opus-4.8"] {
        for choice in [json!("any"), json!({"type": "tool", "name": "get_weather"})] {
            let body = sent(&emulator, &p, &with_tools(id, choice.clone()));
            // Left out: Bedrock's default, auto.
            assert!(body["toolConfig"].get("toolChoice").is_none(), "{id} with {choice}: {}", body["toolConfig"]);
            assert_eq!(body["toolConfig"]["tools"][0]["toolSpec"]["name"], "get_weather", "the tools themselves stay");
        }
    }
    // Other routes get the choice they were asked for.
    let body = sent(&emulator, &p, &with_tools("anthropic.claude-sonnet-4-5-20250929-v1:0", json!("any")));
    assert_eq!(body["toolConfig"]["toolChoice"], json!({"any": {}}));
}

#[test]
fn default_tier_only_routes_ignore_other_service_tiers() {
    let (emulator, p) = setup();
    unsafe { assert_eq!((api().set_log_callback)(2, Some(on_log), std::ptr::null_mut()), 0) };
    for id in ["anthropic.claude-fable-5", "global.anthropic.claude-opus-5", "us.anthropic.claude-sonnet-5"] {
        for tier in ["flex", "priority", "reserved"] {
            let body = sent(&emulator, &p, &ask(model(id, true), "hi", json!({"serviceTier": tier})));
            assert!(body.get("serviceTier").is_none(), "{id} {tier}: {}", body["serviceTier"]);
            let warned = format!("{id} serves only the \"default\" service tier; \"{tier}\" is ignored");
            let seen = || WARNINGS.lock().unwrap().iter().any(|w| w == &warned);
            for _ in 0..100 {
                if seen() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            assert!(seen(), "warned: {warned}");
        }
        let body = sent(&emulator, &p, &ask(model(id, true), "hi", json!({"serviceTier": "default"})));
        assert_eq!(body["serviceTier"], json!({"type": "default"}), "{id}");
    }
    // A route with tiers gets the one it was asked for (an unsupported one is Bedrock's to refuse).
    let body = sent(&emulator, &p, &ask(model("mistral.mistral-large-3-675b-instruct", false), "hi", json!({"serviceTier": "flex"})));
    assert_eq!(body["serviceTier"], json!({"type": "flex"}));
}

#[test]
fn the_provider_level_guardrail_reaches_every_stream_that_names_none() {
    hermetic_env();
    let emulator = Emulator::start(EmulatorConfig::default());
    let mut config = config_for(&emulator.endpoint());
    config["guardrail"] = json!({"guardrailIdentifier": "abc123", "guardrailVersion": "1", "streamProcessingMode": "sync", "trace": "enabled"});
    let p = Provider::try_new(&config.to_string()).unwrap();
    let body = sent(&emulator, &p, &request("emulator.echo", "hi", json!({})));
    assert_eq!(
        body["guardrailConfig"],
        json!({"guardrailIdentifier": "abc123", "guardrailVersion": "1", "streamProcessingMode": "sync", "trace": "enabled"})
    );
    // A request's own guardrail wins (this SDK writes Bedrock's defaults for the fields left out).
    let own = json!({"guardrailConfig": {"guardrailIdentifier": "team", "guardrailVersion": "DRAFT"}});
    let body = sent(&emulator, &p, &request("emulator.echo", "hi", own));
    assert_eq!(
        body["guardrailConfig"],
        json!({"guardrailIdentifier": "team", "guardrailVersion": "DRAFT", "streamProcessingMode": "sync", "trace": "disabled"})
    );
    // Both fields are required, and the enums are checked, before anything is built.
    for (bad, field) in [
        (json!({"guardrailIdentifier": "abc123"}), "guardrail.guardrailVersion"),
        (json!({"guardrailIdentifier": "abc123", "guardrailVersion": "1", "trace": "verbose"}), "guardrail.trace"),
        (json!({"guardrailIdentifier": "abc123", "guardrailVersion": "1", "mode": "sync"}), "guardrail.mode"),
    ] {
        config["guardrail"] = bad;
        let (rc, err) = Provider::try_new(&config.to_string()).err().expect("refused");
        assert_eq!(err["code"], "config", "{err}");
        assert!(rc != 0 && err["message"].as_str().unwrap().starts_with(field), "{field}: {err}");
    }
}

#[test]
fn refusal_safe_streaming_shows_nothing_of_an_answer_stopped_mid_way() {
    let (_emulator, p) = setup();
    let stream = |prompt: &str, hold: bool| start(&p, &request("emulator.echo", prompt, json!({"holdOutput": hold}))).finish();
    let kinds = |events: &[Value]| events.iter().map(|e| e["type"].as_str().unwrap().to_string()).collect::<Vec<_>>();

    // Refused, filtered, or broken mid-way: without holding, the first half shows; held, only
    // `start` (hosts time the first event) and the error arrive, the error's message empty.
    for prompt in ["emulator: chunks=6 stop=content_filtered", "emulator: chunks=6 stop=refusal", "emulator: chunks=6 stop=guardrail_intervened", "emulator: chunks=6 error=serviceUnavailable at=mid after=4", "emulator: chunks=6 end=5"] {
        let shown = stream(prompt, false);
        assert!(!text_of(&shown).is_empty(), "{prompt}: without holding, deltas stream: {shown:?}");
        let held = stream(prompt, true);
        assert_eq!(kinds(&held), ["start", "error"], "{prompt}: {held:?}");
        assert_eq!(final_message(&held[1])["content"], json!([]), "{prompt}: {}", held[1]);
        assert_eq!(failure(&held[1])["code"], failure(terminal(&shown))["code"], "{prompt}: the same error either way");
    }
    // A whole answer arrives whole: the same events, in the same order, as streamed live.
    let live = stream("emulator: chunks=6 reasoning=1", false);
    let held = stream("emulator: chunks=6 reasoning=1", true);
    assert_eq!(kinds(&held), kinds(&live));
    assert_eq!(text_of(&held), "w0 w1 w2 w3 w4 w5 ");
    assert_eq!(final_message(terminal(&held))["content"], final_message(terminal(&live))["content"]);
    // And a cancelled held stream shows nothing either.
    let s = start(&p, &request("emulator.echo", "emulator: chunks=50 delay_ms=20", json!({"holdOutput": true})));
    std::thread::sleep(std::time::Duration::from_millis(200));
    s.cancel();
    let events = s.finish();
    assert_eq!(kinds(&events), ["start", "error"], "{events:?}");
    assert_eq!(final_message(&events[1])["content"], json!([]));
}
