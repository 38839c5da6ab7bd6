//! The `trace` of ConverseStream's metadata event (sent when `guardrailConfig.trace` is
//! `enabled`), as Bedrock's own JSON shape, for the final message. A gateway that asked for the
//! trace needs it to tell its user which policy stopped the answer. The SDK types are not
//! serializable, so the shape is written out here; automated-reasoning findings (a large tree of
//! their own) are left out.

use aws_sdk_bedrockruntime::types::{
    ConverseStreamTrace, GuardrailAssessment, GuardrailContentPolicyAssessment, GuardrailContextualGroundingPolicyAssessment, GuardrailInvocationMetrics,
    GuardrailSensitiveInformationPolicyAssessment, GuardrailTopicPolicyAssessment, GuardrailTraceAssessment, GuardrailWordPolicyAssessment,
};
use serde_json::{json, Map, Value};

pub fn to_json(trace: &ConverseStreamTrace) -> Value {
    let mut out = Map::new();
    if let Some(g) = &trace.guardrail {
        out.insert("guardrail".into(), guardrail(g));
    }
    if let Some(id) = trace.prompt_router.as_ref().and_then(|r| r.invoked_model_id.as_deref()) {
        out.insert("promptRouter".into(), json!({ "invokedModelId": id }));
    }
    without_nulls(Value::Object(out))
}

/// Bedrock leaves absent members out rather than sending null.
fn without_nulls(v: Value) -> Value {
    match v {
        Value::Object(map) => Value::Object(map.into_iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| (k, without_nulls(v))).collect()),
        Value::Array(list) => Value::Array(list.into_iter().map(without_nulls).collect()),
        other => other,
    }
}

fn guardrail(g: &GuardrailTraceAssessment) -> Value {
    let mut out = Map::new();
    if let Some(v) = &g.model_output {
        out.insert("modelOutput".into(), json!(v));
    }
    if let Some(map) = &g.input_assessment {
        out.insert("inputAssessment".into(), map.iter().map(|(id, a)| (id.clone(), assessment(a))).collect::<Map<_, _>>().into());
    }
    if let Some(map) = &g.output_assessments {
        let each = |list: &Vec<GuardrailAssessment>| Value::Array(list.iter().map(assessment).collect());
        out.insert("outputAssessments".into(), map.iter().map(|(id, list)| (id.clone(), each(list))).collect::<Map<_, _>>().into());
    }
    if let Some(reason) = &g.action_reason {
        out.insert("actionReason".into(), json!(reason));
    }
    Value::Object(out)
}

fn assessment(a: &GuardrailAssessment) -> Value {
    let mut out = Map::new();
    let mut put = |key: &str, value: Option<Value>| {
        if let Some(v) = value {
            out.insert(key.into(), v);
        }
    };
    put("topicPolicy", a.topic_policy.as_ref().map(topics));
    put("contentPolicy", a.content_policy.as_ref().map(content));
    put("wordPolicy", a.word_policy.as_ref().map(words));
    put("sensitiveInformationPolicy", a.sensitive_information_policy.as_ref().map(sensitive));
    put("contextualGroundingPolicy", a.contextual_grounding_policy.as_ref().map(grounding));
    put("invocationMetrics", a.invocation_metrics.as_ref().map(metrics));
    put(
        "appliedGuardrailDetails",
        a.applied_guardrail_details.as_ref().map(|d| {
            json!({
                "guardrailId": d.guardrail_id,
                "guardrailVersion": d.guardrail_version,
                "guardrailArn": d.guardrail_arn,
                "guardrailOrigin": d.guardrail_origin.as_ref().map(|o| o.iter().map(|x| x.as_str()).collect::<Vec<_>>()),
                "guardrailOwnership": d.guardrail_ownership.as_ref().map(|o| o.as_str()),
            })
        }),
    );
    Value::Object(out)
}

fn topics(p: &GuardrailTopicPolicyAssessment) -> Value {
    let topics: Vec<Value> = p
        .topics
        .iter()
        .map(|t| json!({"name": t.name, "type": t.r#type.as_str(), "action": t.action.as_str(), "detected": t.detected}))
        .collect();
    json!({ "topics": topics })
}

fn content(p: &GuardrailContentPolicyAssessment) -> Value {
    let filters: Vec<Value> = p
        .filters
        .iter()
        .map(|f| {
            json!({
                "type": f.r#type.as_str(),
                "confidence": f.confidence.as_str(),
                "filterStrength": f.filter_strength.as_ref().map(|s| s.as_str()),
                "action": f.action.as_str(),
                "detected": f.detected,
            })
        })
        .collect();
    json!({ "filters": filters })
}

fn words(p: &GuardrailWordPolicyAssessment) -> Value {
    let custom: Vec<Value> = p.custom_words.iter().map(|w| json!({"match": w.r#match, "action": w.action.as_str(), "detected": w.detected})).collect();
    let managed: Vec<Value> = p
        .managed_word_lists
        .iter()
        .map(|w| json!({"match": w.r#match, "type": w.r#type.as_str(), "action": w.action.as_str(), "detected": w.detected}))
        .collect();
    json!({ "customWords": custom, "managedWordLists": managed })
}

fn sensitive(p: &GuardrailSensitiveInformationPolicyAssessment) -> Value {
    let pii: Vec<Value> = p
        .pii_entities
        .iter()
        .map(|e| json!({"match": e.r#match, "type": e.r#type.as_str(), "action": e.action.as_str(), "detected": e.detected}))
        .collect();
    let regexes: Vec<Value> = p
        .regexes
        .iter()
        .map(|r| json!({"name": r.name, "match": r.r#match, "regex": r.regex, "action": r.action.as_str(), "detected": r.detected}))
        .collect();
    json!({ "piiEntities": pii, "regexes": regexes })
}

fn grounding(p: &GuardrailContextualGroundingPolicyAssessment) -> Value {
    let filters: Vec<Value> = p
        .filters
        .iter()
        .flatten()
        .map(|f| json!({"type": f.r#type.as_str(), "threshold": f.threshold, "score": f.score, "action": f.action.as_str(), "detected": f.detected}))
        .collect();
    json!({ "filters": filters })
}

fn metrics(m: &GuardrailInvocationMetrics) -> Value {
    let usage = m.usage.as_ref().map(|u| {
        json!({
            "topicPolicyUnits": u.topic_policy_units,
            "contentPolicyUnits": u.content_policy_units,
            "wordPolicyUnits": u.word_policy_units,
            "sensitiveInformationPolicyUnits": u.sensitive_information_policy_units,
            "sensitiveInformationPolicyFreeUnits": u.sensitive_information_policy_free_units,
            "contextualGroundingPolicyUnits": u.contextual_grounding_policy_units,
            "contentPolicyImageUnits": u.content_policy_image_units,
        })
    });
    let coverage = m.guardrail_coverage.as_ref().map(|c| {
        json!({
            "textCharacters": c.text_characters.as_ref().map(|t| json!({"guarded": t.guarded, "total": t.total})),
            "images": c.images.as_ref().map(|t| json!({"guarded": t.guarded, "total": t.total})),
        })
    });
    json!({ "guardrailProcessingLatency": m.guardrail_processing_latency, "usage": usage, "guardrailCoverage": coverage })
}
