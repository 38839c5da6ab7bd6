//! The `application/vnd.amazon.eventstream` framing of a ConverseStream response, read only as far
//! as the one message that comes per token needs: where a message ends, and whether it is a
//! checksummed `contentBlockDelta` event whose delta is text alone. Anything else — another event,
//! an exception, a delta of another kind, a bad checksum — is left to the SDK's own receiver
//! (`receiver.rs`), which decodes and reports it as it always has.
//!
//! A message: total length (u32, big-endian, the whole message), headers length (u32), the CRC32
//! of those eight bytes, the headers, the payload, and the CRC32 of everything before it.

use serde::Deserialize;

const PRELUDE: usize = 12;
const CHECKSUM: usize = 4;
const TYPE_STRING: u8 = 7;
/// The longest header value the SDK's decoder accepts.
const MAX_VALUE: usize = i16::MAX as usize;

/// How much of `buf` the first message takes.
#[derive(Debug, PartialEq, Eq)]
pub enum Split {
    /// The first `n` bytes are a whole message (not yet checked).
    Whole(usize),
    /// More bytes are needed.
    Partial,
    /// The length it states cannot be a message's: only the SDK's decoder can say what is wrong.
    Unframable,
}

pub fn split(buf: &[u8]) -> Split {
    if buf.len() < PRELUDE {
        return Split::Partial;
    }
    let total = be32(buf, 0) as usize;
    if total < PRELUDE + CHECKSUM {
        return Split::Unframable;
    }
    if buf.len() < total {
        Split::Partial
    } else {
        Split::Whole(total)
    }
}

/// A text delta, as the SDK would have made it of `message`; None for any other message, and for
/// one whose checksums, headers or payload are not exactly what a text delta's are.
pub fn text_delta(message: &[u8]) -> Option<(i32, String)> {
    let total = message.len();
    let headers_len = be32(message, 4) as usize;
    if total < PRELUDE + CHECKSUM || headers_len > total - PRELUDE - CHECKSUM {
        return None;
    }
    if crc32fast::hash(&message[..8]) != be32(message, 8) || crc32fast::hash(&message[..total - CHECKSUM]) != be32(message, total - CHECKSUM) {
        return None;
    }
    let headers = &message[PRELUDE..PRELUDE + headers_len];
    if !is_delta_event(headers)? {
        return None;
    }
    let payload = &message[PRELUDE + headers_len..total - CHECKSUM];
    let event: DeltaEvent = serde_json::from_slice(payload).ok()?;
    Some((event.content_block_index, event.delta.text))
}

/// Whether the headers say "an event, `contentBlockDelta`"; None when they cannot be read, or when
/// the SDK's decoder would refuse them (a name or string that is not UTF-8, a value too long).
fn is_delta_event(mut headers: &[u8]) -> Option<bool> {
    let (mut event, mut delta) = (false, false);
    while !headers.is_empty() {
        let name_len = usize::from(*headers.first()?);
        let name = headers.get(1..1 + name_len)?;
        let kind = *headers.get(1 + name_len)?;
        let rest = headers.get(2 + name_len..)?;
        let value_len = match kind {
            0 | 1 => 0,
            2 => 1,
            3 => 2,
            4 => 4,
            5 | 8 => 8,
            9 => 16,
            6 | 7 => 2 + usize::from(u16::from_be_bytes([*rest.first()?, *rest.get(1)?])),
            _ => return None,
        };
        let value = rest.get(..value_len)?;
        std::str::from_utf8(name).ok()?;
        if kind == TYPE_STRING {
            std::str::from_utf8(&value[2..]).ok()?;
        }
        if matches!(kind, 6 | 7) && value_len - 2 > MAX_VALUE {
            return None;
        }
        match name {
            b":message-type" => event = kind == TYPE_STRING && &value[2..] == b"event",
            b":event-type" => delta = kind == TYPE_STRING && &value[2..] == b"contentBlockDelta",
            _ => {}
        }
        headers = &rest[value_len..];
    }
    Some(event && delta)
}

fn be32(buf: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]])
}

/// `{"contentBlockIndex": N, "delta": {"text": "..."}}`; other members (Bedrock's `p` padding)
/// are ignored, as the SDK ignores them.
#[derive(Deserialize)]
struct DeltaEvent {
    #[serde(rename = "contentBlockIndex")]
    content_block_index: i32,
    delta: TextOnly,
}

/// The delta is a union: a member other than `text` (or beside it) is not a text delta.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TextOnly {
    text: String,
}

#[cfg(test)]
pub mod tests {
    use super::*;

