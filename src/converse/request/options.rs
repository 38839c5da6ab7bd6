//! The request's `options`: checked against Bedrock's documented ranges, and the reasoning
//! levels turned into what each Claude generation takes (adaptive thinking with an effort, or a
//! token budget).

use super::model_family::{default_thinking_effort, is_claude_model, mandatory_thinking_effort, mentions_any, native_xhigh};
use crate::error::Result;
use crate::json::Obj;
use crate::model::Model;
use aws_sdk_bedrockruntime::types::{OutputConfig, ServiceTier};
use serde_json::Value;
use std::time::Duration;

const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// Bedrock's limit on `inferenceConfig.stopSequences`.
const MAX_STOP_SEQUENCES: usize = 2500;

#[derive(Debug, Clone)]
pub(super) struct Options {
    pub(super) max_tokens: Option<u64>,
    pub(super) temperature: Option<f64>,
    pub(super) top_p: Option<f64>,
    pub(super) stop_sequences: Option<Vec<String>>,
    pub(super) idle_timeout: Duration,
    pub(super) reasoning: Option<String>,
    /// The host said `reasoning: "off"` (OpenClaw's `/think off`), not merely nothing.
    pub(super) reasoning_off: bool,
    pub(super) thinking_budgets: Option<Value>,
    pub(super) tool_choice: Option<Value>,
    pub(super) cache_retention: String,
    /// Whether the host set `cacheRetention` (Nova caches only then).
    pub(super) cache_retention_explicit: bool,
    pub(super) interleaved_thinking: Option<bool>,
    pub(super) service_tier: Option<ServiceTier>,
    pub(super) output_config: Option<OutputConfig>,
    pub(super) passthrough: crate::converse::passthrough::Passthrough,
    pub(super) max_retries: Option<u64>,
    pub(super) max_retry_delay_ms: Option<u64>,
    /// `holdOutput`: refusal-safe streaming (see `StreamRequest::hold_output`).
    pub(super) hold_output: bool,
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
            reasoning_off: false,
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
            hold_output: false,
        }
    }
}

impl Options {
    pub(super) fn parse(o: &Obj<'_>) -> Result<Options> {
        o.only(&[
            "maxTokens", "temperature", "topP", "stopSequences", "idleTimeoutMs", "reasoning", "thinkingBudgets",
            "toolChoice", "cacheRetention", "interleavedThinking", "sessionId", "serviceTier", "outputConfig",
            "guardrailConfig", "performanceConfig", "requestMetadata", "additionalModelRequestFields", "additionalModelResponseFieldPaths",
            "maxRetries", "maxRetryDelayMs", "holdOutput",
        ])?;
        let reasoning = o.str("reasoning")?.map(str::to_string);
        if let Some(r) = &reasoning {
            if !["off", "minimal", "low", "medium", "high", "xhigh", "max"].contains(&r.as_str()) {
                return Err(o.err("reasoning", format!("must be one of off, minimal, low, medium, high, xhigh, max; got \"{r}\"")));
            }
        }
        // OpenClaw says "off" where pi-ai leaves the field out: no thinking either way, except on
        // the routes that cannot stop thinking (see `reasoning_fields`).
        let reasoning_off = reasoning.as_deref() == Some("off");
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
            reasoning_off,
            thinking_budgets: o.get("thinkingBudgets").cloned(),
            tool_choice: o.get("toolChoice").cloned(),
            cache_retention_explicit: o.get("cacheRetention").is_some(),
            cache_retention,
            interleaved_thinking: o.bool("interleavedThinking")?,
            service_tier: crate::converse::output_options::service_tier(o)?,
            output_config: crate::converse::output_options::output_config(o)?,
            passthrough: crate::converse::passthrough::parse(o)?,
            max_retries: o.uint("maxRetries", 10)?,
            max_retry_delay_ms: o.uint("maxRetryDelayMs", 600_000)?,
            hold_output: o.bool("holdOutput")?.unwrap_or(false),
        })
    }

    /// The thinking fields for `model` (None when it takes none or none was asked for); a token
    /// budget raises `max_tokens` so that the answer still has room. Claude 5 routes that cannot
    /// stop thinking (Sonnet, Fable, Mythos) think at `low` for "off" and "minimal", and at their
    /// own default effort when the host names none; Opus 5 thinks at `high` unless told "off".
    pub(super) fn reasoning_fields(&self, model: &Model, max_tokens: &mut u64) -> Option<Value> {
        if !is_claude_model(model) {
            return None;
        }
        let mandatory = mandatory_thinking_effort(model);
        let level = self.reasoning.as_deref().filter(|_| model.reasoning || mandatory.is_some());
        let adaptive = |effort: &str| Some(serde_json::json!({"thinking": {"type": "adaptive"}, "output_config": {"effort": effort}}));
        if let Some(default) = mandatory {
            return match level {
                Some(level) => adaptive(adaptive_effort(level, native_xhigh(model))),
                None if self.reasoning_off => adaptive("low"),
                None => adaptive(default),
            };
        }
        // Adaptive thinking: the model decides how much to think, at the effort asked for.
        if supports_adaptive_thinking(model.capability_id(), &model.name) {
            return match level {
                Some(level) => adaptive(adaptive_effort(level, native_xhigh(model))),
                // A host whose entry says the model does not reason gets no default thinking.
                None if self.reasoning_off || !model.reasoning => None,
                None => default_thinking_effort(model).and_then(adaptive),
            };
        }
        let level = level?;
        let budget = self.thinking_budget(level);
        *max_tokens = (*max_tokens).max(budget + 1024);
        let mut fields = serde_json::json!({"thinking": {"type": "enabled", "budget_tokens": budget}});
        if self.interleaved_thinking.unwrap_or(true) {
            fields["anthropic_beta"] = serde_json::json!(["interleaved-thinking-2025-05-14"]);
        }
        Some(fields)
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

/// pi-ai's thinking levels as adaptive thinking's effort. The Claude 5 generation has `xhigh` of
/// its own; for older adaptive models xhigh is `max`, the most they offer.
fn adaptive_effort(level: &str, native_xhigh: bool) -> &'static str {
    match level {
        "minimal" | "low" => "low",
        "medium" => "medium",
        "high" => "high",
        "xhigh" if native_xhigh => "xhigh",
        _ => "max",
    }
}
