//! A tick as it enters the engine ([`Quote`], from a source) and as it leaves it ([`Tick`],
//! stamped with `seq`, `ts` and a publish position, and encoded to its JSON bytes once).
//! History, snapshots and every transport share those bytes and only add framing.

use std::{io::Write as _, sync::Arc};

use crate::Error;

/// One price update as a source hands it to the engine. Sources never carry a `seq`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Quote<'a> {
    /// A symbol valid under [`crate::symbol::is_valid_symbol`].
    pub symbol: &'a str,
    /// Last price.
    pub price: f64,
    /// Traded size, when the source has it.
    pub size: Option<f64>,
    /// Best bid.
    pub bid: Option<f64>,
    /// Best ask.
    pub ask: Option<f64>,
    /// Size at the best bid.
    pub bid_size: Option<f64>,
    /// Size at the best ask.
    pub ask_size: Option<f64>,
    /// The source's own timestamp in microseconds since the Unix epoch (published as `src_ts`).
    pub src_ts_us: Option<i64>,
}

impl Quote<'_> {
    /// Checks that every number can be written as JSON.
    ///
    /// # Errors
    /// [`Error::NotFinite`] naming the first NaN or infinite field.
    pub fn check_finite(&self) -> Result<(), Error> {
        if !self.price.is_finite() {
            return Err(Error::NotFinite("price"));
        }
        for (name, value) in self.optional_fields() {
            if value.is_some_and(|v| !v.is_finite()) {
                return Err(Error::NotFinite(name));
            }
        }
        Ok(())
    }

    fn optional_fields(&self) -> [(&'static str, Option<f64>); 5] {
        [
            ("size", self.size),
            ("bid", self.bid),
            ("ask", self.ask),
            ("bid_size", self.bid_size),
            ("ask_size", self.ask_size),
        ]
    }
}

/// A published tick: the engine's stamps plus its JSON bytes, shared by every subscriber.
#[derive(Debug)]
pub struct Tick {
    /// Global publish position: +1 per tick across all symbols, the basis of a [`crate::Cursor`].
    pub position: u64,
    /// Position of the previous tick of the same symbol (0 for its first). When this tick is
    /// the oldest left in its history ring, this is the newest position that ring evicted.
    pub prev_position: u64,
    /// Per-symbol sequence number: 1, 2, 3, …
    pub seq: u64,
    /// Dense id of the symbol inside this engine, for per-subscriber lookup tables.
    pub symbol_id: u32,
    /// The symbol's name.
    pub symbol: Arc<str>,
    /// When the tick entered the engine, microseconds since the Unix epoch.
    pub ts_us: i64,
    json: Box<[u8]>,
}

/// What the engine stamps on a quote to make it a [`Tick`] (the fields of the same names).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Stamp {
    pub(crate) symbol_id: u32,
    pub(crate) seq: u64,
    pub(crate) position: u64,
    pub(crate) prev_position: u64,
    pub(crate) ts_us: i64,
}

impl Tick {
    /// Stamps and encodes a quote. Called once per tick by the engine, which passes the same
    /// `scratch` each time: the JSON is written there, then copied into an allocation of
    /// exactly its length. Guessing a capacity and shrinking to fit instead cost a
    /// reallocation, and a copy into memory long out of cache, on every tick.
    pub(crate) fn encode(quote: &Quote<'_>, symbol: Arc<str>, stamp: Stamp, scratch: &mut Vec<u8>) -> Self {
        let Stamp { symbol_id, seq, position, prev_position, ts_us } = stamp;
        scratch.clear();
        write_json(scratch, quote, &symbol, seq, ts_us);
        Self { position, prev_position, seq, symbol_id, symbol, ts_us, json: Box::from(scratch.as_slice()) }
    }

    /// The tick's JSON object exactly as sent for a live tick.
    pub fn json(&self) -> &[u8] {
        &self.json
    }

