//! Scripted responses. A test picks one by putting a directive line in the last user message:
//! `emulator: chunks=5 delay_ms=10 stop=max_tokens`. Without one, the model echoes the prompt.
//!
//! Keys: `chunks=N` (text as N deltas "w0 ", "w1 ", …), `reply=<rest of line>` (text split into
//! words), `echo=request` (the received request body as the text), `stop=<bedrock stop reason>`,
//! `error_message=<rest of line>` (the scripted error's words), `tool=<name>` (a tool call with `{"city":"Paris","days":3}` input in two deltas),
//! `reasoning=1` (a reasoning block with a signature before the text; `reasoning=redacted`: a
//! redacted one, whose opaque payload is `redacted-emulator-1`), `error=<type>` with
//! `at=before|mid` and `after=N` (events before a mid-stream exception), `drop=N` (close the
//! connection after N events), `end=N` (end the body cleanly after N events), `delay_ms=N` (between events), `first_delay_ms=N` (before the first
//! event, after the response headers), `stall_ms=N` with `stall_at=K` (a silence of N ms before event K), `input_tokens=N`, `cache_read=N`, `cache_write=N`,
//! `retry_after_ms=N` (with an error: the wait the answer asks for), `times=N` (the error for
//! the first N requests with this directive only, then the answer), `html=<status>` (an HTML page
//! instead of Bedrock's answer), `corrupt=<kind>` (see the field).

use serde_json::{json, Value};
use std::time::Duration;

#[derive(Debug, Clone, Default)]
pub struct Scenario {
    pub reply: Vec<String>,
    pub stop: String,
    pub tool: Option<String>,
    pub reasoning: bool,
    pub redacted_reasoning: bool,
    pub error: Option<(String, bool, usize)>, // (type, mid-stream, events before it)
    pub drop_after: Option<usize>,
    /// `end=N`: the body ends cleanly after N events (no messageStop: a truncated answer).
    pub end_after: Option<usize>,
    pub delay: Duration,
    pub first_delay: Duration,
    /// `stall_at=K stall_ms=N`: a silence of N ms before event K.
    pub stall: Option<(usize, Duration)>,
    pub input_tokens: u64,
    pub cache_read: u64,
    pub cache_write: u64,
    /// `error_message=<rest of line>`: the words of the scripted error, instead of the default.
    pub error_message: Option<String>,
    /// The request's `additionalModelResponseFieldPaths`: each answered in messageStop.
    pub response_paths: Vec<String>,
    pub broken_tool_input: bool,
    /// `corrupt=<kind>` with `after=N`: after N good events, a damaged frame: `crc` (a wrong
    /// message CRC), `cut` (half a frame, then the body ends), `json` (an event whose payload is
    /// not JSON), `unknown` (an event type this SDK does not know; the stream goes on), `huge` (a
    /// prelude announcing a 20 MB frame).
    pub corrupt: Option<(String, usize)>,
    /// `retry_after_ms=N` (with an error before the stream): the wait the answer asks for, in
    /// `x-amz-retry-after` (milliseconds, what AWS services send).
    pub retry_after_ms: Option<u64>,
    /// The guardrail of a request whose `guardrailConfig.trace` is enabled: the metadata event
    /// then carries its trace (a denied topic when the stop is `guardrail_intervened`).
    pub traced_guardrail: Option<String>,
    /// `html=<status>`: an HTML page with that status instead of Bedrock's answer (a captive
    /// portal or a misrouted proxy: the wrong content type).
    pub html_status: Option<u16>,
    /// `times=N`: the scripted error only for the first N requests carrying this directive.
    pub error_times: Option<u64>,
    /// The directive line, which `times` counts by (a host's retry may reword the rest).
    pub directive: String,
}

