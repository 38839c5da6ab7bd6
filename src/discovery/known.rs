//! What Bedrock's list APIs do not say: context windows, output limits and reasoning support of
//! known model families, from `known-models.tsv` (one data file, each row naming its source).
//! Looked up by the bare model id (region prefix and a trailing `:0` removed), longest matching
//! prefix first; unknown models get the discovery defaults.

use once_cell::sync::Lazy;

struct Row {
    prefix: &'static str,
    context_window: u64,
    max_tokens: u64,
    reasoning: bool,
}

static TABLE: Lazy<Vec<Row>> = Lazy::new(|| parse(include_str!("known-models.tsv")));

/// The data file's rows; a malformed row is a build-time mistake the unit tests catch.
fn parse(text: &'static str) -> Vec<Row> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            Some(Row {
                prefix: f.first()?,
                context_window: f.get(1)?.parse().ok()?,
                max_tokens: f.get(2)?.parse().ok()?,
                reasoning: *f.get(3)? == "yes",
            })
        })
        .collect()
}

pub use crate::model::without_profile_prefix;

/// `us.anthropic.x-v1:0` → `anthropic.x-v1`: the key the table is keyed by.
pub fn bare_id(id: &str) -> &str {
    let id = without_profile_prefix(id).unwrap_or(id);
    id.strip_suffix(":0").unwrap_or(id)
}

pub struct Known {
    pub context_window: u64,
    pub max_tokens: u64,
    pub reasoning: bool,
}

pub fn lookup(id: &str) -> Option<Known> {
    let bare = bare_id(id).to_ascii_lowercase();
    TABLE
        .iter()
        .filter(|row| bare.starts_with(row.prefix))
        .max_by_key(|row| row.prefix.len())
        .map(|row| Known { context_window: row.context_window, max_tokens: row.max_tokens, reasoning: row.reasoning })
}

/// Known reasoning families, or a model that says so in its id or name.
pub fn is_reasoning(id: &str, name: &str) -> bool {
    let mentions = |s: &str| {
        let s = s.to_ascii_lowercase();
        s.contains("reasoning") || s.contains("thinking")
    };
    lookup(id).is_some_and(|k| k.reasoning) || mentions(id) || mentions(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_row_of_the_data_file_parses_and_names_its_source() {
        let text = include_str!("known-models.tsv");
        let rows: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty() && !l.starts_with('#')).collect();
        assert_eq!(parse(text).len(), rows.len(), "a row that does not parse is dropped");
        for row in rows {
            let source = row.split('\t').nth(4);
            assert!(matches!(source, Some("openclaw" | "docs")), "{row}");
        }
    }

    #[test]
    fn openclaw_figures_with_region_prefixes_and_version_suffixes() {
        let window = |id: &str| lookup(id).map(|k| k.context_window);
        for (id, expected) in [
            ("global.anthropic.claude-sonnet-4-6", 1_000_000),
            ("us.anthropic.claude-sonnet-4-6:0", 1_000_000),
            ("anthropic.claude-opus-4-7-20260101-v1:0", 1_000_000),
            ("eu.anthropic.claude-sonnet-5-20261001-v1:0", 1_000_000),
            ("amazon.nova-premier-v1:0", 1_000_000),
            ("minimax.minimax-m2-5", 1_000_000),
            ("us.meta.llama4-maverick-17b-instruct-v1:0", 1_000_000),
            ("us.meta.llama4-scout-17b-instruct-v1:0", 512_000),
            ("us.amazon.nova-2-lite-v1:0", 300_000),
            ("ai21.jamba-1-5-large-v1:0", 256_000),
            ("qwen.qwen3-coder-480b-a35b-v1:0", 256_000),
            ("anthropic.claude-3-sonnet-20240229-v1:0", 200_000),
            ("us.meta.llama3-2-11b-instruct-v1:0", 128_000),
            ("cohere.command-r-plus-v1:0", 128_000),
            ("google.gemma-3-27b-it", 128_000),
            ("mistral.mistral-small-2402-v1:0", 32_000),
        ] {
            assert_eq!(window(id), Some(expected), "{id}");
        }
        assert_eq!(lookup("apac.anthropic.claude-opus-5-v1:0").unwrap().max_tokens, 128_000);
        assert_eq!(window("nvidia.nemotron-super-3-120b"), Some(256_000));
        assert_eq!(window("nvidia.nemotron-nano-12b-v2"), Some(128_000));
    }

    #[test]
    fn prefixes_and_suffix_are_ignored_and_the_longest_prefix_wins() {
        assert_eq!(bare_id("global.anthropic.claude-sonnet-4-5-20250929-v1:0"), "anthropic.claude-sonnet-4-5-20250929-v1");
        assert_eq!(bare_id("APAC.amazon.nova-pro-v1:0"), "amazon.nova-pro-v1");
        assert_eq!(bare_id("amazon.nova-pro-v1:0:300k"), "amazon.nova-pro-v1:0:300k");
        assert_eq!(lookup("eu.anthropic.claude-opus-4-5-20251101-v1:0").unwrap().max_tokens, 64_000);
        assert_eq!(lookup("anthropic.claude-opus-4-20250514-v1:0").unwrap().max_tokens, 32_000);
        assert!(lookup("cohere.embed-english-v3").is_none());
        assert!(is_reasoning("jp.anthropic.claude-haiku-4-5-20251001-v1:0", ""));
        assert!(is_reasoning("acme.model-x", "Model X Thinking"));
        assert!(!is_reasoning("meta.llama3-3-70b-instruct-v1:0", "Llama 3.3 70B Instruct"));
    }
}
