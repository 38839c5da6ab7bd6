//! pi-ai's `AssistantMessage` and `AssistantMessageEvent` vocabulary (`@mariozechner/pi-ai`
//! 0.73.1 `types.d.ts`), as the host receives it. Deltas carry only what is new: no event repeats
//! the growing message, so a long stream stays linear; `done` and `error` carry the final message
//! once. Fields pi-ai does not define are additions a pi-ai consumer ignores: `errorInfo` on a
//! failed message, `id`/`name` on `toolcall_start` (hosts that keep no `partial`).

use crate::error::Error;
use serde::Serialize;

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CostBreakdown {
    pub input: f64,
    pub output: f64,
    pub cache_read: f64,
    pub cache_write: f64,
    pub total: f64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Usage {
    pub input: u64,
    pub output: u64,
    pub cache_read: u64,
    pub cache_write: u64,
    pub total_tokens: u64,
    pub cost: CostBreakdown,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "camelCase", rename_all_fields = "camelCase")]
pub enum Content {
    Text {
        text: String,
    },
    Thinking {
        thinking: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        thinking_signature: Option<String>,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        redacted: bool,
    },
    ToolCall {
        id: String,
        name: String,
        arguments: serde_json::Value,
        /// The model's arguments as sent, when they were not valid JSON (`arguments` is then `{}`):
        /// reported, never silently replaced.
        #[serde(skip_serializing_if = "Option::is_none")]
        invalid_arguments: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum StopReason {
    Stop,
    Length,
    ToolUse,
    Error,
    Aborted,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AssistantMessage {
    pub role: &'static str,
    pub content: Vec<Content>,
    pub api: &'static str,
    pub provider: &'static str,
    pub model: String,
    /// pi-ai's `responseModel`: the id Bedrock actually served, when it differs from `model` (an
    /// inference profile the plugin retried with because the model is not offered on demand).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_model: Option<String>,
    pub usage: Usage,
    pub stop_reason: StopReason,
    /// pi-ai's format: `"<prefix>: <message>"` for Bedrock exceptions (see `sdk_error`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    /// What a host needs to act on a failure without parsing `errorMessage`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_info: Option<ErrorInfo>,
    /// The values of `options.additionalModelResponseFieldPaths`, as Bedrock returned them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub additional_model_response_fields: Option<serde_json::Value>,
    /// Bedrock's `trace` (guardrail assessments, prompt router), when the request asked for it
    /// with `guardrailConfig.trace`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace: Option<serde_json::Value>,
    pub timestamp: u64,
}

impl AssistantMessage {
    pub fn new(model: &str) -> AssistantMessage {
        AssistantMessage {
            role: "assistant",
            content: Vec::new(),
            api: crate::config::API,
            provider: crate::config::PROVIDER,
            model: model.to_string(),
            response_model: None,
            usage: Usage::default(),
            stop_reason: StopReason::Stop,
            error_message: None,
            error_info: None,
            additional_model_response_fields: None,
            trace: None,
            timestamp: now_millis(),
        }
    }
}

pub fn now_millis() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// `errorInfo` of a failed message; the human-readable text is the message's `errorMessage`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorInfo {
    pub code: &'static str,
    pub retryable: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aws_error_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

impl From<&Error> for ErrorInfo {
    fn from(e: &Error) -> ErrorInfo {
        ErrorInfo {
            code: e.kind.code(),
            retryable: e.retryable,
            http_status: e.http_status,
            request_id: e.request_id.clone(),
            aws_error_type: e.aws_error_type.clone(),
            retry_after_ms: e.retry_after_ms,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case", rename_all_fields = "camelCase")]
pub enum Event {
    /// The stream started; `partial` is the (empty) message every later event builds on. The
    /// messages are boxed so that the events queued by the thousand stay small.
    Start { partial: Box<AssistantMessage> },
    TextStart { content_index: usize },
    TextDelta { content_index: usize, delta: String },
    TextEnd { content_index: usize, content: String },
    ThinkingStart { content_index: usize },
    ThinkingDelta { content_index: usize, delta: String },
    ThinkingEnd { content_index: usize, content: String },
    ToolcallStart { content_index: usize, id: String, name: String },
    ToolcallDelta { content_index: usize, delta: String },
    ToolcallEnd { content_index: usize, tool_call: Box<Content> },
    Done { reason: StopReason, message: Box<AssistantMessage> },
    /// pi-ai's shape: `error` *is* the final message (`stopReason`, `errorMessage`, `errorInfo`).
    Error { reason: StopReason, error: Box<AssistantMessage> },
}

impl Event {
    pub fn is_terminal(&self) -> bool {
        matches!(self, Event::Done { .. } | Event::Error { .. })
    }

    /// The terminal event for a stream that failed or was aborted, with what had arrived so far.
    pub fn failure(mut message: AssistantMessage, error: &Error) -> Event {
        let reason = if error.kind == crate::error::Kind::Cancelled { StopReason::Aborted } else { StopReason::Error };
        message.stop_reason = reason;
        message.error_message = Some(error.message.clone());
        message.error_info = Some(ErrorInfo::from(error));
        Event::Error { reason, error: Box::new(message) }
    }

    /// Appends the event's JSON to `out`; false (and `out` as it was) if it cannot be encoded.
    /// A delta, the event a stream is made of, is written field by field: the same bytes as
    /// serde's tagged-enum path (a test holds them equal), without its per-field key escaping
    /// and state, on the path every token takes.
    pub fn write_json(&self, out: &mut Vec<u8>) -> bool {
        let (head, content_index, delta): (&[u8], _, _) = match self {
            Event::TextDelta { content_index, delta } => (b"{\"type\":\"text_delta\",\"contentIndex\":", content_index, delta),
            Event::ThinkingDelta { content_index, delta } => (b"{\"type\":\"thinking_delta\",\"contentIndex\":", content_index, delta),
            Event::ToolcallDelta { content_index, delta } => (b"{\"type\":\"toolcall_delta\",\"contentIndex\":", content_index, delta),
            _ => {
                let len = out.len();
                let ok = serde_json::to_writer(&mut *out, self).is_ok();
                if !ok {
                    out.truncate(len);
                }
                return ok;
            }
        };
        use serde::Serializer as _;
        out.extend_from_slice(head);
        // Writing to a Vec cannot fail; the number and the string are serde_json's own encoding.
        let _ = serde_json::Serializer::new(&mut *out).serialize_u64(*content_index as u64);
        out.extend_from_slice(b",\"delta\":");
        let _ = serde_json::Serializer::new(&mut *out).serialize_str(delta);
        out.push(b'}');
        true
    }

    /// The final message of a terminal event.
    pub fn into_final_message(self) -> Option<AssistantMessage> {
        match self {
            Event::Done { message, .. } | Event::Error { error: message, .. } => Some(*message),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_in_pi_ai_vocabulary() {
        let e = Event::TextDelta { content_index: 2, delta: "hi".into() };
        assert_eq!(serde_json::to_string(&e).unwrap(), r#"{"type":"text_delta","contentIndex":2,"delta":"hi"}"#);
        let e = Event::ToolcallEnd {
            content_index: 0,
            tool_call: Box::new(Content::ToolCall { id: "t".into(), name: "n".into(), arguments: serde_json::json!({"a":1}), invalid_arguments: None }),
        };
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            r#"{"type":"toolcall_end","contentIndex":0,"toolCall":{"type":"toolCall","id":"t","name":"n","arguments":{"a":1}}}"#
        );
        let mut m = AssistantMessage::new("m");
        m.timestamp = 5;
        let v = serde_json::to_value(Event::Done { reason: StopReason::ToolUse, message: Box::new(m) }).unwrap();
        assert_eq!(v["reason"], "toolUse");
        assert_eq!(v["message"]["stopReason"], "stop");
        assert_eq!(v["message"]["usage"]["totalTokens"], 0);
        assert_eq!(v["message"]["usage"]["cost"]["cacheRead"], 0.0);
    }

    #[test]
    fn a_delta_written_by_hand_is_what_serde_writes() {
        let mut texts: Vec<String> = (0u8..=0x7f).map(|b| format!("a{}z", b as char)).collect();
        texts.extend(["", "plain", "\"quoted\" \\ back/slash", "line\nbreak\ttab\r\u{8}\u{c}\u{1}\u{1f}\u{7f}", "é ü 中文 😀 \u{2028}\u{2029}", "{\"a\":[1,2]}"].map(String::from));
        for delta in texts {
            for content_index in [0, 7, 12345, usize::MAX] {
                let events = [
                    Event::TextDelta { content_index, delta: delta.clone() },
                    Event::ThinkingDelta { content_index, delta: delta.clone() },
                    Event::ToolcallDelta { content_index, delta: delta.clone() },
                ];
                for e in events {
                    let mut out = b"kept".to_vec();
                    assert!(e.write_json(&mut out));
                    assert_eq!(std::str::from_utf8(&out[4..]).unwrap(), serde_json::to_string(&e).unwrap(), "{e:?}");
                    assert_eq!(&out[..4], b"kept");
                }
            }
        }
        let other = Event::TextEnd { content_index: 1, content: "x\ny".into() };
        let mut out = Vec::new();
        assert!(other.write_json(&mut out));
        assert_eq!(out, serde_json::to_vec(&other).unwrap());
    }

    #[test]
    fn queued_events_stay_small() {
        // Streams queue events by the hundred; a message inline would make each one ~200 bytes.
        assert!(std::mem::size_of::<Event>() <= 64, "{} bytes", std::mem::size_of::<Event>());
    }

    #[test]
    fn a_failure_is_the_final_message_itself() {
        let mut m = AssistantMessage::new("m");
        m.content.push(Content::Text { text: "so far".into() });
        let mut e = Error::new(crate::error::Kind::Throttled, "Throttling error: slow down");
        e.http_status = Some(429);
        let v = serde_json::to_value(Event::failure(m, &e)).unwrap();
        assert_eq!(v.as_object().unwrap().keys().collect::<Vec<_>>(), ["error", "reason", "type"]);
        assert_eq!((v["type"].as_str(), v["reason"].as_str()), (Some("error"), Some("error")));
        let error = &v["error"];
        assert_eq!((error["role"].as_str(), error["stopReason"].as_str()), (Some("assistant"), Some("error")));
        assert_eq!(error["errorMessage"], "Throttling error: slow down");
        assert_eq!(error["content"][0]["text"], "so far");
        assert_eq!(error["errorInfo"], serde_json::json!({"code": "throttled", "retryable": true, "httpStatus": 429}));
        let aborted = serde_json::to_value(Event::failure(AssistantMessage::new("m"), &Error::new(crate::error::Kind::Cancelled, "stop"))).unwrap();
        assert_eq!((aborted["reason"].as_str(), aborted["error"]["stopReason"].as_str()), (Some("aborted"), Some("aborted")));
    }
}
