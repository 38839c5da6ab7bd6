//! Tool declarations and tool choice, in Bedrock's terms; and the tools a history used when the
//! request declares none (Bedrock refuses tool blocks without them).

use super::options::Options;
use super::{bad, built};
use crate::converse::document::to_document;
use crate::converse::tool_names::ToolNames;
use crate::error::{Kind, Result};
use crate::json::Obj;
use aws_sdk_bedrockruntime::types::{
    AnyToolChoice, AutoToolChoice, ContentBlock, Message, SpecificToolChoice, Tool, ToolChoice, ToolConfiguration, ToolInputSchema,
    ToolSpecification,
};
use serde_json::Value;

/// Bedrock refuses tool-use and tool-result blocks unless tools are declared. When the history
/// has them and the request declares none (a later turn with tools switched off), the tools the
/// history used are declared with an open schema, so the conversation goes on.
pub(super) fn tools_of_the_history(messages: &[Message]) -> Result<Option<ToolConfiguration>> {
    let mut used: Vec<&str> = Vec::new();
    let mut any = false;
    for block in messages.iter().flat_map(|m| &m.content) {
        match block {
            ContentBlock::ToolUse(t) => {
                any = true;
                if !used.contains(&t.name()) {
                    used.push(t.name());
                }
            }
            ContentBlock::ToolResult(_) => any = true,
            _ => {}
        }
    }
    if !any {
        return Ok(None);
    }
    if used.is_empty() {
        // Results whose calls were dropped (a failed turn): any declared tool will do.
        used.push("tool");
    }
    let specs = used
        .into_iter()
        .map(|name| {
            let spec = ToolSpecification::builder()
                .name(name)
                .description("A tool used earlier in this conversation.")
                .input_schema(ToolInputSchema::Json(to_document(&serde_json::json!({"type": "object"}))))
                .build();
            built(spec, "tools").map(Tool::ToolSpec)
        })
        .collect::<Result<Vec<_>>>()?;
    built(ToolConfiguration::builder().set_tools(Some(specs)).build(), "tools").map(Some)
}

pub(super) fn convert_tools(context: &Obj<'_>, options: &Options, names: &mut ToolNames) -> Result<Option<ToolConfiguration>> {
    let Some(tools) = context.array("tools")?.filter(|t| !t.is_empty()) else { return Ok(None) };
    if options.tool_choice.as_ref().and_then(Value::as_str) == Some("none") {
        return Ok(None);
    }
    let mut specs = Vec::new();
    for (i, t) in tools.iter().enumerate() {
        let o = Obj::new(t, &format!("{}.tools[{i}]", context.path), Kind::InvalidArgument)?;
        let schema = o.get("parameters").cloned().unwrap_or_else(|| serde_json::json!({"type": "object", "properties": {}}));
        if !schema.is_object() {
            return Err(o.err("parameters", "expected a JSON schema object"));
        }
        let name = o.req_str("name")?;
        if name.is_empty() {
            return Err(o.err("name", "must not be empty"));
        }
        let spec = ToolSpecification::builder()
            .name(names.map(name))
            .set_description(o.str("description")?.filter(|d| !d.is_empty()).map(str::to_string))
            .input_schema(ToolInputSchema::Json(to_document(&schema)))
            .build();
        specs.push(Tool::ToolSpec(built(spec, &o.path)?));
    }
    let choice = match &options.tool_choice {
        None => None,
        Some(Value::String(s)) if s == "auto" => Some(ToolChoice::Auto(AutoToolChoice::builder().build())),
        Some(Value::String(s)) if s == "any" => Some(ToolChoice::Any(AnyToolChoice::builder().build())),
        Some(v) if v.get("type").and_then(Value::as_str) == Some("tool") => {
            let name = v.get("name").and_then(Value::as_str).ok_or_else(|| bad("options.toolChoice.name: is required"))?;
            Some(ToolChoice::Tool(built(SpecificToolChoice::builder().name(names.map(name)).build(), "options.toolChoice")?))
        }
        Some(_) => return Err(bad("options.toolChoice: must be \"auto\", \"any\", \"none\" or {\"type\":\"tool\",\"name\":...}")),
    };
    let config = ToolConfiguration::builder().set_tools(Some(specs)).set_tool_choice(choice).build();
    built(config, "tools").map(Some)
}

