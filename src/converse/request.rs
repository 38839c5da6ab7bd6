//! pi-ai `Context` + options → a Bedrock `ConverseStream` request, built on the calling thread
//! (plain data only) so that bad input is refused before anything is queued.

use super::document::to_document;
use super::tool_names::ToolNames;
use crate::error::{Error, Kind, Result};
use crate::json::{describe, Obj};
use crate::model::Model;
use aws_sdk_bedrockruntime::primitives::Blob;
use aws_sdk_bedrockruntime::types::{
    AnyToolChoice, AutoToolChoice, CachePointBlock, CachePointType, CacheTtl, ContentBlock, ConversationRole,
    ImageBlock, ImageFormat, ImageSource, InferenceConfiguration, Message, ReasoningContentBlock, ReasoningTextBlock,
    SpecificToolChoice, SystemContentBlock, Tool, ToolChoice, ToolConfiguration, ToolInputSchema, ToolResultBlock,
    ToolResultContentBlock, ToolResultStatus, ToolSpecification, ToolUseBlock, OutputConfig, ServiceTier,
};
use aws_smithy_types::Document;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// Bedrock's limit on `inferenceConfig.stopSequences`.
const MAX_STOP_SEQUENCES: usize = 2500;

#[derive(Debug, Clone)]
pub struct StreamRequest {
    pub model: Arc<Model>,
    pub messages: Vec<Message>,
    pub system: Vec<SystemContentBlock>,
    pub tool_config: Option<ToolConfiguration>,
    pub inference: InferenceConfiguration,
    pub additional_fields: Option<Document>,
    /// Longest silence allowed between two stream events (and before the response starts).
    pub idle_timeout: Duration,
    /// The inference profile to retry with if Bedrock serves this model only through one.
    pub fallback_model_id: Option<String>,
    pub service_tier: Option<ServiceTier>,
    pub output_config: Option<OutputConfig>,
    pub guardrail: Option<aws_sdk_bedrockruntime::types::GuardrailStreamConfiguration>,
    pub performance: Option<aws_sdk_bedrockruntime::types::PerformanceConfiguration>,
    pub request_metadata: Option<std::collections::HashMap<String, String>>,
    pub response_field_paths: Option<Vec<String>>,
    /// Tool names changed for Bedrock, to name calls back as the host does.
    pub tool_names: ToolNames,
    /// An application inference profile whose base model is not known yet: the request's text,
    /// mapped again once Bedrock has named the model (`with_base_model`).
    pub unresolved_profile: Option<String>,
    /// `options.maxRetries` / `maxRetryDelayMs`: this request's retry policy before the stream
    /// starts.
    pub retry: super::retry::Policy,
    /// A test build's fault hook (always `None` in a shipped build).
    pub fault: crate::fault::Fault,
}

fn bad(message: impl Into<String>) -> Error {
    Error::invalid(message)
}

fn built<T, E: std::fmt::Display>(r: std::result::Result<T, E>, what: &str) -> Result<T> {
    r.map_err(|e| bad(format!("{what}: {e}")))
}

/// The request mapped again for `model` served by the foundation model `base`.
pub fn with_base_model(text: &str, model: &Model, base: &str) -> Result<StreamRequest> {
    let resolved = Arc::new(Model { base_model: Some(base.to_string()), ..model.clone() });
    parse(text, |id| (id == resolved.id).then(|| resolved.clone()))
}

