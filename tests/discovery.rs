//! `bp_discover` end to end: the real `aws-sdk-bedrock` client lists the emulator's catalog, and
//! every discovery rule is checked on catalogs that contain models which must be dropped.

mod common;
use bedrock_emulator::catalog::{application_profile, system_profile};
use common::*;
use serde_json::{json, Value};
use std::time::Duration;

fn foundation(id: &str, name: Option<&str>, provider: &str, input: &[&str], output: &[&str], streaming: bool, lifecycle: &str) -> Value {
    let mut m = json!({
        "modelArn": format!("arn:aws:bedrock:us-east-1::foundation-model/{id}"),
        "modelId": id, "providerName": provider,
        "inputModalities": input, "outputModalities": output,
        "responseStreamingSupported": streaming,
        "customizationsSupported": [], "inferenceTypesSupported": ["ON_DEMAND"],
        "modelLifecycle": {"status": lifecycle}
    });
    if let Some(n) = name {
        m["modelName"] = json!(n);
    }
    m
}

fn text_model(id: &str, name: &str, provider: &str) -> Value {
    foundation(id, Some(name), provider, &["TEXT"], &["TEXT"], true, "ACTIVE")
}

const CLAUDE: &str = "anthropic.claude-sonnet-4-5-20250929-v1:0";

/// A catalog with one model per rule that must drop it, next to models that must stay.
fn mixed_catalog() -> EmulatorConfig {
    let mut inactive = system_profile("eu", "EU Nova Pro", "amazon.nova-pro-v1:0", &["eu-west-1"]);
    inactive["status"] = json!("INACTIVE");
    EmulatorConfig {
        foundation_models: vec![
            foundation(CLAUDE, Some("Claude Sonnet 4.5"), "Anthropic", &["TEXT", "IMAGE"], &["TEXT"], true, "ACTIVE"),
            foundation("amazon.nova-pro-v1:0", Some("Nova Pro"), "Amazon", &["TEXT", "IMAGE", "VIDEO"], &["TEXT"], true, "ACTIVE"),
            foundation("acme.unnamed-v1", None, "Acme", &["TEXT"], &["TEXT"], true, "ACTIVE"),
            foundation("", Some("No id"), "Acme", &["TEXT"], &["TEXT"], true, "ACTIVE"),
            foundation("acme.batch-only-v1", Some("Batch only"), "Acme", &["TEXT"], &["TEXT"], false, "ACTIVE"),
            foundation("stability.sd3-large-v1:0", Some("SD3 Large"), "Stability AI", &["TEXT"], &["IMAGE"], true, "ACTIVE"),
            foundation("amazon.titan-embed-text-v2:0", Some("Titan Embeddings"), "Amazon", &["TEXT"], &["EMBEDDING"], false, "ACTIVE"),
            foundation("anthropic.claude-v2:1", Some("Claude 2.1"), "Anthropic", &["TEXT"], &["TEXT"], true, "LEGACY"),
        ],
        inference_profiles: vec![
            system_profile("us", "US Claude Sonnet 4.5", CLAUDE, &["us-east-1", "us-west-2"]),
            system_profile("global", "Global Claude Sonnet 4.5", CLAUDE, &["us-east-1", "eu-west-1"]),
            inactive,
            system_profile("us", "US Batch only", "acme.batch-only-v1", &["us-east-1"]),
        ],
        ..EmulatorConfig::default()
    }
}

fn config(emulator: &Emulator, discovery: Value) -> String {
    json!({"provider": {"baseUrl": emulator.endpoint(), "models": models()}, "discovery": discovery}).to_string()
}

fn ids(out: &Value) -> Vec<String> {
    out["models"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap().to_string()).collect()
}

fn model<'a>(out: &'a Value, id: &str) -> &'a Value {
    out["models"].as_array().unwrap().iter().find(|m| m["id"] == id).unwrap_or_else(|| panic!("{id} missing from {out}"))
}