/// What the HTTP layer does for one request.
pub enum Step {
    /// A modelled error before the stream: status code, error type, message.
    Fail(u16, &'static str, String),
    /// A 200 response whose body carries these frames (with pauses, and possibly a cut).
    Stream(Vec<Frame>),
}

pub enum Frame {
    Bytes(Vec<u8>),
    Pause(Duration),
    /// Close the connection abruptly, mid-body.
    Cut,
}

fn last_user_text(request: &Value) -> String {
    let messages = request.get("messages").and_then(Value::as_array);
    let last_user = messages.and_then(|m| m.iter().rev().find(|m| m.get("role").and_then(Value::as_str) == Some("user")));
    let mut text = String::new();
    if let Some(blocks) = last_user.and_then(|m| m.get("content")).and_then(Value::as_array) {
        for b in blocks {
            if let Some(t) = b.get("text").and_then(Value::as_str) {
                text.push_str(t);
                text.push('\n');
            }
        }
    }
    text
}

fn words(text: &str) -> Vec<String> {
    let mut out: Vec<String> = text.split_inclusive(' ').map(str::to_string).collect();
    if out.is_empty() {
        out.push(String::new());
    }
    out
}

pub fn parse(request: &Value, raw_body: &[u8]) -> Scenario {
    let prompt = last_user_text(request);
    let mut s = Scenario { stop: "end_turn".into(), input_tokens: 11, ..Default::default() };
    s.response_paths = request["additionalModelResponseFieldPaths"].as_array().map(|a| a.iter().filter_map(|p| p.as_str().map(str::to_string)).collect()).unwrap_or_default();
    let guardrail = &request["guardrailConfig"];
    if guardrail["trace"].as_str().is_some_and(|t| t != "disabled") {
        s.traced_guardrail = guardrail["guardrailIdentifier"].as_str().map(str::to_string);
    }
    let directive = prompt.lines().find_map(|l| l.trim().strip_prefix("emulator:").map(str::trim));
    let Some(directive) = directive else {
        s.reply = words(&format!("You said: {}", prompt.trim()));
        return s;
    };
    s.reply = words("Hello from the Bedrock emulator.");
    s.directive = directive.to_string();
    let (directive, message_rest) = match directive.find("error_message=") {
        Some(i) => (&directive[..i], Some(directive[i + 14..].trim().to_string())),
        None => (directive, None),
    };
    s.error_message = message_rest;
    let (directive, reply_rest) = match directive.find("reply=") {
        Some(i) => (&directive[..i], Some(&directive[i + 6..])),
        None => (directive, None),
    };
    if let Some(rest) = reply_rest {
        s.reply = words(rest);
    }
    let mut error_at_before = true;
    let mut after = 2usize;
    let mut error_type = None;
    let mut corrupt = None;
    for kv in directive.split_whitespace() {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        let n = v.parse::<u64>().unwrap_or(0);
        match k {
            "chunks" => s.reply = (0..n).map(|i| format!("w{i} ")).collect(),
            "echo" => s.reply = vec![String::from_utf8_lossy(raw_body).into_owned()],
            "stop" => s.stop = v.to_string(),
            // `tool=first`: the first tool the request declares, under the name Bedrock got.
            "tool" if v == "first" => s.tool = request["toolConfig"]["tools"][0]["toolSpec"]["name"].as_str().map(str::to_string),
            "tool" => s.tool = Some(v.to_string()),
            "reasoning" => {
                s.reasoning = n > 0 || v == "redacted";
                s.redacted_reasoning = v == "redacted";
            }
            "error" => error_type = Some(v.to_string()),
            "at" => error_at_before = v != "mid",
            "after" => after = n as usize,
            "drop" => s.drop_after = Some(n as usize),
            "end" => s.end_after = Some(n as usize),
            "tool_input" => s.broken_tool_input = v == "broken",
            "corrupt" => corrupt = Some(v.to_string()),
            "retry_after_ms" => s.retry_after_ms = Some(n),
            "times" => s.error_times = Some(n),
            "html" => s.html_status = Some(n as u16),
            "delay_ms" => s.delay = Duration::from_millis(n),
            "first_delay_ms" => s.first_delay = Duration::from_millis(n),
            "stall_at" => s.stall = Some((n as usize, s.stall.map_or(Duration::ZERO, |(_, d)| d))),
            "stall_ms" => s.stall = Some((s.stall.map_or(0, |(at, _)| at), Duration::from_millis(n))),
            "input_tokens" => s.input_tokens = n,
            "cache_read" => s.cache_read = n,
            "cache_write" => s.cache_write = n,
            _ => {}
        }
    }
    if s.tool.is_some() && s.stop == "end_turn" {
        s.stop = "tool_use".into();
    }
    s.error = error_type.map(|t| (t, !error_at_before, after));
    s.corrupt = corrupt.map(|c| (c, after));
    s
}

/// Status code and AWS error type of each modelled Bedrock Runtime error.
pub fn error_shape(kind: &str) -> (u16, &'static str) {
    match kind {
        "throttling" => (429, "ThrottlingException"),
        "validation" | "contextOverflow" => (400, "ValidationException"),
        "accessDenied" => (403, "AccessDeniedException"),
        "resourceNotFound" => (404, "ResourceNotFoundException"),
        "serviceUnavailable" => (503, "ServiceUnavailableException"),
        "internalServer" => (500, "InternalServerException"),
        "modelTimeout" => (408, "ModelTimeoutException"),
        "modelNotReady" => (429, "ModelNotReadyException"),
        "modelError" => (424, "ModelErrorException"),
        "serviceQuotaExceeded" => (400, "ServiceQuotaExceededException"),
        "modelStreamError" => (424, "ModelStreamErrorException"),
        _ => (500, "InternalServerException"),
    }
}

fn stream_exception_type(kind: &str) -> &'static str {
    match kind {
        "throttling" => "throttlingException",
        "validation" | "contextOverflow" => "validationException",
        "serviceUnavailable" => "serviceUnavailableException",
        "modelStreamError" => "modelStreamErrorException",
        _ => "internalServerException",
    }
}

