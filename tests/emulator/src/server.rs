//! HTTP/1.1 front: routing, authentication and Bedrock-shaped errors.

use crate::identity;
use crate::scenario::{self, Frame, Step};
use crate::sigv4;
use crate::{catalog, Config};
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame as BodyFrame, Incoming};
use hyper::{Request, Response, StatusCode};
use serde_json::{json, Value};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tokio::sync::mpsc;

pub struct State {
    pub config: Mutex<Config>,
    pub stats: Mutex<Stats>,
    pub identity: identity::Store,
    pub throttles: Mutex<crate::embeddings::Throttles>,
    /// `times=N` scenarios: how often each directive's error has been served so far.
    pub errors_served: Mutex<std::collections::HashMap<String, u64>>,
}

/// Counters and last-seen values that tests assert on.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    pub requests: u64,
    pub converse_streams: u64,
    /// InvokeModel calls (embeddings), answered or refused.
    pub invoke_model: u64,
    pub auth_failures: u64,
    pub sigv4_ok: u64,
    pub bearer_ok: u64,
    /// Requests accepted with no signature (`allow_unsigned`).
    pub unsigned_ok: u64,
    pub list_foundation_models: u64,
    pub list_inference_profiles: u64,
    pub get_inference_profile: u64,
    pub open_streams: u64,
    pub max_open_streams: u64,
    pub last_model_id: Option<String>,
    pub last_raw_path: Option<String>,
    pub last_region: Option<String>,
    pub last_access_key: Option<String>,
    pub last_auth_error: Option<String>,
    pub last_body: Option<Value>,
    /// `sigv4` or `bearer`: how the last authenticated call proved who it was.
    pub last_auth: Option<String>,
    /// SigV4 service of the last signed call (`bedrock`, `sts`).
    pub last_service: Option<String>,
    /// Every ConverseStream model id, decoded, in arrival order.
    pub model_ids: Vec<String>,
    pub expired_token_rejections: u64,
    pub access_denied: u64,
    pub sts_assume_role: u64,
    pub last_role_arn: Option<String>,
    pub imds_tokens: u64,
    pub imds_credentials: u64,
    /// Distinct access keys of accepted SigV4 calls, in the order first seen.
    pub access_keys: Vec<String>,
    /// Requests that arrived in absolute form (`POST http://host/...`): sent through a proxy.
    pub proxied: u64,
    /// Bedrock API calls (not the emulator's own `/_emulator/` pages), by who sent them: the SDK
    /// product token of `user-agent` (`aws-sdk-rust/1.x`), or the whole header when it has none.
    pub senders: std::collections::BTreeMap<String, u64>,
    /// Connections accepted, and requests that came over HTTP/2 (ALPN `h2`, with `Config::http2`).
    pub connections: u64,
    pub http2_requests: u64,
}

impl Stats {
    pub fn to_json(&self) -> Value {
        json!({
            "requests": self.requests, "converseStreams": self.converse_streams, "invokeModel": self.invoke_model,
            "authFailures": self.auth_failures, "sigv4Ok": self.sigv4_ok, "bearerOk": self.bearer_ok, "unsignedOk": self.unsigned_ok,
            "listFoundationModels": self.list_foundation_models, "listInferenceProfiles": self.list_inference_profiles, "getInferenceProfile": self.get_inference_profile,
            "openStreams": self.open_streams, "maxOpenStreams": self.max_open_streams,
            "lastModelId": self.last_model_id, "lastRawPath": self.last_raw_path, "lastRegion": self.last_region,
            "lastAccessKey": self.last_access_key, "lastAuthError": self.last_auth_error,
            "lastAuth": self.last_auth, "lastService": self.last_service, "modelIds": self.model_ids,
            "expiredTokenRejections": self.expired_token_rejections, "accessDenied": self.access_denied,
            "stsAssumeRole": self.sts_assume_role, "lastRoleArn": self.last_role_arn,
            "imdsTokens": self.imds_tokens, "imdsCredentials": self.imds_credentials,
            "accessKeys": self.access_keys, "proxied": self.proxied, "senders": self.senders,
            "connections": self.connections, "http2Requests": self.http2_requests,
        })
    }
}

