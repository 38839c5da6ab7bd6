//! pi-ai messages and content blocks → Bedrock messages: text, images, documents, thinking
//! (signed, redacted, or as text for models that take no reasoning back), tool calls and results.

use super::built;
use super::model_family::is_claude_model;
use crate::converse::document::to_document;
use crate::converse::tool_names::ToolNames;
use crate::error::{Kind, Result};
use crate::json::{describe, Obj};
use crate::model::Model;
use aws_sdk_bedrockruntime::primitives::Blob;
use aws_sdk_bedrockruntime::types::{
    ContentBlock, ConversationRole, ImageBlock, ImageFormat, ImageSource, Message, ReasoningContentBlock, ReasoningTextBlock,
    ToolResultBlock, ToolResultContentBlock, ToolResultStatus, ToolUseBlock,
};
use serde_json::Value;

/// Bedrock tool-use ids allow `[a-zA-Z0-9_-]{1,64}`; other providers' ids are mapped onto that.
fn tool_use_id(id: &str) -> String {
    let mut s: String = id.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '_' }).collect();
    s.truncate(64);
    s
}

fn image_block(o: &Obj<'_>) -> Result<ContentBlock> {
    let mime = o.req_str("mimeType")?;
    let format = match mime {
        "image/jpeg" | "image/jpg" => ImageFormat::Jpeg,
        "image/png" => ImageFormat::Png,
        "image/gif" => ImageFormat::Gif,
        "image/webp" => ImageFormat::Webp,
        other => return Err(o.err("mimeType", format!("unsupported image type \"{other}\" (png, jpeg, gif, webp)"))),
    };
    let bytes = aws_smithy_types::base64::decode(o.req_str("data")?).map_err(|e| o.err("data", format!("not valid base64: {e}")))?;
    let block = ImageBlock::builder().format(format).source(ImageSource::Bytes(Blob::new(bytes))).build();
    Ok(ContentBlock::Image(built(block, &o.path)?))
}

/// A user or tool-result content item: text, or an image (replaced by a note for text-only models).
fn user_part(item: &Value, path: &str, model: &Model) -> Result<Option<ContentBlock>> {
    let o = Obj::new(item, path, Kind::InvalidArgument)?;
    match o.req_str("type")? {
        "text" => {
            let text = o.req_str("text")?;
            Ok((!text.is_empty()).then(|| ContentBlock::Text(text.to_string())))
        }
        "image" if model.accepts_images() => image_block(&o).map(Some),
        "image" => Ok(Some(ContentBlock::Text("(image omitted: this model does not accept image input)".into()))),
        "document" => crate::converse::documents::block(&o).map(Some),
        other => Err(o.err("type", format!("unknown content type \"{other}\" (text, image or document)"))),
    }
}

fn tool_result(o: &Obj<'_>, model: &Model) -> Result<ContentBlock> {
    let id = o.req_str("toolCallId")?;
    let mut content = Vec::new();
    for (i, item) in o.array("content")?.map(Vec::as_slice).unwrap_or(&[]).iter().enumerate() {
        match user_part(item, &format!("{}.content[{i}]", o.path), model)? {
            Some(ContentBlock::Text(t)) => content.push(ToolResultContentBlock::Text(t)),
            Some(ContentBlock::Image(img)) => content.push(ToolResultContentBlock::Image(img)),
            _ => {}
        }
    }
    if content.is_empty() {
        content.push(ToolResultContentBlock::Text("(no output)".into()));
    }
    let status = if o.bool("isError")?.unwrap_or(false) { ToolResultStatus::Error } else { ToolResultStatus::Success };
    let block = ToolResultBlock::builder().tool_use_id(tool_use_id(id)).set_content(Some(content)).status(status).build();
    Ok(ContentBlock::ToolResult(built(block, &o.path)?))
}

fn missing_tool_result(id: &str) -> Result<ContentBlock> {
    let block = ToolResultBlock::builder()
        .tool_use_id(id)
        .content(ToolResultContentBlock::Text("No result provided".into()))
        .status(ToolResultStatus::Error)
        .build();
    Ok(ContentBlock::ToolResult(built(block, "tool result")?))
}

