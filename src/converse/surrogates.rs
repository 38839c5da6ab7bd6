//! JavaScript hosts can hand over text with lone UTF-16 surrogates (a string cut in the middle
//! of an emoji): `JSON.stringify` writes them as `\uD83D` escapes, which are not Unicode and
//! which serde_json refuses. They become U+FFFD before parsing, so the request goes out instead
//! of failing; a surrogate pair stays the character it encodes.

use std::borrow::Cow;

fn hex4(b: &[u8]) -> Option<u16> {
    let s = std::str::from_utf8(b.get(..4)?).ok()?;
    u16::from_str_radix(s, 16).ok()
}

pub fn replace_lone(text: &str) -> Cow<'_, str> {
    let b = text.as_bytes();
    if !b.windows(3).any(|w| w[0] == b'\\' && w[1] == b'u' && matches!(w[2], b'd' | b'D')) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let mut last = 0;
    while i < b.len() {
        if b[i] != b'\\' {
            i += 1;
            continue;
        }
        // An escape: `\\` and the like are skipped whole, so `\\uD800` (a literal backslash) stays.
        if b.get(i + 1) != Some(&b'u') {
            i += 2;
            continue;
        }
        let Some(unit) = hex4(&b[i + 2..]) else {
            i += 2;
            continue;
        };
        let high = (0xD800..=0xDBFF).contains(&unit);
        let low = (0xDC00..=0xDFFF).contains(&unit);
        let paired = high && b.get(i + 6) == Some(&b'\\') && b.get(i + 7) == Some(&b'u') && hex4(&b[i + 8..]).is_some_and(|n| (0xDC00..=0xDFFF).contains(&n));
        if paired {
            i += 12;
        } else if high || low {
            out.push_str(&text[last..i]);
            out.push_str("\\uFFFD");
            i += 6;
            last = i;
        } else {
            i += 6;
        }
    }
    if last == 0 {
        return Cow::Borrowed(text);
    }
    out.push_str(&text[last..]);
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::replace_lone;

    #[test]
    fn lone_surrogates_become_replacement_characters_and_pairs_stay() {
        let parse = |t: &str| serde_json::from_str::<String>(&replace_lone(t)).unwrap();
        assert_eq!(parse(r#""cut \ud83d here""#), "cut \u{fffd} here");
        assert_eq!(parse(r#""low \uDE00 alone""#), "low \u{fffd} alone");
        assert_eq!(parse(r#""pair \ud83d\ude00 ok""#), "pair \u{1f600} ok");
        assert_eq!(parse(r#""two \ud83d\ud83d""#), "two \u{fffd}\u{fffd}");
        assert_eq!(parse(r#""escaped \\ud83d stays""#), "escaped \\ud83d stays");
        assert!(matches!(replace_lone(r#""plain é \u00e9""#), std::borrow::Cow::Borrowed(_)));
    }
}
