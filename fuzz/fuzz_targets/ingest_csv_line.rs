//! A CSV replay file: the first line is the header, every later line a row. A header is
//! accepted or refused with a reason; every row under an accepted header becomes a whole
//! quote the engine can publish (valid symbol, finite numbers) or an error; never a panic.
//!
//! Each unit of `ts` is tried, since each converts (and overflows) differently.
#![no_main]

use ingest::{line::CsvParser, TsUnit};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut lines = data.split(|&byte| byte == b'\n');
    let header = lines.next().unwrap_or_default();
    for unit in [TsUnit::Ns, TsUnit::Us, TsUnit::Ms, TsUnit::S] {
        let parser = match CsvParser::from_header(header, unit) {
            Ok(parser) => parser,
            Err(error) => {
                assert!(!error.to_string().is_empty());
                return;
            }
        };
        for row in lines.clone() {
            match parser.parse(row) {
                Ok(Some(quote)) => {
                    assert!(feed_engine::symbol::is_valid_symbol(quote.symbol), "{quote:?}");
                    assert!(quote.check_finite().is_ok(), "{quote:?}");
                }
                Ok(None) => {
                    let blank = std::str::from_utf8(row).is_ok_and(|text| text.trim().is_empty());
                    assert!(blank, "only a blank row is skipped");
                }
                Err(error) => assert!(!error.to_string().is_empty()),
            }
        }
    }
});
