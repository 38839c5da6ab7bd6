//! Who the provider is to Bedrock. A Bedrock API key (bearer token) wins: the one in the config
//! (`provider.apiKey`), else `AWS_BEARER_TOKEN_BEDROCK`. Without one, the AWS SDK's default
//! credential chain decides (environment keys, `AWS_PROFILE` and the shared files with SSO and
//! assumed roles, web identity, container and EC2 instance roles). The key winning over a
//! profile is deliberate: tooling often exports `AWS_PROFILE`, and it must not silently replace a
//! key the operator set. The chosen source is reported by name; a secret never leaves `Secret`.

use aws_config::stalled_stream_protection::StalledStreamProtectionConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_smithy_runtime_api::client::auth::http::HTTP_BEARER_AUTH_SCHEME_ID;
use std::fmt;

pub const API_KEY_ENV: &str = "AWS_BEARER_TOKEN_BEDROCK";
/// `AWS_BEDROCK_SKIP_AUTH=1`: send requests unsigned, for gateways behind a proxy that
/// authenticates to Bedrock itself (the same switch pi-ai's Bedrock provider reads).
pub const SKIP_AUTH_ENV: &str = "AWS_BEDROCK_SKIP_AUTH";

/// A credential value; `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Where the provider's identity comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A Bedrock API key in the config.
    ConfigApiKey,
    /// A Bedrock API key in `AWS_BEARER_TOKEN_BEDROCK`.
    EnvApiKey,
    /// The SDK chain, starting with `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY`.
    EnvKeys { session_token: bool },
    /// The SDK chain with `AWS_PROFILE` naming the profile in the shared files.
    Profile(String),
    /// The SDK chain with nothing set up front: default profile, SSO, web identity, container, IMDS.
    DefaultChain,
    /// `AWS_BEDROCK_SKIP_AUTH=1`: no identity, requests go out unsigned.
    Unsigned,
}

#[derive(Debug, Clone)]
pub struct Auth {
    pub source: Source,
    api_key: Option<Secret>,
    /// Settings present in the environment that the chosen source overrides (`AWS_PROFILE=dev`).
    pub overridden: Vec<String>,
}

impl Auth {
    pub fn detect(config_key: Option<&Secret>, env: impl Fn(&str) -> Option<String>) -> Auth {
        let get = |name: &str| env(name).filter(|v| !v.trim().is_empty());
        let profile = get("AWS_PROFILE");
        let env_key = get(API_KEY_ENV).map(Secret::new);
        let has_env_keys = get("AWS_ACCESS_KEY_ID").is_some() && get("AWS_SECRET_ACCESS_KEY").is_some();
        let (source, api_key) = match (config_key, env_key) {
            _ if get(SKIP_AUTH_ENV).as_deref() == Some("1") => (Source::Unsigned, None),
            (Some(k), _) => (Source::ConfigApiKey, Some(k.clone())),
            (None, Some(k)) => (Source::EnvApiKey, Some(k)),
            (None, None) if has_env_keys => (Source::EnvKeys { session_token: get("AWS_SESSION_TOKEN").is_some() }, None),
            (None, None) => match &profile {
                Some(p) => (Source::Profile(p.clone()), None),
                None => (Source::DefaultChain, None),
            },
        };
        let mut overridden = Vec::new();
        if source == Source::Unsigned {
            if config_key.is_some() {
                overridden.push("provider.apiKey".to_string());
            }
            if let Some(p) = &profile {
                overridden.push(format!("AWS_PROFILE={p}"));
            }
            if has_env_keys {
                overridden.push("AWS_ACCESS_KEY_ID".to_string());
            }
        } else if api_key.is_some() {
            if let Some(p) = &profile {
                overridden.push(format!("AWS_PROFILE={p}"));
            }
            if has_env_keys {
                overridden.push("AWS_ACCESS_KEY_ID".to_string());
            }
            if source == Source::ConfigApiKey && get(API_KEY_ENV).is_some() {
                overridden.push(API_KEY_ENV.to_string());
            }
        } else if has_env_keys {
            if let Some(p) = &profile {
                // The SDK's chain reads environment keys before any profile.
                overridden.push(format!("AWS_PROFILE={p}"));
            }
        }
        Auth { source, api_key, overridden }
    }

