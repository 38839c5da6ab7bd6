//! `bp_embed` end to end: through the C ABI and the real SDK's `InvokeModel` against the
//! emulator, which checks each family's request body and answers unnormalized vectors.

mod common;
use bedrock_emulator::embeddings::vector_for;
use common::*;
use serde_json::{json, Value};
use std::sync::Once;

/// The SDK's retry policy is what retries throttling: this binary allows three attempts.
fn embed_env() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        hermetic_env();
        std::env::set_var("AWS_MAX_ATTEMPTS", "3");
    });
}

fn provider() -> (Emulator, Provider) {
    embed_env();
    setup()
}

fn embed(p: &Provider, request: Value) -> Value {
    p.embed(&request).unwrap_or_else(|(rc, e)| panic!("bp_embed {request}: {rc} {e}"))
}

/// The vector the emulator made for `text`, as the host should get it: unit length.
fn expected(text: &str, dims: usize) -> Vec<f64> {
    let v = vector_for(text, dims);
    let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
    v.into_iter().map(|x| x / norm).collect()
}

fn assert_unit_and_equal(got: &Value, text: &str, dims: usize) {
    let got: Vec<f64> = got.as_array().unwrap_or_else(|| panic!("a vector for {text:?}")).iter().map(|x| x.as_f64().unwrap()).collect();
    assert_eq!(got.len(), dims, "length of {text:?}'s vector");
    let norm = got.iter().map(|x| x * x).sum::<f64>().sqrt();
    assert!((norm - 1.0).abs() < 1e-5, "{text:?}'s vector is L2-normalized (norm {norm})");
    for (i, (g, e)) in got.iter().zip(expected(text, dims)).enumerate() {
        assert!((g - e).abs() < 1e-5, "{text:?}[{i}]: {g} vs {e}");
    }
}

#[test]
fn each_family_sends_its_documented_request_and_gets_unit_vectors() {
    let (emulator, p) = provider();
    let cases = [
        ("amazon.titan-embed-text-v1", 1536, json!({"inputText": "alpha"})),
        ("amazon.titan-embed-text-v2:0", 1024, json!({"inputText": "alpha", "dimensions": 1024, "normalize": true})),
        ("cohere.embed-english-v3", 1024, json!({"texts": ["alpha"], "input_type": "search_query", "truncate": "END"})),
        (
            "cohere.embed-v4:0",
            1536,
            json!({"texts": ["alpha"], "input_type": "search_query", "truncate": "RIGHT", "embedding_types": ["float"], "output_dimension": 1536}),
        ),
        // OpenClaw's default length for Nova (1024), not the model's own 3072: an index OpenClaw's
        // provider built stays valid after a switch.
        (
            "amazon.nova-2-multimodal-embeddings-v1:0",
            1024,
            json!({"taskType": "SINGLE_EMBEDDING", "singleEmbeddingParams": {"embeddingPurpose": "TEXT_RETRIEVAL", "embeddingDimension": 1024, "text": {"truncationMode": "END", "value": "alpha"}}}),
        ),
        ("amazon.titan-embed-image-v1", 1024, json!({"inputText": "alpha", "embeddingConfig": {"outputEmbeddingLength": 1024}})),
        ("twelvelabs.marengo-embed-2-7-v1:0", 1024, json!({"inputType": "text", "inputText": "alpha", "textTruncate": "end"})),
        ("twelvelabs.marengo-embed-3-0-v1:0", 512, json!({"inputType": "text", "text": {"inputText": "alpha"}})),
    ];
    for (model, dims, body) in cases {
        let answer = embed(&p, json!({"model": model, "texts": ["alpha"], "purpose": "query"}));
        assert_eq!(emulator.stats().last_body, Some(body), "{model}: the request body as the model documents it");
        assert_eq!((answer["model"].as_str(), answer["dimensions"].as_u64()), (Some(model), Some(dims as u64)), "{model}");
        assert_unit_and_equal(&answer["embeddings"][0], "alpha", dims);

        let two = embed(&p, json!({"model": model, "texts": ["first text", "second text"]}));
        assert_eq!(two["embeddings"].as_array().unwrap().len(), 2, "{model}");
        assert_unit_and_equal(&two["embeddings"][0], "first text", dims);
        assert_unit_and_equal(&two["embeddings"][1], "second text", dims);
    }
    // A document is embedded for indexing.
    embed(&p, json!({"model": "cohere.embed-v4:0", "texts": ["doc"], "purpose": "document"}));
    assert_eq!(emulator.stats().last_body.unwrap()["input_type"], "search_document");
    embed(&p, json!({"model": "amazon.nova-2-multimodal-embeddings-v1:0", "texts": ["doc"]}));
    assert_eq!(emulator.stats().last_body.unwrap()["singleEmbeddingParams"]["embeddingPurpose"], "GENERIC_INDEX");
}