type BoxedBody = http_body_util::combinators::BoxBody<Bytes, std::io::Error>;

/// A response body fed frame by frame; an `Err` item aborts the connection mid-body.
struct ChannelBody {
    rx: mpsc::Receiver<Result<Bytes, std::io::Error>>,
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = std::io::Error;
    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<BodyFrame<Bytes>, std::io::Error>>> {
        self.rx.poll_recv(cx).map(|item| item.map(|r| r.map(BodyFrame::data)))
    }
}

fn full(body: impl Into<Bytes>) -> BoxedBody {
    http_body_util::Full::new(body.into()).map_err(|never| match never {}).boxed()
}

static REQUEST_IDS: AtomicU64 = AtomicU64::new(1);

fn request_id() -> String {
    format!("0e1d2c3b-4a59-4687-9a0b-{:012x}", REQUEST_IDS.fetch_add(1, Ordering::Relaxed))
}

/// InvokeModel: embedding models only (see `embeddings`), JSON in and out.
fn invoke_model(state: &State, model_id: &str, body: &Bytes, headers: &[(String, String)]) -> Response<BoxedBody> {
    let header = |name: &str| headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
    let request: Option<Value> = serde_json::from_slice(body).ok();
    {
        let mut stats = state.stats.lock().unwrap();
        stats.invoke_model += 1;
        stats.last_model_id = Some(model_id.to_string());
        stats.model_ids.push(model_id.to_string());
        stats.last_body = request.clone();
    }
    if header("content-type") != Some("application/json") {
        return aws_error(400, "ValidationException", "contentType must be application/json for this model");
    }
    if header("accept").is_some_and(|a| a != "application/json" && a != "*/*") {
        return aws_error(400, "ValidationException", "accept must be application/json for this model");
    }
    let Some(request) = request else {
        return aws_error(400, "ValidationException", "Malformed input request, please reformat your input and try again.");
    };
    let answer = crate::embeddings::invoke(model_id, &request, &mut state.throttles.lock().unwrap());
    match answer {
        Ok(v) => json_ok(v),
        Err(r) => aws_error(r.status, r.error_type, &r.message),
    }
}

fn aws_error(status: u16, error_type: &str, message: &str) -> Response<BoxedBody> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("x-amzn-requestid", request_id())
        .header("x-amzn-errortype", format!("{error_type}:http://internal.amazon.com/coral/com.amazon.bedrock/"))
        .body(full(json!({ "message": message }).to_string()))
        .expect("valid response")
}

fn text(status: u16, content_type: &str, body: String) -> Response<BoxedBody> {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .header("x-amzn-requestid", request_id())
        .body(full(body))
        .expect("valid response")
}

fn json_ok(body: Value) -> Response<BoxedBody> {
    Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .header("x-amzn-requestid", request_id())
        .body(full(body.to_string()))
        .expect("valid response")
}

pub async fn serve(listener: tokio::net::TcpListener, tls: Option<tokio_rustls::TlsAcceptor>, state: Arc<State>, mut stop: tokio::sync::oneshot::Receiver<()>) {
    loop {
        let accepted = tokio::select! {
            _ = &mut stop => return,
            a = listener.accept() => a,
        };
        let Ok((stream, _)) = accepted else { continue };
        // Each event frame goes out as it is written. With Nagle's algorithm on, a frame written
        // while the one before it was unacknowledged waited for the client's delayed ACK (40 ms
        // here), which hid the plugin's own delays from the tests that time them.
        let _ = stream.set_nodelay(true);
        state.stats.lock().unwrap().connections += 1;
        let state = state.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| handle(req, state.clone()));
            let http = hyper::server::conn::http1::Builder::new();
            match tls {
                // A client that refuses the certificate ends the handshake; nothing to serve.
                Some(tls) => {
                    let Ok(stream) = tls.accept(stream).await else { return };
                    if stream.get_ref().1.alpn_protocol() == Some(b"h2") {
                        let h2 = hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new());
                        h2.serve_connection(hyper_util::rt::TokioIo::new(stream), service).await.ok();
                    } else {
                        http.serve_connection(hyper_util::rt::TokioIo::new(stream), service).await.ok();
                    }
                }
                None => {
                    http.serve_connection(hyper_util::rt::TokioIo::new(stream), service).await.ok();
                }
            }
        });
    }
}

