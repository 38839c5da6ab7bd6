//! The identity services the SDK's credential chain talks to, so that every credential path is
//! exercised for real: STS `AssumeRole` (awsQuery in, XML out) and the EC2 instance metadata
//! service (IMDSv2 session token, then role credentials). The temporary credentials they hand out
//! are remembered here, and Bedrock calls signed with them are checked against this store.

use crate::sigv4::{self, Credentials, Rejection};
use crate::Config;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

struct Issued {
    creds: Credentials,
    expires: SystemTime,
}

#[derive(Default)]
pub struct Store {
    issued: Mutex<Vec<Issued>>,
    imds_tokens: Mutex<Vec<String>>,
    serial: AtomicU64,
}

pub fn expired_token() -> Rejection {
    Rejection { error_type: "ExpiredTokenException", message: "The security token included in the request is expired".into() }
}

impl Store {
    /// Mints temporary credentials (`ASIA…` keys with a session token) valid for `ttl`.
    pub fn issue(&self, origin: &str, ttl: Duration) -> (Credentials, SystemTime) {
        let n = self.serial.fetch_add(1, Ordering::Relaxed) + 1;
        let creds = Credentials {
            access_key: format!("ASIA{}{n:06}", origin.to_ascii_uppercase()),
            secret_key: format!("{origin}/temporary/secret/{n}"),
            session_token: Some(format!("{origin}-session-token-{n}")),
        };
        let expires = SystemTime::now() + ttl;
        self.issued.lock().unwrap().push(Issued { creds: creds.clone(), expires });
        (creds, expires)
    }

    /// The credentials behind `access_key`: the configured long-term key or a temporary one this
    /// emulator issued. Keys listed as expired, and temporary keys past their expiry, get AWS's
    /// `ExpiredTokenException`; anything else unknown gets `UnrecognizedClientException`.
    pub fn lookup(&self, config: &Config, access_key: &str) -> Result<Credentials, Rejection> {
        if config.expired_access_keys.iter().any(|k| k == access_key) {
            return Err(expired_token());
        }
        if access_key == config.access_key {
            return Ok(Credentials {
                access_key: config.access_key.clone(),
                secret_key: config.secret_key.clone(),
                session_token: config.session_token.clone(),
            });
        }
        let issued = self.issued.lock().unwrap();
        match issued.iter().find(|i| i.creds.access_key == access_key) {
            Some(i) if i.expires <= SystemTime::now() => Err(expired_token()),
            Some(i) => Ok(i.creds.clone()),
            None => Err(sigv4::invalid_token()),
        }
    }

    pub fn new_imds_token(&self) -> String {
        let token = format!("imds-session-{}", self.serial.fetch_add(1, Ordering::Relaxed) + 1);
        self.imds_tokens.lock().unwrap().push(token.clone());
        token
    }

    pub fn imds_token_valid(&self, token: Option<&str>) -> bool {
        token.is_some_and(|t| self.imds_tokens.lock().unwrap().iter().any(|k| k == t))
    }
}

/// The parameters of a form-encoded (awsQuery) body.
pub fn form_param(body: &str, name: &str) -> Option<String> {
    body.split('&')
        .find_map(|kv| kv.split_once('=').filter(|(k, _)| *k == name).map(|(_, v)| sigv4::percent_decode(&v.replace('+', " "))))
}

pub fn assume_role_xml(role_arn: &str, session: &str, creds: &Credentials, expires: SystemTime, request_id: &str) -> String {
    let role_name = role_arn.rsplit('/').next().unwrap_or("role");
    format!(
        "<AssumeRoleResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\n\
         <AssumeRoleResult>\n\
         <AssumedRoleUser><AssumedRoleId>AROAEMULATOR:{session}</AssumedRoleId>\
         <Arn>arn:aws:sts::123456789012:assumed-role/{role_name}/{session}</Arn></AssumedRoleUser>\n\
         <Credentials><AccessKeyId>{}</AccessKeyId><SecretAccessKey>{}</SecretAccessKey>\
         <SessionToken>{}</SessionToken><Expiration>{}</Expiration></Credentials>\n\
         </AssumeRoleResult>\n\
         <ResponseMetadata><RequestId>{request_id}</RequestId></ResponseMetadata>\n\
         </AssumeRoleResponse>\n",
        creds.access_key,
        creds.secret_key,
        creds.session_token.as_deref().unwrap_or(""),
        rfc3339(expires)
    )
}

pub fn imds_credentials_json(creds: &Credentials, expires: SystemTime) -> String {
    serde_json::json!({
        "Code": "Success",
        "LastUpdated": rfc3339(SystemTime::now()),
        "Type": "AWS-HMAC",
        "AccessKeyId": creds.access_key,
        "SecretAccessKey": creds.secret_key,
        "Token": creds.session_token,
        "Expiration": rfc3339(expires),
    })
    .to_string()
}

/// `YYYY-MM-DDTHH:MM:SSZ` (days to civil date after Howard Hinnant's algorithm).
pub fn rfc3339(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(UNIX_EPOCH + Duration::from_secs(1_764_072_000)), "2025-11-25T12:00:00Z");
        assert_eq!(rfc3339(UNIX_EPOCH + Duration::from_secs(951_825_600)), "2000-02-29T12:00:00Z");
    }

    #[test]
    fn expired_and_unknown_keys_are_refused_with_aws_error_types() {
        let store = Store::default();
        let mut config = Config::default();
        let (short, _) = store.issue("imds", Duration::ZERO);
        let (long, _) = store.issue("sts", Duration::from_secs(60));
        assert_eq!(store.lookup(&config, &short.access_key).unwrap_err().error_type, "ExpiredTokenException");
        assert_eq!(store.lookup(&config, &long.access_key).unwrap(), long);
        assert_eq!(store.lookup(&config, "AKIANOBODY").unwrap_err().error_type, "UnrecognizedClientException");
        config.expired_access_keys.push(config.access_key.clone());
        assert_eq!(store.lookup(&config, &config.access_key).unwrap_err().error_type, "ExpiredTokenException");
    }
}
