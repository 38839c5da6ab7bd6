//! The init config: `{"provider": <OpenClaw models.providers["amazon-bedrock"]>, "discovery": {...},
//! "embeddings"?: {...}, "guardrail"?: <the guardrail every stream gets unless it names its own>}`,
//! read strictly so that a typo is an error naming the field rather than a silent default.

use crate::auth::Secret;
use crate::error::{Error, Kind, Result};
use crate::json::Obj;
use crate::model::{Cost, Model};
use serde_json::Value;
use std::sync::Arc;

/// Embedding calls in flight at once per `bp_embed` (`embeddings.concurrency`) unless configured.
pub const DEFAULT_EMBED_CONCURRENCY: usize = 8;

pub const API: &str = "bedrock-converse-stream";
pub const PROVIDER: &str = "amazon-bedrock";

#[derive(Debug, Clone)]
pub struct Config {
    pub provider: ProviderConfig,
    pub discovery: DiscoveryConfig,
    /// `InvokeModel` calls in flight at once per `bp_embed` (`embeddings.concurrency`).
    pub embed_concurrency: usize,
    /// The guardrail of every stream that names none of its own (OpenClaw's plugin-level
    /// `guardrail`).
    pub guardrail: Option<aws_sdk_bedrockruntime::types::GuardrailStreamConfiguration>,
}

#[derive(Debug, Clone)]
pub struct ProviderConfig {
    /// The Bedrock Runtime endpoint (`baseUrl`); the SDK's regional default when absent.
    pub base_url: Option<String>,
    pub region: Option<String>,
    /// A Bedrock API key (`apiKey`); wins over every other credential source.
    pub api_key: Option<Secret>,
    /// A PEM file of CAs to trust besides the platform's (`caBundle`).
    pub ca_bundle: Option<String>,
    /// How long a pooled connection may sit unused before it is closed (`idleConnectionSeconds`).
    pub idle_connection: std::time::Duration,
    /// `httpVersion`: None when the config names none (then `AWS_BEDROCK_FORCE_HTTP1` decides).
    pub http_version: Option<HttpVersion>,
    /// The threads that run streams (`runtimeThreads`), each a runtime with a connection of its
    /// own: they decode and translate every stream's events; the delivery pool that calls the
    /// host is apart.
    pub runtime_threads: usize,
    /// The longest a delivery thread whose work keeps arriving sleeps between looks, gathering
    /// events instead of being woken for each (`deliveryGatherMs`; zero: never).
    pub delivery_gather: std::time::Duration,
    pub models: Vec<Arc<Model>>,
}

/// Which HTTP the plugin speaks to Bedrock and AWS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpVersion {
    /// ALPN offers `h2` then `http/1.1`: streams share a connection where the server speaks
    /// HTTP/2 (Bedrock's runtime endpoint does). The default.
    Http2,
    /// Only HTTP/1.1: one connection per concurrent stream.
    Http1,
}

