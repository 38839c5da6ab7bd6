//! Which AWS region the provider talks to, and where that answer came from (for the discovery
//! report and logs): explicit settings in a caller-given order, then `AWS_REGION`,
//! `AWS_DEFAULT_REGION`, then the active profile's `region` in the shared config file (the SDK's
//! own order), then `us-east-1`.

/// Where the region came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegionSource {
    ProviderRegion,
    BaseUrl,
    DiscoveryRegion,
    AwsRegion,
    AwsDefaultRegion,
    /// `region` of the active profile in the shared config file.
    Profile,
    Default,
}

impl RegionSource {
    pub fn label(self) -> &'static str {
        match self {
            RegionSource::ProviderRegion => "provider.region",
            RegionSource::BaseUrl => "provider.baseUrl",
            RegionSource::DiscoveryRegion => "discovery.region",
            RegionSource::AwsRegion => "AWS_REGION",
            RegionSource::AwsDefaultRegion => "AWS_DEFAULT_REGION",
            RegionSource::Profile => "profile",
            RegionSource::Default => "default",
        }
    }
}

/// The first configured candidate, else the environment, else `us-east-1`.
pub fn resolve(
    configured: &[(Option<&str>, RegionSource)],
    env: impl Fn(&str) -> Option<String>,
) -> (String, RegionSource) {
    if let Some((Some(r), source)) = configured.iter().find(|(r, _)| r.is_some()) {
        return (r.to_string(), *source);
    }
    let nonempty = |name: &str| env(name).filter(|v| !v.trim().is_empty());
    if let Some(r) = nonempty("AWS_REGION") {
        return (r, RegionSource::AwsRegion);
    }
    if let Some(r) = nonempty("AWS_DEFAULT_REGION") {
        return (r, RegionSource::AwsDefaultRegion);
    }
    if let Some(r) = profile_region(&env) {
        return (r, RegionSource::Profile);
    }
    ("us-east-1".to_string(), RegionSource::Default)
}

/// The `region` of the active profile (`AWS_PROFILE`, else `default`) in the shared config file
/// (`AWS_CONFIG_FILE`, else `~/.aws/config`), read as the SDK reads it: `[default]` or
/// `[profile NAME]` sections, `key = value` lines, `#` and `;` comments.
fn profile_region(env: &impl Fn(&str) -> Option<String>) -> Option<String> {
    let path = env("AWS_CONFIG_FILE").filter(|p| !p.is_empty()).or_else(|| env("HOME").map(|h| format!("{h}/.aws/config")))?;
    let text = std::fs::read_to_string(path).ok()?;
    let profile = env("AWS_PROFILE").filter(|p| !p.trim().is_empty()).unwrap_or_else(|| "default".into());
    region_in(&text, profile.trim())
}

fn region_in(config: &str, profile: &str) -> Option<String> {
    let mut in_profile = false;
    let mut found = None;
    for line in config.lines() {
        let line = line.split(['#', ';']).next().unwrap_or("").trim();
        if let Some(section) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            let name = section.trim();
            let name = name.strip_prefix("profile ").map(str::trim).unwrap_or(name);
            in_profile = name == profile && (section.trim().starts_with("profile ") || name == "default");
            continue;
        }
        if let Some((key, value)) = line.split_once('=') {
            if in_profile && key.trim() == "region" && !value.trim().is_empty() {
                found = Some(value.trim().to_string());
            }
        }
    }
    found
}

/// The region named by an AWS Bedrock Runtime hostname (`bedrock-runtime[-fips].<region>.amazonaws.com[.cn]`).
pub fn from_base_url(url: &str) -> Option<String> {
    let host = host_of(url)?;
    let mut labels = host.split('.');
    let service = labels.next()?;
    let region = labels.next()?;
    let is_runtime = service == "bedrock-runtime" || service == "bedrock-runtime-fips";
    (is_runtime && is_aws_host(host) && !region.is_empty()).then(|| region.to_string())
}

fn host_of(url: &str) -> Option<&str> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.split(['/', ':']).next().filter(|h| !h.is_empty())
}