    /// Whether the environment shows that AWS auth was set up on purpose (discovery's default).
    pub fn has_marker(&self) -> bool {
        !matches!(self.source, Source::DefaultChain)
    }

    pub fn uses_api_key(&self) -> bool {
        self.api_key.is_some()
    }

    /// `bedrock-api-key` or `aws-sdk`: the kind of identity, for reports.
    pub fn kind(&self) -> &'static str {
        if self.source == Source::Unsigned {
            "unsigned"
        } else if self.uses_api_key() {
            "bedrock-api-key"
        } else {
            "aws-sdk"
        }
    }

    /// The setting the identity comes from, never its value.
    pub fn origin(&self) -> String {
        match &self.source {
            Source::ConfigApiKey => "provider.apiKey".into(),
            Source::EnvApiKey => API_KEY_ENV.into(),
            Source::EnvKeys { session_token: true } => "AWS_ACCESS_KEY_ID+AWS_SESSION_TOKEN".into(),
            Source::EnvKeys { session_token: false } => "AWS_ACCESS_KEY_ID".into(),
            Source::Profile(p) => format!("AWS_PROFILE={p}"),
            Source::DefaultChain => "default-chain".into(),
            Source::Unsigned => format!("{SKIP_AUTH_ENV}=1"),
        }
    }

    /// One line for logs and reports.
    pub fn describe(&self) -> String {
        let mut text = match &self.source {
            Source::ConfigApiKey => "Bedrock API key from provider.apiKey".to_string(),
            Source::EnvApiKey => format!("Bedrock API key from {API_KEY_ENV}"),
            Source::EnvKeys { .. } => format!("AWS SDK credential chain: environment keys ({})", self.origin()),
            Source::Profile(p) => format!("AWS SDK credential chain: profile \"{p}\" (AWS_PROFILE)"),
            Source::DefaultChain => {
                "AWS SDK credential chain: default profile, SSO, web identity, container or EC2 instance role".to_string()
            }
            Source::Unsigned => format!("none: requests are sent unsigned ({SKIP_AUTH_ENV}=1)"),
        };
        if !self.overridden.is_empty() {
            text.push_str(&format!("; ignoring {}", self.overridden.join(", ")));
        }
        text
    }

    pub fn unsigned(&self) -> bool {
        self.source == Source::Unsigned
    }

    /// Applies a Bedrock API key to a client builder (client-level, so it also wins over the
    /// SDK's own reading of `AWS_BEARER_TOKEN_BEDROCK`).
    pub fn bearer(&self) -> Option<(aws_sdk_bedrockruntime::config::Token, [aws_smithy_runtime_api::client::auth::AuthSchemeId; 1])> {
        self.api_key.as_ref().map(|k| (aws_sdk_bedrockruntime::config::Token::new(k.expose(), None), [HTTP_BEARER_AUTH_SCHEME_ID]))
    }
}

/// The message for "no identity could be resolved", naming every source that was tried.
pub fn no_credentials(auth: &Auth, detail: &str) -> String {
    let profile = match &auth.source {
        Source::Profile(p) => format!("profile \"{p}\""),
        _ => "the default profile".to_string(),
    };
    format!(
        "no AWS credentials found. Tried, in order: a Bedrock API key (provider.apiKey, {API_KEY_ENV}); \
         environment keys (AWS_ACCESS_KEY_ID + AWS_SECRET_ACCESS_KEY); {profile} in the shared config and \
         credentials files (AWS_CONFIG_FILE, AWS_SHARED_CREDENTIALS_FILE; SSO and assumed roles included); \
         web identity (AWS_WEB_IDENTITY_TOKEN_FILE + AWS_ROLE_ARN); container credentials \
         (AWS_CONTAINER_CREDENTIALS_*); the EC2 instance role (IMDS). SDK detail: {detail}"
    )
}

