//! Control-plane answers: `ListFoundationModels` and `ListInferenceProfiles` in Bedrock's shapes.

use serde_json::{json, Value};

pub fn default_foundation_models() -> Vec<Value> {
    let model = |id: &str, name: &str, provider: &str, input: &[&str]| {
        json!({
            "modelArn": format!("arn:aws:bedrock:us-east-1::foundation-model/{id}"),
            "modelId": id, "modelName": name, "providerName": provider,
            "inputModalities": input, "outputModalities": ["TEXT"],
            "responseStreamingSupported": true,
            "customizationsSupported": [], "inferenceTypesSupported": ["ON_DEMAND"],
            "modelLifecycle": {"status": "ACTIVE"}
        })
    };
    vec![
        model("anthropic.claude-sonnet-4-5-20250929-v1:0", "Claude Sonnet 4.5", "Anthropic", &["TEXT", "IMAGE"]),
        model("amazon.nova-pro-v1:0", "Nova Pro", "Amazon", &["TEXT", "IMAGE", "VIDEO"]),
        model("meta.llama3-3-70b-instruct-v1:0", "Llama 3.3 70B Instruct", "Meta", &["TEXT"]),
    ]
}

pub fn default_inference_profiles() -> Vec<Value> {
    let claude = "anthropic.claude-sonnet-4-5-20250929-v1:0";
    vec![
        system_profile("us", "US Claude Sonnet 4.5", claude, &["us-east-1", "us-east-2", "us-west-2"]),
        system_profile("global", "Global Claude Sonnet 4.5", claude, &["us-east-1", "eu-west-1", "ap-northeast-1"]),
    ]
}

/// A system-defined (cross-region) inference profile `<prefix>.<model>` routing to `regions`.
pub fn system_profile(prefix: &str, name: &str, model: &str, regions: &[&str]) -> Value {
    let id = format!("{prefix}.{model}");
    json!({
        "inferenceProfileName": name,
        "inferenceProfileId": id,
        "inferenceProfileArn": format!("arn:aws:bedrock:us-east-1:123456789012:inference-profile/{id}"),
        "status": "ACTIVE", "type": "SYSTEM_DEFINED",
        "description": format!("Routes requests to {model} across regions"),
        "models": regions.iter().map(|r| json!({"modelArn": format!("arn:aws:bedrock:{r}::foundation-model/{model}")})).collect::<Vec<_>>()
    })
}

/// An application inference profile `id` (a team's own name and ARN) in front of `model`.
pub fn application_profile(id: &str, name: &str, model: &str) -> Value {
    json!({
        "inferenceProfileName": name, "inferenceProfileId": id,
        "inferenceProfileArn": format!("arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/{id}"),
        "status": "ACTIVE", "type": "APPLICATION",
        "models": [{"modelArn": format!("arn:aws:bedrock:us-east-1::foundation-model/{model}")}]
    })
}

pub fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|kv| kv.strip_prefix(name).and_then(|r| r.strip_prefix('=')).map(crate::sigv4::percent_decode))
}

/// One page of `items` starting at the `nextToken` offset, in the response member `member`.
pub fn page(member: &str, items: &[Value], query: &str, page_size: usize) -> Value {
    let param = |name: &str| query_param(query, name);
    let start: usize = param("nextToken").and_then(|t| t.strip_prefix("page-").and_then(|n| n.parse().ok())).unwrap_or(0);
    let size = param("maxResults").and_then(|m| m.parse().ok()).unwrap_or(page_size).min(page_size).max(1);
    let end = (start + size).min(items.len());
    let mut out = json!({ member: items.get(start..end).unwrap_or(&[]) });
    if end < items.len() {
        out["nextToken"] = json!(format!("page-{end}"));
    }
    out
}