/// True for a plain-http URL whose host is not this machine (loopback: `localhost`, 127.0.0.0/8,
/// `[::1]`): what a Bedrock API key must never travel to.
pub fn is_cleartext_remote(url: &str) -> bool {
    let Some(rest) = url.get(..7).filter(|s| s.eq_ignore_ascii_case("http://")).map(|_| &url[7..]) else { return false };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let authority = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => authority.split(':').next().unwrap_or(""),
    };
    let loopback = host.eq_ignore_ascii_case("localhost") || host == "::1" || host.parse::<std::net::Ipv4Addr>().is_ok_and(|ip| ip.is_loopback());
    !loopback
}

/// True for AWS's own hostnames, where each Bedrock API has its own endpoint; false for a local
/// emulator or a proxy that serves both the runtime and the control plane at one address.
pub fn is_aws_endpoint(url: &str) -> bool {
    host_of(url).is_some_and(is_aws_host)
}

fn is_aws_host(host: &str) -> bool {
    host.ends_with(".amazonaws.com") || host.ends_with(".amazonaws.com.cn")
}

/// The geography prefix of Bedrock's system inference profiles for a region (`us`, `eu`, `apac`).
pub fn geography(region: &str) -> Option<&'static str> {
    Some(match region.split('-').next()? {
        _ if region.starts_with("us-gov-") => "us-gov",
        "us" | "ca" => "us",
        "eu" => "eu",
        "ap" => "apac",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_profile_region_is_read_from_its_section_only() {
        let config = "[default]\nregion = us-west-1\n\n[profile work] ; comment\noutput = json\nregion = eu-central-1 # trailing\n[profile other]\nregion = ap-south-1\n[work]\nregion = wrong\n";
        assert_eq!(region_in(config, "work").as_deref(), Some("eu-central-1"));
        assert_eq!(region_in(config, "default").as_deref(), Some("us-west-1"));
        assert_eq!(region_in(config, "missing"), None);
        assert_eq!(region_in("[profile default]\nregion=sa-east-1", "default").as_deref(), Some("sa-east-1"));
    }

    #[test]
    fn cleartext_remote_is_plain_http_beyond_loopback() {
        for url in ["http://192.0.2.10:8080", "HTTP://proxy.internal", "http://user@10.0.0.1/x", "http://[2001:db8::1]:80"] {
            assert!(is_cleartext_remote(url), "{url}");
        }
        for url in ["https://bedrock-runtime.us-east-1.amazonaws.com", "http://127.0.0.1:9", "http://localhost:8080/", "http://[::1]:80", "http://127.8.9.10"] {
            assert!(!is_cleartext_remote(url), "{url}");
        }
    }

    #[test]
    fn order() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |name: &str| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string())
        };
        let both: &[(&str, &str)] = &[("AWS_REGION", "ap-south-1"), ("AWS_DEFAULT_REGION", "ca-central-1")];
        let configured = [(None, RegionSource::ProviderRegion), (Some("eu-central-1"), RegionSource::BaseUrl)];
        assert_eq!(resolve(&configured, env(both)), ("eu-central-1".into(), RegionSource::BaseUrl));
        assert_eq!(resolve(&[(None, RegionSource::DiscoveryRegion)], env(both)), ("ap-south-1".into(), RegionSource::AwsRegion));
        assert_eq!(resolve(&[], env(&[("AWS_REGION", " "), ("AWS_DEFAULT_REGION", "ca-central-1")])).1, RegionSource::AwsDefaultRegion);
        assert_eq!(resolve(&[], env(&[])), ("us-east-1".into(), RegionSource::Default));
    }

    #[test]
    fn hostnames() {
        assert_eq!(from_base_url("https://bedrock-runtime-fips.us-gov-west-1.amazonaws.com/x").as_deref(), Some("us-gov-west-1"));
        assert_eq!(from_base_url("https://bedrock-runtime.eu-west-3.amazonaws.com").as_deref(), Some("eu-west-3"));
        assert_eq!(from_base_url("https://bedrock.us-east-1.amazonaws.com"), None);
        assert_eq!(from_base_url("http://127.0.0.1:8080"), None);
        assert!(is_aws_endpoint("https://bedrock-runtime.us-east-1.amazonaws.com"));
        assert!(!is_aws_endpoint("http://127.0.0.1:8080"));
        assert_eq!(geography("eu-central-1"), Some("eu"));
        assert_eq!(geography("ap-northeast-1"), Some("apac"));
        assert_eq!(geography("us-gov-west-1"), Some("us-gov"));
        assert_eq!(geography("me-central-1"), None);
    }
}
