//! Region resolution and the AWS SDK configuration shared by every client the provider builds.
//! Credentials are the SDK's default chain; Bedrock API keys (`AWS_BEARER_TOKEN_BEDROCK`) are read
//! by the Bedrock clients themselves.

use aws_config::stalled_stream_protection::StalledStreamProtectionConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};

/// Where the region came from, for messages and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegionSource {
    Config,
    BaseUrl,
    AwsRegion,
    AwsDefaultRegion,
    Default,
}

/// `provider.region`, else the region in a `bedrock-runtime.<region>.amazonaws.com` baseUrl, else
/// `AWS_REGION`, `AWS_DEFAULT_REGION`, then `us-east-1`.
pub fn resolve_region(
    configured: Option<&str>,
    base_url: Option<&str>,
    env: impl Fn(&str) -> Option<String>,
) -> (String, RegionSource) {
    if let Some(r) = configured {
        return (r.to_string(), RegionSource::Config);
    }
    if let Some(r) = base_url.and_then(region_from_base_url) {
        return (r, RegionSource::BaseUrl);
    }
    let nonempty = |name: &str| env(name).filter(|v| !v.trim().is_empty());
    if let Some(r) = nonempty("AWS_REGION") {
        return (r, RegionSource::AwsRegion);
    }
    if let Some(r) = nonempty("AWS_DEFAULT_REGION") {
        return (r, RegionSource::AwsDefaultRegion);
    }
    ("us-east-1".to_string(), RegionSource::Default)
}

/// The region named by an AWS Bedrock Runtime hostname (`bedrock-runtime[-fips].<region>.amazonaws.com[.cn]`).
pub fn region_from_base_url(url: &str) -> Option<String> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let host = rest.split(['/', ':']).next()?;
    let mut labels = host.split('.');
    let service = labels.next()?;
    let region = labels.next()?;
    let is_runtime = service == "bedrock-runtime" || service == "bedrock-runtime-fips";
    let is_aws = matches!(labels.collect::<Vec<_>>().as_slice(), ["amazonaws", "com"] | ["amazonaws", "com", "cn"]);
    (is_runtime && is_aws && !region.is_empty()).then(|| region.to_string())
}

/// The shared SDK configuration. Stalled-stream protection is off because a model may think for
/// minutes before its first token; the plugin's own idle timeout decides instead.
pub async fn load_sdk_config(region: &str) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(region.to_string()))
        .stalled_stream_protection(StalledStreamProtectionConfig::disabled())
        .load()
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn region_order() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |name: &str| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string())
        };
        let url = Some("https://bedrock-runtime.eu-central-1.amazonaws.com");
        let both: &[(&str, &str)] = &[("AWS_REGION", "ap-south-1"), ("AWS_DEFAULT_REGION", "ca-central-1")];
        assert_eq!(resolve_region(Some("us-west-2"), url, env(both)), ("us-west-2".into(), RegionSource::Config));
        assert_eq!(resolve_region(None, url, env(both)), ("eu-central-1".into(), RegionSource::BaseUrl));
        assert_eq!(resolve_region(None, Some("http://127.0.0.1:9"), env(both)), ("ap-south-1".into(), RegionSource::AwsRegion));
        assert_eq!(resolve_region(None, None, env(&[("AWS_DEFAULT_REGION", "ca-central-1")])).1, RegionSource::AwsDefaultRegion);
        assert_eq!(resolve_region(None, None, env(&[])), ("us-east-1".into(), RegionSource::Default));
        assert_eq!(region_from_base_url("https://bedrock-runtime-fips.us-gov-west-1.amazonaws.com/x").as_deref(), Some("us-gov-west-1"));
        assert_eq!(region_from_base_url("https://bedrock.us-east-1.amazonaws.com"), None);
    }
}
