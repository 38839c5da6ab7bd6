//! pi-ai `Context` + options → a Bedrock `ConverseStream` request, built on the calling thread
//! (plain data only) so that bad input is refused before anything is queued. One rule family per
//! file: `options` (inference and reasoning options), `messages` (messages and content blocks),
//! `tools` (tool declarations and choice), `model_family` (which model takes which feature);
//! pass-through fields and output options live beside (`passthrough.rs`, `output_options.rs`).

mod messages;
mod model_family;
mod options;
mod tools;

use crate::converse::tool_names::ToolNames;
use crate::error::{Error, Kind, Result};
use crate::json::{describe, Obj};
use crate::model::Model;
use aws_sdk_bedrockruntime::types::{
    ContentBlock, ConversationRole, InferenceConfiguration, Message, OutputConfig, ServiceTier, SystemContentBlock, ToolConfiguration,
};
use aws_smithy_types::Document;
use messages::convert_messages;
use model_family::{cache_point, default_tier_only, is_claude_model, is_nova, refuses_forced_tool_choice, refuses_sampling, supports_one_hour_cache, supports_prompt_caching};
use options::Options;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use tools::{convert_tools, tools_of_the_history};

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
    pub retry: crate::converse::retry::Policy,
    /// Refusal-safe streaming (`options.holdOutput`): nothing reaches the host until Bedrock's
    /// terminal status, so an answer stopped mid-way (a refusal, a filter, a broken stream) never
    /// shows its first half; the host gets the whole answer at once, or only the error.
    pub hold_output: bool,
    /// A test build's fault hook (always `None` in a shipped build).
    pub fault: crate::fault::Fault,
}

pub(super) fn bad(message: impl Into<String>) -> Error {
    Error::invalid(message)
}

pub(super) fn built<T, E: std::fmt::Display>(r: std::result::Result<T, E>, what: &str) -> Result<T> {
    r.map_err(|e| bad(format!("{what}: {e}")))
}

/// The request mapped again for `model` served by the foundation model `base`.
pub fn with_base_model(text: &str, model: &Model, base: &str) -> Result<StreamRequest> {
    let resolved = Arc::new(Model { base_model: Some(base.to_string()), ..model.clone() });
    parse(text, |id| (id == resolved.id).then(|| resolved.clone()))
}

/// Parses `{"model", "context", "options"}`. `lookup` resolves a model id to a known model.
pub fn parse(text: &str, lookup: impl Fn(&str) -> Option<Arc<Model>>) -> Result<StreamRequest> {
    let text = crate::converse::surrogates::replace_lone(text);
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
    let mut options = match top.obj("options")? {
        Some(o) => Options::parse(&o)?,
        None => Options::default(),
    };
    route_limits(&model, &mut options);
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
    crate::converse::documents::unique_names(&mut messages);
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
    let own_fields = options.reasoning_fields(&model, &mut max_tokens);
    let additional_fields = crate::converse::passthrough::merge_fields(own_fields, options.passthrough.additional_request_fields.as_ref());
    // Newer Claude models refuse temperature and topP together ("cannot both be specified"):
    // for Claude, temperature wins and topP is left out.
    let top_p = options.top_p.filter(|_| !(options.temperature.is_some() && is_claude_model(&model)));
    let inference = InferenceConfiguration::builder()
        .max_tokens(i32::try_from(max_tokens).map_err(|_| bad("options.maxTokens: too large"))?)
        .set_temperature(options.temperature.map(|t| t as f32))
        .set_top_p(top_p.map(|t| t as f32))
        .set_stop_sequences(options.stop_sequences.clone())
        .build();
    let unresolved_profile = (model.base_model.is_none() && crate::converse::profile_base::is_application_profile(&model.id)).then(|| text.into_owned());
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
        hold_output: options.hold_output,
        tool_names,
        retry: crate::converse::retry::Policy {
            max_retries: options.max_retries.map(|n| n as u32),
            max_delay: options.max_retry_delay_ms.map_or(crate::converse::retry::DEFAULT_MAX_DELAY, Duration::from_millis),
        },
        fault,
    })
}

/// What a Claude route refuses is left out of the request rather than failing it: custom sampling
/// and a forced tool choice on Opus 5/4.8/4.7 and the always-thinking Claude 5 models, a service
/// tier other than `default` on the routes that serve only that one (with a warning).
fn route_limits(model: &Model, options: &mut Options) {
    if refuses_sampling(model) {
        options.temperature = None;
        options.top_p = None;
    }
    if refuses_forced_tool_choice(model) {
        let forced = match &options.tool_choice {
            Some(Value::String(s)) => s == "any",
            Some(Value::Object(o)) => o.get("type").and_then(Value::as_str) == Some("tool"),
            _ => false,
        };
        if forced {
            options.tool_choice = None;
        }
    }
    if default_tier_only(model) {
        if let Some(tier) = options.service_tier.take_if(|t| t.r#type() != &aws_sdk_bedrockruntime::types::ServiceTierType::Default) {
            crate::log::warn(
                "converse",
                &format!("{} serves only the \"default\" service tier; \"{}\" is ignored", model.id, tier.r#type().as_str()),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_bedrockruntime::types::ToolResultStatus;

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
