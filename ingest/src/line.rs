//! Turning one input line into a [`Quote`]: the rules shared by both line formats, the
//! [`LineError`] for every kind of malformed line, and the [`Parser`] that picks a format.
//!
//! This module is pure: bytes in, a quote or an error out, no I/O and no logging, so it can
//! be unit-tested and fuzzed on its own. Framing (where a line ends, how long it may be
//! before it is dropped) is [`crate::framing`]'s job; counting and logging is the caller's.
//!
//! What every format shares:
//! - An empty or all-whitespace line is skipped silently: `Ok(None)`, not an error.
//! - `symbol` and `price` are required; `size`, `bid`, `ask`, `bid_size`, `ask_size` and
//!   `ts` are optional. Every number must be finite.
//! - `ts` is in the configured [`TsUnit`] and becomes `src_ts` in microseconds.
//! - A line either yields a whole quote or an error: nothing partial is ever returned.

pub mod csv;
pub mod json;

use feed_engine::{symbol::is_valid_symbol, Quote};

pub use csv::{CsvParser, HeaderError};
pub use json::JsonParser;

/// The longest line any source accepts, in bytes (terminator excluded). Longer lines are
/// discarded unread so one publisher cannot grow a reader's memory without bound; 64 KiB
/// is a thousand times a typical tick line.
pub const MAX_LINE_BYTES: usize = 64 * 1024;

/// How long a rejected symbol may be when echoed in an error, so a hostile line cannot
/// flood the logs through the error message.
const MAX_ECHOED_BYTES: usize = 64;

/// The unit of an input `ts` (the source's own timestamp), converted to microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TsUnit {
    /// Nanoseconds since the Unix epoch, as in the project's recorded data (the default).
    #[default]
    Ns,
    /// Microseconds since the Unix epoch.
    Us,
    /// Milliseconds since the Unix epoch.
    Ms,
    /// Seconds since the Unix epoch; fractions are kept down to the microsecond.
    S,
}

/// A `--ts-unit` value that is not `ns`, `us`, `ms` or `s`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown ts unit {0:?}: expected ns, us, ms or s")]
pub struct UnknownTsUnit(pub String);

impl std::str::FromStr for TsUnit {
    type Err = UnknownTsUnit;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "ns" => Ok(Self::Ns),
            "us" => Ok(Self::Us),
            "ms" => Ok(Self::Ms),
            "s" => Ok(Self::S),
            other => Err(UnknownTsUnit(other.to_owned())),
        }
    }
}

impl std::fmt::Display for TsUnit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Ns => "ns",
            Self::Us => "us",
            Self::Ms => "ms",
            Self::S => "s",
        })
    }
}

impl TsUnit {
    /// Converts an integer timestamp in this unit to microseconds. Nanoseconds are floored
    /// (not truncated toward zero) so pre-1970 times keep their order.
    pub fn int_to_us(self, ts: i64) -> Option<i64> {
        match self {
            Self::Ns => Some(ts.div_euclid(1_000)),
            Self::Us => Some(ts),
            Self::Ms => ts.checked_mul(1_000),
            Self::S => ts.checked_mul(1_000_000),
        }
    }

    /// Converts a fractional timestamp in this unit to microseconds, rounded to nearest.
    pub fn float_to_us(self, ts: f64) -> Option<i64> {
        let us_per_unit = match self {
            Self::Ns => 1e-3,
            Self::Us => 1.0,
            Self::Ms => 1e3,
            Self::S => 1e6,
        };
        let us = (ts * us_per_unit).round();
        // i64::MAX as f64 rounds up to 2^63, which itself does not fit: keep strictly below.
        (us.is_finite() && us.abs() < 9.2e18).then_some(us as i64)
    }
}

