//! Verification of AWS Signature Version 4 `Authorization` headers, independent of the SDK's
//! signer: canonical request, string to sign, derived key, constant-time-enough comparison.

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

/// The secret side of one access key, as the verifier needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub access_key: String,
    pub secret_key: String,
    pub session_token: Option<String>,
}

/// What a verified signature tells about the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub access_key: String,
    pub region: String,
    pub service: String,
}

/// Why a request was refused, with the error type and message AWS uses for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub error_type: &'static str,
    pub message: String,
}

fn reject(error_type: &'static str, message: impl Into<String>) -> Rejection {
    Rejection { error_type, message: message.into() }
}

pub struct SignedRequest<'a> {
    pub method: &'a str,
    pub raw_path: &'a str,
    pub raw_query: &'a str,
    pub headers: &'a [(String, String)],
    pub body: &'a [u8],
}

impl SignedRequest<'_> {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

pub fn invalid_token() -> Rejection {
    reject("UnrecognizedClientException", "The security token included in the request is invalid.")
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

fn uri_encode(input: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(input.len());
    for b in input.bytes() {
        let unreserved = b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~');
        if unreserved || (keep_slash && b == b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub fn percent_decode(input: &str) -> String {
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(v) = u8::from_str_radix(&input[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn canonical_query(raw_query: &str) -> String {
    let mut pairs: Vec<(String, String)> = raw_query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (uri_encode(&percent_decode(k), false), uri_encode(&percent_decode(v), false))
        })
        .collect();
    pairs.sort();
    pairs.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&")
}

/// Checks the request's SigV4 signature against `creds`. Services other than S3 sign the path
/// encoded a second time, which is what `uri_encode` of the raw (already encoded) path gives.
/// `lookup` finds the credentials of the access key the request names (or refuses it).
pub fn verify(req: &SignedRequest<'_>, lookup: impl FnOnce(&str) -> Result<Credentials, Rejection>) -> Result<Verified, Rejection> {
    let auth = req
        .header("authorization")
        .ok_or_else(|| reject("MissingAuthenticationTokenException", "Missing Authentication Token"))?;
    let rest = auth.strip_prefix("AWS4-HMAC-SHA256 ").ok_or_else(|| {
        reject("IncompleteSignatureException", format!("Unsupported authorization scheme in '{}'", auth.split(' ').next().unwrap_or("")))
    })?;
    let mut credential = None;
    let mut signed_headers = None;
    let mut signature = None;
    for part in rest.split(',') {
        let part = part.trim();
        if let Some(v) = part.strip_prefix("Credential=") {
            credential = Some(v);
        } else if let Some(v) = part.strip_prefix("SignedHeaders=") {
            signed_headers = Some(v);
        } else if let Some(v) = part.strip_prefix("Signature=") {
            signature = Some(v);
        }
    }
    let (credential, signed_headers, signature) = match (credential, signed_headers, signature) {
        (Some(c), Some(h), Some(s)) => (c, h, s),
        _ => return Err(reject("IncompleteSignatureException", "Authorization header requires 'Credential', 'SignedHeaders' and 'Signature'.")),
    };
    let scope: Vec<&str> = credential.split('/').collect();
    if scope.len() != 5 || scope[4] != "aws4_request" {
        return Err(reject("IncompleteSignatureException", format!("Credential should be scoped to a valid region, not '{credential}'.")));
    }
    let (access_key, date, region, service) = (scope[0], scope[1], scope[2], scope[3]);
    let creds = lookup(access_key)?;
    match (creds.session_token.as_deref(), req.header("x-amz-security-token")) {
        (Some(expected), Some(got)) if expected == got => {}
        (None, None) => {}
        _ => return Err(reject("UnrecognizedClientException", "The security token included in the request is invalid.")),
    }
    let amz_date = req
        .header("x-amz-date")
        .ok_or_else(|| reject("IncompleteSignatureException", "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header."))?;
    if !amz_date.starts_with(date) {
        return Err(reject("InvalidSignatureException", "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP."));
    }

    let mut canonical_headers = String::new();
    for name in signed_headers.split(';') {
        let value = req.header(name).unwrap_or("");
        let folded = value.split_whitespace().collect::<Vec<_>>().join(" ");
        canonical_headers.push_str(&format!("{name}:{folded}\n"));
    }
    let payload_hash = match req.header("x-amz-content-sha256") {
        Some(h) => h.to_string(),
        None => sha256_hex(req.body),
    };
    let canonical_request = format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        req.method,
        uri_encode(req.raw_path, true),
        canonical_query(req.raw_query),
        canonical_headers,
        signed_headers,
        payload_hash
    );
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{date}/{region}/{service}/aws4_request\n{}",
        sha256_hex(canonical_request.as_bytes())
    );
    let mut key = hmac(format!("AWS4{}", creds.secret_key).as_bytes(), date.as_bytes());
    for part in [region, service, "aws4_request"] {
        key = hmac(&key, part.as_bytes());
    }
    let expected = hex(&hmac(&key, string_to_sign.as_bytes()));
    if expected != signature {
        return Err(reject(
            "InvalidSignatureException",
            "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.",
        ));
    }
    Ok(Verified { access_key: access_key.to_string(), region: region.to_string(), service: service.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    // The worked example of AWS's SigV4 documentation ("GET ?Action=ListUsers" to IAM).
    #[test]
    fn verifies_the_documented_example_and_rejects_a_tampered_one() {
        let headers = vec![
            ("content-type".to_string(), "application/x-www-form-urlencoded; charset=utf-8".to_string()),
            ("host".to_string(), "iam.amazonaws.com".to_string()),
            ("x-amz-date".to_string(), "20150830T123600Z".to_string()),
            (
                "authorization".to_string(),
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7".to_string(),
            ),
        ];
        let creds = Credentials { access_key: "AKIDEXAMPLE".into(), secret_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(), session_token: None };
        let lookup = |key: &str| if key == creds.access_key { Ok(creds.clone()) } else { Err(invalid_token()) };
        let req = SignedRequest { method: "GET", raw_path: "/", raw_query: "Action=ListUsers&Version=2010-05-08", headers: &headers, body: b"" };
        let ok = verify(&req, lookup).expect("documented example verifies");
        assert_eq!(ok.region, "us-east-1");
        let tampered = SignedRequest { raw_query: "Action=ListUsers&Version=2010-05-09", ..req };
        assert_eq!(verify(&tampered, lookup).unwrap_err().error_type, "InvalidSignatureException");
    }
}
