//! HTTP/1.1 front: routing, authentication and Bedrock-shaped errors.

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
}

/// Counters and last-seen values that tests assert on.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    pub requests: u64,
    pub converse_streams: u64,
    pub auth_failures: u64,
    pub sigv4_ok: u64,
    pub bearer_ok: u64,
    pub list_foundation_models: u64,
    pub list_inference_profiles: u64,
    pub open_streams: u64,
    pub max_open_streams: u64,
    pub last_model_id: Option<String>,
    pub last_raw_path: Option<String>,
    pub last_region: Option<String>,
    pub last_access_key: Option<String>,
    pub last_auth_error: Option<String>,
    pub last_body: Option<Value>,
}

impl Stats {
    pub fn to_json(&self) -> Value {
        json!({
            "requests": self.requests, "converseStreams": self.converse_streams,
            "authFailures": self.auth_failures, "sigv4Ok": self.sigv4_ok, "bearerOk": self.bearer_ok,
            "listFoundationModels": self.list_foundation_models, "listInferenceProfiles": self.list_inference_profiles,
            "openStreams": self.open_streams, "maxOpenStreams": self.max_open_streams,
            "lastModelId": self.last_model_id, "lastRawPath": self.last_raw_path, "lastRegion": self.last_region,
            "lastAccessKey": self.last_access_key, "lastAuthError": self.last_auth_error,
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

fn aws_error(status: u16, error_type: &str, message: &str) -> Response<BoxedBody> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("x-amzn-requestid", request_id())
        .header("x-amzn-errortype", format!("{error_type}:http://internal.amazon.com/coral/com.amazon.bedrock/"))
        .body(full(json!({ "message": message }).to_string()))
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

pub async fn serve(listener: tokio::net::TcpListener, state: Arc<State>, mut stop: tokio::sync::oneshot::Receiver<()>) {
    loop {
        let accepted = tokio::select! {
            _ = &mut stop => return,
            a = listener.accept() => a,
        };
        let Ok((stream, _)) = accepted else { continue };
        let state = state.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| handle(req, state.clone()));
            let io = hyper_util::rt::TokioIo::new(stream);
            hyper::server::conn::http1::Builder::new().serve_connection(io, service).await.ok();
        });
    }
}

enum Caller {
    SigV4(sigv4::Verified),
    Bearer,
}

fn authenticate(config: &Config, method: &str, path: &str, query: &str, headers: &[(String, String)], body: &[u8]) -> Result<Caller, sigv4::Rejection> {
    let auth = headers.iter().find(|(n, _)| n == "authorization").map(|(_, v)| v.as_str()).unwrap_or("");
    if let Some(token) = auth.strip_prefix("Bearer ") {
        return match &config.bearer_token {
            Some(expected) if expected == token => Ok(Caller::Bearer),
            _ => Err(sigv4::Rejection {
                error_type: "UnrecognizedClientException",
                message: "Invalid API Key format: Must start with pre-defined prefix or the API key is not valid.".into(),
            }),
        };
    }
    let creds = sigv4::Credentials {
        access_key: &config.access_key,
        secret_key: &config.secret_key,
        session_token: config.session_token.as_deref(),
    };
    let req = sigv4::SignedRequest { method, raw_path: path, raw_query: query, headers, body };
    sigv4::verify(&req, &creds).map(Caller::SigV4)
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
    Ok(())
}

async fn handle(req: Request<Incoming>, state: Arc<State>) -> Result<Response<BoxedBody>, std::convert::Infallible> {
    let method = req.method().as_str().to_string();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .map(|(n, v)| (n.as_str().to_ascii_lowercase(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
        .collect();
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return Ok(aws_error(400, "SerializationException", "Could not read the request body")),
    };
    state.stats.lock().unwrap().requests += 1;

    if method == "GET" && path == "/_emulator/stats" {
        return Ok(json_ok(state.stats.lock().unwrap().to_json()));
    }

    let config = state.config.lock().unwrap().clone();
    match authenticate(&config, &method, &path, &query, &headers, &body) {
        Ok(caller) => {
            let mut stats = state.stats.lock().unwrap();
            match caller {
                Caller::SigV4(v) => {
                    stats.sigv4_ok += 1;
                    stats.last_region = Some(v.region);
                    stats.last_access_key = Some(v.access_key);
                }
                Caller::Bearer => stats.bearer_ok += 1,
            }
        }
        Err(rejection) => {
            let mut stats = state.stats.lock().unwrap();
            stats.auth_failures += 1;
            stats.last_auth_error = Some(rejection.error_type.to_string());
            return Ok(aws_error(403, rejection.error_type, &rejection.message));
        }
    }

    if method == "GET" && path == "/foundation-models" {
        state.stats.lock().unwrap().list_foundation_models += 1;
        return Ok(json_ok(json!({ "modelSummaries": config.foundation_models })));
    }
    if method == "GET" && path == "/inference-profiles" {
        state.stats.lock().unwrap().list_inference_profiles += 1;
        return Ok(json_ok(catalog::page("inferenceProfileSummaries", &config.inference_profiles, &query, config.page_size)));
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
        stats.last_raw_path = Some(path.clone());
        stats.last_body = Some(request.clone());
    }
    if let Err(message) = validate_converse(&request) {
        return Ok(aws_error(400, "ValidationException", &message));
    }
    let scenario = scenario::parse(&request, &body);
    let frames = match scenario::script(&scenario) {
        Step::Fail(status, error_type, message) => return Ok(aws_error(status, error_type, &message)),
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