/// Parses `{"model", "context", "options"}`. `lookup` resolves a model id to a known model.
pub fn parse(text: &str, lookup: impl Fn(&str) -> Option<Arc<Model>>) -> Result<StreamRequest> {
    let text = super::surrogates::replace_lone(text);
    let value: Value = serde_json::from_str(&text).map_err(|e| bad(format!("request is not valid JSON: {e}")))?;
    let top = Obj::new(&value, "", Kind::InvalidArgument)?;
    let fields: Vec<&str> = ["model", "context", "options"].iter().chain(crate::fault::REQUEST_FIELDS).copied().collect();
    top.only(&fields)?;
    let fault = crate::fault::Fault::parse(top.str("faultHook")?).map_err(|e| top.err("faultHook", e))?;
    let model = match top.get("model") {
        Some(Value::String(id)) => lookup(id).ok_or_else(|| {
            Error::new(Kind::NotFound, format!("model: unknown model \"{id}\" (not in the provider's configured or discovered models; pass a model object to use any Bedrock model id)"))
        })?,
        Some(v @ Value::Object(_)) => {
            let m = Obj::new(v, "model", Kind::InvalidArgument)?;
            let mut model = crate::config::parse_model(&m, &Default::default())?;
            // A profile discovery knows brings its base model, whatever the object says.
            model.base_model = lookup(&model.id).and_then(|known| known.base_model.clone());
            Arc::new(model)
        }
        Some(other) => return Err(top.err("model", format!("expected a model id or a model object, got {}", describe(other)))),
        None => return Err(top.err("model", "is required")),
    };
    let context = top.obj("context")?.ok_or_else(|| top.err("context", "is required"))?;
    context.only(&["systemPrompt", "messages", "tools"])?;
    let options = match top.obj("options")? {
        Some(o) => Options::parse(&o)?,
        None => Options::default(),
    };
    // Nova bills cache writes; it caches only when the host asked (pi-ai's default is "short").
    let cache = options.cache_retention != "none" && supports_prompt_caching(&model) && (options.cache_retention_explicit || !is_nova(model.capability_id()));
    let one_hour = options.cache_retention == "long" && supports_one_hour_cache(&model);

    let mut system = Vec::new();
    if let Some(prompt) = context.str("systemPrompt")?.filter(|p| !p.is_empty()) {
        system.push(SystemContentBlock::Text(prompt.to_string()));
        if cache {
            system.push(SystemContentBlock::CachePoint(cache_point(one_hour)?));
        }
    }
    let raw_messages = context.array("messages")?.ok_or_else(|| context.err("messages", "is required"))?;
    let mut tool_names = ToolNames::default();
    let mut messages = convert_messages(raw_messages, &model, &context.path, &mut tool_names)?;
    super::documents::unique_names(&mut messages);
    if messages.is_empty() {
        return Err(context.err("messages", "must contain at least one user message"));
    }
    if cache {
        if let Some(last) = messages.last_mut().filter(|m| m.role == ConversationRole::User) {
            last.content.push(ContentBlock::CachePoint(cache_point(one_hour)?));
        }
    }
    let tool_config = match convert_tools(&context, &options, &mut tool_names)? {
        None => tools_of_the_history(&messages)?,
        config => config,
    };

    let mut max_tokens = options.max_tokens.unwrap_or(model.max_tokens);
    let own_fields = match (&options.reasoning, model.reasoning) {
        // Adaptive thinking: the model decides how much to think, at the effort asked for.
        (Some(level), true) if is_claude_model(&model) && supports_adaptive_thinking(model.capability_id(), &model.name) => {
            Some(serde_json::json!({"thinking": {"type": "adaptive"}, "output_config": {"effort": adaptive_effort(level)}}))
        }
        (Some(level), true) if is_claude_model(&model) => {
            let budget = options.thinking_budget(level);
            max_tokens = max_tokens.max(budget + 1024);
            let mut fields = serde_json::json!({"thinking": {"type": "enabled", "budget_tokens": budget}});
            if options.interleaved_thinking.unwrap_or(true) {
                fields["anthropic_beta"] = serde_json::json!(["interleaved-thinking-2025-05-14"]);
            }
            Some(fields)
        }
        _ => None,
    };
    let additional_fields = super::passthrough::merge_fields(own_fields, options.passthrough.additional_request_fields.as_ref());
    // Newer Claude models refuse temperature and topP together ("cannot both be specified"):
    // for Claude, temperature wins and topP is left out.
    let top_p = options.top_p.filter(|_| !(options.temperature.is_some() && is_claude_model(&model)));
    let inference = InferenceConfiguration::builder()
        .max_tokens(i32::try_from(max_tokens).map_err(|_| bad("options.maxTokens: too large"))?)
        .set_temperature(options.temperature.map(|t| t as f32))
        .set_top_p(top_p.map(|t| t as f32))
        .set_stop_sequences(options.stop_sequences.clone())
        .build();
    let unresolved_profile = (model.base_model.is_none() && super::profile_base::is_application_profile(&model.id)).then(|| text.into_owned());
    Ok(StreamRequest {
        unresolved_profile,
        model,
        messages,
        system,
        tool_config,
        inference,
        additional_fields,
        idle_timeout: options.idle_timeout,
        fallback_model_id: None,
        service_tier: options.service_tier,
        output_config: options.output_config,
        guardrail: options.passthrough.guardrail,
        performance: options.passthrough.performance,
        request_metadata: options.passthrough.request_metadata,
        response_field_paths: options.passthrough.response_field_paths,
        tool_names,
        retry: super::retry::Policy {
            max_retries: options.max_retries.map(|n| n as u32),
            max_delay: options.max_retry_delay_ms.map_or(super::retry::DEFAULT_MAX_DELAY, Duration::from_millis),
        },
        fault,
    })
}