/// Why one line was skipped. Each kind of malformed line has its own variant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    /// Longer than [`MAX_LINE_BYTES`]; it was discarded without being parsed.
    #[error("line of {len_bytes} bytes is longer than the {MAX_LINE_BYTES}-byte limit")]
    TooLong {
        /// How long the line was (as far as it was read).
        len_bytes: u64,
    },
    /// The input ended in the middle of a line where a whole line was required (a TCP
    /// publisher disconnected before its `\n`); the partial line was dropped.
    #[error("input ended in the middle of a line; the partial line was dropped")]
    Unterminated,
    /// The bytes are not UTF-8.
    #[error("line is not valid UTF-8")]
    InvalidUtf8,
    /// A JSON line that does not parse.
    #[error("not JSON: {reason}")]
    NotJson {
        /// The JSON parser's explanation.
        reason: String,
    },
    /// Valid JSON, but not an object.
    #[error("not a JSON object")]
    NotObject,
    /// No `symbol` (absent, null, or an empty CSV field).
    #[error("no symbol")]
    MissingSymbol,
    /// `symbol` is there but not a JSON string.
    #[error("symbol is not a string")]
    SymbolNotString,
    /// A symbol outside the contract's grammar `[VENUE:]SYMBOL`.
    #[error("bad symbol {symbol:?}: expected [VENUE:]SYMBOL")]
    BadSymbol {
        /// The symbol as given, cut to 64 bytes.
        symbol: String,
    },
    /// No `price` (absent, null, or an empty CSV field).
    #[error("no price")]
    MissingPrice,
    /// A field that must be numeric is not a number.
    #[error("{field} is not a number")]
    NotANumber {
        /// The field concerned.
        field: &'static str,
    },
    /// A numeric field is NaN or infinite, which cannot be published as JSON.
    #[error("{field} is not a finite number")]
    NotFinite {
        /// The field concerned.
        field: &'static str,
    },
    /// `ts` converted to microseconds does not fit in 64 bits.
    #[error("ts is out of range for the configured unit")]
    TsOutOfRange,
    /// A CSV row with more or fewer fields than its header.
    #[error("{found} fields where the header names {expected}")]
    FieldCount {
        /// Columns in the header.
        expected: usize,
        /// Fields in the row.
        found: usize,
    },
}

/// The columns and JSON fields a line may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// The source's timestamp.
    Ts,
    /// The symbol (required).
    Symbol,
    /// The last price (required).
    Price,
    /// Traded size.
    Size,
    /// Best bid.
    Bid,
    /// Best ask.
    Ask,
    /// Size at the best bid.
    BidSize,
    /// Size at the best ask.
    AskSize,
}

impl Field {
    /// Every field, in the contract's order.
    pub const ALL: [Self; 8] =
        [Self::Ts, Self::Symbol, Self::Price, Self::Size, Self::Bid, Self::Ask, Self::BidSize, Self::AskSize];

    /// The field's name in a CSV header and a JSON object.
    pub fn name(self) -> &'static str {
        match self {
            Self::Ts => "ts",
            Self::Symbol => "symbol",
            Self::Price => "price",
            Self::Size => "size",
            Self::Bid => "bid",
            Self::Ask => "ask",
            Self::BidSize => "bid_size",
            Self::AskSize => "ask_size",
        }
    }

    /// The field with this exact name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|field| field.name() == name)
    }
}

/// A line parser of either format. Build one per source; it keeps scratch buffers between
/// lines, so parsing allocates nothing on the steady path.
pub enum Parser {
    /// JSON lines (`.jsonl`, `.ndjson`, stdin, TCP).
    Json(JsonParser),
    /// CSV rows under a header.
    Csv(CsvParser),
}

impl Parser {
    /// Parses one line (terminator excluded). `Ok(None)` for an empty line. A JSON line is
    /// unescaped in place, hence `&mut`; the quote's symbol borrows from the line.
    ///
    /// # Errors
    /// The [`LineError`] describing why the line is malformed.
    pub fn parse<'a>(&mut self, line: &'a mut [u8]) -> Result<Option<Quote<'a>>, LineError> {
        match self {
            Self::Json(parser) => parser.parse(line),
            Self::Csv(parser) => parser.parse(line),
        }
    }
}

/// The values gathered from one line before they become a quote: a quote is only built once
/// every field has been read and checked, so an error never leaves half a quote behind.
#[derive(Debug, Default)]
struct Fields<'a> {
    symbol: Option<&'a str>,
    price: Option<f64>,
    size: Option<f64>,
    bid: Option<f64>,
    ask: Option<f64>,
    bid_size: Option<f64>,
    ask_size: Option<f64>,
    src_ts_us: Option<i64>,
}

impl<'a> Fields<'a> {
    /// The slot of a numeric field; `None` for `Ts` and `Symbol`, which are not plain numbers.
    fn number_mut(&mut self, field: Field) -> Option<&mut Option<f64>> {
        match field {
            Field::Price => Some(&mut self.price),
            Field::Size => Some(&mut self.size),
            Field::Bid => Some(&mut self.bid),
            Field::Ask => Some(&mut self.ask),
            Field::BidSize => Some(&mut self.bid_size),
            Field::AskSize => Some(&mut self.ask_size),
            Field::Ts | Field::Symbol => None,
        }
    }

    fn into_quote(self) -> Result<Quote<'a>, LineError> {
        let symbol = self.symbol.ok_or(LineError::MissingSymbol)?;
        if !is_valid_symbol(symbol) {
            return Err(LineError::BadSymbol { symbol: echo(symbol) });
        }
        let price = self.price.ok_or(LineError::MissingPrice)?;
        Ok(Quote {
            symbol,
            price,
            size: self.size,
            bid: self.bid,
            ask: self.ask,
            bid_size: self.bid_size,
            ask_size: self.ask_size,
            src_ts_us: self.src_ts_us,
        })
    }
}

