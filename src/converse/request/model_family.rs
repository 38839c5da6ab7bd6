//! Which model family takes which request feature: Claude detection (by id, or by name for
//! application profiles), prompt caching and its one-hour TTL.

use super::built;
use crate::error::Result;
use crate::model::Model;
use aws_sdk_bedrockruntime::types::{CachePointBlock, CachePointType, CacheTtl};

/// By id, or by name for application inference profiles whose ARN does not say the model.
pub(super) fn is_claude_model(model: &Model) -> bool {
    is_claude(model.capability_id()) || (model.id.starts_with("arn:") && model.name.to_ascii_lowercase().contains("claude"))
}

pub(super) fn is_claude(id: &str) -> bool {
    id.contains("anthropic.claude") || id.contains("anthropic/claude")
}

pub(super) fn supports_prompt_caching(model: &Model) -> bool {
    if model.cost.cache_read > 0.0 || model.cost.cache_write > 0.0 {
        return true;
    }
    let id = model.capability_id().to_lowercase();
    (id.contains("claude") && (id.contains("-4-") || id.contains("-4.")))
        || id.contains("claude-3-7-sonnet")
        || id.contains("claude-3-5-haiku")
        || is_nova(&id)
}

pub(super) fn is_nova(id: &str) -> bool {
    id.to_ascii_lowercase().contains("amazon.nova")
}

/// Bedrock's one-hour cache TTL: Claude 4.5 and later. Others keep the default (5 minutes) even
/// when `cacheRetention` is "long", rather than be refused.
pub(super) fn supports_one_hour_cache(model: &Model) -> bool {
    let name = if model.id.starts_with("arn:") { model.name.as_str() } else { "" };
    is_claude_model(model) && mentions_any(&[model.capability_id(), name], &["-4-5", "-4-6", "-4-7", "-4-8", "-4-9", "opus-5", "sonnet-5", "haiku-5", "claude-5"])
}

pub(super) fn cache_point(one_hour: bool) -> Result<CachePointBlock> {
    let mut b = CachePointBlock::builder().r#type(CachePointType::Default);
    if one_hour {
        b = b.ttl(CacheTtl::OneHour);
    }
    built(b.build(), "cache point")
}

/// Whether any of `texts` (ids or names, `.`, `_`, `:` and spaces read as `-`) names one of
/// `families` (`opus-4-6`, `-4-5`, …).
pub(super) fn mentions_any(texts: &[&str], families: &[&str]) -> bool {
    texts.iter().any(|t| {
        let t = t.to_ascii_lowercase().replace(['.', '_', ' ', ':'], "-");
        families.iter().any(|family| t.contains(family))
    })
}

/// The ids (or names) a Claude route is known by: the foundation model behind a profile, and the
/// name of an application profile whose ARN says nothing.
fn claude_names(model: &Model) -> [&str; 2] {
    let name = if model.id.starts_with("arn:") { model.name.as_str() } else { "" };
    [model.capability_id(), name]
}

/// Routes that refuse custom sampling (`temperature`, `topP`): Claude Opus 5, 4.8 and 4.7, and
/// the always-thinking Claude 5 models. Bedrock answers a ValidationException otherwise.
pub(super) fn refuses_sampling(model: &Model) -> bool {
    is_claude_model(model) && mentions_any(&claude_names(model), &["opus-5", "opus-4-8", "opus-4-7", "fable-5", "mythos-5", "sonnet-5"])
}

/// Routes that refuse a forced tool choice (`any`, or one named tool): the same as sampling.
pub(super) fn refuses_forced_tool_choice(model: &Model) -> bool {
    refuses_sampling(model)
}

/// Claude models whose adaptive thinking cannot be turned off on Bedrock, with the effort they
/// think at when the host names none: Sonnet 5 and Mythos 5 (high), Fable 5 (medium).
pub(super) fn mandatory_thinking_effort(model: &Model) -> Option<&'static str> {
    if !is_claude_model(model) {
        return None;
    }
    let names = claude_names(model);
    if mentions_any(&names, &["fable-5"]) {
        Some("medium")
    } else if mentions_any(&names, &["sonnet-5", "mythos-5"]) {
        Some("high")
    } else {
        None
    }
}

/// Claude Opus 5 thinks (adaptively, at high effort) unless the host says "off".
pub(super) fn default_thinking_effort(model: &Model) -> Option<&'static str> {
    mandatory_thinking_effort(model).or_else(|| (is_claude_model(model) && mentions_any(&claude_names(model), &["opus-5"])).then_some("high"))
}

/// The Claude 5 generation takes `xhigh` as an effort of its own; older adaptive models top out
/// at `max`.
pub(super) fn native_xhigh(model: &Model) -> bool {
    is_claude_model(model) && mentions_any(&claude_names(model), &["opus-5", "sonnet-5", "fable-5", "mythos-5", "haiku-5", "claude-5"])
}

/// Routes that serve only Bedrock's `default` service tier (Claude Fable 5, Opus 5, Sonnet 5):
/// another tier is left out with a warning instead of failing the request.
pub(super) fn default_tier_only(model: &Model) -> bool {
    is_claude_model(model) && mentions_any(&claude_names(model), &["fable-5", "opus-5", "sonnet-5"])
}