    /// Appends the tick's JSON to `out`, adding `"snapshot":true` and/or `"conflated":true`.
    /// Without flags this is a plain copy of [`Tick::json`].
    pub fn write_json_with_flags(&self, out: &mut Vec<u8>, snapshot: bool, conflated: bool) {
        if !snapshot && !conflated {
            out.extend_from_slice(&self.json);
            return;
        }
        // The encoder always ends the object with `}`; reopen it to append the flags.
        out.extend_from_slice(&self.json[..self.json.len() - 1]);
        if snapshot {
            out.extend_from_slice(b",\"snapshot\":true");
        }
        if conflated {
            out.extend_from_slice(b",\"conflated\":true");
        }
        out.push(b'}');
    }

    /// Length in bytes of the JSON [`Tick::write_json_with_flags`] would write.
    pub fn json_len_with_flags(&self, snapshot: bool, conflated: bool) -> usize {
        self.json.len() + if snapshot { 16 } else { 0 } + if conflated { 17 } else { 0 }
    }
}

/// Writes a number in shortest round-trip form, byte for byte what Rust's `Display` for
/// `f64` writes (which never uses exponents, so the output is always a valid JSON number).
///
/// Why not `write!`: it goes through the formatting machinery, and encoding is most of what
/// a publish costs. Whole numbers (sizes, most integer prices) take `itoa`, the rest `ryu`,
/// which finds the same shortest digits; the rare values `ryu` would write with an exponent,
/// a trailing `.0` or more than 15 significant digits, and a negative zero, go through
/// `Display` as before.
fn write_number(out: &mut Vec<u8>, value: f64) {
    /// Below 2^53 every whole f64 is exactly an i64 and `Display` writes it without a point.
    const EXACT_INTEGER: f64 = 9_007_199_254_740_992.0;
    if value.fract() == 0.0 && value.abs() < EXACT_INTEGER && !(value == 0.0 && value.is_sign_negative()) {
        // In range and whole, so the cast is exact.
        out.extend_from_slice(itoa::Buffer::new().format(value as i64).as_bytes());
        return;
    }
    if value.is_finite() {
        let mut buffer = ryu::Buffer::new();
        let text = buffer.format_finite(value);
        if !text.bytes().any(|b| b == b'e') && !text.ends_with(".0") && significant_digits(text) <= 15 {
            out.extend_from_slice(text.as_bytes());
            return;
        }
    }
    // Writing into a Vec cannot fail.
    let _ = write!(out, "{value}");
}

/// Significant digits of a plain decimal. Up to 15, the shortest round-trip form is unique
/// (two 15-digit decimals are always more than one ulp apart), so `ryu` and `Display` agree;
/// at 16 or 17 two shortest forms can tie and the two break the tie differently.
fn significant_digits(text: &str) -> usize {
    let digits = text.bytes().filter(u8::is_ascii_digit);
    let total = digits.clone().count();
    let leading_zeros = text.bytes().filter(|b| *b != b'-' && *b != b'.').take_while(|b| *b == b'0').count();
    total - leading_zeros
}

/// Appends an integer in decimal.
fn write_integer(out: &mut Vec<u8>, value: impl itoa::Integer) {
    out.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
}