pub fn error_message(kind: &str) -> String {
    match kind {
        "throttling" => "Too many requests, please wait before trying again.".into(),
        "validation" => "The provided request is not valid".into(),
        // Bedrock's words for a prompt beyond the model's context window.
        "contextOverflow" => "Input is too long for requested model.".into(),
        "accessDenied" => "You don't have access to the model with the specified model ID.".into(),
        "resourceNotFound" => "The requested resource could not be found.".into(),
        "serviceUnavailable" => "Bedrock is unable to process your request.".into(),
        "modelStreamError" => "Model produced invalid sequence as part of ToolUse.".into(),
        "modelTimeout" => "Model has timed out in processing the request.".into(),
        other => format!("The emulator raised {other}."),
    }
}

/// A guardrail trace in Bedrock's shape: the input assessed, a denied topic found when `blocked`.
fn guardrail_trace(id: &str, blocked: bool) -> Value {
    let (action, detected) = if blocked { ("BLOCKED", true) } else { ("NONE", false) };
    let metrics = json!({
        "guardrailProcessingLatency": 87,
        "usage": {
            "topicPolicyUnits": 1, "contentPolicyUnits": 1, "wordPolicyUnits": 0, "sensitiveInformationPolicyUnits": 0,
            "sensitiveInformationPolicyFreeUnits": 0, "contextualGroundingPolicyUnits": 0
        },
        "guardrailCoverage": {"textCharacters": {"guarded": 31, "total": 31}}
    });
    json!({"guardrail": {
        "inputAssessment": {id: {
            "topicPolicy": {"topics": [{"name": "Investment advice", "type": "DENY", "action": action, "detected": detected}]},
            "contentPolicy": {"filters": [{"type": "VIOLENCE", "confidence": "NONE", "filterStrength": "HIGH", "action": "NONE", "detected": false}]},
            "invocationMetrics": metrics
        }},
        "modelOutput": [],
        "actionReason": if blocked { "Guardrail blocked." } else { "No action." }
    }})
}

fn padded(mut v: Value) -> Value {
    // Bedrock pads event payloads with a "p" field to hide token lengths; clients must ignore it.
    v["p"] = json!("abcdefghijklmnopqrstuvwxyzABCDEFGHIJ");
    v
}

