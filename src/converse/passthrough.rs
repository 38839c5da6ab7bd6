//! ConverseStream fields a gateway passes straight to Bedrock, in Bedrock's own vocabulary:
//! `options.guardrailConfig`, `performanceConfig`, `requestMetadata`,
//! `additionalModelRequestFields` and `additionalModelResponseFieldPaths` (whose values come back
//! on the final message). Checked here so a typo fails at `bp_stream_start` naming the field.

use super::document::to_document;
use crate::error::Result;
use crate::json::{describe, Obj};
use aws_sdk_bedrockruntime::types::{
    GuardrailStreamConfiguration, GuardrailStreamProcessingMode, GuardrailTrace, PerformanceConfigLatency, PerformanceConfiguration,
};
use aws_smithy_types::Document;
use serde_json::Value;
use std::collections::HashMap;

/// Bedrock's limits on `requestMetadata`: 16 pairs, keys 1-256 and values 0-256 characters.
const METADATA_PAIRS: usize = 16;
const METADATA_LEN: usize = 256;

#[derive(Debug, Clone, Default)]
pub struct Passthrough {
    pub guardrail: Option<GuardrailStreamConfiguration>,
    pub performance: Option<PerformanceConfiguration>,
    pub request_metadata: Option<HashMap<String, String>>,
    /// Merged under the plugin's own fields (thinking); the host's win on a clash.
    pub additional_request_fields: Option<serde_json::Map<String, Value>>,
    pub response_field_paths: Option<Vec<String>>,
}

fn one_of<'a>(o: &Obj<'a>, key: &str, allowed: &[&str]) -> Result<Option<&'a str>> {
    match o.str(key)? {
        Some(v) if !allowed.contains(&v) => Err(o.err(key, format!("must be one of {}; got \"{v}\"", allowed.join(", ")))),
        v => Ok(v),
    }
}

/// A guardrail in Bedrock's words: `{guardrailIdentifier, guardrailVersion, trace?,
/// streamProcessingMode?}`, per request (`options.guardrailConfig`) or for every request of a
/// provider (the init config's `guardrail`).
pub fn guardrail(g: &Obj<'_>) -> Result<GuardrailStreamConfiguration> {
    g.only(&["guardrailIdentifier", "guardrailVersion", "trace", "streamProcessingMode"])?;
    let id = g.req_str("guardrailIdentifier")?;
    let version = g.req_str("guardrailVersion")?;
    let mut built = GuardrailStreamConfiguration::builder().guardrail_identifier(id).guardrail_version(version);
    if let Some(trace) = one_of(g, "trace", &["enabled", "disabled", "enabled_full"])? {
        built = built.trace(GuardrailTrace::from(trace));
    }
    if let Some(mode) = one_of(g, "streamProcessingMode", &["sync", "async"])? {
        built = built.stream_processing_mode(GuardrailStreamProcessingMode::from(mode));
    }
    Ok(built.build())
}

pub fn parse(options: &Obj<'_>) -> Result<Passthrough> {
    let mut out = Passthrough::default();
    if let Some(g) = options.obj("guardrailConfig")? {
        out.guardrail = Some(guardrail(&g)?);
    }
    if let Some(p) = options.obj("performanceConfig")? {
        p.only(&["latency"])?;
        let latency = one_of(&p, "latency", &["standard", "optimized"])?.unwrap_or("standard");
        out.performance = Some(PerformanceConfiguration::builder().latency(PerformanceConfigLatency::from(latency)).build());
    }
    if let Some(m) = options.obj("requestMetadata")? {
        let map = m.map;
        if map.len() > METADATA_PAIRS {
            return Err(options.err("requestMetadata", format!("at most {METADATA_PAIRS} pairs, got {}", map.len())));
        }
        let mut pairs = HashMap::new();
        for (k, v) in map {
            let Some(v) = v.as_str() else { return Err(m.err(k, format!("expected a string, got {}", describe(v)))) };
            if k.is_empty() || k.chars().count() > METADATA_LEN || v.chars().count() > METADATA_LEN {
                return Err(m.err(k, format!("keys are 1-{METADATA_LEN} and values 0-{METADATA_LEN} characters")));
            }
            pairs.insert(k.clone(), v.to_string());
        }
        out.request_metadata = Some(pairs);
    }
    if let Some(f) = options.obj("additionalModelRequestFields")? {
        out.additional_request_fields = Some(f.map.clone());
    }
    if let Some(paths) = options.str_array("additionalModelResponseFieldPaths")? {
        if let Some(bad) = paths.iter().find(|p| !p.starts_with('/')) {
            return Err(options.err("additionalModelResponseFieldPaths", format!("\"{bad}\" is not a JSON Pointer (it must start with /)")));
        }
        out.response_field_paths = Some(paths);
    }
    Ok(out)
}

/// The plugin's own additional fields (thinking) with the host's merged over them.
pub fn merge_fields(own: Option<Value>, host: Option<&serde_json::Map<String, Value>>) -> Option<Document> {
    let mut merged = own.and_then(|v| v.as_object().cloned()).unwrap_or_default();
    if let Some(host) = host {
        merged.extend(host.clone());
    }
    (!merged.is_empty()).then(|| to_document(&Value::Object(merged)))
}