fn write_json(out: &mut Vec<u8>, quote: &Quote<'_>, symbol: &str, seq: u64, ts_us: i64) {
    // Symbols are restricted to characters that need no JSON escaping (see `symbol`).
    out.extend_from_slice(b"{\"type\":\"tick\",\"symbol\":\"");
    out.extend_from_slice(symbol.as_bytes());
    out.extend_from_slice(b"\",\"seq\":");
    write_integer(out, seq);
    out.extend_from_slice(b",\"ts\":");
    write_integer(out, ts_us);
    if let Some(src_ts) = quote.src_ts_us {
        out.extend_from_slice(b",\"src_ts\":");
        write_integer(out, src_ts);
    }
    out.extend_from_slice(b",\"price\":");
    write_number(out, quote.price);
    for (name, value) in quote.optional_fields() {
        if let Some(value) = value {
            out.extend_from_slice(b",\"");
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b"\":");
            write_number(out, value);
        }
    }
    out.push(b'}');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Tick {
        let quote = Quote {
            symbol: "NASDAQ:AAPL",
            price: 189.12,
            size: Some(100.0),
            bid: Some(189.11),
            ask: Some(189.13),
            ..Quote::default()
        };
        let stamp = Stamp { symbol_id: 0, seq: 1042, position: 7, prev_position: 3, ts_us: 1_764_063_000_123_456 };
        Tick::encode(&quote, "NASDAQ:AAPL".into(), stamp, &mut Vec::new())
    }

    #[test]
    fn encodes_the_contract_example_byte_for_byte() {
        assert_eq!(
            std::str::from_utf8(sample().json()).expect("utf8"),
            r#"{"type":"tick","symbol":"NASDAQ:AAPL","seq":1042,"ts":1764063000123456,"price":189.12,"size":100,"bid":189.11,"ask":189.13}"#
        );
    }

    #[test]
    fn flags_are_appended_inside_the_object() {
        let tick = sample();
        let mut out = Vec::new();
        tick.write_json_with_flags(&mut out, true, true);
        assert_eq!(out.len(), tick.json_len_with_flags(true, true));
        let value: serde_json::Value = serde_json::from_slice(&out).expect("valid json");
        assert_eq!(value["snapshot"], true);
        assert_eq!(value["conflated"], true);
        assert_eq!(value["seq"], 1042);
    }

    #[test]
    fn extreme_numbers_stay_valid_json() {
        let quote = Quote { symbol: "X", price: 1e-12, size: Some(1e21), src_ts_us: Some(-5), ..Quote::default() };
        let stamp = Stamp { symbol_id: 0, seq: 1, position: 1, prev_position: 0, ts_us: 0 };
        let tick = Tick::encode(&quote, "X".into(), stamp, &mut Vec::new());
        let value: serde_json::Value = serde_json::from_slice(tick.json()).expect("valid json");
        assert_eq!(value["price"].as_f64(), Some(1e-12));
        assert_eq!(value["size"].as_f64(), Some(1e21));
        assert_eq!(value["src_ts"], -5);
    }

    #[test]
    fn non_finite_numbers_are_refused() {
        let quote = Quote { symbol: "X", price: 1.0, ask: Some(f64::NAN), ..Quote::default() };
        assert_eq!(quote.check_finite(), Err(Error::NotFinite("ask")));
    }

    #[test]
    fn numbers_are_written_exactly_as_display_writes_them() {
        use rand::{Rng as _, SeedableRng as _};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut values = vec![
            0.0, -0.0, 1.0, -1.0, 100.0, 0.1, 0.2, 0.3, 189.12, 1.23456789, 1e-5, 1e-7, 0.0001,
            123456.789, 9_007_199_254_740_991.0, 9_007_199_254_740_992.0, 9_007_199_254_740_994.0, 1e15,
            1e16, 1e17, 1e21, 1e22, 1.5e300, 5e-324, f64::MAX, f64::MIN_POSITIVE, -2.5e-8,
        ];
        for _ in 0..200_000 {
            // Prices and sizes of every magnitude, with 0 to 8 decimals, and raw bit patterns.
            let decimals = rng.random_range(0..=8);
            let scale = 10f64.powi(rng.random_range(-6..=12));
            let price = (rng.random::<f64>() * scale * 10f64.powi(decimals)).round() / 10f64.powi(decimals);
            values.push(price);
            values.push(-price);
            let bits = f64::from_bits(rng.random::<u64>());
            if bits.is_finite() {
                values.push(bits);
            }
        }
        for value in values {
            let mut out = Vec::new();
            write_number(&mut out, value);
            assert_eq!(String::from_utf8(out).expect("ASCII"), format!("{value}"), "{value:e}");
        }
    }
}
