//! A model the provider can serve, in OpenClaw's model-definition terms.

use serde::Serialize;

/// Prices in US dollars per million tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Cost {
    pub input: f64,
    pub output: f64,
    pub cache_read: f64,
    pub cache_write: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Model {
    pub id: String,
    pub name: String,
    pub reasoning: bool,
    pub input: Vec<String>,
    pub cost: Cost,
    pub context_window: u64,
    pub max_tokens: u64,
    /// The foundation model behind an inference profile, when discovery found it: what decides
    /// the model's capabilities (thinking, caching, reasoning blocks) when its id is an ARN.
    #[serde(skip)]
    pub base_model: Option<String>,
}

impl Model {
    pub fn accepts_images(&self) -> bool {
        self.input.iter().any(|i| i == "image")
    }

    /// The id that says what the model can do: the base model of a profile, else its own id.
    pub fn capability_id(&self) -> &str {
        self.base_model.as_deref().unwrap_or(&self.id)
    }
}

/// Region prefixes of system-defined inference profiles.
pub const PROFILE_PREFIXES: &[&str] = &["global.", "us-gov.", "us.", "eu.", "apac.", "ap.", "au.", "jp.", "ca."];

/// `us.anthropic.x-v1:0` → `anthropic.x-v1:0`; `None` when `id` has no profile prefix.
pub fn without_profile_prefix(id: &str) -> Option<&str> {
    PROFILE_PREFIXES
        .iter()
        .find(|p| id.len() > p.len() && id.is_char_boundary(p.len()) && id[..p.len()].eq_ignore_ascii_case(p))
        .map(|p| &id[p.len()..])
}
