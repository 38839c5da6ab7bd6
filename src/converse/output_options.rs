//! The ConverseStream options that choose how Bedrock serves and shapes the answer:
//! `options.serviceTier` and `options.outputConfig` (structured output), read in Bedrock's own
//! vocabulary and checked before anything is sent.

use crate::error::Result;
use crate::json::{describe, Obj};
use aws_sdk_bedrockruntime::types::{
    JsonSchemaDefinition, OutputConfig, OutputFormat, OutputFormatStructure, OutputFormatType, ServiceTier, ServiceTierType,
};
use serde_json::Value;

const TIERS: [&str; 4] = ["default", "flex", "priority", "reserved"];
const EFFORTS: [&str; 5] = ["low", "medium", "high", "xhigh", "max"];

/// `options.serviceTier`: `"default" | "flex" | "priority" | "reserved"`.
pub fn service_tier(options: &Obj<'_>) -> Result<Option<ServiceTier>> {
    let Some(tier) = options.str("serviceTier")? else { return Ok(None) };
    if !TIERS.contains(&tier) {
        return Err(options.err("serviceTier", format!("must be one of {}; got \"{tier}\"", TIERS.join(", "))));
    }
    let built = ServiceTier::builder().r#type(ServiceTierType::from(tier)).build();
    Ok(Some(built.map_err(|e| options.err("serviceTier", e))?))
}

/// `options.outputConfig`: `{"textFormat": {"type": "json_schema", "structure": {"jsonSchema":
/// {"schema": <object, or its JSON text>, "name"?, "description"?}}}, "effort"?}`.
pub fn output_config(options: &Obj<'_>) -> Result<Option<OutputConfig>> {
    let Some(config) = options.obj("outputConfig")? else { return Ok(None) };
    config.only(&["textFormat", "effort"])?;
    let mut built = OutputConfig::builder();
    if let Some(effort) = config.str("effort")? {
        if !EFFORTS.contains(&effort) {
            return Err(config.err("effort", format!("must be one of {}; got \"{effort}\"", EFFORTS.join(", "))));
        }
        built = built.effort(effort);
    }
    if let Some(format) = config.obj("textFormat")? {
        format.only(&["type", "structure"])?;
        match format.str("type")? {
            Some("json_schema") => {}
            Some(other) => return Err(format.err("type", format!("must be \"json_schema\"; got \"{other}\""))),
            None => return Err(format.err("type", "is required (\"json_schema\")")),
        }
        let structure = format.obj("structure")?.ok_or_else(|| format.err("structure", "is required"))?;
        structure.only(&["jsonSchema"])?;
        let schema = structure.obj("jsonSchema")?.ok_or_else(|| structure.err("jsonSchema", "is required"))?;
        schema.only(&["schema", "name", "description"])?;
        // Bedrock takes the schema as JSON text; a host may hand the object itself.
        let text = match schema.get("schema") {
            Some(Value::String(text)) => match serde_json::from_str::<Value>(text) {
                Ok(Value::Object(_)) => text.clone(),
                _ => return Err(schema.err("schema", "must be a JSON Schema object (or its JSON text)")),
            },
            Some(v @ Value::Object(_)) => v.to_string(),
            Some(other) => return Err(schema.err("schema", format!("must be a JSON Schema object, got {}", describe(other)))),
            None => return Err(schema.err("schema", "is required")),
        };
        let definition = JsonSchemaDefinition::builder()
            .schema(text)
            .set_name(schema.str("name")?.map(str::to_string))
            .set_description(schema.str("description")?.map(str::to_string))
            .build()
            .map_err(|e| schema.err("schema", e))?;
        let format = OutputFormat::builder()
            .r#type(OutputFormatType::JsonSchema)
            .structure(OutputFormatStructure::JsonSchema(definition))
            .build()
            .map_err(|e| format.err("structure", e))?;
        built = built.text_format(format);
    }
    Ok(Some(built.build()))
}