fn assistant_content(o: &Obj<'_>, model: &Model, tool_ids: &mut Vec<String>, names: &mut ToolNames) -> Result<Vec<ContentBlock>> {
    let mut blocks = Vec::new();
    let items = o.array("content")?.ok_or_else(|| o.err("content", "is required"))?;
    for (i, item) in items.iter().enumerate() {
        let c = Obj::new(item, &format!("{}.content[{i}]", o.path), Kind::InvalidArgument)?;
        match c.req_str("type")? {
            "text" => {
                let text = c.req_str("text")?;
                if !text.trim().is_empty() {
                    blocks.push(ContentBlock::Text(text.to_string()));
                }
            }
            "thinking" => {
                let thinking = c.req_str("thinking")?;
                // Redacted reasoning travels back verbatim: its opaque payload is the signature
                // (base64), as the plugin handed it out.
                if c.bool("redacted")? == Some(true) {
                    if let (true, Some(payload)) = (is_claude_model(&model), c.str("thinkingSignature")?) {
                        let bytes = aws_smithy_types::base64::decode(payload).map_err(|e| c.err("thinkingSignature", format!("not valid base64: {e}")))?;
                        blocks.push(ContentBlock::ReasoningContent(ReasoningContentBlock::RedactedContent(Blob::new(bytes))));
                    }
                    continue;
                }
                if thinking.trim().is_empty() {
                    continue;
                }
                // Only Claude accepts reasoning blocks (and their signatures) back in a conversation.
                if is_claude_model(&model) {
                    let block = ReasoningTextBlock::builder().text(thinking).set_signature(c.str("thinkingSignature")?.map(str::to_string)).build();
                    blocks.push(ContentBlock::ReasoningContent(ReasoningContentBlock::ReasoningText(built(block, &c.path)?)));
                } else {
                    blocks.push(ContentBlock::Text(format!("<thinking>\n{thinking}\n</thinking>")));
                }
            }
            "toolCall" => {
                let id = tool_use_id(c.req_str("id")?);
                let input = c.get("arguments").cloned().unwrap_or_else(|| serde_json::json!({}));
                let block = ToolUseBlock::builder().tool_use_id(&id).name(names.map(c.req_str("name")?)).input(to_document(&input)).build();
                blocks.push(ContentBlock::ToolUse(built(block, &c.path)?));
                tool_ids.push(id);
            }
            other => return Err(c.err("type", format!("unknown assistant content type \"{other}\" (text, thinking or toolCall)"))),
        }
    }
    Ok(blocks)
}

/// Messages in Bedrock's terms: tool results become user turns, consecutive turns of one role are
/// merged, failed assistant turns are dropped, and unanswered tool calls get an error result,
/// because Bedrock refuses conversations that break any of those rules.
pub(super) fn convert_messages(items: &[Value], model: &Model, context_path: &str, names: &mut ToolNames) -> Result<Vec<Message>> {
    let mut turns: Vec<(ConversationRole, Vec<ContentBlock>)> = Vec::new();
    let mut pending_tool_ids: Vec<String> = Vec::new();
    let push = |turns: &mut Vec<(ConversationRole, Vec<ContentBlock>)>, role: ConversationRole, blocks: Vec<ContentBlock>| {
        if blocks.is_empty() {
            return;
        }
        match turns.last_mut() {
            Some((last, content)) if *last == role => content.extend(blocks),
            _ => turns.push((role, blocks)),
        }
    };
    for (i, item) in items.iter().enumerate() {
        let m = Obj::new(item, &format!("{context_path}.messages[{i}]"), Kind::InvalidArgument)?;
        let role = m.req_str("role")?;
        if role != "toolResult" && !pending_tool_ids.is_empty() {
            let missing = pending_tool_ids.drain(..).map(|id| missing_tool_result(&id)).collect::<Result<Vec<_>>>()?;
            push(&mut turns, ConversationRole::User, missing);
        }
        match role {
            "user" => {
                let blocks = match m.get("content") {
                    Some(Value::String(s)) if !s.is_empty() => vec![ContentBlock::Text(s.clone())],
                    Some(Value::String(_)) => Vec::new(),
                    Some(Value::Array(parts)) => {
                        let mut blocks = Vec::new();
                        for (j, p) in parts.iter().enumerate() {
                            blocks.extend(user_part(p, &format!("{}.content[{j}]", m.path), model)?);
                        }
                        blocks
                    }
                    Some(other) => return Err(m.err("content", format!("expected a string or an array, got {}", describe(other)))),
                    None => return Err(m.err("content", "is required")),
                };
                push(&mut turns, ConversationRole::User, blocks);
            }
            "assistant" => {
                if matches!(m.str("stopReason")?, Some("error" | "aborted")) {
                    continue;
                }
                let mut ids = Vec::new();
                let blocks = assistant_content(&m, model, &mut ids, names)?;
                if !blocks.is_empty() {
                    push(&mut turns, ConversationRole::Assistant, blocks);
                    pending_tool_ids = ids;
                }
            }
            "toolResult" => {
                let block = tool_result(&m, model)?;
                if let ContentBlock::ToolResult(r) = &block {
                    pending_tool_ids.retain(|id| id != r.tool_use_id());
                }
                push(&mut turns, ConversationRole::User, vec![block]);
            }
            other => return Err(m.err("role", format!("unknown role \"{other}\" (user, assistant or toolResult)"))),
        }
    }
    if !pending_tool_ids.is_empty() {
        let missing = pending_tool_ids.drain(..).map(|id| missing_tool_result(&id)).collect::<Result<Vec<_>>>()?;
        push(&mut turns, ConversationRole::User, missing);
    }
    turns
        .into_iter()
        .map(|(role, content)| built(Message::builder().role(role).set_content(Some(content)).build(), "message"))
        .collect()
}

