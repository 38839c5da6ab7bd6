//! Bedrock takes tool names matching `[a-zA-Z0-9_-]{1,64}`; hosts name tools as they like
//! (`weather.get`, `mcp/server:tool`, long names). A name Bedrock would refuse is mapped to one
//! it takes, the same way on every turn (so the history matches), and a call comes back under the
//! host's name.

use std::collections::HashMap;

const MAX: usize = 64;

fn acceptable(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// FNV-1a: a short, stable tag telling apart two names that sanitize alike.
fn tag(name: &str) -> String {
    let hash = name.bytes().fold(0x811c_9dc5u32, |h, b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193));
    format!("{hash:08x}")
}

/// The name Bedrock sees for the host's `name`.
pub fn to_bedrock(name: &str) -> String {
    if acceptable(name) {
        return name.to_string();
    }
    let clean: String = name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '_' }).collect();
    let keep: String = clean.chars().take(MAX - 9).collect();
    format!("{keep}_{}", tag(name))
}

/// Bedrock's names back to the host's, for every name of one request that was changed.
#[derive(Debug, Clone, Default)]
pub struct ToolNames(HashMap<String, String>);

impl ToolNames {
    /// Maps `name` and remembers how to map it back.
    pub fn map(&mut self, name: &str) -> String {
        let bedrock = to_bedrock(name);
        if bedrock != name {
            self.0.insert(bedrock.clone(), name.to_string());
        }
        bedrock
    }

    pub fn to_host(&self, bedrock: &str) -> String {
        self.0.get(bedrock).cloned().unwrap_or_else(|| bedrock.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_bedrock_refuses_are_mapped_stably_and_back() {
        assert_eq!(to_bedrock("get_weather-2"), "get_weather-2");
        let mut names = ToolNames::default();
        let dotted = names.map("weather.get");
        assert!(acceptable(&dotted) && dotted.starts_with("weather_get_"), "{dotted}");
        assert_eq!(dotted, to_bedrock("weather.get"), "the same on every turn");
        assert_ne!(to_bedrock("weather.get"), to_bedrock("weather/get"), "names that clean alike stay apart");
        let long = "x".repeat(100);
        assert!(acceptable(&names.map(&long)));
        assert!(acceptable(&names.map("")) && acceptable(&names.map("é")));
        assert_eq!(names.to_host(&dotted), "weather.get");
        assert_eq!(names.to_host("untouched"), "untouched");
    }
}
