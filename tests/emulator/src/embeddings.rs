//! InvokeModel for embedding models. Each family's request body is checked as its Bedrock
//! documentation describes it (unknown keys, wrong enums and dimensions are ValidationExceptions),
//! and the answer is a deterministic vector per text in the family's response shape. Vectors are
//! not normalized (except where the model was asked to normalize), so a client's own
//! normalization shows. Scenarios ride in the text: `emulator:throttle=N` throttles the first N
//! calls carrying that text, `emulator:malformed` answers a vector with a non-number in it.

use serde_json::{json, Map, Value};
use std::collections::HashMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    TitanV1,
    TitanV2,
    TitanImage,
    CohereV3,
    CohereV4,
    Nova,
    Marengo,
    MarengoV3,
}

/// The family of a base model id (an inference-profile prefix such as `us.` is ignored).
pub fn family(model_id: &str) -> Option<Family> {
    let id = match model_id.split_once('.') {
        Some((geo, rest)) if !["amazon", "cohere", "twelvelabs"].contains(&geo) => rest,
        _ => model_id,
    };
    Some(match id {
        "amazon.titan-embed-text-v1" | "amazon.titan-embed-g1-text-02" => Family::TitanV1,
        "amazon.titan-embed-text-v2:0" => Family::TitanV2,
        "amazon.titan-embed-image-v1" => Family::TitanImage,
        "cohere.embed-english-v3" | "cohere.embed-multilingual-v3" => Family::CohereV3,
        "cohere.embed-v4:0" => Family::CohereV4,
        "amazon.nova-2-multimodal-embeddings-v1:0" => Family::Nova,
        "twelvelabs.marengo-embed-2-7-v1:0" => Family::Marengo,
        "twelvelabs.marengo-embed-3-0-v1:0" => Family::MarengoV3,
        _ => return None,
    })
}

/// The emulator's vector for `text`: the same for the same text and length, never normalized.
pub fn vector_for(text: &str, dims: usize) -> Vec<f64> {
    let mut seed: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        seed = (seed ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    (0..dims)
        .map(|i| {
            let x = seed.wrapping_add(i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 40;
            (x % 2001) as f64 / 100.0 - 10.0
        })
        .collect()
}

/// Calls seen per text carrying `emulator:throttle=N`.
#[derive(Default)]
pub struct Throttles(HashMap<String, u32>);

pub struct Refusal {
    pub status: u16,
    pub error_type: &'static str,
    pub message: String,
}

fn invalid(message: impl Into<String>) -> Refusal {
    Refusal { status: 400, error_type: "ValidationException", message: message.into() }
}

fn keys(body: &Map<String, Value>, allowed: &[&str]) -> Result<(), Refusal> {
    match body.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(invalid(format!("Malformed input request: extraneous key [{k}] is not permitted, please reformat your input and try again."))),
        None => Ok(()),
    }
}

fn one_of<'a>(body: &'a Map<String, Value>, key: &str, allowed: &[&str], required: bool) -> Result<Option<&'a str>, Refusal> {
    match body.get(key) {
        None if required => Err(invalid(format!("Malformed input request: required key [{key}] not found"))),
        None => Ok(None),
        Some(Value::String(s)) if allowed.contains(&s.as_str()) => Ok(Some(s)),
        Some(v) => Err(invalid(format!("Malformed input request: {key}: {v} is not a valid enum value ({})", allowed.join(", ")))),
    }
}

fn dimension(body: &Map<String, Value>, key: &str, allowed: &[u64], default: u64) -> Result<usize, Refusal> {
    match body.get(key) {
        None => Ok(default as usize),
        Some(v) => match v.as_u64() {
            Some(d) if allowed.contains(&d) => Ok(d as usize),
            _ => Err(invalid(format!("Malformed input request: {key}: {v} is not one of {allowed:?}"))),
        },
    }
}

fn text_field<'a>(body: &'a Map<String, Value>, key: &str) -> Result<&'a str, Refusal> {
    match body.get(key) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        Some(_) => Err(invalid(format!("Malformed input request: {key} must be a non-empty string"))),
        None => Err(invalid(format!("Malformed input request: required key [{key}] not found"))),
    }
}