#[derive(Debug, Clone)]
struct Options {
    max_tokens: Option<u64>,
    temperature: Option<f64>,
    top_p: Option<f64>,
    stop_sequences: Option<Vec<String>>,
    idle_timeout: Duration,
    reasoning: Option<String>,
    thinking_budgets: Option<Value>,
    tool_choice: Option<Value>,
    cache_retention: String,
    /// Whether the host set `cacheRetention` (Nova caches only then).
    cache_retention_explicit: bool,
    interleaved_thinking: Option<bool>,
    service_tier: Option<ServiceTier>,
    output_config: Option<OutputConfig>,
    passthrough: super::passthrough::Passthrough,
    max_retries: Option<u64>,
    max_retry_delay_ms: Option<u64>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            max_tokens: None,
            temperature: None,
            top_p: None,
            stop_sequences: None,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            reasoning: None,
            thinking_budgets: None,
            tool_choice: None,
            cache_retention: "short".into(),
            cache_retention_explicit: false,
            interleaved_thinking: None,
            service_tier: None,
            output_config: None,
            passthrough: Default::default(),
            max_retries: None,
            max_retry_delay_ms: None,
        }
    }
}

impl Options {
    fn parse(o: &Obj<'_>) -> Result<Options> {
        o.only(&[
            "maxTokens", "temperature", "topP", "stopSequences", "idleTimeoutMs", "reasoning", "thinkingBudgets",
            "toolChoice", "cacheRetention", "interleavedThinking", "sessionId", "serviceTier", "outputConfig",
            "guardrailConfig", "performanceConfig", "requestMetadata", "additionalModelRequestFields", "additionalModelResponseFieldPaths",
            "maxRetries", "maxRetryDelayMs",
        ])?;
        let reasoning = o.str("reasoning")?.map(str::to_string);
        if let Some(r) = &reasoning {
            if !["off", "minimal", "low", "medium", "high", "xhigh", "max"].contains(&r.as_str()) {
                return Err(o.err("reasoning", format!("must be one of off, minimal, low, medium, high, xhigh, max; got \"{r}\"")));
            }
        }
        // OpenClaw says "off" where pi-ai leaves the field out: no thinking either way.
        let reasoning = reasoning.filter(|r| r != "off");
        let cache_retention = o.str("cacheRetention")?.unwrap_or("short").to_string();
        if !["none", "short", "long"].contains(&cache_retention.as_str()) {
            return Err(o.err("cacheRetention", format!("must be none, short or long; got \"{cache_retention}\"")));
        }
        let idle_ms = o.uint("idleTimeoutMs", 86_400_000)?;
        if idle_ms == Some(0) {
            return Err(o.err("idleTimeoutMs", "must be at least 1"));
        }
        o.str("sessionId")?;
        if let Some(b) = o.obj("thinkingBudgets")? {
            b.only(&["minimal", "low", "medium", "high"])?;
            for level in ["minimal", "low", "medium", "high"] {
                b.uint(level, 10_000_000)?;
            }
        }
        // Bedrock's documented ranges (InferenceConfiguration), checked here so that a bad value
        // fails at bp_stream_start with its field's path instead of as a ValidationException.
        let max_tokens = o.uint("maxTokens", i32::MAX as u64)?;
        if max_tokens == Some(0) {
            return Err(o.err("maxTokens", "must be at least 1"));
        }
        let unit = |key: &str| -> Result<Option<f64>> {
            match o.f64(key)? {
                Some(v) if !(0.0..=1.0).contains(&v) => Err(o.err(key, format!("must be between 0 and 1, got {v}"))),
                v => Ok(v),
            }
        };
        let (temperature, top_p) = (unit("temperature")?, unit("topP")?);
        // Checked here, not only when tools are present: a bad value is a mistake either way.
        match o.get("toolChoice") {
            None => {}
            Some(Value::String(s)) if ["auto", "any", "none"].contains(&s.as_str()) => {}
            Some(v) if v.get("type").and_then(Value::as_str) == Some("tool") && v.get("name").is_some_and(Value::is_string) => {}
            Some(_) => return Err(o.err("toolChoice", "must be \"auto\", \"any\", \"none\" or {\"type\":\"tool\",\"name\":...}")),
        }
        let stop_sequences = o.str_array("stopSequences")?;
        if let Some(stops) = &stop_sequences {
            if stops.len() > MAX_STOP_SEQUENCES {
                return Err(o.err("stopSequences", format!("at most {MAX_STOP_SEQUENCES} stop sequences, got {}", stops.len())));
            }
            if let Some(i) = stops.iter().position(String::is_empty) {
                return Err(o.err(&format!("stopSequences[{i}]"), "must not be empty"));
            }
        }
        Ok(Options {
            max_tokens,
            temperature,
            top_p,
            stop_sequences,
            idle_timeout: idle_ms.map(Duration::from_millis).unwrap_or(DEFAULT_IDLE_TIMEOUT),
            reasoning,
            thinking_budgets: o.get("thinkingBudgets").cloned(),
            tool_choice: o.get("toolChoice").cloned(),
            cache_retention_explicit: o.get("cacheRetention").is_some(),
            cache_retention,
            interleaved_thinking: o.bool("interleavedThinking")?,
            service_tier: super::output_options::service_tier(o)?,
            output_config: super::output_options::output_config(o)?,
            passthrough: super::passthrough::parse(o)?,
            max_retries: o.uint("maxRetries", 10)?,
            max_retry_delay_ms: o.uint("maxRetryDelayMs", 600_000)?,
        })
    }

