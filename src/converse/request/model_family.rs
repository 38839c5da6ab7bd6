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