    /// A message as Bedrock frames it.
    pub fn message(headers: &[(&str, &str)], payload: &str) -> Vec<u8> {
        let mut h = Vec::new();
        for (name, value) in headers {
            h.push(name.len() as u8);
            h.extend_from_slice(name.as_bytes());
            h.push(TYPE_STRING);
            h.extend_from_slice(&(value.len() as u16).to_be_bytes());
            h.extend_from_slice(value.as_bytes());
        }
        let total = PRELUDE + h.len() + payload.len() + CHECKSUM;
        let mut m = Vec::new();
        m.extend_from_slice(&(total as u32).to_be_bytes());
        m.extend_from_slice(&(h.len() as u32).to_be_bytes());
        m.extend_from_slice(&crc32fast::hash(&m).to_be_bytes());
        m.extend_from_slice(&h);
        m.extend_from_slice(payload.as_bytes());
        m.extend_from_slice(&crc32fast::hash(&m).to_be_bytes());
        m
    }

    /// The headers of a `contentBlockDelta` event, as Bedrock sends them.
    pub const DELTA: [(&str, &str); 3] = [(":event-type", "contentBlockDelta"), (":content-type", "application/json"), (":message-type", "event")];

    #[test]
    fn a_text_delta_is_read_with_its_escapes_and_padding() {
        let m = message(&DELTA, r#"{"contentBlockIndex":2,"delta":{"text":"caf\u00e9 \"x\"\n"},"p":"abcdefgh"}"#);
        assert_eq!(split(&m), Split::Whole(m.len()));
        assert_eq!(text_delta(&m), Some((2, "café \"x\"\n".to_string())));
    }

    #[test]
    fn every_other_message_is_left_to_the_sdk() {
        let other_delta = message(&DELTA, r#"{"contentBlockIndex":0,"delta":{"toolUse":{"input":"{}"}}}"#);
        let both = message(&DELTA, r#"{"contentBlockIndex":0,"delta":{"text":"a","reasoningContent":{"text":"b"}}}"#);
        let stop = message(&[(":event-type", "contentBlockStop"), (":message-type", "event")], r#"{"contentBlockIndex":0}"#);
        let exception = message(&[(":exception-type", "throttlingException"), (":message-type", "exception")], r#"{"message":"slow down"}"#);
        let no_index = message(&DELTA, r#"{"delta":{"text":"a"}}"#);
        for m in [other_delta, both, stop, exception, no_index] {
            assert_eq!(text_delta(&m), None, "{:?}", String::from_utf8_lossy(&m));
        }
    }

    #[test]
    fn headers_the_sdks_decoder_would_refuse_are_left_to_it() {
        let payload = r#"{"contentBlockIndex":0,"delta":{"text":"a"}}"#;
        let not_utf8 = [(":event-type", "contentBlockDelta"), (":message-type", "event"), ("x-\u{fffd}", "v")];
        let mut m = message(&not_utf8, payload);
        // The third header's name, made invalid UTF-8 (its checksums made again).
        let at = m.windows(2).position(|w| w == b"x-").unwrap() + 2;
        m[at] = 0xFF;
        let total = m.len();
        let crc = crc32fast::hash(&m[..total - CHECKSUM]).to_be_bytes();
        m[total - CHECKSUM..].copy_from_slice(&crc);
        assert_eq!(text_delta(&m), None);
        let long = "v".repeat(MAX_VALUE + 1);
        assert_eq!(text_delta(&message(&[(":event-type", "contentBlockDelta"), (":message-type", "event"), ("x-long", &long)], payload)), None);
        assert!(text_delta(&message(&[(":event-type", "contentBlockDelta"), (":message-type", "event"), ("x-ok", "v")], payload)).is_some());
    }

    #[test]
    fn a_damaged_message_is_left_to_the_sdk() {
        let good = message(&DELTA, r#"{"contentBlockIndex":0,"delta":{"text":"abc"}}"#);
        for at in 0..good.len() {
            let mut bad = good.clone();
            bad[at] ^= 0x20;
            if let Split::Whole(n) = split(&bad) {
                assert_eq!(text_delta(&bad[..n]), None, "a flipped bit at byte {at} went unnoticed");
            }
        }
    }

    #[test]
    fn a_message_is_whole_only_once_every_byte_is_there() {
        let m = message(&DELTA, r#"{"contentBlockIndex":0,"delta":{"text":"abc"}}"#);
        for cut in 0..m.len() {
            assert_eq!(split(&m[..cut]), Split::Partial, "cut at {cut}");
        }
        let mut two = m.clone();
        two.extend_from_slice(&m);
        assert_eq!(split(&two), Split::Whole(m.len()));
        assert_eq!(split(&[0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0]), Split::Unframable);
    }
}