enum Caller {
    SigV4(sigv4::Verified),
    Bearer,
    Unsigned,
}

fn authenticate(state: &State, config: &Config, method: &str, path: &str, query: &str, headers: &[(String, String)], body: &[u8]) -> Result<Caller, sigv4::Rejection> {
    let auth = headers.iter().find(|(n, _)| n == "authorization").map(|(_, v)| v.as_str()).unwrap_or("");
    let signed = headers.iter().any(|(n, _)| n == "authorization" || n.starts_with("x-amz-date") || n == "x-amz-security-token");
    if !signed && config.allow_unsigned {
        return Ok(Caller::Unsigned);
    }
    if let Some(token) = auth.strip_prefix("Bearer ") {
        return match &config.bearer_token {
            Some(expected) if expected == token => Ok(Caller::Bearer),
            _ => Err(sigv4::Rejection {
                error_type: "UnrecognizedClientException",
                message: "Invalid API Key format: Must start with pre-defined prefix or the API key is not valid.".into(),
            }),
        };
    }
    let req = sigv4::SignedRequest { method, raw_path: path, raw_query: query, headers, body };
    sigv4::verify(&req, |key| state.identity.lookup(config, key)).map(Caller::SigV4)
}

/// The IAM action an operation needs, for `denied_actions`.
fn denied(config: &Config, action: &str) -> Option<Response<BoxedBody>> {
    config.denied_actions.iter().any(|a| a == action).then(|| {
        aws_error(
            403,
            "AccessDeniedException",
            &format!("User: arn:aws:iam::123456789012:user/emulator is not authorized to perform: {action} because no identity-based policy allows the {action} action"),
        )
    })
}

/// IMDSv2: a PUT for a session token, then role name and role credentials with that token.
fn imds(state: &State, config: &Config, method: &str, path: &str, headers: &[(String, String)]) -> Response<BoxedBody> {
    let header = |name: &str| headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
    if path == "/latest/api/token" {
        if method != "PUT" || header("x-aws-ec2-metadata-token-ttl-seconds").is_none() {
            return text(400, "text/plain", "token requests are PUT with x-aws-ec2-metadata-token-ttl-seconds".into());
        }
        state.stats.lock().unwrap().imds_tokens += 1;
        let ttl = header("x-aws-ec2-metadata-token-ttl-seconds").unwrap_or("21600").to_string();
        let mut response = text(200, "text/plain", state.identity.new_imds_token());
        response.headers_mut().insert("x-aws-ec2-metadata-token-ttl-seconds", ttl.parse().expect("digits"));
        return response;
    }
    if !state.identity.imds_token_valid(header("x-aws-ec2-metadata-token")) {
        return text(401, "text/plain", "Unauthorized".into());
    }
    let Some(role) = &config.imds_role else { return text(404, "text/plain", "Not Found".into()) };
    match path.strip_prefix("/latest/meta-data/iam/security-credentials/") {
        Some("") => text(200, "text/plain", role.clone()),
        Some(name) if name == role => {
            state.stats.lock().unwrap().imds_credentials += 1;
            let (creds, expires) = state.identity.issue("imds", config.temporary_credentials_ttl);
            text(200, "text/plain", identity::imds_credentials_json(&creds, expires))
        }
        _ => text(404, "text/plain", "Not Found".into()),
    }
}