    fn thinking_budget(&self, level: &str) -> u64 {
        let level = if level == "xhigh" || level == "max" { "high" } else { level };
        let custom = self.thinking_budgets.as_ref().and_then(|b| b.get(level)).and_then(Value::as_u64);
        custom.unwrap_or(match level {
            "minimal" => 1024,
            "low" => 2048,
            "medium" => 8192,
            _ => 16384,
        })
    }
}

/// Claude Opus 4.6 and later, Sonnet 4.6 and later and the Claude 5 families take
/// `thinking: {type: "adaptive"}` (with an effort) instead of a token budget. The name is looked
/// at too, for application inference profiles whose ARN does not say the model.
fn supports_adaptive_thinking(id: &str, name: &str) -> bool {
    mentions_any(&[id, name], &["opus-4-6", "opus-4-7", "opus-4-8", "opus-4-9", "sonnet-4-6", "sonnet-4-7", "sonnet-4-8", "sonnet-4-9", "opus-5", "sonnet-5", "haiku-5", "claude-5"])
}

/// Whether any of `texts` (ids or names, `.`, `_`, `:` and spaces read as `-`) names one of
/// `families` (`opus-4-6`, `-4-5`, …).
fn mentions_any(texts: &[&str], families: &[&str]) -> bool {
    texts.iter().any(|t| {
        let t = t.to_ascii_lowercase().replace(['.', '_', ' ', ':'], "-");
        families.iter().any(|family| t.contains(family))
    })
}

/// pi-ai's thinking levels as adaptive thinking's effort: xhigh is the most these models offer.
fn adaptive_effort(level: &str) -> &'static str {
    match level {
        "minimal" | "low" => "low",
        "medium" => "medium",
        "high" => "high",
        _ => "max",
    }
}

/// By id, or by name for application inference profiles whose ARN does not say the model.
fn is_claude_model(model: &Model) -> bool {
    is_claude(model.capability_id()) || (model.id.starts_with("arn:") && model.name.to_ascii_lowercase().contains("claude"))
}