impl HttpVersion {
    /// The config's choice, else pi-ai's switch (`AWS_BEDROCK_FORCE_HTTP1=1`), else HTTP/2.
    pub fn resolve(configured: Option<HttpVersion>, env: impl Fn(&str) -> Option<String>) -> HttpVersion {
        configured.unwrap_or_else(|| match env("AWS_BEDROCK_FORCE_HTTP1").as_deref().map(str::trim) {
            Some("1") | Some("true") => HttpVersion::Http1,
            _ => HttpVersion::Http2,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct DiscoveryConfig {
    pub enabled: Option<bool>,
    pub region: Option<String>,
    pub provider_filter: Vec<String>,
    pub refresh_interval_secs: u64,
    pub default_context_window: u64,
    pub default_max_tokens: u64,
    /// Deadline of each control-plane call (one list call, one page).
    pub call_timeout_secs: u64,
}

impl Default for DiscoveryConfig {
    fn default() -> Self {
        DiscoveryConfig {
            enabled: None,
            region: None,
            provider_filter: Vec::new(),
            refresh_interval_secs: 3600,
            default_context_window: 32_000,
            default_max_tokens: 4096,
            // OpenClaw's deadline for a discovery call.
            call_timeout_secs: 30,
        }
    }
}

const MAX_TOKENS_LIMIT: u64 = 100_000_000;

/// Pooled connections are closed 10–20 s after their last use: a steady gateway keeps reusing
/// them, one that bursts and goes quiet gets its sockets and memory back within 20 s.
const DEFAULT_IDLE_CONNECTION: std::time::Duration = std::time::Duration::from_secs(10);
/// Two, as before the setting existed: one worker costs less CPU per stream on a small host but
/// carries every stream's decoding alone (p99 2–4× higher at 1,600 real-pace streams on 2 cores:
/// docs/performance.md); a many-core gateway raises it.
const DEFAULT_RUNTIME_THREADS: usize = 2;
/// More workers than cores only adds switching; 64 covers the hosts a gateway runs on.
const MAX_RUNTIME_THREADS: u64 = 64;
/// The longest a delivery thread whose work keeps arriving dozes between looks instead of being
/// woken for each event. At a model's pace a token wakes a waiting delivery thread alone, and on
/// a virtual machine that wake-up (a futex wake from the runtime thread, an idle core brought
/// back) cost ~20 µs a token at 25 streams, half the SDK's own cost per token; dozing 4 ms there
/// gathers several per wake-up (CPU per stream against the SDK's own at 25–400 streams, one
/// build: 1.44–1.62× woken for each token, 1.04–1.40× dozing 4 ms; docs/performance.md). A doze
/// starts at 4 ms and doubles while it finds 3–63 streams waiting (`pool.rs`): at 25–100
/// streams a 4 ms doze's wake-up still cost the delivery thread more than its deliveries, and
/// 16 ms took half of that thread's CPU away. From some hundreds of streams up a doze stays at
/// 4 ms. 16 ms is under two of a model's tokens (10–20 ms apart), below anything a reader sees;
/// what cannot wait (a stream's first token, its end, a stream whose queue is full) rouses a
/// dozer at once.
const DEFAULT_DELIVERY_GATHER: std::time::Duration = std::time::Duration::from_millis(16);
/// Past a few tokens' time a gather would bunch a stream's tokens together.
const MAX_DELIVERY_GATHER_MS: u64 = 50;

pub fn parse(text: &str) -> Result<Config> {
    let value: Value = serde_json::from_str(text).map_err(|e| Error::config(format!("config is not valid JSON: {e}")))?;
    let top = Obj::new(&value, "", Kind::Config)?;
    top.only(&["provider", "discovery", "embeddings", "guardrail"])?;
    let provider = top.obj("provider")?.ok_or_else(|| top.err("provider", "is required"))?;
    let provider = parse_provider(&provider)?;
    let discovery = match top.obj("discovery")? {
        Some(d) => parse_discovery(&d)?,
        None => DiscoveryConfig::default(),
    };
    let embed_concurrency = match top.obj("embeddings")? {
        Some(e) => {
            e.only(&["concurrency"])?;
            match e.uint("concurrency", 64)? {
                Some(0) => return Err(e.err("concurrency", "must be between 1 and 64")),
                Some(n) => n as usize,
                None => DEFAULT_EMBED_CONCURRENCY,
            }
        }
        None => DEFAULT_EMBED_CONCURRENCY,
    };
    let guardrail = top.obj("guardrail")?.map(|g| crate::converse::passthrough::guardrail(&g)).transpose()?;
    Ok(Config { provider, discovery, embed_concurrency, guardrail })
}

fn parse_provider(p: &Obj<'_>) -> Result<ProviderConfig> {
    p.only(&["baseUrl", "api", "auth", "apiKey", "region", "caBundle", "idleConnectionSeconds", "httpVersion", "runtimeThreads", "deliveryGatherMs", "models"])?;
    if let Some(api) = p.str("api")? {
        if api != API {
            return Err(p.err("api", format!("must be \"{API}\", got \"{api}\"")));
        }
    }
    let api_key = p.str("apiKey")?.map(|k| k.trim()).filter(|k| !k.is_empty()).map(Secret::new);
    match p.str("auth")? {
        None | Some("aws-sdk") => {}
        Some("api-key") if api_key.is_some() => {}
        Some("api-key") => return Err(p.err("auth", "is \"api-key\" but provider.apiKey is missing or empty")),
        Some(auth) => {
            return Err(p.err("auth", format!("must be \"aws-sdk\" (the AWS SDK chain or AWS_BEARER_TOKEN_BEDROCK) or \"api-key\" (provider.apiKey), got \"{auth}\"")));
        }
    }
    let base_url = p.str("baseUrl")?.map(|u| validate_url(p, "baseUrl", u)).transpose()?;
    let region = p.str("region")?.map(|r| validate_region(p, "region", r)).transpose()?;
    let mut models = Vec::new();
    for (i, item) in p.array("models")?.map(Vec::as_slice).unwrap_or(&[]).iter().enumerate() {
        let m = Obj::new(item, &format!("{}.models[{i}]", p.path), Kind::Config)?;
        let model = parse_model(&m, &DiscoveryConfig::default())?;
        if models.iter().any(|existing: &Arc<Model>| existing.id == model.id) {
            return Err(m.err("id", format!("duplicate model id \"{}\"", model.id)));
        }
        models.push(Arc::new(model));
    }
    let ca_bundle = p.str("caBundle")?.map(str::to_string);
    let idle_connection = match p.uint("idleConnectionSeconds", 3600)? {
        Some(0) => return Err(p.err("idleConnectionSeconds", "must be between 1 and 3600")),
        Some(n) => std::time::Duration::from_secs(n),
        None => DEFAULT_IDLE_CONNECTION,
    };
    let http_version = match p.str("httpVersion")? {
        None => None,
        Some("2") => Some(HttpVersion::Http2),
        Some("1.1") => Some(HttpVersion::Http1),
        Some(other) => return Err(p.err("httpVersion", format!("must be \"2\" (the default) or \"1.1\", got \"{other}\""))),
    };
    let runtime_threads = match p.uint("runtimeThreads", MAX_RUNTIME_THREADS)? {
        Some(0) => return Err(p.err("runtimeThreads", format!("must be between 1 and {MAX_RUNTIME_THREADS}"))),
        Some(n) => n as usize,
        None => DEFAULT_RUNTIME_THREADS,
    };
    let delivery_gather = p.uint("deliveryGatherMs", MAX_DELIVERY_GATHER_MS)?.map_or(DEFAULT_DELIVERY_GATHER, std::time::Duration::from_millis);
    Ok(ProviderConfig { base_url, region, api_key, ca_bundle, idle_connection, http_version, runtime_threads, delivery_gather, models })
}

/// One model entry in OpenClaw's shape; also used for a model object passed in a request.
pub fn parse_model(m: &Obj<'_>, defaults: &DiscoveryConfig) -> Result<Model> {
    m.only(&["id", "name", "api", "reasoning", "input", "cost", "contextWindow", "maxTokens"])?;
    let id = m.req_str("id")?;
    if id.trim().is_empty() {
        return Err(m.err("id", "must not be empty"));
    }
    // The id becomes a path segment (`/model/<id>/converse-stream`): `.` and `..` would be
    // resolved away by a normalizing proxy, and control characters have no business there.
    if id == "." || id == ".." {
        return Err(m.err("id", format!("\"{id}\" is not a model id")));
    }
    if let Some(c) = id.chars().find(|c| c.is_control()) {
        return Err(m.err("id", format!("must not contain control characters (found U+{:04X})", c as u32)));
    }
    if let Some(api) = m.str("api")? {
        if api != API {
            return Err(m.err("api", format!("must be \"{API}\", got \"{api}\"")));
        }
    }
    let input = m.str_array("input")?.unwrap_or_else(|| vec!["text".into()]);
    for (i, kind) in input.iter().enumerate() {
        if kind != "text" && kind != "image" {
            return Err(m.err(&format!("input[{i}]"), format!("must be \"text\" or \"image\", got \"{kind}\"")));
        }
    }
    let cost = match m.obj("cost")? {
        None => Cost::default(),
        Some(c) => {
            c.only(&["input", "output", "cacheRead", "cacheWrite"])?;
            let price = |key: &str| -> Result<f64> {
                match c.f64(key)? {
                    Some(v) if v < 0.0 => Err(c.err(key, "must not be negative")),
                    v => Ok(v.unwrap_or(0.0)),
                }
            };
            Cost { input: price("input")?, output: price("output")?, cache_read: price("cacheRead")?, cache_write: price("cacheWrite")? }
        }
    };
    Ok(Model {
        id: id.to_string(),
        name: m.str("name")?.unwrap_or(id).to_string(),
        reasoning: m.bool("reasoning")?.unwrap_or(false),
        input,
        cost,
        context_window: m.uint("contextWindow", MAX_TOKENS_LIMIT)?.unwrap_or(defaults.default_context_window),
        max_tokens: m.uint("maxTokens", MAX_TOKENS_LIMIT)?.unwrap_or(defaults.default_max_tokens),
        base_model: None,
    })
}

fn parse_discovery(d: &Obj<'_>) -> Result<DiscoveryConfig> {
    d.only(&["enabled", "region", "providerFilter", "refreshInterval", "defaultContextWindow", "defaultMaxTokens", "callTimeoutSeconds"])?;
    let call_timeout_secs = d.uint("callTimeoutSeconds", 3600)?;
    if call_timeout_secs == Some(0) {
        return Err(d.err("callTimeoutSeconds", "must be at least 1"));
    }
    let defaults = DiscoveryConfig::default();
    let provider_filter = match d.get("providerFilter") {
        None => Vec::new(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(_) => d.str_array("providerFilter")?.unwrap_or_default(),
    };
    Ok(DiscoveryConfig {
        enabled: d.bool("enabled")?,
        region: d.str("region")?.map(|r| validate_region(d, "region", r)).transpose()?,
        provider_filter,
        refresh_interval_secs: d.uint("refreshInterval", 10 * 365 * 86_400)?.unwrap_or(defaults.refresh_interval_secs),
        default_context_window: d.uint("defaultContextWindow", MAX_TOKENS_LIMIT)?.unwrap_or(defaults.default_context_window),
        default_max_tokens: d.uint("defaultMaxTokens", MAX_TOKENS_LIMIT)?.unwrap_or(defaults.default_max_tokens),
        call_timeout_secs: call_timeout_secs.unwrap_or(defaults.call_timeout_secs),
    })
}

fn validate_url(o: &Obj<'_>, key: &str, url: &str) -> Result<String> {
    let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://"));
    match rest {
        Some(host) if !host.is_empty() && !host.starts_with('/') && !url.contains(char::is_whitespace) => {
            Ok(url.trim_end_matches('/').to_string())
        }
        _ => Err(o.err(key, format!("must be an http:// or https:// URL, got \"{url}\""))),
    }
}

fn validate_region(o: &Obj<'_>, key: &str, region: &str) -> Result<String> {
    let ok = !region.is_empty()
        && region.len() <= 32
        && region.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(region.to_string())
    } else {
        Err(o.err(key, format!("\"{region}\" is not an AWS region name (like \"us-east-1\")")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_field() {
        let e = parse(r#"{"provider":{"models":[{"id":"a","cost":{"input":"x"}}]}}"#).unwrap_err();
        assert_eq!(e.kind, Kind::Config);
        assert!(e.message.starts_with("provider.models[0].cost.input:"), "{}", e.message);
        let e = parse(r#"{"provider":{"bseUrl":"http://x"}}"#).unwrap_err();
        assert!(e.message.starts_with("provider.bseUrl: unknown field"), "{}", e.message);
    }

    #[test]
    fn http_version_is_two_unless_the_config_or_pi_ais_switch_says_one_point_one() {
        use super::HttpVersion::{Http1, Http2};
        let version = |json: &str, force: Option<&str>| {
            let configured = parse(json).unwrap().provider.http_version;
            HttpVersion::resolve(configured, |name| (name == "AWS_BEDROCK_FORCE_HTTP1").then(|| force.map(str::to_string)).flatten())
        };
        assert_eq!(version(r#"{"provider":{}}"#, None), Http2);
        assert_eq!(version(r#"{"provider":{"httpVersion":"1.1"}}"#, None), Http1);
        assert_eq!(version(r#"{"provider":{}}"#, Some("1")), Http1);
        assert_eq!(version(r#"{"provider":{}}"#, Some("0")), Http2);
        assert_eq!(version(r#"{"provider":{"httpVersion":"2"}}"#, Some("1")), Http2, "the config wins over the environment");
        for bad in ["\"1\"", "\"http/1.1\"", "2", "\"h2\""] {
            let e = parse(&format!(r#"{{"provider":{{"httpVersion":{bad}}}}}"#)).unwrap_err();
            assert!(e.message.starts_with("provider.httpVersion:"), "{bad}: {}", e.message);
        }
    }

    #[test]
    fn idle_connection_seconds_defaults_to_ten_and_refuses_zero() {
        assert_eq!(parse(r#"{"provider":{}}"#).unwrap().provider.idle_connection.as_secs(), 10);
        assert_eq!(parse(r#"{"provider":{"idleConnectionSeconds":90}}"#).unwrap().provider.idle_connection.as_secs(), 90);
        for bad in ["0", "3601", "-1", "\"10\""] {
            let e = parse(&format!(r#"{{"provider":{{"idleConnectionSeconds":{bad}}}}}"#)).unwrap_err();
            assert!(e.message.starts_with("provider.idleConnectionSeconds:"), "{bad}: {}", e.message);
        }
    }

    #[test]
    fn runtime_threads_defaults_to_two_and_refuses_zero() {
        assert_eq!(parse(r#"{"provider":{}}"#).unwrap().provider.runtime_threads, 2);
        assert_eq!(parse(r#"{"provider":{"runtimeThreads":1}}"#).unwrap().provider.runtime_threads, 1);
        assert_eq!(parse(r#"{"provider":{"runtimeThreads":64}}"#).unwrap().provider.runtime_threads, 64);
        for bad in ["0", "65", "-1", "1.5", "\"2\""] {
            let e = parse(&format!(r#"{{"provider":{{"runtimeThreads":{bad}}}}}"#)).unwrap_err();
            assert!(e.message.starts_with("provider.runtimeThreads:"), "{bad}: {}", e.message);
        }
    }

    #[test]
    fn reads_openclaw_shape() {
        let c = parse(r#"{"provider":{"baseUrl":"https://bedrock-runtime.eu-west-1.amazonaws.com/","api":"bedrock-converse-stream","auth":"aws-sdk",
            "models":[{"id":"m","name":"M","reasoning":true,"input":["text","image"],"cost":{"input":3,"output":15,"cacheRead":0.3,"cacheWrite":3.75},"contextWindow":200000,"maxTokens":8192}]},
            "discovery":{"enabled":true,"providerFilter":"anthropic","refreshInterval":0}}"#).unwrap();
        assert_eq!(c.provider.base_url.as_deref(), Some("https://bedrock-runtime.eu-west-1.amazonaws.com"));
        assert_eq!(c.provider.models[0].context_window, 200_000);
        assert_eq!(c.discovery.provider_filter, vec!["anthropic"]);
        assert_eq!(c.discovery.refresh_interval_secs, 0);
    }
}