fn assume_role(state: &State, config: &Config, form: &str) -> Response<BoxedBody> {
    let (Some(role_arn), Some(session)) = (identity::form_param(form, "RoleArn"), identity::form_param(form, "RoleSessionName")) else {
        return aws_error(400, "ValidationError", "RoleArn and RoleSessionName are required");
    };
    {
        let mut stats = state.stats.lock().unwrap();
        stats.sts_assume_role += 1;
        stats.last_role_arn = Some(role_arn.clone());
    }
    let (creds, expires) = state.identity.issue("sts", config.temporary_credentials_ttl);
    text(200, "text/xml", identity::assume_role_xml(&role_arn, &session, &creds, expires, &request_id()))
}

/// Bedrock's own checks on a Converse body, so that mapping mistakes fail as they would on AWS.
fn validate_converse(body: &Value) -> Result<(), String> {
    let messages = body.get("messages").and_then(Value::as_array).ok_or("Malformed input request: messages is required")?;
    if messages.is_empty() {
        return Err("A conversation must start with a user message. Try again with a conversation that starts with a user message.".into());
    }
    let mut expected = "user";
    for (i, m) in messages.iter().enumerate() {
        let role = m.get("role").and_then(Value::as_str).unwrap_or("");
        if role != expected {
            return Err(if i == 0 {
                "A conversation must start with a user message. Try again with a conversation that starts with a user message.".into()
            } else {
                "A conversation must alternate between user and assistant roles. Make sure the conversation alternates between user and assistant roles and try again.".into()
            });
        }
        let content = m.get("content").and_then(Value::as_array);
        if content.map_or(true, |c| c.is_empty()) {
            return Err(format!("The content field in the Message object at messages.{i} is empty. Add a ContentBlock object to the content field and try again."));
        }
        expected = if expected == "user" { "assistant" } else { "user" };
    }
    if let Some(tier) = body.get("serviceTier") {
        if !matches!(tier.get("type").and_then(Value::as_str), Some("default" | "flex" | "priority" | "reserved")) || tier.as_object().is_some_and(|o| o.len() != 1) {
            return Err(format!("Malformed input request: serviceTier: {tier} is not a valid ServiceTier"));
        }
    }
    let mut document_names: Vec<&str> = Vec::new();
    for doc in messages.iter().flat_map(|m| m["content"].as_array().into_iter().flatten()).filter_map(|b| b.get("document")) {
        let name = doc["name"].as_str().unwrap_or("");
        let name_ok = !name.is_empty() && !name.contains("  ") && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, ' ' | '-' | '(' | ')' | '[' | ']'));
        if !name_ok {
            return Err(format!("The document file name can only contain alphanumeric characters, whitespace characters, hyphens, parentheses, and square brackets. The name can't contain more than one consecutive whitespace character. ({name:?})"));
        }
        if document_names.contains(&name) {
            return Err("Duplicate document names are not allowed.".into());
        }
        document_names.push(name);
        if !matches!(doc["format"].as_str(), Some("pdf" | "csv" | "doc" | "docx" | "xls" | "xlsx" | "html" | "txt" | "md")) || doc["source"]["bytes"].as_str().is_none() {
            return Err(format!("Malformed input request: document {doc} is not a valid DocumentBlock"));
        }
    }
    let tool_blocks = messages.iter().flat_map(|m| m["content"].as_array().into_iter().flatten()).any(|b| b.get("toolUse").is_some() || b.get("toolResult").is_some());
    if tool_blocks && body.get("toolConfig").is_none() {
        return Err("The toolConfig field must be defined when using toolUse and toolResult content blocks.".into());
    }
    let valid_name = |n: &str| !n.is_empty() && n.len() <= 64 && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    let mut names: Vec<&str> = body["toolConfig"]["tools"].as_array().into_iter().flatten().filter_map(|t| t["toolSpec"]["name"].as_str()).collect();
    names.extend(messages.iter().flat_map(|m| m["content"].as_array().into_iter().flatten()).filter_map(|b| b["toolUse"]["name"].as_str()));
    if let Some(bad) = names.into_iter().find(|n| !valid_name(n)) {
        return Err(format!("1 validation error detected: Value '{bad}' at 'toolConfig.tools.1.member.toolSpec.name' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9_-]+"));
    }
    if let Some(g) = body.get("guardrailConfig") {
        let ok = g["guardrailIdentifier"].as_str().is_some_and(|s| !s.is_empty())
            && g["guardrailVersion"].as_str().is_some_and(|s| !s.is_empty())
            && g.get("trace").is_none_or(|t| matches!(t.as_str(), Some("enabled" | "disabled" | "enabled_full")))
            && g.get("streamProcessingMode").is_none_or(|m| matches!(m.as_str(), Some("sync" | "async")));
        if !ok {
            return Err(format!("Malformed input request: guardrailConfig: {g} is not a valid GuardrailStreamConfiguration"));
        }
    }
    if let Some(p) = body.get("performanceConfig") {
        if !matches!(p["latency"].as_str(), Some("standard" | "optimized")) {
            return Err(format!("Malformed input request: performanceConfig: {p} is not valid"));
        }
    }
    if let Some(m) = body.get("requestMetadata") {
        if !m.as_object().is_some_and(|o| o.len() <= 16 && o.values().all(Value::is_string)) {
            return Err(format!("Malformed input request: requestMetadata: {m} is not a map of strings"));
        }
    }
    if let Some(config) = body.get("outputConfig") {
        let keys_ok = config.as_object().is_some_and(|o| o.keys().all(|k| k == "textFormat" || k == "effort"));
        let format_ok = config.get("textFormat").is_none_or(|f| {
            f["type"] == "json_schema"
                && f["structure"]["jsonSchema"]["schema"].as_str().is_some_and(|s| serde_json::from_str::<Value>(s).is_ok_and(|v| v.is_object()))
        });
        let effort_ok = config.get("effort").is_none_or(|e| matches!(e.as_str(), Some("low" | "medium" | "high" | "xhigh" | "max")));
        if !(keys_ok && format_ok && effort_ok) {
            return Err(format!("Malformed input request: outputConfig: {config} is not a valid OutputConfig"));
        }
    }
    Ok(())
}

