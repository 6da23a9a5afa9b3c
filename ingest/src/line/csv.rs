//! CSV rows under a header that names its columns, in any order, from
//! `ts,symbol,price,size,bid,ask,bid_size,ask_size`.
//!
//! The header is checked once, before any row is read, so a typo in a column name stops a
//! replay at startup instead of skipping every row. Header names are matched ignoring ASCII
//! case and surrounding spaces; a UTF-8 byte-order mark before the header is ignored.
//!
//! Rows are split on `,` with no quoting rules beyond dropping one pair of surrounding
//! double quotes: no valid symbol or number contains a comma or a quote, so a field that
//! would need real CSV quoting is malformed anyway. An empty field is an absent value.

use feed_engine::Quote;

use super::{check_length, number_from_text, ts_from_text, Field, Fields, LineError, TsUnit};

/// Why a CSV header was refused. The replay turns each into an [`crate::Error`] naming the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// A column name outside the contract's list.
    #[error("unknown column {0:?}")]
    UnknownColumn(String),
    /// The same column named twice.
    #[error("column {0:?} appears twice")]
    DuplicateColumn(String),
    /// `symbol` or `price` is not named.
    #[error("no {0} column")]
    MissingColumn(&'static str),
    /// The header line itself is unreadable (not UTF-8, too long).
    #[error(transparent)]
    Unreadable(LineError),
}

/// The UTF-8 byte-order mark some spreadsheet exports put before the header.
const BYTE_ORDER_MARK: &str = "\u{feff}";

/// Parses CSV rows according to the column order of a header.
#[derive(Debug, Clone)]
pub struct CsvParser {
    columns: Box<[Field]>,
    ts_unit: TsUnit,
}

impl CsvParser {
    /// Reads the header line (terminator excluded).
    ///
    /// # Errors
    /// [`HeaderError`] for an unknown or repeated column, a missing `symbol` or `price`, or
    /// an unreadable line.
    pub fn from_header(line: &[u8], ts_unit: TsUnit) -> Result<Self, HeaderError> {
        check_length(line).map_err(HeaderError::Unreadable)?;
        let text = std::str::from_utf8(line).map_err(|_| HeaderError::Unreadable(LineError::InvalidUtf8))?;
        let text = text.strip_prefix(BYTE_ORDER_MARK).unwrap_or(text).trim();
        let mut columns = Vec::new();
        for name in text.split(',') {
            let name = unquote(name.trim());
            let field = Field::from_name(&name.to_ascii_lowercase())
                .ok_or_else(|| HeaderError::UnknownColumn(name.to_owned()))?;
            if columns.contains(&field) {
                return Err(HeaderError::DuplicateColumn(field.name().to_owned()));
            }
            columns.push(field);
        }
        for required in [Field::Symbol, Field::Price] {
            if !columns.contains(&required) {
                return Err(HeaderError::MissingColumn(required.name()));
            }
        }
        Ok(Self { columns: columns.into(), ts_unit })
    }

    /// The columns in header order.
    pub fn columns(&self) -> &[Field] {
        &self.columns
    }

    /// Parses one row (terminator excluded).
    ///
    /// # Errors
    /// See [`LineError`]; `Ok(None)` is an empty line.
    pub fn parse<'a>(&self, line: &'a [u8]) -> Result<Option<Quote<'a>>, LineError> {
        check_length(line)?;
        let text = std::str::from_utf8(line).map_err(|_| LineError::InvalidUtf8)?.trim();
        if text.is_empty() {
            return Ok(None);
        }
        // Counted first: in a row with a missing or extra field every later value sits in
        // the wrong column, and the count is the error that says so.
        let found = memchr::memchr_iter(b',', text.as_bytes()).count() + 1;
        if found != self.columns.len() {
            return Err(LineError::FieldCount { expected: self.columns.len(), found });
        }
        let mut fields = Fields::default();
        for (&column, raw) in self.columns.iter().zip(text.split(',')) {
            let value = unquote(raw.trim());
            if value.is_empty() {
                continue;
            }
            match column {
                Field::Symbol => fields.symbol = Some(value),
                Field::Ts => fields.src_ts_us = Some(ts_from_text(self.ts_unit, value)?),
                number => {
                    if let Some(slot) = fields.number_mut(number) {
                        *slot = Some(number_from_text(number, value)?);
                    }
                }
            }
        }
        fields.into_quote().map(Some)
    }
}