#[test]
fn keeps_only_active_streaming_text_models_and_fills_in_known_limits() {
    let emulator = Emulator::start(mixed_catalog());
    let p = Provider::try_new(&config(&emulator, json!({"enabled": true, "defaultContextWindow": 50000, "defaultMaxTokens": 2048}))).unwrap();
    let out = p.discover(None).unwrap();
    assert_eq!(
        ids(&out),
        [
            // configured models first, in config order
            CLAUDE, "emulator.echo",
            // then discovered: global profiles first, then by name
            "global.anthropic.claude-sonnet-4-5-20250929-v1:0", "acme.unnamed-v1", "amazon.nova-pro-v1:0",
            "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
        ]
    );
    // The configured entry wins over the discovered one with the same id.
    assert_eq!(model(&out, CLAUDE)["maxTokens"], 8192);
    let nova = model(&out, "amazon.nova-pro-v1:0");
    assert_eq!(nova, &json!({"id": "amazon.nova-pro-v1:0", "name": "Nova Pro", "reasoning": false, "input": ["text", "image"],
        "cost": {"input": 0.0, "output": 0.0, "cacheRead": 0.0, "cacheWrite": 0.0}, "contextWindow": 300000, "maxTokens": 5120}));
    let unnamed = model(&out, "acme.unnamed-v1");
    assert_eq!((&unnamed["name"], &unnamed["contextWindow"], &unnamed["maxTokens"], &unnamed["input"]), (&json!("acme.unnamed-v1"), &json!(50000), &json!(2048), &json!(["text"])));
    assert_eq!(out["baseUrl"], emulator.endpoint());
    assert_eq!((&out["api"], &out["auth"]), (&json!("bedrock-converse-stream"), &json!("aws-sdk")));
    assert_eq!(out["discovery"]["status"], "discovered");
    assert_eq!(out["discovery"]["authSource"], json!({"kind": "aws-sdk", "origin": "AWS_ACCESS_KEY_ID", "ignored": []}));
}

#[test]
fn an_application_profile_gets_its_base_models_capabilities() {
    let mut catalog = mixed_catalog();
    // A name that does not say Claude: only the profile's model ARN does.
    catalog.inference_profiles.push(application_profile("team-b/prod", "Team B production", CLAUDE));
    let emulator = Emulator::start(catalog);
    let p = Provider::try_new(&config(&emulator, json!({"enabled": true}))).unwrap();
    p.discover(None).unwrap();
    let arn = "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/team-b/prod";
    // By id, and as a model object the host built itself: Claude's thinking either way.
    let by_id = request(arn, "hi", json!({"reasoning": "low"}));
    let mut by_object = request("", "hi", json!({"reasoning": "low"}));
    by_object["model"] = json!({"id": arn, "name": "prod", "reasoning": true});
    for req in [by_id, by_object] {
        assert_eq!(terminal(&start(&p, &req).finish())["type"], "done");
        let fields = emulator.stats().last_body.unwrap()["additionalModelRequestFields"].clone();
        assert_eq!(fields["thinking"]["type"], "enabled", "{fields}");
    }
}

#[test]
fn an_application_profile_discovery_did_not_list_is_asked_for_once() {
    let mut catalog = mixed_catalog();
    catalog.inference_profiles.push(application_profile("team-c/prod", "Team C production", CLAUDE));
    let arn = "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/team-c/prod";
    let mut by_object = request("", "hi", json!({"reasoning": "low"}));
    by_object["model"] = json!({"id": arn, "name": "prod", "reasoning": true});

    // No discovery has run: GetInferenceProfile names Claude, once for every stream after it.
    let emulator = Emulator::start(catalog.clone());
    let p = Provider::try_new(&config(&emulator, json!({"enabled": false}))).unwrap();
    for _ in 0..3 {
        assert_eq!(terminal(&start(&p, &by_object).finish())["type"], "done");
        let fields = emulator.stats().last_body.unwrap()["additionalModelRequestFields"].clone();
        assert_eq!(fields["thinking"]["type"], "enabled", "Claude's thinking: {fields}");
    }
    assert_eq!(emulator.stats().get_inference_profile, 1);
    assert_eq!(emulator.stats().last_model_id.as_deref(), Some(arn), "the profile is still what is invoked");

    // Without the permission: the entry as given (a name that does not say Claude), asked once.
    catalog.denied_actions = vec!["bedrock:GetInferenceProfile".into()];
    let emulator = Emulator::start(catalog);
    let p = Provider::try_new(&config(&emulator, json!({"enabled": false}))).unwrap();
    for _ in 0..2 {
        assert_eq!(terminal(&start(&p, &by_object).finish())["type"], "done");
        let fields = emulator.stats().last_body.unwrap()["additionalModelRequestFields"].clone();
        assert!(fields.get("thinking").is_none(), "not taken for Claude: {fields}");
    }
    assert_eq!(emulator.stats().get_inference_profile, 1, "a refusal is not asked again");
}

