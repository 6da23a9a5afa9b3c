//! Pulls the few fields the load tool needs out of a tick's JSON without parsing it all.
//! The server's encoding is fixed (no whitespace), so a key search is exact.

/// The fields of one tick the load tool checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TickFields<'a> {
    /// The symbol's bytes.
    pub symbol: &'a [u8],
    /// Per-symbol sequence number.
    pub seq: u64,
    /// Engine time in microseconds.
    pub ts_us: u64,
    /// Sent because of a subscribe.
    pub snapshot: bool,
    /// Flagged as a conflated jump.
    pub conflated: bool,
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn number_after(json: &[u8], key: &[u8]) -> Option<u64> {
    let start = find(json, key)? + key.len();
    let digits = json[start..].iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&json[start..start + digits]).ok()?.parse().ok()
}

/// Digits at the start of `bytes`, as a number, and the rest.
fn leading_number(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let digits = bytes.iter().take_while(|b| b.is_ascii_digit()).count();
    let value = std::str::from_utf8(&bytes[..digits]).ok()?.parse().ok()?;
    Some((value, &bytes[digits..]))
}

/// The fast path for the encoding every tickfeed-like server uses: `type`, `symbol`, `seq`,
/// `ts` first, flags last. One pass, no searching.
fn tick_fields_in_order(json: &[u8]) -> Option<TickFields<'_>> {
    let rest = json.strip_prefix(b"{\"type\":\"tick\",\"symbol\":\"")?;
    let len = rest.iter().position(|&b| b == b'"')?;
    let (symbol, rest) = rest.split_at(len);
    let (seq, rest) = leading_number(rest.strip_prefix(b"\",\"seq\":")?)?;
    let (ts_us, _) = leading_number(rest.strip_prefix(b",\"ts\":")?)?;
    let tail = &json[json.len().saturating_sub(40)..];
    Some(TickFields {
        symbol,
        seq,
        ts_us,
        snapshot: find(tail, b"\"snapshot\":true").is_some(),
        conflated: find(tail, b"\"conflated\":true").is_some(),
    })
}

/// Returns the tick's fields, or `None` for any other message (welcome, heartbeat, …).
pub fn tick_fields(json: &[u8]) -> Option<TickFields<'_>> {
    if !json.starts_with(b"{\"type\":\"tick\"") {
        return None;
    }
    if let Some(fields) = tick_fields_in_order(json) {
        return Some(fields);
    }
    let key = b"\"symbol\":\"";
    let start = find(json, key)? + key.len();
    let len = json[start..].iter().position(|&b| b == b'"')?;
    Some(TickFields {
        symbol: &json[start..start + len],
        seq: number_after(json, b"\"seq\":")?,
        ts_us: number_after(json, b"\"ts\":")?,
        snapshot: find(json, b"\"snapshot\":true").is_some(),
        conflated: find(json, b"\"conflated\":true").is_some(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_contract_example() {
        let json = br#"{"type":"tick","symbol":"NASDAQ:AAPL","seq":1042,"ts":1764063000123456,"price":189.12,"conflated":true}"#;
        let fields = tick_fields(json).expect("a tick");
        assert_eq!(fields.symbol, b"NASDAQ:AAPL");
        assert_eq!((fields.seq, fields.ts_us, fields.snapshot, fields.conflated), (1042, 1_764_063_000_123_456, false, true));
        assert!(tick_fields(br#"{"type":"welcome","epoch":"x"}"#).is_none());
    }

    #[test]
    fn other_key_orders_still_read() {
        let json = br#"{"type":"tick","seq":7,"symbol":"A","price":1,"ts":99,"snapshot":true}"#;
        let fields = tick_fields(json).expect("a tick");
        assert_eq!((fields.symbol, fields.seq, fields.ts_us, fields.snapshot), (&b"A"[..], 7, 99, true));
    }
}
