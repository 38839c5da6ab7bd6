//! Model discovery: which Bedrock models this identity can stream in this region, as OpenClaw's
//! implicit provider config. `fetch` lists, `select` applies the rules, `cache` shares results,
//! `known` fills in what the list APIs do not say.

mod cache;
mod fetch;
mod known;
pub mod select;

use crate::auth::Auth;
use crate::config::{Config, DiscoveryConfig};
use crate::error::Result;
use crate::log;
use crate::model::Model;
use crate::clients::Clients;
use crate::region::{self, RegionSource};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use select::Catalog;

/// Why discovery does not run, when it does not.
fn disabled_reason(settings: &DiscoveryConfig, auth: &Auth) -> Option<String> {
    match settings.enabled {
        Some(true) => None,
        Some(false) => Some("discovery.enabled is false".into()),
        None if auth.has_marker() => None,
        None => Some(
            "no AWS auth marker is set (AWS_BEARER_TOKEN_BEDROCK, AWS_ACCESS_KEY_ID + AWS_SECRET_ACCESS_KEY, or AWS_PROFILE); \
             set discovery.enabled to true to discover with other credentials (instance role, SSO, web identity)"
                .into(),
        ),
    }
}

pub struct Discovery {
    cache: cache::Lease,
    ttl: Duration,
    call_timeout: Duration,
    select: select::Settings,
    disabled: Option<String>,
    region: String,
    region_source: RegionSource,
    base_url: String,
    configured: Vec<Arc<Model>>,
    auth: Value,
    /// The last successful result, for resolving ids on host threads and picking fallbacks.
    latest: Mutex<Option<Arc<Catalog>>>,
}

impl Discovery {
    /// `region` is where discovery lists: `discovery.region`, else the provider's region chain.
    pub fn new(config: &Config, auth: &Auth, region: (String, RegionSource), control_endpoint: Option<String>) -> Discovery {
        let settings = &config.discovery;
        let select = select::Settings {
            provider_filter: settings.provider_filter.iter().map(|f| f.trim().to_ascii_lowercase()).filter(|f| !f.is_empty()).collect(),
            default_context_window: settings.default_context_window,
            default_max_tokens: settings.default_max_tokens,
        };
        let base_url = config.provider.base_url.clone().unwrap_or_else(|| format!("https://bedrock-runtime.{}.amazonaws.com", region.0));
        Discovery {
            cache: cache::Lease::take(cache::Key {
                endpoint: control_endpoint,
                region: region.0.clone(),
                identity: auth.origin(),
                provider_filter: select.provider_filter.clone(),
                default_context_window: select.default_context_window,
                default_max_tokens: select.default_max_tokens,
            }),
            ttl: Duration::from_secs(settings.refresh_interval_secs),
            call_timeout: Duration::from_secs(settings.call_timeout_secs),
            select,
            disabled: disabled_reason(settings, auth),
            region: region.0,
            region_source: region.1,
            base_url,
            configured: config.provider.models.clone(),
            auth: json!({ "kind": auth.kind(), "origin": auth.origin(), "ignored": auth.overridden }),
            latest: Mutex::new(None),
        }
    }

    pub fn latest(&self) -> Option<Arc<Catalog>> {
        self.latest.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// A discovered model by id (case-insensitive, as ids are deduplicated).
    pub fn lookup(&self, id: &str) -> Option<Arc<Model>> {
        self.latest()?.models.iter().find(|m| m.id.eq_ignore_ascii_case(id)).cloned()
    }

    /// The implicit provider config (`out_json` of `bp_discover`), with a `discovery` report.
    pub async fn run(&self, clients: &Clients, refresh: bool) -> Result<Value> {
        if let Some(reason) = &self.disabled {
            return Ok(self.answer(&self.configured, json!({ "status": "disabled", "reason": reason })));
        }
        let started = Instant::now();
        let (found, origin) = cache::get(&self.cache, self.ttl, refresh, || self.list(clients)).await?;
        *self.latest.lock().unwrap_or_else(|p| p.into_inner()) = Some(found.catalog.clone());
        if origin == cache::Origin::Fresh {
            log::info("discovery", &format!("discovered {} models in {} ({} ms)", found.catalog.models.len(), self.region, started.elapsed().as_millis()));
            for w in found.warnings.iter() {
                log::warn("discovery", w);
            }
        }
        let models = select::merge(&self.configured, &found.catalog.models);
        let report = json!({
            "status": if origin == cache::Origin::Fresh { "discovered" } else { "cached" },
            "discovered": found.catalog.models.len(),
            "ageMs": found.finished.elapsed().as_millis() as u64,
            "warnings": *found.warnings,
        });
        Ok(self.answer(&models, report))
    }

    async fn list(&self, clients: &Clients) -> Result<(Catalog, Vec<String>)> {
        let built = clients.current();
        let listing = match fetch::list(&built.control, self.call_timeout).await {
            Err(e) if clients.worth_refreshing(&e) => fetch::list(&clients.refresh(built.generation).await.control, self.call_timeout).await,
            other => other,
        }
        .map_err(|e| clients.explain(e))?;
        Ok((select::build(&listing.foundations, &listing.profiles, &self.select), listing.warnings))
    }

    fn answer(&self, models: &[Arc<Model>], mut report: Value) -> Value {
        report["region"] = json!(self.region);
        report["regionSource"] = json!(self.region_source.label());
        report["authSource"] = self.auth.clone();
        json!({
            "baseUrl": self.base_url,
            "api": crate::config::API,
            "auth": "aws-sdk",
            "models": models.iter().map(|m| &**m).collect::<Vec<&Model>>(),
            "discovery": report,
        })
    }
}

/// Where discovery lists: `discovery.region`, else the provider's own region chain.
pub fn region(config: &Config, env: impl Fn(&str) -> Option<String>) -> (String, RegionSource) {
    let from_url = config.provider.base_url.as_deref().and_then(region::from_base_url);
    region::resolve(
        &[
            (config.discovery.region.as_deref(), RegionSource::DiscoveryRegion),
            (config.provider.region.as_deref(), RegionSource::ProviderRegion),
            (from_url.as_deref(), RegionSource::BaseUrl),
        ],
        env,
    )
}
