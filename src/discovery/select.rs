//! From what Bedrock lists to the models a gateway can offer: the filter rules, profile
//! inheritance, dedup and order. Pure functions over plain summaries, so every rule is testable
//! without a network.

use super::known;
use crate::model::{Cost, Model};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// A `ListFoundationModels` entry, reduced to what the rules read.
#[derive(Debug, Clone, Default)]
pub struct Foundation {
    pub id: String,
    pub name: Option<String>,
    pub provider: Option<String>,
    /// Modalities as Bedrock spells them (`TEXT`, `IMAGE`, …).
    pub input: Vec<String>,
    pub output: Vec<String>,
    pub streaming: bool,
    pub active: bool,
}

/// A `ListInferenceProfiles` entry.
#[derive(Debug, Clone, Default)]
pub struct Profile {
    pub id: String,
    pub arn: String,
    pub name: String,
    pub active: bool,
    /// `APPLICATION` profiles are invoked by ARN; system-defined ones by id.
    pub application: bool,
    pub model_arns: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Lower-case provider names; empty keeps every provider.
    pub provider_filter: Vec<String>,
    pub default_context_window: u64,
    pub default_max_tokens: u64,
}

/// The outcome of one discovery.
#[derive(Debug, Default)]
pub struct Catalog {
    /// Discovered models in offer order: `global.` profiles first, then by name.
    pub models: Vec<Arc<Model>>,
    /// Lower-case bare foundation-model id → the system profiles that serve it.
    pub profiles_of: HashMap<String, Vec<String>>,
}

fn provider_matches(settings: &Settings, provider_name: Option<&str>, id: &str) -> bool {
    if settings.provider_filter.is_empty() {
        return true;
    }
    let prefix = known::bare_id(id).split('.').next().unwrap_or("").to_ascii_lowercase();
    let name = provider_name.map(str::to_ascii_lowercase);
    settings.provider_filter.iter().any(|f| *f == prefix || name.as_deref() == Some(f.as_str()))
}

fn usable(f: &Foundation) -> bool {
    !f.id.trim().is_empty() && f.streaming && f.active && f.output.iter().any(|m| m.eq_ignore_ascii_case("TEXT"))
}

fn entry(id: &str, name: &str, base_id: &str, base: Option<&Foundation>, settings: &Settings) -> Model {
    let known = known::lookup(base_id);
    let mut input = vec!["text".to_string()];
    if base.is_some_and(|b| b.input.iter().any(|m| m.eq_ignore_ascii_case("IMAGE"))) {
        input.push("image".to_string());
    }
    Model {
        id: id.to_string(),
        name: name.to_string(),
        reasoning: known::is_reasoning(base_id, name) || base.is_some_and(|b| known::is_reasoning(&b.id, b.name.as_deref().unwrap_or(""))),
        input,
        cost: Cost::default(),
        context_window: known.as_ref().map_or(settings.default_context_window, |k| k.context_window),
        max_tokens: known.as_ref().map_or(settings.default_max_tokens, |k| k.max_tokens),
        base_model: (!base_id.eq_ignore_ascii_case(id)).then(|| base_id.to_string()),
    }
}

/// `arn:aws:bedrock:<region>::foundation-model/<id>` → `<id>`.
fn foundation_id_of_arn(arn: &str) -> Option<&str> {
    arn.split_once(":foundation-model/").map(|(_, id)| id).filter(|id| !id.is_empty())
}

/// The foundation model a profile routes to: its first model ARN, else (system profiles) its id
/// without the region prefix.
fn base_of(p: &Profile) -> Option<String> {
    if let Some(id) = p.model_arns.iter().find_map(|a| foundation_id_of_arn(a)) {
        return Some(id.to_string());
    }
    if p.application {
        return None;
    }
    known::without_profile_prefix(&p.id).map(str::to_string)
}

pub fn build(foundations: &[Foundation], profiles: &[Profile], settings: &Settings) -> Catalog {
    let by_id: HashMap<String, &Foundation> = foundations.iter().map(|f| (f.id.to_ascii_lowercase(), f)).collect();
    let mut models = Vec::new();
    for f in foundations.iter().filter(|f| usable(f) && provider_matches(settings, f.provider.as_deref(), &f.id)) {
        models.push(entry(&f.id, f.name.as_deref().unwrap_or(&f.id), &f.id, Some(f), settings));
    }
    let mut profiles_of: HashMap<String, Vec<String>> = HashMap::new();
    for p in profiles.iter().filter(|p| p.active && !p.id.trim().is_empty()) {
        let Some(base_id) = base_of(p) else { continue };
        let base = by_id.get(&base_id.to_ascii_lowercase()).copied();
        if base.is_some_and(|b| !usable(b)) || !provider_matches(settings, base.and_then(|b| b.provider.as_deref()), &base_id) {
            continue;
        }
        let id = if p.application { p.arn.as_str() } else { p.id.as_str() };
        let name = if p.name.trim().is_empty() { id } else { p.name.as_str() };
        models.push(entry(id, name, &base_id, base, settings));
        if !p.application {
            profiles_of.entry(known::bare_id(&base_id).to_ascii_lowercase()).or_default().push(p.id.clone());
        }
    }
    models.sort_by(|a, b| {
        let global = |m: &Model| !m.id.to_ascii_lowercase().starts_with("global.");
        (global(a), a.name.to_ascii_lowercase(), &a.id).cmp(&(global(b), b.name.to_ascii_lowercase(), &b.id))
    });
    let mut seen = HashSet::new();
    models.retain(|m| seen.insert(m.id.to_ascii_lowercase()));
    Catalog { models: models.into_iter().map(Arc::new).collect(), profiles_of }
}

