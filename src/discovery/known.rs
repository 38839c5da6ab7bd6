//! What Bedrock's list APIs do not say: context windows, output limits and reasoning support of
//! known model families. Looked up by the bare model id (region prefix and a trailing `:0`
//! removed), longest matching prefix first; unknown models get the discovery defaults.

/// (id prefix, context window, max output tokens, reasoning)
const TABLE: &[(&str, u64, u64, bool)] = &[
    ("anthropic.claude-opus-4-5", 200_000, 64_000, true),
    ("anthropic.claude-opus-4-1", 200_000, 32_000, true),
    ("anthropic.claude-opus-4", 200_000, 32_000, true),
    ("anthropic.claude-sonnet-4-5", 200_000, 64_000, true),
    ("anthropic.claude-sonnet-4", 200_000, 64_000, true),
    ("anthropic.claude-haiku-4-5", 200_000, 64_000, true),
    ("anthropic.claude-3-7-sonnet", 200_000, 64_000, true),
    ("anthropic.claude-3-5-sonnet", 200_000, 8_192, false),
    ("anthropic.claude-3-5-haiku", 200_000, 8_192, false),
    ("anthropic.claude-3-haiku", 200_000, 4_096, false),
    ("anthropic.claude-3-opus", 200_000, 4_096, false),
    ("amazon.nova-premier", 1_000_000, 32_000, false),
    ("amazon.nova-pro", 300_000, 5_120, false),
    ("amazon.nova-lite", 300_000, 5_120, false),
    ("amazon.nova-micro", 128_000, 5_120, false),
    ("meta.llama3-3-70b-instruct", 128_000, 8_192, false),
    ("meta.llama3-2-90b-instruct", 128_000, 8_192, false),
    ("meta.llama3-1-405b-instruct", 128_000, 8_192, false),
    ("meta.llama3-1-70b-instruct", 128_000, 8_192, false),
    ("meta.llama3-1-8b-instruct", 128_000, 8_192, false),
    ("mistral.mistral-large-2407", 128_000, 8_192, false),
    ("mistral.pixtral-large-2502", 128_000, 8_192, false),
    ("deepseek.r1", 128_000, 32_768, true),
    ("openai.gpt-oss-120b", 128_000, 32_768, true),
    ("openai.gpt-oss-20b", 128_000, 32_768, true),
    ("qwen.qwen3", 128_000, 32_768, true),
];

/// Region prefixes of system-defined inference profiles.
pub const PROFILE_PREFIXES: &[&str] = &["global.", "us-gov.", "us.", "eu.", "apac.", "ap.", "au.", "jp.", "ca."];

/// `us.anthropic.x-v1:0` → `anthropic.x-v1:0`; `None` when `id` has no profile prefix.
pub fn without_profile_prefix(id: &str) -> Option<&str> {
    PROFILE_PREFIXES
        .iter()
        .find(|p| id.len() > p.len() && id.is_char_boundary(p.len()) && id[..p.len()].eq_ignore_ascii_case(p))
        .map(|p| &id[p.len()..])
}

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
        .filter(|(prefix, ..)| bare.starts_with(prefix))
        .max_by_key(|(prefix, ..)| prefix.len())
        .map(|&(_, context_window, max_tokens, reasoning)| Known { context_window, max_tokens, reasoning })
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
    fn prefixes_and_suffix_are_ignored_and_the_longest_prefix_wins() {
        assert_eq!(bare_id("global.anthropic.claude-sonnet-4-5-20250929-v1:0"), "anthropic.claude-sonnet-4-5-20250929-v1");
        assert_eq!(bare_id("APAC.amazon.nova-pro-v1:0"), "amazon.nova-pro-v1");
        assert_eq!(bare_id("amazon.nova-pro-v1:0:300k"), "amazon.nova-pro-v1:0:300k");
        assert_eq!(lookup("eu.anthropic.claude-opus-4-5-20251101-v1:0").unwrap().max_tokens, 64_000);
        assert_eq!(lookup("anthropic.claude-opus-4-20250514-v1:0").unwrap().max_tokens, 32_000);
        assert!(lookup("cohere.command-r-v1:0").is_none());
        assert!(is_reasoning("jp.anthropic.claude-haiku-4-5-20251001-v1:0", ""));
        assert!(is_reasoning("acme.model-x", "Model X Thinking"));
        assert!(!is_reasoning("meta.llama3-3-70b-instruct-v1:0", "Llama 3.3 70B Instruct"));
    }
}