fn is_claude(id: &str) -> bool {
    id.contains("anthropic.claude") || id.contains("anthropic/claude")
}

fn supports_prompt_caching(model: &Model) -> bool {
    if model.cost.cache_read > 0.0 || model.cost.cache_write > 0.0 {
        return true;
    }
    let id = model.capability_id().to_lowercase();
    (id.contains("claude") && (id.contains("-4-") || id.contains("-4.")))
        || id.contains("claude-3-7-sonnet")
        || id.contains("claude-3-5-haiku")
        || is_nova(&id)
}

fn is_nova(id: &str) -> bool {
    id.to_ascii_lowercase().contains("amazon.nova")
}

/// Bedrock's one-hour cache TTL: Claude 4.5 and later. Others keep the default (5 minutes) even
/// when `cacheRetention` is "long", rather than be refused.
fn supports_one_hour_cache(model: &Model) -> bool {
    let name = if model.id.starts_with("arn:") { model.name.as_str() } else { "" };
    is_claude_model(model) && mentions_any(&[model.capability_id(), name], &["-4-5", "-4-6", "-4-7", "-4-8", "-4-9", "opus-5", "sonnet-5", "haiku-5", "claude-5"])
}

fn cache_point(one_hour: bool) -> Result<CachePointBlock> {
    let mut b = CachePointBlock::builder().r#type(CachePointType::Default);
    if one_hour {
        b = b.ttl(CacheTtl::OneHour);
    }
    built(b.build(), "cache point")
}

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
        "document" => super::documents::block(&o).map(Some),
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
fn convert_messages(items: &[Value], model: &Model, context_path: &str, names: &mut ToolNames) -> Result<Vec<Message>> {
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

/// Bedrock refuses tool-use and tool-result blocks unless tools are declared. When the history
/// has them and the request declares none (a later turn with tools switched off), the tools the
/// history used are declared with an open schema, so the conversation goes on.
fn tools_of_the_history(messages: &[Message]) -> Result<Option<ToolConfiguration>> {
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

fn convert_tools(context: &Obj<'_>, options: &Options, names: &mut ToolNames) -> Result<Option<ToolConfiguration>> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn model(id: &str) -> Option<Arc<Model>> {
        (id == "m").then(|| Arc::new(Model { id: "m".into(), name: "m".into(), reasoning: false, input: vec!["text".into()], cost: Default::default(), context_window: 1000, max_tokens: 77, base_model: None }))
    }

    #[test]
    fn merges_tool_results_and_fills_unanswered_calls() {
        let r = parse(r#"{"model":"m","context":{"messages":[
            {"role":"user","content":"hi"},
            {"role":"assistant","content":[{"type":"toolCall","id":"a:1","name":"f","arguments":{}},{"type":"toolCall","id":"b","name":"f","arguments":{}}]},
            {"role":"toolResult","toolCallId":"a:1","toolName":"f","content":[{"type":"text","text":"ok"}],"isError":false},
            {"role":"user","content":"next"}]}}"#, model).unwrap();
        assert_eq!(r.messages.len(), 3);
        let results = &r.messages[2].content;
        assert_eq!(results.len(), 3, "one result, one filled-in result, then the user's text");
        match &results[1] {
            ContentBlock::ToolResult(t) => assert_eq!((t.tool_use_id(), t.status()), ("b", Some(&ToolResultStatus::Error))),
            other => panic!("{other:?}"),
        }
        assert_eq!(r.inference.max_tokens(), Some(77));
    }

    #[test]
    fn bad_input_names_the_field() {
        let e = parse(r#"{"model":"m","context":{"messages":[{"role":"robot","content":"x"}]}}"#, model).unwrap_err();
        assert_eq!(e.message, "context.messages[0].role: unknown role \"robot\" (user, assistant or toolResult)");
        let e = parse(r#"{"model":"nope","context":{"messages":[]}}"#, model).unwrap_err();
        assert_eq!(e.kind, Kind::NotFound);
        let e = parse(r#"{"model":"m","context":{"messages":[{"role":"user","content":"x"}]},"options":{"temprature":1}}"#, model).unwrap_err();
        assert!(e.message.starts_with("options.temprature: unknown field"), "{}", e.message);
    }
}
