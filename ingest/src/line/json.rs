//! JSON lines: one object per line with the contract's field names, parsed with simd-json.
//!
//! Numbers may be JSON numbers or numeric strings (`"price":"189.12"`, as Coinbase and
//! Binance send them, so a relay needs no re-encoding). `null` counts as absent. Unknown
//! fields are ignored, which lets a publisher send extra data (or a whole tick from another
//! tickfeed, whose `seq` and `ts` the engine replaces anyway). With a repeated field the
//! last one wins, as in most JSON readers.

use feed_engine::Quote;
use simd_json::{
    prelude::{TypedValue as _, ValueAsScalar as _, ValueIntoString as _},
    tape::Value,
    Buffers, ErrorType, Tape, ValueType,
};

use super::{check_length, finite, number_from_text, trim_ascii_mut, Field, Fields, LineError, TsUnit};

/// Parses JSON lines. Keeps simd-json's scratch buffers and tape between lines.
pub struct JsonParser {
    ts_unit: TsUnit,
    buffers: Buffers,
    /// Kept empty between calls; only its allocation is reused.
    tape: Option<Tape<'static>>,
}

impl std::fmt::Debug for JsonParser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonParser").field("ts_unit", &self.ts_unit).finish_non_exhaustive()
    }
}

impl JsonParser {
    /// A parser reading `ts` in `ts_unit`.
    pub fn new(ts_unit: TsUnit) -> Self {
        Self { ts_unit, buffers: Buffers::new(256), tape: None }
    }

    /// Parses one line (terminator excluded). The line is unescaped in place, so the quote's
    /// symbol borrows from it without a copy.
    ///
    /// # Errors
    /// See [`LineError`]; `Ok(None)` is an empty line.
    pub fn parse<'a>(&mut self, line: &'a mut [u8]) -> Result<Option<Quote<'a>>, LineError> {
        check_length(line)?;
        let line = trim_ascii_mut(line);
        if line.is_empty() {
            return Ok(None);
        }
        let mut tape: Tape<'a> = self.tape.take().map_or_else(|| Tape(Vec::new()), Tape::reset);
        let result = match simd_json::fill_tape(line, &mut self.buffers, &mut tape) {
            Ok(()) => quote_from(tape.as_value(), self.ts_unit).map(Some),
            // simd-json validates UTF-8 in the same pass that finds the structure (a separate
            // check before it was 3.5% of parsing); invalid UTF-8 gets its own error rather
            // than a parser position.
            Err(error) if *error.error() == ErrorType::InvalidUtf8 => Err(LineError::InvalidUtf8),
            Err(error) => Err(LineError::NotJson { reason: error.to_string() }),
        };
        self.tape = Some(tape.reset());
        result
    }
}

/// The value kinds this module tells apart (simd-json's `ValueType` has more, e.g. for
/// 128-bit numbers, which are disabled here).
enum Kind {
    Null,
    Integer,
    Float,
    Text,
    Other,
}

impl Kind {
    fn of(value: &Value<'_, '_>) -> Self {
        match value.value_type() {
            ValueType::Null => Self::Null,
            ValueType::I64 | ValueType::U64 => Self::Integer,
            ValueType::F64 => Self::Float,
            ValueType::String => Self::Text,
            _ => Self::Other,
        }
    }
}

fn quote_from<'a>(value: Value<'_, 'a>, ts_unit: TsUnit) -> Result<Quote<'a>, LineError> {
    let object = value.as_object().ok_or(LineError::NotObject)?;
    let mut fields = Fields::default();
    for (key, value) in &object {
        let Some(field) = Field::from_name(key) else { continue };
        match field {
            Field::Symbol => {
                fields.symbol = match Kind::of(&value) {
                    Kind::Null => None,
                    Kind::Text => value.into_string(),
                    _ => return Err(LineError::SymbolNotString),
                };
            }
            Field::Ts => fields.src_ts_us = ts_from(value, ts_unit)?,
            // An explicit null makes a field absent, also over an earlier duplicate.
            field => {
                if let Some(slot) = fields.number_mut(field) {
                    *slot = number_from(field, value)?;
                }
            }
        }
    }
    fields.into_quote()
}

