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

/// Returns the tick's fields, or `None` for any other message (welcome, heartbeat, …).
pub fn tick_fields(json: &[u8]) -> Option<TickFields<'_>> {
    if !json.starts_with(b"{\"type\":\"tick\"") {
        return None;
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
}
