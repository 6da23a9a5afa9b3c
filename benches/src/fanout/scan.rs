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
    /// The source's own time in microseconds, if the tick carries one (`src_ts`: when a
    /// simulated tick was due).
    pub src_ts_us: Option<u64>,
    /// Sent because of a subscribe.
    pub snapshot: bool,
    /// Flagged as a conflated jump.
    pub conflated: bool,
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    memchr::memmem::find(haystack, needle)
}

fn number_after(json: &[u8], key: &[u8]) -> Option<u64> {
    let start = find(json, key)? + key.len();
    leading_number(&json[start..]).map(|(value, _)| value)
}

/// Digits at the start of `bytes`, as a number, and the rest. `None` without digits or on
/// overflow. By hand: `str::parse` after `from_utf8` was a sixth of the tool's own time on
/// the firehose.
fn leading_number(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let digits = bytes.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 {
        return None;
    }
    let digit = |b: &u8| u64::from(b - b'0');
    let value = if digits <= 19 {
        // Nineteen digits always fit in a u64: no overflow checks in the common case.
        bytes[..digits].iter().fold(0u64, |acc, b| acc * 10 + digit(b))
    } else {
        bytes[..digits].iter().try_fold(0u64, |acc, b| acc.checked_mul(10)?.checked_add(digit(b)))?
    };
    Some((value, &bytes[digits..]))
}

/// `snapshot` and `conflated` flags in the tail of a tick. Both are only ever written as
/// `true`, so a tail without `:t` has neither and costs one short scan.
fn flags(tail: &[u8]) -> (bool, bool) {
    if find(tail, b":t").is_none() {
        return (false, false);
    }
    (find(tail, b"\"snapshot\":true").is_some(), find(tail, b"\"conflated\":true").is_some())
}

/// The fast path for the encoding every tickfeed-like server uses: `type`, `symbol`, `seq`,
/// `ts` first, flags last. One pass, no searching.
fn tick_fields_in_order(json: &[u8]) -> Option<TickFields<'_>> {
    let rest = json.strip_prefix(b"{\"type\":\"tick\",\"symbol\":\"")?;
    let len = memchr::memchr(b'"', rest)?;
    let (symbol, rest) = rest.split_at(len);
    let (seq, rest) = leading_number(rest.strip_prefix(b"\",\"seq\":")?)?;
    let (ts_us, rest) = leading_number(rest.strip_prefix(b",\"ts\":")?)?;
    // A source's own time, when there is one, comes right after.
    let src_ts_us = rest.strip_prefix(b",\"src_ts\":").and_then(leading_number).map(|(value, _)| value);
    // Flags come last and are only written as `true`: a tick with one ends in `true}`.
    let (snapshot, conflated) =
        if json.ends_with(b"true}") { flags(&json[json.len().saturating_sub(40)..]) } else { (false, false) };
    Some(TickFields { symbol, seq, ts_us, src_ts_us, snapshot, conflated })
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
    let len = memchr::memchr(b'"', &json[start..])?;
    let (snapshot, conflated) = flags(json);
    Some(TickFields {
        symbol: &json[start..start + len],
        seq: number_after(json, b"\"seq\":")?,
        ts_us: number_after(json, b"\"ts\":")?,
        src_ts_us: number_after(json, b"\"src_ts\":"),
        snapshot,
        conflated,
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

    #[test]
    fn flags_are_read_in_either_order_and_only_when_true() {
        let base = br#"{"type":"tick","symbol":"FX:EURUSD","seq":3,"ts":10,"bid":1.1"#;
        for (tail, expected) in [
            (&br#"}"#[..], (false, false)),
            (br#","snapshot":true}"#, (true, false)),
            (br#","conflated":true}"#, (false, true)),
            (br#","snapshot":true,"conflated":true}"#, (true, true)),
            (br#","snapshot":false}"#, (false, false)),
        ] {
            let json = [&base[..], tail].concat();
            let fields = tick_fields(&json).expect("a tick");
            assert_eq!((fields.snapshot, fields.conflated), expected, "{}", String::from_utf8_lossy(&json));
            assert_eq!((fields.symbol, fields.seq, fields.ts_us), (&b"FX:EURUSD"[..], 3, 10));
        }
    }

    /// `src_ts` right after `ts`, as tickfeed writes it, anywhere else, or not at all.
    #[test]
    fn a_source_time_is_read_where_there_is_one() {
        let in_order = br#"{"type":"tick","symbol":"A","seq":1,"ts":99,"src_ts":90,"price":1}"#;
        let elsewhere = br#"{"type":"tick","seq":1,"symbol":"A","src_ts":90,"ts":99,"price":1}"#;
        for json in [&in_order[..], elsewhere] {
            let fields = tick_fields(json).expect("a tick");
            assert_eq!((fields.ts_us, fields.src_ts_us), (99, Some(90)), "{}", String::from_utf8_lossy(json));
        }
        let without = tick_fields(br#"{"type":"tick","symbol":"A","seq":1,"ts":99,"price":1}"#).expect("a tick");
        assert_eq!((without.ts_us, without.src_ts_us), (99, None));
    }

    #[test]
    fn numbers_that_overflow_or_are_missing_are_not_ticks() {
        assert!(tick_fields(br#"{"type":"tick","symbol":"A","seq":18446744073709551616,"ts":1}"#).is_none());
        assert!(tick_fields(br#"{"type":"tick","symbol":"A","seq":,"ts":1}"#).is_none());
        let max = tick_fields(br#"{"type":"tick","symbol":"A","seq":18446744073709551615,"ts":1}"#).expect("a tick");
        assert_eq!(max.seq, u64::MAX);
    }
}