/// Drops one pair of surrounding double quotes.
fn unquote(field: &str) -> &str {
    field.strip_prefix('"').and_then(|f| f.strip_suffix('"')).unwrap_or(field)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parser(header: &str) -> CsvParser {
        CsvParser::from_header(header.as_bytes(), TsUnit::Ns).expect("valid header")
    }

    #[test]
    fn header_columns_come_in_any_order() {
        let csv = parser("\u{feff}Price, symbol ,\"ts\"");
        assert_eq!(csv.columns(), &[Field::Price, Field::Symbol, Field::Ts]);
        let quote = csv.parse(b"1.5,FX:EUR/USD,1399248000036000000\r").expect("valid").expect("not empty");
        assert_eq!((quote.symbol, quote.price, quote.src_ts_us), ("FX:EUR/USD", 1.5, Some(1_399_248_000_036_000)));
    }

    #[test]
    fn the_recorded_fx_header_is_accepted() {
        let csv = parser("ts,symbol,price,size,bid,ask");
        let quote =
            csv.parse(b"1399248000036000000,NZDUSD,0.86587,0,0.86576,0.86598").expect("valid").expect("not empty");
        assert_eq!(quote.symbol, "NZDUSD");
        assert_eq!((quote.price, quote.size, quote.bid, quote.ask), (0.86587, Some(0.0), Some(0.86576), Some(0.86598)));
        assert_eq!((quote.bid_size, quote.ask_size), (None, None));
    }

    #[test]
    fn bad_headers_are_refused_with_the_reason() {
        let header = |text: &str| CsvParser::from_header(text.as_bytes(), TsUnit::Ns).map(|_| ());
        assert_eq!(header("ts,symbol,price,volume"), Err(HeaderError::UnknownColumn("volume".into())));
        assert_eq!(header("symbol,price,Price"), Err(HeaderError::DuplicateColumn("price".into())));
        assert_eq!(header("ts,price"), Err(HeaderError::MissingColumn("symbol")));
        assert_eq!(header("symbol,bid,ask"), Err(HeaderError::MissingColumn("price")));
        assert_eq!(header(""), Err(HeaderError::UnknownColumn(String::new())));
        assert_eq!(
            CsvParser::from_header(b"symbol,pr\xffice", TsUnit::Ns).map(|_| ()),
            Err(HeaderError::Unreadable(LineError::InvalidUtf8))
        );
    }

    #[test]
    fn empty_fields_are_absent_values() {
        let csv = parser("ts,symbol,price,size,bid,ask");
        let quote = csv.parse(b",X,2,,,").expect("valid").expect("not empty");
        assert_eq!((quote.price, quote.size, quote.bid, quote.src_ts_us), (2.0, None, None, None));
    }

    #[test]
    fn each_malformed_row_has_its_own_error() {
        let csv = parser("ts,symbol,price,size");
        assert_eq!(csv.parse(b""), Ok(None));
        assert_eq!(csv.parse(b"  "), Ok(None));
        assert_eq!(csv.parse(b"1,X,2"), Err(LineError::FieldCount { expected: 4, found: 3 }));
        assert_eq!(csv.parse(b"1,X,2,3,4"), Err(LineError::FieldCount { expected: 4, found: 5 }));
        assert_eq!(csv.parse(b"1,,2,3"), Err(LineError::MissingSymbol));
        assert_eq!(csv.parse(b"1,X,,3"), Err(LineError::MissingPrice));
        assert_eq!(csv.parse(b"1,A:B:C,2,3"), Err(LineError::BadSymbol { symbol: "A:B:C".into() }));
        assert_eq!(csv.parse(b"1,X,two,3"), Err(LineError::NotANumber { field: "price" }));
        assert_eq!(csv.parse(b"1,X,2,inf"), Err(LineError::NotFinite { field: "size" }));
        assert_eq!(csv.parse(b"soon,X,2,3"), Err(LineError::NotANumber { field: "ts" }));
        assert_eq!(csv.parse(b"1,X\xff,2,3"), Err(LineError::InvalidUtf8));
        let long = format!("1,X,2,{}", "9".repeat(super::super::MAX_LINE_BYTES));
        assert!(matches!(csv.parse(long.as_bytes()), Err(LineError::TooLong { .. })));
    }
}