fn vector_json(text: &str, dims: usize, normalize: bool) -> Value {
    if text.contains("emulator:malformed") {
        return json!([0.5, "not a number", 0.25]);
    }
    let mut v = vector_for(text, dims);
    if normalize {
        let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
        v.iter_mut().for_each(|x| *x /= norm);
    }
    json!(v)
}

fn throttled(throttles: &mut Throttles, texts: &[&str]) -> Option<Refusal> {
    for t in texts {
        let Some(n) = t.split("emulator:throttle=").nth(1).and_then(|r| r.split_whitespace().next()).and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let seen = throttles.0.entry(t.to_string()).or_insert(0);
        *seen += 1;
        if *seen <= n {
            return Some(Refusal { status: 429, error_type: "ThrottlingException", message: "Too many requests, please wait before trying again.".into() });
        }
    }
    None
}

/// Answers one InvokeModel call to an embedding model.
pub fn invoke(model_id: &str, body: &Value, throttles: &mut Throttles) -> Result<Value, Refusal> {
    let family = family(model_id).ok_or_else(|| invalid("The provided model identifier is invalid."))?;
    let body = body.as_object().ok_or_else(|| invalid("Malformed input request, please reformat your input and try again."))?;
    match family {
        Family::TitanV1 | Family::TitanV2 => {
            let (dims, normalize) = if family == Family::TitanV1 {
                keys(body, &["inputText"])?;
                (1536, false)
            } else {
                keys(body, &["inputText", "dimensions", "normalize", "embeddingTypes"])?;
                let normalize = match body.get("normalize") {
                    None => true,
                    Some(Value::Bool(b)) => *b,
                    Some(v) => return Err(invalid(format!("Malformed input request: normalize: expected a boolean, got {v}"))),
                };
                (dimension(body, "dimensions", &[256, 512, 1024], 1024)?, normalize)
            };
            let text = text_field(body, "inputText")?;
            if let Some(r) = throttled(throttles, &[text]) {
                return Err(r);
            }
            let v = vector_json(text, dims, normalize);
            let mut answer = json!({"embedding": v, "inputTextTokenCount": text.split_whitespace().count()});
            if family == Family::TitanV2 {
                answer["embeddingsByType"] = json!({"float": v});
            }
            Ok(answer)
        }
        Family::TitanImage => {
            // Titan Multimodal Embeddings G1: text and/or image, one length for both.
            keys(body, &["inputText", "inputImage", "embeddingConfig"])?;
            let dims = match body.get("embeddingConfig") {
                None => 1024,
                Some(Value::Object(config)) => {
                    keys(config, &["outputEmbeddingLength"])?;
                    dimension(config, "outputEmbeddingLength", &[256, 384, 1024], 1024)?
                }
                Some(v) => return Err(invalid(format!("Malformed input request: embeddingConfig: {v} is not an object"))),
            };
            let text = text_field(body, "inputText")?;
            if let Some(r) = throttled(throttles, &[text]) {
                return Err(r);
            }
            Ok(json!({"embedding": vector_json(text, dims, false), "inputTextTokenCount": text.split_whitespace().count()}))
        }
        Family::MarengoV3 => {
            // Marengo 3.0 nests each modality's input under its own key.
            keys(body, &["inputType", "text", "image", "text_image", "audio", "video", "multi_input"])?;
            one_of(body, "inputType", &["text", "image", "text_image", "audio", "video", "multi_input"], true)?;
            let input = body.get("text").and_then(Value::as_object).ok_or_else(|| invalid("Malformed input request: text is required for inputType text"))?;
            keys(input, &["inputText"])?;
            let text = text_field(input, "inputText")?;
            if let Some(r) = throttled(throttles, &[text]) {
                return Err(r);
            }
            Ok(json!({"data": [{"embedding": vector_json(text, 512, false)}]}))
        }
        Family::CohereV3 | Family::CohereV4 => {
            let v4 = family == Family::CohereV4;
            if v4 {
                keys(body, &["texts", "input_type", "embedding_types", "output_dimension", "max_tokens", "truncate", "images", "inputs"])?;
                one_of(body, "truncate", &["NONE", "LEFT", "RIGHT"], false)?;
            } else {
                keys(body, &["texts", "input_type", "truncate", "embedding_types", "images"])?;
                one_of(body, "truncate", &["NONE", "START", "END"], false)?;
            }
            one_of(body, "input_type", &["search_document", "search_query", "classification", "clustering"], true)?;
            let texts: Vec<&str> = match body.get("texts") {
                Some(Value::Array(items)) => items.iter().map(|t| t.as_str().ok_or_else(|| invalid("Malformed input request: texts must be strings"))).collect::<Result<_, _>>()?,
                _ => return Err(invalid("Malformed input request: required key [texts] not found")),
            };
            if texts.is_empty() || texts.len() > 96 {
                return Err(invalid(format!("Malformed input request: texts: between 1 and 96 texts per call, got {}", texts.len())));
            }
            let dims = if v4 { dimension(body, "output_dimension", &[256, 512, 1024, 1536], 1536)? } else { 1024 };
            if let Some(r) = throttled(throttles, &texts) {
                return Err(r);
            }
            let vectors: Vec<Value> = texts.iter().map(|t| vector_json(t, dims, false)).collect();
            let by_type = v4 || body.get("embedding_types").is_some();
            if by_type && !body["embedding_types"].as_array().is_some_and(|a| a.iter().any(|t| t == "float")) {
                return Err(invalid("Malformed input request: embedding_types must include \"float\" here"));
            }
            let embeddings = if by_type { json!({"float": vectors}) } else { json!(vectors) };
            Ok(json!({
                "id": "emulator-embed", "texts": texts, "embeddings": embeddings,
                "response_type": if by_type { "embeddings_by_type" } else { "embeddings_floats" },
            }))
        }
        Family::Nova => {
            keys(body, &["schemaVersion", "taskType", "singleEmbeddingParams"])?;
            one_of(body, "schemaVersion", &["nova-multimodal-embed-v1"], false)?;
            one_of(body, "taskType", &["SINGLE_EMBEDDING"], true)?;
            let params = body.get("singleEmbeddingParams").and_then(Value::as_object).ok_or_else(|| invalid("Malformed input request: required key [singleEmbeddingParams] not found"))?;
            keys(params, &["embeddingPurpose", "embeddingDimension", "text", "image", "audio", "video"])?;
            one_of(
                params,
                "embeddingPurpose",
                &["GENERIC_INDEX", "GENERIC_RETRIEVAL", "TEXT_RETRIEVAL", "IMAGE_RETRIEVAL", "VIDEO_RETRIEVAL", "DOCUMENT_RETRIEVAL", "AUDIO_RETRIEVAL", "CLASSIFICATION", "CLUSTERING"],
                true,
            )?;
            let dims = dimension(params, "embeddingDimension", &[256, 384, 1024, 3072], 3072)?;
            let text = params.get("text").and_then(Value::as_object).ok_or_else(|| invalid("Malformed input request: singleEmbeddingParams.text is required for text"))?;
            keys(text, &["truncationMode", "value", "source"])?;
            one_of(text, "truncationMode", &["START", "END", "NONE"], true)?;
            let value = text_field(text, "value")?;
            if let Some(r) = throttled(throttles, &[value]) {
                return Err(r);
            }
            Ok(json!({"embeddings": [{"embeddingType": "TEXT", "embedding": vector_json(value, dims, false)}]}))
        }
        Family::Marengo => {
            keys(body, &["inputType", "inputText", "textTruncate"])?;
            one_of(body, "inputType", &["text"], true)?;
            one_of(body, "textTruncate", &["end", "none"], false)?;
            let text = text_field(body, "inputText")?;
            if let Some(r) = throttled(throttles, &[text]) {
                return Err(r);
            }
            Ok(json!({"data": [{"embedding": vector_json(text, 1024, false), "embeddingOption": "visual-text", "startSec": 0.0, "endSec": 0.0}]}))
        }
    }
}