/// A numeric field: a JSON number, a numeric string, or null (`None`).
fn number_from(field: Field, value: Value<'_, '_>) -> Result<Option<f64>, LineError> {
    let not_a_number = LineError::NotANumber { field: field.name() };
    match Kind::of(&value) {
        Kind::Null => Ok(None),
        Kind::Integer | Kind::Float => {
            let number = value.cast_f64().ok_or(not_a_number)?;
            finite(field, number).map(Some)
        }
        Kind::Text => number_from_text(field, value.as_str().unwrap_or_default()).map(Some),
        Kind::Other => Err(not_a_number),
    }
}

/// `ts` as microseconds: integers keep full precision, decimals are rounded.
fn ts_from(value: Value<'_, '_>, unit: TsUnit) -> Result<Option<i64>, LineError> {
    let not_a_number = LineError::NotANumber { field: Field::Ts.name() };
    let us = match Kind::of(&value) {
        Kind::Null => return Ok(None),
        Kind::Integer => {
            let ts = value.as_i64().ok_or(LineError::TsOutOfRange)?;
            unit.int_to_us(ts)
        }
        Kind::Float => {
            let ts = value.as_f64().ok_or(not_a_number)?;
            unit.float_to_us(finite(Field::Ts, ts)?)
        }
        Kind::Text => return super::ts_from_text(unit, value.as_str().unwrap_or_default()).map(Some),
        Kind::Other => return Err(not_a_number),
    };
    us.map(Some).ok_or(LineError::TsOutOfRange)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Option<(String, Quote<'static>)>, LineError> {
        let mut parser = JsonParser::new(TsUnit::Ns);
        let mut bytes = text.as_bytes().to_vec();
        parser
            .parse(&mut bytes)
            .map(|quote| quote.map(|quote| (quote.symbol.to_owned(), Quote { symbol: "", ..quote })))
    }

    fn quote(text: &str) -> (String, Quote<'static>) {
        parse(text).expect("valid line").expect("not empty")
    }

    #[test]
    fn reads_every_field() {
        let (symbol, q) = quote(
            r#"{"symbol":"NASDAQ:AAPL","price":189.12,"size":100,"bid":189.11,"ask":189.13,"bid_size":300,"ask_size":200,"ts":1764063000123456789}"#,
        );
        assert_eq!(symbol, "NASDAQ:AAPL");
        assert_eq!(q.price, 189.12);
        assert_eq!((q.size, q.bid, q.ask), (Some(100.0), Some(189.11), Some(189.13)));
        assert_eq!((q.bid_size, q.ask_size), (Some(300.0), Some(200.0)));
        assert_eq!(q.src_ts_us, Some(1_764_063_000_123_456));
    }

    #[test]
    fn optional_fields_may_be_absent_or_null() {
        let (_, q) = quote(r#"{"symbol":"X","price":1,"size":null,"ts":null}"#);
        assert_eq!((q.price, q.size, q.bid, q.src_ts_us), (1.0, None, None, None));
    }

    #[test]
    fn numeric_strings_are_numbers() {
        let (_, q) = quote(r#"{"symbol":"COINBASE:BTC-USD","price":"65000.01","size":"0.5","ts":"1000"}"#);
        assert_eq!((q.price, q.size, q.src_ts_us), (65000.01, Some(0.5), Some(1)));
    }

    #[test]
    fn unknown_fields_are_ignored_and_escapes_are_decoded() {
        let (symbol, _) = quote(r#"{"type":"tick","seq":9,"sym\u0062ol":"FX:EUR\/USD","price":1.1,"x":[{"y":1}]}"#);
        assert_eq!(symbol, "FX:EUR/USD");
    }

    #[test]
    fn blank_lines_are_skipped() {
        assert_eq!(parse(""), Ok(None));
        assert_eq!(parse("  \r"), Ok(None));
    }

    #[test]
    fn each_malformed_line_has_its_own_error() {
        assert!(matches!(parse("{\"symbol\":"), Err(LineError::NotJson { .. })));
        assert!(matches!(parse("hello"), Err(LineError::NotJson { .. })));
        assert_eq!(parse("[1,2]"), Err(LineError::NotObject));
        assert_eq!(parse("42"), Err(LineError::NotObject));
        assert_eq!(parse(r#"{"price":1}"#), Err(LineError::MissingSymbol));
        assert_eq!(parse(r#"{"symbol":7,"price":1}"#), Err(LineError::SymbolNotString));
        assert_eq!(parse(r#"{"symbol":"A B","price":1}"#), Err(LineError::BadSymbol { symbol: "A B".into() }));
        assert_eq!(parse(r#"{"symbol":"X"}"#), Err(LineError::MissingPrice));
        assert_eq!(parse(r#"{"symbol":"X","price":null}"#), Err(LineError::MissingPrice));
        assert_eq!(parse(r#"{"symbol":"X","price":"abc"}"#), Err(LineError::NotANumber { field: "price" }));
        assert_eq!(parse(r#"{"symbol":"X","price":true}"#), Err(LineError::NotANumber { field: "price" }));
        assert_eq!(parse(r#"{"symbol":"X","price":1,"bid":"NaN"}"#), Err(LineError::NotFinite { field: "bid" }));
        assert_eq!(parse(r#"{"symbol":"X","price":1,"ts":[1]}"#), Err(LineError::NotANumber { field: "ts" }));
        assert_eq!(parse(r#"{"symbol":"X","price":1,"ts":18446744073709551615}"#), Err(LineError::TsOutOfRange));
        let mut invalid = br#"{"symbol":"X","price":1,"n":"#.to_vec();
        invalid.extend_from_slice(b"\"\xff\"}");
        assert_eq!(JsonParser::new(TsUnit::Ns).parse(&mut invalid), Err(LineError::InvalidUtf8));
        // simd-json's own validation covers the whole line: symbols, keys, and outside strings.
        for bad in [&b"{\"symbol\":\"X\xc3\",\"price\":1}"[..], b"{\"pr\xe2\x82ice\":1}", b"{\"symbol\":\"X\",\"price\":1} \xff"] {
            let mut line = bad.to_vec();
            assert_eq!(JsonParser::new(TsUnit::Ns).parse(&mut line), Err(LineError::InvalidUtf8), "{bad:?}");
        }
    }

    #[test]
    fn huge_exponents_are_not_finite_or_not_json() {
        let result = parse(r#"{"symbol":"X","price":1e999}"#);
        assert!(
            matches!(result, Err(LineError::NotFinite { field: "price" } | LineError::NotJson { .. })),
            "{result:?}"
        );
    }

    #[test]
    fn too_long_lines_are_refused_before_parsing() {
        let line = format!(r#"{{"symbol":"X","price":1,"pad":"{}"}}"#, "x".repeat(super::super::MAX_LINE_BYTES));
        assert!(matches!(parse(&line), Err(LineError::TooLong { .. })));
    }

    #[test]
    fn one_parser_reads_many_lines() {
        let mut parser = JsonParser::new(TsUnit::Ms);
        for i in 0..100 {
            let mut line = format!(r#"{{"symbol":"S{i}","price":{i}.5,"ts":{i}}}"#).into_bytes();
            let quote = parser.parse(&mut line).expect("valid").expect("not empty");
            assert_eq!(quote.symbol, format!("S{i}"));
            assert_eq!(quote.src_ts_us, Some(i * 1000));
            let mut bad = b"{".to_vec();
            assert!(parser.parse(&mut bad).is_err());
        }
    }
}