#[test]
fn the_default_model_is_titan_v2_and_prefixes_are_handled() {
    let (emulator, p) = provider();
    let answer = embed(&p, json!({"texts": ["hello"]}));
    assert_eq!(answer["model"], "amazon.titan-embed-text-v2:0");
    assert_eq!(emulator.stats().last_model_id.as_deref(), Some("amazon.titan-embed-text-v2:0"));
    // OpenClaw-style provider prefix stripped; the inference profile is kept for the call.
    let answer = embed(&p, json!({"model": "amazon-bedrock/us.cohere.embed-v4:0", "texts": ["hello"], "dimensions": 256}));
    assert_eq!(emulator.stats().last_model_id.as_deref(), Some("us.cohere.embed-v4:0"));
    assert_eq!(answer["model"], "us.cohere.embed-v4:0");
    assert_unit_and_equal(&answer["embeddings"][0], "hello", 256);
    let answer = embed(&p, json!({"model": "bedrock/amazon.titan-embed-text-v2:0", "texts": ["hello"], "dimensions": 512}));
    assert_eq!(emulator.stats().last_body.unwrap()["dimensions"], 512);
    assert_unit_and_equal(&answer["embeddings"][0], "hello", 512);
}

#[test]
fn dimensions_a_model_does_not_offer_are_refused_before_any_call() {
    let (emulator, p) = provider();
    let before = emulator.stats().invoke_model;
    for (model, dims, valid) in [
        ("amazon.titan-embed-text-v2:0", 300, "1024, 512, 256"),
        // OpenClaw's table lists 384 and 768 for Cohere Embed v4; AWS's parameters allow neither.
        ("cohere.embed-v4:0", 768, "1536, 1024, 512, 256"),
        ("cohere.embed-v4:0", 384, "1536, 1024, 512, 256"),
        ("amazon.nova-2-multimodal-embeddings-v1:0", 512, "1024, 3072, 384, 256"),
        ("amazon.titan-embed-image-v1", 512, "1024, 384, 256"),
        ("twelvelabs.marengo-embed-3-0-v1:0", 1024, "512"),
        ("cohere.embed-english-v3", 512, "1024"),
    ] {
        let (rc, err) = p.embed(&json!({"model": model, "texts": ["x"], "dimensions": dims})).unwrap_err();
        assert_eq!((rc, err["code"].as_str()), (1, Some("invalid_argument")), "{model}: {err}");
        let message = err["message"].as_str().unwrap();
        assert!(message.contains(&format!("valid values are {valid}")) && message.contains(&dims.to_string()), "{message}");
    }
    assert_eq!(emulator.stats().invoke_model, before, "no call was made");
    let nova = embed(&p, json!({"model": "amazon.nova-2-multimodal-embeddings-v1:0", "texts": ["x"], "dimensions": 384}));
    assert_unit_and_equal(&nova["embeddings"][0], "x", 384);
    let nova = embed(&p, json!({"model": "amazon.nova-2-multimodal-embeddings-v1:0", "texts": ["x"], "dimensions": 3072}));
    assert_unit_and_equal(&nova["embeddings"][0], "x", 3072);
    // Throughput suffixes and region prefixes inherit their base model's table row.
    let titan = embed(&p, json!({"model": "us.amazon.titan-embed-image-v1", "texts": ["x"], "dimensions": 256}));
    assert_eq!(emulator.stats().last_body.unwrap()["embeddingConfig"]["outputEmbeddingLength"], 256);
    assert_unit_and_equal(&titan["embeddings"][0], "x", 256);
}

#[test]
fn blank_texts_get_empty_vectors_without_a_call() {
    let (emulator, p) = provider();
    let before = emulator.stats().invoke_model;
    let answer = embed(&p, json!({"texts": ["", "one", "   \n"]}));
    let vectors = answer["embeddings"].as_array().unwrap();
    assert_eq!((vectors[0].clone(), vectors[2].clone()), (json!([]), json!([])));
    assert_unit_and_equal(&vectors[1], "one", 1024);
    assert_eq!(emulator.stats().invoke_model, before + 1);
    let none = embed(&p, json!({"texts": []}));
    assert_eq!(none["embeddings"], json!([]));
    assert_eq!(emulator.stats().invoke_model, before + 1);
}

#[test]
fn cohere_batches_ninety_six_texts_per_call_and_keeps_their_order() {
    let (emulator, p) = provider();
    let texts: Vec<String> = (0..200).map(|i| format!("text number {i}")).collect();
    let before = emulator.stats().invoke_model;
    let answer = embed(&p, json!({"model": "cohere.embed-multilingual-v3", "texts": texts}));
    assert_eq!(emulator.stats().invoke_model - before, 3, "96 + 96 + 8 texts");
    let vectors = answer["embeddings"].as_array().unwrap();
    assert_eq!(vectors.len(), 200);
    for (i, v) in vectors.iter().enumerate() {
        assert_unit_and_equal(v, &texts[i], 1024);
    }
    // The single-text families run their calls concurrently and still answer in order.
    let answer = embed(&p, json!({"model": "amazon.titan-embed-text-v2:0", "texts": &texts[..40], "dimensions": 256}));
    for (i, v) in answer["embeddings"].as_array().unwrap().iter().enumerate() {
        assert_unit_and_equal(v, &texts[i], 256);
    }
}