/// Turns a scenario into the frames of one ConverseStream response.
pub fn script(s: &Scenario) -> Step {
    if let Some((kind, false, _)) = &s.error {
        let (status, error_type) = error_shape(kind);
        return Step::Fail(status, error_type, s.error_message.clone().unwrap_or_else(|| error_message(kind)));
    }
    use crate::eventstream::{event, exception};
    let mut events: Vec<Vec<u8>> = vec![event("messageStart", &padded(json!({"role": "assistant"})))];
    let mut index = 0;
    if s.redacted_reasoning {
        // A blob travels base64-encoded in the JSON payload: this is "redacted-emulator-1".
        let blob = "cmVkYWN0ZWQtZW11bGF0b3ItMQ==";
        events.push(event("contentBlockDelta", &padded(json!({"contentBlockIndex": index, "delta": {"reasoningContent": {"redactedContent": blob}}}))));
        events.push(event("contentBlockStop", &padded(json!({"contentBlockIndex": index}))));
        index += 1;
    } else if s.reasoning {
        for part in ["Let me think. ", "The user wants a greeting."] {
            events.push(event("contentBlockDelta", &padded(json!({"contentBlockIndex": index, "delta": {"reasoningContent": {"text": part}}}))));
        }
        events.push(event("contentBlockDelta", &padded(json!({"contentBlockIndex": index, "delta": {"reasoningContent": {"signature": "sig-emulator-1"}}}))));
        events.push(event("contentBlockStop", &padded(json!({"contentBlockIndex": index}))));
        index += 1;
    }
    let text_blocks = !(s.tool.is_some() && s.reply.iter().all(|r| r.is_empty()));
    if text_blocks {
        for delta in &s.reply {
            events.push(event("contentBlockDelta", &padded(json!({"contentBlockIndex": index, "delta": {"text": delta}}))));
        }
        events.push(event("contentBlockStop", &padded(json!({"contentBlockIndex": index}))));
        index += 1;
    }
    if let Some(name) = &s.tool {
        events.push(event("contentBlockStart", &padded(json!({"contentBlockIndex": index, "start": {"toolUse": {"toolUseId": "tooluse_emulator_1", "name": name}}}))));
        // `tool_input=broken`: arguments that are not JSON, as a model sometimes sends.
        let parts: &[&str] = if s.broken_tool_input { &["{\"city\": \"Par", "is\", days: 3"] } else { &["{\"city\": \"Par", "is\", \"days\": 3}"] };
        for part in parts {
            events.push(event("contentBlockDelta", &padded(json!({"contentBlockIndex": index, "delta": {"toolUse": {"input": part}}}))));
        }
        events.push(event("contentBlockStop", &padded(json!({"contentBlockIndex": index}))));
    }
    let mut stop = json!({"stopReason": s.stop});
    if !s.response_paths.is_empty() {
        // Each requested JSON Pointer answered with a value naming it.
        let mut fields = json!({});
        for path in &s.response_paths {
            let mut at = &mut fields;
            let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
            for (i, part) in parts.iter().enumerate() {
                let leaf = i + 1 == parts.len();
                at = at.as_object_mut().unwrap().entry(part.to_string()).or_insert_with(|| if leaf { json!(format!("emulator value of {path}")) } else { json!({}) });
            }
        }
        stop["additionalModelResponseFields"] = fields;
    }
    events.push(event("messageStop", &padded(stop)));
    let output_tokens = s.reply.len() as u64 + if s.tool.is_some() { 2 } else { 0 };
    let mut metadata = json!({
        "usage": {
            "inputTokens": s.input_tokens, "outputTokens": output_tokens,
            "totalTokens": s.input_tokens + output_tokens + s.cache_read + s.cache_write,
            "cacheReadInputTokens": s.cache_read, "cacheWriteInputTokens": s.cache_write
        },
        "metrics": {"latencyMs": 42}
    });
    if let Some(id) = &s.traced_guardrail {
        metadata["trace"] = guardrail_trace(id, s.stop == "guardrail_intervened");
    }
    events.push(event("metadata", &padded(metadata)));

    let mut frames = Vec::new();
    if !s.first_delay.is_zero() {
        frames.push(Frame::Pause(s.first_delay));
    }
    for (i, e) in events.into_iter().enumerate() {
        if let Some((kind, true, after)) = &s.error {
            if i == *after {
                frames.push(Frame::Bytes(exception(stream_exception_type(kind), &s.error_message.clone().unwrap_or_else(|| error_message(kind)))));
                return Step::Stream(frames);
            }
        }
        if s.end_after == Some(i) {
            return Step::Stream(frames);
        }
        if let Some((kind, at)) = &s.corrupt {
            if i == *at {
                let good = crate::eventstream::event("contentBlockDelta", &json!({"contentBlockIndex": 0, "delta": {"text": "zz "}}));
                match kind.as_str() {
                    "crc" => {
                        let mut bad = good;
                        let last = bad.len() - 1;
                        bad[last] ^= 0xFF;
                        frames.push(Frame::Bytes(bad));
                        return Step::Stream(frames);
                    }
                    "cut" => {
                        frames.push(Frame::Bytes(good[..good.len() / 2].to_vec()));
                        return Step::Stream(frames);
                    }
                    "json" => {
                        frames.push(Frame::Bytes(crate::eventstream::frame(
                            &[(":event-type", "contentBlockDelta"), (":content-type", "application/json"), (":message-type", "event")],
                            b"{not json at all",
                        )));
                        return Step::Stream(frames);
                    }
                    "huge" => {
                        let mut prelude = (20u32 << 20).to_be_bytes().to_vec();
                        prelude.extend_from_slice(&0u32.to_be_bytes());
                        let crc = crc32fast::hash(&prelude);
                        prelude.extend_from_slice(&crc.to_be_bytes());
                        frames.push(Frame::Bytes(prelude));
                        return Step::Stream(frames);
                    }
                    // An event type from a newer Bedrock: clients skip it and go on.
                    _ => frames.push(Frame::Bytes(crate::eventstream::event("futureEvent", &json!({"something": "new"})))),
                }
            }
        }
        if s.drop_after == Some(i) {
            // Let the frames already written reach the client before the connection dies.
            frames.push(Frame::Pause(Duration::from_millis(100)));
            frames.push(Frame::Cut);
            return Step::Stream(frames);
        }
        if i > 0 && !s.delay.is_zero() {
            frames.push(Frame::Pause(s.delay));
        }
        if let Some((_, silence)) = s.stall.filter(|(at, _)| *at == i) {
            frames.push(Frame::Pause(silence));
        }
        frames.push(Frame::Bytes(e));
    }
    Step::Stream(frames)
}