#[test]
fn profiles_inherit_their_base_model_and_application_profiles_are_invoked_by_arn() {
    let mut catalog = mixed_catalog();
    catalog.inference_profiles.push(application_profile("team-a/prod", "Team A Claude", CLAUDE));
    let emulator = Emulator::start(catalog);
    let p = Provider::try_new(&config(&emulator, json!({"enabled": true}))).unwrap();
    let out = p.discover(None).unwrap();
    let global = model(&out, "global.anthropic.claude-sonnet-4-5-20250929-v1:0");
    assert_eq!(global["name"], "Global Claude Sonnet 4.5");
    assert_eq!((&global["reasoning"], &global["input"], &global["contextWindow"], &global["maxTokens"]), (&json!(true), &json!(["text", "image"]), &json!(200000), &json!(64000)));
    let arn = "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/team-a/prod";
    let app = model(&out, arn);
    assert_eq!((&app["name"], &app["reasoning"], &app["input"]), (&json!("Team A Claude"), &json!(true), &json!(["text", "image"])));

    // Discovered ids stream right away; the ARN travels percent-encoded in the path.
    let events = start(&p, &request(arn, "emulator: reply=via profile", json!({}))).finish();
    assert_eq!(terminal(&events)["type"], "done", "{events:?}");
    let stats = emulator.stats();
    assert_eq!(stats.last_model_id.as_deref(), Some(arn));
    let raw = stats.last_raw_path.unwrap();
    assert!(raw.contains("arn%3Aaws%3Abedrock") && raw.contains("application-inference-profile%2Fteam-a%2Fprod"), "{raw}");

    // A provisioned model's ARN, passed as a model object, is encoded the same way.
    let provisioned = "arn:aws:bedrock:us-east-1:123456789012:provisioned-model/pt-0123456789ab";
    let mut by_object = request("", "emulator: reply=provisioned", json!({}));
    by_object["model"] = json!({"id": provisioned});
    let events = start(&p, &by_object).finish();
    assert_eq!(text_of(&events), "provisioned");
    assert_eq!(emulator.stats().last_model_id.as_deref(), Some(provisioned));
    assert!(emulator.stats().last_raw_path.unwrap().ends_with("provisioned-model%2Fpt-0123456789ab/converse-stream"));
}

#[test]
fn provider_filter_matches_provider_name_or_id_prefix_case_insensitively() {
    let mut catalog = mixed_catalog();
    catalog.foundation_models.push(foundation("meta.llama3-3-70b-instruct-v1:0", Some("Llama 3.3 70B"), "", &["TEXT"], &["TEXT"], true, "ACTIVE"));
    let emulator = Emulator::start(catalog);
    let p = Provider::try_new(&json!({"provider": {"baseUrl": emulator.endpoint()}, "discovery": {"providerFilter": ["ANTHROPIC", "meta"]}}).to_string()).unwrap();
    let out = p.discover(None).unwrap();
    assert_eq!(
        ids(&out),
        ["global.anthropic.claude-sonnet-4-5-20250929-v1:0", CLAUDE, "meta.llama3-3-70b-instruct-v1:0", "us.anthropic.claude-sonnet-4-5-20250929-v1:0"]
    );
    let p = Provider::try_new(&json!({"provider": {"baseUrl": emulator.endpoint()}, "discovery": {"providerFilter": "Amazon"}}).to_string()).unwrap();
    assert_eq!(ids(&p.discover(None).unwrap()), ["amazon.nova-pro-v1:0"]);
}

#[test]
fn reads_every_page_of_inference_profiles_and_dedups_ids_case_insensitively() {
    let models = ["a", "b", "c", "d", "e"].map(|n| format!("acme.model-{n}-v1"));
    let mut profiles: Vec<Value> = models.iter().map(|m| system_profile("us", &format!("US {m}"), m, &["us-east-1"])).collect();
    profiles.push(system_profile("US", "Duplicate in other case", &models[0], &["us-east-1"]));
    let emulator = Emulator::start(EmulatorConfig {
        foundation_models: models.iter().map(|m| text_model(m, m, "Acme")).collect(),
        inference_profiles: profiles,
        page_size: 2,
        ..EmulatorConfig::default()
    });
    let p = Provider::try_new(&json!({"provider": {"baseUrl": emulator.endpoint()}}).to_string()).unwrap();
    let out = p.discover(None).unwrap();
    let found = ids(&out);
    assert_eq!(found.iter().filter(|id| id.to_ascii_lowercase().starts_with("us.")).count(), 5, "{found:?}");
    assert_eq!(found.len(), 10, "{found:?}");
    // 6 system-defined profiles in pages of 2, plus one (empty) page of application profiles.
    assert_eq!(emulator.stats().list_inference_profiles, 4);
}