#[test]
fn a_malformed_answer_is_a_model_error_naming_the_model() {
    let (_emulator, p) = provider();
    for model in ["amazon.titan-embed-text-v2:0", "cohere.embed-v4:0", "amazon.nova-2-multimodal-embeddings-v1:0", "twelvelabs.marengo-embed-2-7-v1:0"] {
        let (rc, err) = p.embed(&json!({"model": model, "texts": ["fine", "emulator:malformed"]})).unwrap_err();
        assert_eq!((rc, err["code"].as_str(), err["retryable"].as_bool()), (12, Some("model_error"), Some(false)), "{model}: {err}");
        let message = err["message"].as_str().unwrap();
        assert!(message.contains(model) && message.contains("not a finite number"), "{message}");
    }
}

#[test]
fn throttling_is_retried_by_the_sdk_policy_then_reported() {
    let (emulator, p) = provider();
    let before = emulator.stats().invoke_model;
    let answer = embed(&p, json!({"texts": ["busy emulator:throttle=2"]}));
    assert_unit_and_equal(&answer["embeddings"][0], "busy emulator:throttle=2", 1024);
    assert_eq!(emulator.stats().invoke_model - before, 3, "two throttled attempts, then the answer");
    let (rc, err) = p.embed(&json!({"texts": ["very busy emulator:throttle=9"]})).unwrap_err();
    assert_eq!((rc, err["code"].as_str(), err["retryable"].as_bool()), (5, Some("throttled"), Some(true)), "{err}");
    assert!(err["message"].as_str().unwrap().starts_with("Throttling error:"), "{err}");
}

#[test]
fn bad_requests_are_refused_with_the_field_named() {
    let (_emulator, p) = provider();
    let refused = |request: Value| p.embed(&request).unwrap_err();
    let (rc, err) = refused(json!({"model": "anthropic.claude-3-haiku-20240307-v1:0", "texts": ["x"]}));
    assert_eq!((rc, err["code"].as_str()), (4, Some("not_found")), "{err}");
    assert!(err["message"].as_str().unwrap().contains("not an embedding model"));
    for (request, field) in [
        (json!({"model": "amazon.titan-embed-text-v2:0"}), "texts"),
        (json!({"texts": "one"}), "texts"),
        (json!({"texts": ["ok", 3]}), "texts[1]"),
        (json!({"texts": ["x"], "purpose": "search"}), "purpose"),
        (json!({"texts": ["x"], "dimensions": -4}), "dimensions"),
        (json!({"texts": ["x"], "normalize": false}), "normalize"),
    ] {
        let (rc, err) = refused(request.clone());
        assert_eq!(rc, 1, "{request}: {err}");
        assert!(err["message"].as_str().unwrap().contains(field), "{request}: {err}");
    }
    let (rc, err) = refused(json!({"texts": vec!["x"; 10_001]}));
    assert_eq!((rc, err["code"].as_str()), (15, Some("too_large")), "{err}");
    // Not JSON, NULL pointers: clear errors, no crash.
    let body = std::ffi::CString::new("{not json").unwrap();
    let (mut out, mut err) = (std::ptr::null_mut(), std::ptr::null_mut());
    assert_eq!(unsafe { (api().embed)(p.0, body.as_ptr(), &mut out, &mut err) }, 1);
    assert!(take_json(err)["message"].as_str().unwrap().contains("not valid JSON"));
    let mut err = std::ptr::null_mut();
    assert_eq!(unsafe { (api().embed)(std::ptr::null_mut(), body.as_ptr(), &mut out, &mut err) }, 1);
    assert!(take_json(err)["message"].as_str().unwrap().contains("provider is NULL"));
    let mut err = std::ptr::null_mut();
    assert_eq!(unsafe { (api().embed)(p.0, body.as_ptr(), std::ptr::null_mut(), &mut err) }, 1);
    assert!(take_json(err)["message"].as_str().unwrap().contains("out_json is NULL"));
}

#[test]
fn embeddings_run_beside_open_streams_and_the_concurrency_setting_is_read() {
    let (emulator, p) = provider();
    let stream = start(&p, &request("emulator.echo", "emulator: chunks=5 delay_ms=100", json!({})));
    let answer = embed(&p, json!({"texts": ["while streaming"]}));
    assert_unit_and_equal(&answer["embeddings"][0], "while streaming", 1024);
    assert_eq!(text_of(&stream.finish()), "w0 w1 w2 w3 w4 ");
    let mut config = config_for(&emulator.endpoint());
    config["embeddings"] = json!({"concurrency": 0});
    let (rc, err) = Provider::try_new(&config.to_string()).err().expect("concurrency 0 is refused");
    assert_eq!(rc, 2, "{err}");
    assert!(err["message"].as_str().unwrap().contains("embeddings.concurrency"), "{err}");
    config["embeddings"] = json!({"concurrency": 1});
    let serial = Provider::try_new(&config.to_string()).map_err(|(rc, e)| format!("{rc} {e}")).unwrap();
    let answer = embed(&serial, json!({"texts": ["a", "b", "c"]}));
    assert_eq!(answer["embeddings"].as_array().unwrap().len(), 3);
}