/// Who sent a call: the AWS SDK token of its user agent (`aws-sdk-rust/1.3.9`), else the header.
fn sender(headers: &[(String, String)]) -> String {
    let agent = headers.iter().find(|(n, _)| n == "user-agent").map_or("", |(_, v)| v.as_str());
    let sdk = agent.split_whitespace().find(|t| t.starts_with("aws-sdk-"));
    sdk.map_or_else(|| if agent.is_empty() { "(none)".to_string() } else { agent.to_string() }, |t| t.split('/').next().unwrap_or(t).to_string())
}

async fn handle(req: Request<Incoming>, state: Arc<State>) -> Result<Response<BoxedBody>, std::convert::Infallible> {
    // HTTP/2 always carries the authority (`:authority`); only HTTP/1's absolute form means a proxy.
    let http2 = req.version() == hyper::Version::HTTP_2;
    let absolute_form = !http2 && req.uri().authority().is_some();
    let method = req.method().as_str().to_string();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let mut headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .map(|(n, v)| (n.as_str().to_ascii_lowercase(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
        .collect();
    // HTTP/2 carries the host as `:authority`; SigV4 signed it as `host`, as AWS reads it.
    if let (true, Some(authority)) = (http2, req.uri().authority()) {
        if !headers.iter().any(|(n, _)| n == "host") {
            headers.push(("host".into(), authority.to_string()));
        }
    }
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return Ok(aws_error(400, "SerializationException", "Could not read the request body")),
    };
    {
        let mut stats = state.stats.lock().unwrap();
        stats.requests += 1;
        stats.proxied += u64::from(absolute_form);
        stats.http2_requests += u64::from(http2);
        if !path.starts_with("/_emulator/") && !path.starts_with("/latest/") {
            *stats.senders.entry(sender(&headers)).or_default() += 1;
        }
    }

    if method == "GET" && path == "/_emulator/stats" {
        return Ok(json_ok(state.stats.lock().unwrap().to_json()));
    }

    let config = state.config.lock().unwrap().clone();
    if path.starts_with("/latest/") {
        return Ok(imds(&state, &config, &method, &path, &headers));
    }
    match authenticate(&state, &config, &method, &path, &query, &headers, &body) {
        Ok(caller) => {
            let mut stats = state.stats.lock().unwrap();
            match caller {
                Caller::SigV4(v) => {
                    stats.sigv4_ok += 1;
                    stats.last_region = Some(v.region);
                    if !stats.access_keys.contains(&v.access_key) {
                        stats.access_keys.push(v.access_key.clone());
                    }
                    stats.last_access_key = Some(v.access_key);
                    stats.last_service = Some(v.service);
                    stats.last_auth = Some("sigv4".into());
                }
                Caller::Bearer => {
                    stats.bearer_ok += 1;
                    stats.last_auth = Some("bearer".into());
                }
                Caller::Unsigned => {
                    stats.unsigned_ok += 1;
                    stats.last_auth = Some("unsigned".into());
                }
            }
        }
        Err(rejection) => {
            let mut stats = state.stats.lock().unwrap();
            stats.auth_failures += 1;
            if rejection.error_type == "ExpiredTokenException" {
                stats.expired_token_rejections += 1;
            }
            stats.last_auth_error = Some(rejection.error_type.to_string());
            return Ok(aws_error(403, rejection.error_type, &rejection.message));
        }
    }

    let form = String::from_utf8_lossy(&body);
    if method == "POST" && path == "/" && identity::form_param(&form, "Action").as_deref() == Some("AssumeRole") {
        return Ok(assume_role(&state, &config, &form));
    }
    if method == "GET" && (path == "/foundation-models" || path == "/inference-profiles") && !config.list_delay.is_zero() {
        tokio::time::sleep(config.list_delay).await;
    }
    if method == "GET" && path == "/foundation-models" {
        state.stats.lock().unwrap().list_foundation_models += 1;
        if let Some(refused) = denied(&config, "bedrock:ListFoundationModels") {
            state.stats.lock().unwrap().access_denied += 1;
            return Ok(refused);
        }
        return Ok(json_ok(json!({ "modelSummaries": config.foundation_models })));
    }
    if method == "GET" && path == "/inference-profiles" {
        state.stats.lock().unwrap().list_inference_profiles += 1;
        if let Some(refused) = denied(&config, "bedrock:ListInferenceProfiles") {
            state.stats.lock().unwrap().access_denied += 1;
            return Ok(refused);
        }
        let wanted = catalog::query_param(&query, "type");
        let profiles: Vec<Value> = config
            .inference_profiles
            .iter()
            .filter(|p| wanted.as_deref().is_none_or(|t| p["type"].as_str() == Some(t)))
            .cloned()
            .collect();
        return Ok(json_ok(catalog::page("inferenceProfileSummaries", &profiles, &query, config.page_size)));
    }
    if let Some(raw_id) = path.strip_prefix("/inference-profiles/").filter(|_| method == "GET") {
        state.stats.lock().unwrap().get_inference_profile += 1;
        if let Some(refused) = denied(&config, "bedrock:GetInferenceProfile") {
            state.stats.lock().unwrap().access_denied += 1;
            return Ok(refused);
        }
        let id = sigv4::percent_decode(raw_id);
        let found = config.inference_profiles.iter().find(|p| p["inferenceProfileArn"] == id.as_str() || p["inferenceProfileId"] == id.as_str());
        return Ok(match found {
            Some(profile) => json_ok(profile.clone()),
            None => aws_error(404, "ResourceNotFoundException", &format!("Inference profile {id} not found.")),
        });
    }
    if let Some(raw_model) = path.strip_prefix("/model/").and_then(|rest| rest.strip_suffix("/invoke")).filter(|_| method == "POST") {
        if !config.invoke_delay.is_zero() {
            tokio::time::sleep(config.invoke_delay).await;
        }
        return Ok(invoke_model(&state, &sigv4::percent_decode(raw_model), &body, &headers));
    }
    let converse_model = path.strip_prefix("/model/").and_then(|rest| rest.strip_suffix("/converse-stream"));
    let Some(raw_model) = (if method == "POST" { converse_model } else { None }) else {
        return Ok(aws_error(404, "UnknownOperationException", &format!("No operation matches {method} {path}")));
    };
    let model_id = sigv4::percent_decode(raw_model);
    let request: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(_) => return Ok(aws_error(400, "ValidationException", "Malformed input request, please reformat your input and try again.")),
    };
    {
        let mut stats = state.stats.lock().unwrap();
        stats.converse_streams += 1;
        stats.last_model_id = Some(model_id.clone());
        stats.model_ids.push(model_id.clone());
        stats.last_raw_path = Some(path.clone());
        stats.last_body = Some(request.clone());
    }
    let inference = &request["inferenceConfig"];
    if model_id.contains("anthropic.claude") && inference.get("temperature").is_some() && inference.get("topP").is_some() {
        // What newer Claude models answer when both are set.
        return Ok(aws_error(400, "ValidationException", "The model returned the following errors: `temperature` and `top_p` cannot both be specified for this model. Please use only one."));
    }
    if let Err(message) = validate_converse(&request) {
        return Ok(aws_error(400, "ValidationException", &message));
    }
    if config.profile_only_models.contains(&model_id) {
        return Ok(aws_error(
            400,
            "ValidationException",
            &format!("Invocation of model ID {model_id} with on-demand throughput isn\u{2019}t supported. Retry your request with the ID or ARN of an inference profile that contains this model."),
        ));
    }
    if let Some(canned) = config.canned_stream.clone() {
        return Ok(Response::builder()
            .status(StatusCode::OK)
            .header("content-type", "application/vnd.amazon.eventstream")
            .header("x-amzn-requestid", request_id())
            .body(full(canned))
            .expect("valid response"));
    }
    let mut scenario = scenario::parse(&request, &body);
    if let Some(times) = scenario.error_times {
        // `times=N`: the error for the first N requests with this directive, then the answer.
        let mut served = state.errors_served.lock().unwrap();
        let count = served.entry(scenario.directive.clone()).or_default();
        if *count >= times {
            scenario.error = None;
        } else {
            *count += 1;
        }
    }
    if let Some(status) = scenario.html_status {
        return Ok(text(status, "text/html; charset=utf-8", "<html><body><h1>Sign in to the network</h1></body></html>".into()));
    }
    let frames = match scenario::script(&scenario) {
        Step::Fail(status, error_type, message) => {
            let mut answer = aws_error(status, error_type, &message);
            if let Some(ms) = scenario.retry_after_ms {
                answer.headers_mut().insert("x-amz-retry-after", ms.into());
            }
            return Ok(answer);
        }
        Step::Stream(frames) => frames,
    };

    let (tx, rx) = mpsc::channel(64);
    let stream_state = state.clone();
    {
        let mut stats = stream_state.stats.lock().unwrap();
        stats.open_streams += 1;
        stats.max_open_streams = stats.max_open_streams.max(stats.open_streams);
    }
    tokio::spawn(async move {
        for frame in frames {
            let sent = match frame {
                Frame::Pause(d) => {
                    tokio::time::sleep(d).await;
                    true
                }
                Frame::Bytes(b) => tx.send(Ok(Bytes::from(b))).await.is_ok(),
                Frame::Cut => {
                    tx.send(Err(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "scripted drop"))).await.ok();
                    false
                }
            };
            if !sent {
                break;
            }
        }
        stream_state.stats.lock().unwrap().open_streams -= 1;
    });
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/vnd.amazon.eventstream")
        .header("x-amzn-requestid", request_id())
        .header("x-amzn-bedrock-content-type", "application/json")
        .body(ChannelBody { rx }.boxed())
        .expect("valid response"))
}