#[test]
fn cache_hits_expires_refreshes_and_never_keeps_a_failure() {
    let emulator = Emulator::start(mixed_catalog());
    let p = Provider::try_new(&config(&emulator, json!({"enabled": true, "refreshInterval": 1}))).unwrap();
    let first = p.discover(None).unwrap();
    let second = p.discover(Some("{}")).unwrap();
    assert_eq!((first["discovery"]["status"].as_str(), second["discovery"]["status"].as_str()), (Some("discovered"), Some("cached")));
    assert_eq!(first["models"], second["models"]);
    assert_eq!(emulator.stats().list_foundation_models, 1);
    assert_eq!(p.discover(Some(r#"{"refresh": true}"#)).unwrap()["discovery"]["status"], "discovered");
    assert_eq!(emulator.stats().list_foundation_models, 2);
    std::thread::sleep(Duration::from_millis(1100));
    p.discover(None).unwrap();
    assert_eq!(emulator.stats().list_foundation_models, 3, "expired after refreshInterval");

    // A second provider with the same region, filter and defaults shares the cache.
    let same = Provider::try_new(&config(&emulator, json!({"enabled": true, "refreshInterval": 1}))).unwrap();
    assert_eq!(same.discover(None).unwrap()["discovery"]["status"], "cached");
    // Different defaults are a different key.
    let other = Provider::try_new(&config(&emulator, json!({"enabled": true, "defaultMaxTokens": 1000}))).unwrap();
    assert_eq!(other.discover(None).unwrap()["discovery"]["status"], "discovered");
    assert_eq!(emulator.stats().list_foundation_models, 4);

    // Failures are not cached: the next call after the permission comes back succeeds.
    emulator.reconfigure(|c| c.denied_actions = vec!["bedrock:ListFoundationModels".into()]);
    let (rc, e) = p.discover(Some(r#"{"refresh": true}"#)).unwrap_err();
    assert_eq!((rc, e["code"].as_str()), (3, Some("auth")), "{e}");
    emulator.reconfigure(|c| c.denied_actions.clear());
    assert_eq!(p.discover(Some(r#"{"refresh": true}"#)).unwrap()["discovery"]["status"], "discovered");

    let no_cache = Provider::try_new(&config(&emulator, json!({"enabled": true, "refreshInterval": 0, "providerFilter": "amazon"}))).unwrap();
    let before = emulator.stats().list_foundation_models;
    no_cache.discover(None).unwrap();
    no_cache.discover(None).unwrap();
    assert_eq!(emulator.stats().list_foundation_models, before + 2, "refreshInterval 0 = no cache");
}

#[test]
fn the_cache_lives_as_long_as_a_provider_with_its_key() {
    let emulator = Emulator::start(mixed_catalog());
    // Another key stays in use throughout, so the process never runs out of providers.
    let _other_key = Provider::try_new(&config(&emulator, json!({"enabled": true, "defaultMaxTokens": 1000}))).unwrap();
    let config = config(&emulator, json!({"enabled": true}));
    let old = Provider::try_new(&config).unwrap();
    assert_eq!(old.discover(None).unwrap()["discovery"]["status"], "discovered");
    // A config reload: the new provider is built before the old one is freed.
    let new = Provider::try_new(&config).unwrap();
    drop(old);
    assert_eq!(new.discover(None).unwrap()["discovery"]["status"], "cached");
    drop(new);
    let later = Provider::try_new(&config).unwrap();
    assert_eq!(later.discover(None).unwrap()["discovery"]["status"], "discovered", "no provider held the key");
    assert_eq!(emulator.stats().list_foundation_models, 2);
}

#[test]
fn concurrent_callers_share_one_discovery_while_streams_run() {
    let emulator = Emulator::start(EmulatorConfig { list_delay: Duration::from_millis(400), ..mixed_catalog() });
    let p = Provider::try_new(&config(&emulator, json!({"enabled": true}))).unwrap();
    let slow = start(&p, &request("emulator.echo", "emulator: chunks=5 delay_ms=200", json!({})));
    let results: Vec<Value> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8).map(|_| s.spawn(|| p.discover(None).unwrap())).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(emulator.stats().list_foundation_models, 1, "one discovery for 8 concurrent callers");
    assert!(results.iter().all(|r| r["models"] == results[0]["models"]));
    assert_eq!(results.iter().filter(|r| r["discovery"]["status"] == "discovered").count(), 1);
    assert_eq!(terminal(&slow.finish())["type"], "done");
}

#[test]
fn enablement_false_answers_disabled_with_the_configured_models() {
    let emulator = Emulator::start(mixed_catalog());
    let p = Provider::try_new(&config(&emulator, json!({"enabled": false}))).unwrap();
    let out = p.discover(None).unwrap();
    assert_eq!(out["discovery"]["status"], "disabled");
    assert!(out["discovery"]["reason"].as_str().unwrap().contains("discovery.enabled is false"));
    assert_eq!(ids(&out), [CLAUDE, "emulator.echo"]);
    assert_eq!(emulator.stats().list_foundation_models, 0);
    // Unset: this process has AWS_ACCESS_KEY_ID + AWS_SECRET_ACCESS_KEY, an auth marker.
    let p = Provider::try_new(&config(&emulator, json!({}))).unwrap();
    assert_eq!(p.discover(None).unwrap()["discovery"]["status"], "discovered");
}

#[test]
fn discovery_region_wins_over_the_environment() {
    let emulator = Emulator::start(mixed_catalog());
    let p = Provider::try_new(&config(&emulator, json!({"region": "eu-central-1"}))).unwrap();
    let out = p.discover(None).unwrap();
    assert_eq!((&out["discovery"]["region"], &out["discovery"]["regionSource"]), (&json!("eu-central-1"), &json!("discovery.region")));
    assert_eq!(emulator.stats().last_region.as_deref(), Some("eu-central-1"), "the SigV4 scope names the discovery region");
    let p = Provider::try_new(&config(&emulator, json!({}))).unwrap();
    let out = p.discover(Some(r#"{"refresh": true}"#)).unwrap();
    assert_eq!((&out["discovery"]["region"], &out["discovery"]["regionSource"]), (&json!("us-east-1"), &json!("AWS_REGION")));
    assert_eq!(emulator.stats().last_region.as_deref(), Some("us-east-1"));
    // With no baseUrl the implicit config points at the regional runtime endpoint.
    let p = Provider::try_new(&json!({"provider": {}, "discovery": {"enabled": false, "region": "ap-northeast-1"}}).to_string()).unwrap();
    assert_eq!(p.discover(None).unwrap()["baseUrl"], "https://bedrock-runtime.ap-northeast-1.amazonaws.com");
}

#[test]
fn missing_permissions_name_the_action() {
    let emulator = Emulator::start(EmulatorConfig { denied_actions: vec!["bedrock:ListInferenceProfiles".into()], ..mixed_catalog() });
    let p = Provider::try_new(&config(&emulator, json!({"enabled": true}))).unwrap();
    let out = p.discover(None).unwrap();
    assert!(ids(&out).contains(&"amazon.nova-pro-v1:0".to_string()));
    assert!(!ids(&out).iter().any(|id| id.starts_with("us.") || id.starts_with("global.")), "{out}");
    let warnings = out["discovery"]["warnings"].to_string();
    assert!(warnings.contains("bedrock:ListInferenceProfiles"), "{warnings}");

    emulator.reconfigure(|c| c.denied_actions = vec!["bedrock:ListFoundationModels".into()]);
    let (rc, e) = p.discover(Some(r#"{"refresh": true}"#)).unwrap_err();
    assert_eq!((rc, e["code"].as_str(), e["awsErrorType"].as_str()), (3, Some("auth"), Some("AccessDeniedException")));
    assert!(e["message"].as_str().unwrap().starts_with("discovery needs the IAM permission bedrock:ListFoundationModels"), "{e}");
}

#[test]
fn unknown_ids_stream_only_after_discovery_found_them() {
    let emulator = Emulator::start(mixed_catalog());
    let p = Provider::try_new(&config(&emulator, json!({"enabled": true}))).unwrap();
    let (rc, e) = try_start(&p, &request("amazon.nova-pro-v1:0", "hi", json!({})), Collector::default()).err().unwrap();
    assert_eq!((rc, e["code"].as_str()), (4, Some("not_found")));
    p.discover(None).unwrap();
    let events = start(&p, &request("AMAZON.NOVA-PRO-V1:0", "emulator: reply=found", json!({}))).finish();
    assert_eq!(text_of(&events), "found");
}

#[test]
fn model_offered_only_through_profiles_is_retried_once_with_one() {
    let emulator = Emulator::start(EmulatorConfig { profile_only_models: vec![CLAUDE.into()], ..mixed_catalog() });
    // With discovery data: the global profile first.
    let p = Provider::try_new(&config(&emulator, json!({"enabled": true}))).unwrap();
    p.discover(None).unwrap();
    let events = start(&p, &request(CLAUDE, "emulator: reply=served", json!({}))).finish();
    let done = terminal(&events);
    assert_eq!(done["type"], "done", "{events:?}");
    assert_eq!(done["message"]["model"], CLAUDE);
    assert_eq!(done["message"]["responseModel"], format!("global.{CLAUDE}"));
    assert_eq!(emulator.stats().model_ids[emulator.stats().model_ids.len() - 2..], [CLAUDE.to_string(), format!("global.{CLAUDE}")]);

    // Without discovery: the geography profile derived from the id and the region.
    let p = Provider::try_new(&json!({"provider": {"baseUrl": emulator.endpoint(), "region": "eu-west-1", "models": models()}, "discovery": {"enabled": false}}).to_string()).unwrap();
    let events = start(&p, &request(CLAUDE, "emulator: reply=served", json!({}))).finish();
    assert_eq!(terminal(&events)["message"]["responseModel"], format!("eu.{CLAUDE}"));

    // A profile id that is refused too ends with the first error plus what was tried, once.
    emulator.reconfigure(|c| c.profile_only_models.push(format!("eu.{CLAUDE}")));
    let before = emulator.stats().converse_streams;
    let events = start(&p, &request(CLAUDE, "hi", json!({}))).finish();
    let error = failure(terminal(&events));
    assert_eq!(error["code"], "invalid_request");
    assert!(error["message"].as_str().unwrap().contains(&format!("after retrying {CLAUDE} with inference profile eu.{CLAUDE}")), "{error}");
    assert_eq!(emulator.stats().converse_streams, before + 2);
}

/// An endpoint that accepts connections and never answers.
fn silent_endpoint() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for connection in listener.incoming() {
            std::mem::forget(connection); // held open, never answered
        }
    });
    format!("http://{addr}")
}

#[test]
fn a_control_plane_that_never_answers_times_out_naming_the_call() {
    hermetic_env();
    let config = json!({"provider": {"baseUrl": silent_endpoint(), "models": models()}, "discovery": {"enabled": true, "callTimeoutSeconds": 1}});
    let p = Provider::try_new(&config.to_string()).unwrap();
    let started = std::time::Instant::now();
    let (rc, e) = p.discover(None).expect_err("a silent endpoint cannot be discovered");
    assert_eq!((rc, e["code"].as_str()), (10, Some("timeout")), "BP_ERR_TIMEOUT: {e}");
    assert!(e["message"].as_str().unwrap().contains("ListFoundationModels did not answer within 1 s (discovery.callTimeoutSeconds)"), "{e}");
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
}

#[test]
fn a_discovery_cut_short_by_free_says_so() {
    hermetic_env();
    let config = json!({"provider": {"baseUrl": silent_endpoint(), "models": models()}, "discovery": {"enabled": true}});
    let p = Provider::try_new(&config.to_string()).unwrap();
    let raw = p.0 as usize;
    std::mem::forget(p); // freed below, while the discovery waits
    let discovering = std::thread::spawn(move || {
        let (mut out, mut err) = (std::ptr::null_mut(), std::ptr::null_mut());
        let rc = unsafe { (api().discover)(raw as *mut _, std::ptr::null(), &mut out, &mut err) };
        (rc, take_json(err))
    });
    std::thread::sleep(Duration::from_millis(300));
    let started = std::time::Instant::now();
    unsafe { (api().provider_free)(raw as *mut _, 100) };
    let (rc, e) = discovering.join().unwrap();
    assert_eq!(rc, 8, "BP_ERR_SHUTTING_DOWN: {e}");
    assert_eq!(e["message"], "discovery was cut short: the provider is shutting down");
    // The drain deadline (100 ms) ends it: a waiting discovery is aborted, not waited for.
    assert!(started.elapsed() < Duration::from_secs(3), "free took {:?}", started.elapsed());
}
