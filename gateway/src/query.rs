//! Query strings (`?symbols=FX%3AEUR%2FUSD&last_event_id=…`), decoded the way browsers encode
//! them (`application/x-www-form-urlencoded`: `%XX` escapes, `+` for space).
//!
//! Hand-written because the gateway needs only "find one parameter and percent-decode it";
//! malformed escapes are kept literally rather than rejected, and the symbol grammar then
//! decides whether the value is acceptable.

use std::{borrow::Cow, collections::HashSet};

use feed_engine::Selector;

use crate::reply::WireError;

/// A `symbols=A,B` parameter: the items as the client wrote them and their selectors.
pub(crate) struct Symbols {
    /// Non-empty items, as requested (echoed in `subscribed`).
    pub(crate) requested: Vec<String>,
    /// The parsed selectors, in the same order.
    pub(crate) selectors: Vec<Selector>,
}

/// The `symbols=` parameter, checked the same way on every endpoint: `Ok(None)` when it is
/// absent or lists nothing; a bad symbol, or more distinct selectors than `max`, is the
/// client's error.
pub(crate) fn symbols(query: Option<&str>, max: usize) -> Result<Option<Symbols>, WireError> {
    let Some(list) = param(query, "symbols") else { return Ok(None) };
    let selectors = Selector::parse_list(&list).map_err(|e| WireError::bad_symbol(&e))?;
    if selectors.is_empty() {
        return Ok(None);
    }
    if selectors.iter().collect::<HashSet<_>>().len() > max {
        return Err(WireError::too_many_subscriptions(max));
    }
    let requested = list.split(',').filter(|s| !s.is_empty()).map(str::to_owned).collect();
    Ok(Some(Symbols { requested, selectors }))
}

/// The decoded value of the first `name=` parameter of `query`, if present.
pub(crate) fn param<'q>(query: Option<&'q str>, name: &str) -> Option<Cow<'q, str>> {
    query?.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (decode(key) == name).then(|| decode(value))
    })
}

/// Percent-decodes `text`; `+` becomes a space. Borrows when there is nothing to decode.
pub(crate) fn decode(text: &str) -> Cow<'_, str> {
    if !text.bytes().any(|b| b == b'%' || b == b'+') {
        return Cow::Borrowed(text);
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(hi), Some(lo)) => {
                    out.push(hi << 4 | lo);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    // Invalid UTF-8 after decoding cannot be a symbol anyway; keep it visible in errors.
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_and_decodes_a_parameter() {
        let q = Some("x=1&symbols=FX%3AEUR%2FUSD,NASDAQ:AAPL&last_event_id=ab-12");
        assert_eq!(param(q, "symbols").as_deref(), Some("FX:EUR/USD,NASDAQ:AAPL"));
        assert_eq!(param(q, "last_event_id").as_deref(), Some("ab-12"));
        assert_eq!(param(q, "missing"), None);
        assert_eq!(param(None, "symbols"), None);
    }

    #[test]
    fn first_occurrence_wins_and_bare_keys_are_empty() {
        assert_eq!(param(Some("a=1&a=2"), "a").as_deref(), Some("1"));
        assert_eq!(param(Some("a&b=2"), "a").as_deref(), Some(""));
    }

    #[test]
    fn malformed_escapes_stay_literal() {
        assert_eq!(decode("100%"), "100%");
        assert_eq!(decode("%zz"), "%zz");
        assert_eq!(decode("%4"), "%4");
        assert_eq!(decode("a+b%20c"), "a b c");
        assert_eq!(decode("%41%42"), "AB");
    }
}
