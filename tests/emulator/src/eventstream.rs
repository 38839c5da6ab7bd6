//! `application/vnd.amazon.eventstream` frame encoder, written from the format description
//! rather than borrowed from the SDK, so that the SDK's decoder is checked against an
//! independent implementation.

/// One frame: prelude (total length, headers length, prelude CRC), string headers, payload,
/// message CRC. All integers big-endian; CRC-32 (IEEE).
pub fn frame(headers: &[(&str, &str)], payload: &[u8]) -> Vec<u8> {
    let mut encoded_headers = Vec::new();
    for (name, value) in headers {
        encoded_headers.push(name.len() as u8);
        encoded_headers.extend_from_slice(name.as_bytes());
        encoded_headers.push(7); // header value type 7: string
        encoded_headers.extend_from_slice(&(value.len() as u16).to_be_bytes());
        encoded_headers.extend_from_slice(value.as_bytes());
    }
    let total = 12 + encoded_headers.len() + payload.len() + 4;
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&(total as u32).to_be_bytes());
    out.extend_from_slice(&(encoded_headers.len() as u32).to_be_bytes());
    let prelude_crc = crc32fast::hash(&out);
    out.extend_from_slice(&prelude_crc.to_be_bytes());
    out.extend_from_slice(&encoded_headers);
    out.extend_from_slice(payload);
    let message_crc = crc32fast::hash(&out);
    out.extend_from_slice(&message_crc.to_be_bytes());
    out
}

pub fn event(event_type: &str, payload: &serde_json::Value) -> Vec<u8> {
    frame(
        &[(":event-type", event_type), (":content-type", "application/json"), (":message-type", "event")],
        payload.to_string().as_bytes(),
    )
}

/// A modelled exception inside the stream, as Bedrock sends it after a 200 response.
pub fn exception(exception_type: &str, message: &str) -> Vec<u8> {
    frame(
        &[
            (":exception-type", exception_type),
            (":content-type", "application/json"),
            (":message-type", "exception"),
        ],
        serde_json::json!({ "message": message }).to_string().as_bytes(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_layout_matches_the_format() {
        let f = frame(&[("a", "b")], b"xy");
        // 12 prelude + (1+1+1+2+1) header + 2 payload + 4 crc
        assert_eq!(f.len(), 24);
        assert_eq!(u32::from_be_bytes(f[0..4].try_into().unwrap()), 24);
        assert_eq!(u32::from_be_bytes(f[4..8].try_into().unwrap()), 6);
        assert_eq!(u32::from_be_bytes(f[8..12].try_into().unwrap()), crc32fast::hash(&f[0..8]));
        assert_eq!(&f[12..18], &[1, b'a', 7, 0, 1, b'b']);
        assert_eq!(&f[18..20], b"xy");
        assert_eq!(u32::from_be_bytes(f[20..24].try_into().unwrap()), crc32fast::hash(&f[0..20]));
    }
}
