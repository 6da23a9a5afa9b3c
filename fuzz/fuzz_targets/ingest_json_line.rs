//! JSON lines as a stdin or TCP publisher sends them: every line either becomes a whole quote
//! the engine can publish (valid symbol, finite numbers) or an error; never a panic.
//!
//! The bytes are cut at `\n` as `ingest::framing` does and all lines go through one parser,
//! because the parser reuses simd-json's tape and buffers from line to line; each unit of
//! `ts` is tried, since each converts differently.
#![no_main]

use ingest::{line::JsonParser, TsUnit};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for unit in [TsUnit::Ns, TsUnit::Us, TsUnit::Ms, TsUnit::S] {
        let mut parser = JsonParser::new(unit);
        let mut line = Vec::new();
        for raw in data.split(|&byte| byte == b'\n') {
            // Parsing unescapes in place: each unit starts again from the original bytes.
            line.clear();
            line.extend_from_slice(raw);
            match parser.parse(&mut line) {
                Ok(Some(quote)) => {
                    assert!(feed_engine::symbol::is_valid_symbol(quote.symbol), "{quote:?}");
                    assert!(quote.check_finite().is_ok(), "{quote:?}");
                }
                Ok(None) => assert!(raw.iter().all(u8::is_ascii_whitespace), "only a blank line is skipped"),
                Err(error) => assert!(!error.to_string().is_empty()),
            }
        }
    }
});