/// Checks a number read from a line.
fn finite(field: Field, value: f64) -> Result<f64, LineError> {
    if value.is_finite() {
        Ok(value)
    } else {
        Err(LineError::NotFinite { field: field.name() })
    }
}

/// Parses a number written as text (a CSV field, or a JSON string such as Coinbase's
/// `"price":"189.12"`). Rust's parser also accepts `inf` and `NaN`, which are refused as
/// not finite rather than as not numbers, since that is the clearer message.
fn number_from_text(field: Field, text: &str) -> Result<f64, LineError> {
    let value = text.trim().parse::<f64>().map_err(|_| LineError::NotANumber { field: field.name() })?;
    finite(field, value)
}

/// Parses a timestamp written as text: an integer keeps full precision, a decimal is
/// accepted for units such as seconds with a fraction.
fn ts_from_text(unit: TsUnit, text: &str) -> Result<i64, LineError> {
    let text = text.trim();
    if let Ok(ts) = text.parse::<i64>() {
        return unit.int_to_us(ts).ok_or(LineError::TsOutOfRange);
    }
    let ts = text.parse::<f64>().map_err(|_| LineError::NotANumber { field: Field::Ts.name() })?;
    unit.float_to_us(finite(Field::Ts, ts)?).ok_or(LineError::TsOutOfRange)
}

/// A rejected symbol, cut on a character boundary for safe echoing.
fn echo(text: &str) -> String {
    let mut end = text.len().min(MAX_ECHOED_BYTES);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

/// The line without leading and trailing ASCII whitespace (which covers the `\r` of CRLF
/// files).
fn trim_ascii_mut(line: &mut [u8]) -> &mut [u8] {
    let start = line.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(line.len());
    let end = line.iter().rposition(|b| !b.is_ascii_whitespace()).map_or(start, |i| i + 1);
    &mut line[start..end]
}

/// Refuses a line longer than the limit, for callers that did not frame it themselves.
fn check_length(line: &[u8]) -> Result<(), LineError> {
    if line.len() > MAX_LINE_BYTES {
        return Err(LineError::TooLong { len_bytes: line.len() as u64 });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ts_units_convert_to_microseconds() {
        assert_eq!(TsUnit::Ns.int_to_us(1_399_248_000_036_000_000), Some(1_399_248_000_036_000));
        assert_eq!(TsUnit::Ns.int_to_us(-1), Some(-1));
        assert_eq!(TsUnit::Us.int_to_us(7), Some(7));
        assert_eq!(TsUnit::Ms.int_to_us(1_399_248_000_036), Some(1_399_248_000_036_000));
        assert_eq!(TsUnit::S.int_to_us(1_399_248_000), Some(1_399_248_000_000_000));
        assert_eq!(TsUnit::S.int_to_us(i64::MAX / 10), None);
        assert_eq!(TsUnit::S.float_to_us(1_399_248_000.036), Some(1_399_248_000_036_000));
        assert_eq!(TsUnit::S.float_to_us(1e300), None);
        assert_eq!(TsUnit::Ms.float_to_us(f64::NAN), None);
    }

    #[test]
    fn ts_units_parse_from_their_flag_values() {
        for unit in [TsUnit::Ns, TsUnit::Us, TsUnit::Ms, TsUnit::S] {
            assert_eq!(unit.to_string().parse::<TsUnit>(), Ok(unit));
        }
        assert_eq!("sec".parse::<TsUnit>(), Err(UnknownTsUnit("sec".into())));
        assert_eq!(TsUnit::default(), TsUnit::Ns);
    }

    #[test]
    fn text_timestamps_keep_integer_precision_and_accept_fractions() {
        assert_eq!(ts_from_text(TsUnit::Ns, "1399248000036000999"), Ok(1_399_248_000_036_000));
        assert_eq!(ts_from_text(TsUnit::S, " 1.5 "), Ok(1_500_000));
        assert_eq!(ts_from_text(TsUnit::S, "x"), Err(LineError::NotANumber { field: "ts" }));
        assert_eq!(ts_from_text(TsUnit::S, "inf"), Err(LineError::NotFinite { field: "ts" }));
        assert_eq!(ts_from_text(TsUnit::S, "9223372036854775807"), Err(LineError::TsOutOfRange));
    }

    #[test]
    fn echoed_symbols_are_cut_on_a_character_boundary() {
        let long = "é".repeat(100);
        let cut = echo(&long);
        assert!(cut.len() <= MAX_ECHOED_BYTES);
        assert!(cut.chars().all(|c| c == 'é'));
    }

    #[test]
    fn field_names_round_trip() {
        for field in Field::ALL {
            assert_eq!(Field::from_name(field.name()), Some(field));
        }
        assert_eq!(Field::from_name("seq"), None);
    }
}