/// Rewrites "the SDK found no identity" (an auth error that did not come from Bedrock) into the
/// message that names every source tried.
pub fn explain(auth: &Auth, mut e: crate::error::Error) -> crate::error::Error {
    if e.kind == crate::error::Kind::Auth && e.aws_error_type.is_none() && !auth.uses_api_key() {
        e.message = no_credentials(auth, &e.message);
    }
    e
}

/// The shared SDK configuration. Stalled-stream protection is off because a model may think for
/// minutes before its first token; the plugin's own idle timeout decides instead. Loading it
/// again builds a fresh identity cache: that is how rotated credentials are picked up.
pub async fn load_sdk_config(region: &str, http_client: aws_smithy_runtime_api::client::http::SharedHttpClient) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(region.to_string()))
        .stalled_stream_protection(StalledStreamProtectionConfig::disabled())
        .http_client(http_client)
        .load()
        .await
}

/// Removes what signing added, just before a request leaves: the SDK always signs, so unsigned
/// requests are signed with placeholder credentials and then stripped.
#[derive(Debug)]
pub struct StripSignature;

impl aws_smithy_runtime_api::client::interceptors::Intercept for StripSignature {
    fn name(&self) -> &'static str {
        "StripSignature"
    }

    fn modify_before_transmit(
        &self,
        context: &mut aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextMut<'_>,
        _: &aws_smithy_runtime_api::client::runtime_components::RuntimeComponents,
        _: &mut aws_smithy_types::config_bag::ConfigBag,
    ) -> Result<(), aws_smithy_runtime_api::box_error::BoxError> {
        let headers = context.request_mut().headers_mut();
        for name in ["authorization", "x-amz-date", "x-amz-security-token", "x-amz-content-sha256"] {
            headers.remove(name);
        }
        Ok(())
    }
}

/// The placeholder identity that unsigned requests are signed with before being stripped.
pub fn placeholder_credentials() -> aws_sdk_bedrockruntime::config::Credentials {
    aws_sdk_bedrockruntime::config::Credentials::new("unsigned", "unsigned", None, None, "AWS_BEDROCK_SKIP_AUTH")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name: &str| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string())
    }

    #[test]
    fn api_key_wins_over_profile_and_says_so() {
        let a = Auth::detect(None, env(&[(API_KEY_ENV, "bedrock-key"), ("AWS_PROFILE", "dev")]));
        assert_eq!(a.source, Source::EnvApiKey);
        assert_eq!(a.overridden, vec!["AWS_PROFILE=dev"]);
        assert!(!a.describe().contains("bedrock-key"), "{}", a.describe());
        assert!(!format!("{a:?}").contains("bedrock-key"));
        let a = Auth::detect(Some(&Secret::new("cfg-key")), env(&[(API_KEY_ENV, "env-key")]));
        assert_eq!((a.source.clone(), a.overridden.clone()), (Source::ConfigApiKey, vec![API_KEY_ENV.to_string()]));
        assert!(!format!("{a:?}{}", a.describe()).contains("cfg-key"));
    }

    #[test]
    fn chain_sources_and_markers() {
        let a = Auth::detect(None, env(&[("AWS_ACCESS_KEY_ID", "AKIA"), ("AWS_SECRET_ACCESS_KEY", "s"), ("AWS_SESSION_TOKEN", "t")]));
        assert_eq!(a.source, Source::EnvKeys { session_token: true });
        assert!(a.has_marker());
        assert_eq!(Auth::detect(None, env(&[("AWS_ACCESS_KEY_ID", "AKIA")])).source, Source::DefaultChain);
        assert_eq!(Auth::detect(None, env(&[("AWS_PROFILE", "dev")])).source, Source::Profile("dev".into()));
        assert!(!Auth::detect(None, env(&[])).has_marker());
    }
}