/// Configured models first (they win over discovered ones with the same id), then discovered.
pub fn merge(configured: &[Arc<Model>], discovered: &[Arc<Model>]) -> Vec<Arc<Model>> {
    let mut seen: HashSet<String> = configured.iter().map(|m| m.id.to_ascii_lowercase()).collect();
    let mut out = configured.to_vec();
    out.extend(discovered.iter().filter(|m| seen.insert(m.id.to_ascii_lowercase())).cloned());
    out
}

/// The profile to retry with when Bedrock serves `id` only through one: `global.` first, then
/// the region's geography; without discovery data, the geography profile derived from the id.
pub fn fallback_profile(id: &str, region: &str, catalog: Option<&Catalog>) -> Option<String> {
    if id.starts_with("arn:") || known::without_profile_prefix(id).is_some() {
        return None;
    }
    let geo = crate::region::geography(region);
    if let Some(list) = catalog.and_then(|c| c.profiles_of.get(&known::bare_id(id).to_ascii_lowercase())) {
        let wanted = |prefix: &str| list.iter().find(|p| p.to_ascii_lowercase().starts_with(&format!("{prefix}.")) && p.len() > prefix.len() + 1);
        if let Some(p) = wanted("global").or_else(|| geo.and_then(wanted)) {
            return Some(p.clone());
        }
    }
    geo.map(|g| format!("{g}.{id}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn foundation(id: &str, provider: &str) -> Foundation {
        Foundation {
            id: id.into(),
            name: Some(format!("Name of {id}")),
            provider: Some(provider.into()),
            input: vec!["TEXT".into()],
            output: vec!["TEXT".into()],
            streaming: true,
            active: true,
        }
    }

    fn settings(filter: &[&str]) -> Settings {
        Settings { provider_filter: filter.iter().map(|s| s.to_string()).collect(), default_context_window: 32_000, default_max_tokens: 4096 }
    }

    #[test]
    fn base_of_a_system_profile_without_model_arns_is_its_id_without_prefix() {
        let p = Profile { id: "eu.amazon.nova-pro-v1:0".into(), active: true, ..Default::default() };
        assert_eq!(base_of(&p).as_deref(), Some("amazon.nova-pro-v1:0"));
        let app = Profile { id: "abc123".into(), application: true, ..Default::default() };
        assert_eq!(base_of(&app), None);
    }

    #[test]
    fn fallback_prefers_global_then_geography_then_derives() {
        let mut c = Catalog::default();
        c.profiles_of.insert("anthropic.m-v1".into(), vec!["eu.anthropic.m-v1:0".into(), "global.anthropic.m-v1:0".into()]);
        c.profiles_of.insert("anthropic.n-v1".into(), vec!["us.anthropic.n-v1:0".into(), "eu.anthropic.n-v1:0".into()]);
        assert_eq!(fallback_profile("anthropic.m-v1:0", "eu-west-1", Some(&c)).as_deref(), Some("global.anthropic.m-v1:0"));
        assert_eq!(fallback_profile("anthropic.n-v1:0", "eu-west-1", Some(&c)).as_deref(), Some("eu.anthropic.n-v1:0"));
        assert_eq!(fallback_profile("anthropic.o-v1:0", "ap-south-1", Some(&c)).as_deref(), Some("apac.anthropic.o-v1:0"));
        assert_eq!(fallback_profile("us.anthropic.o-v1:0", "us-east-1", None), None);
        assert_eq!(fallback_profile("arn:aws:bedrock:us-east-1:1:application-inference-profile/x", "us-east-1", None), None);
    }

    #[test]
    fn merge_keeps_configured_first_and_drops_case_insensitive_duplicates() {
        let m = |id: &str| Arc::new(entry(id, id, id, None, &settings(&[])));
        let out = merge(&[m("Amazon.Nova-Pro-v1:0")], &[m("amazon.nova-pro-v1:0"), m("meta.x")]);
        assert_eq!(out.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(), ["Amazon.Nova-Pro-v1:0", "meta.x"]);
        let c = build(&[foundation("a.one", "A"), foundation("A.ONE", "A")], &[], &settings(&[]));
        assert_eq!(c.models.len(), 1);
    }
}
