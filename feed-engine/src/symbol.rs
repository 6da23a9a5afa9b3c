//! The symbol grammar of the contract: `[A-Za-z0-9._/-]{1,24}`, optionally prefixed by a
//! venue `[A-Za-z0-9_-]{1,16}` and one `:`. Every source and every transport checks names
//! here, so there is exactly one definition of what a symbol is.

/// Longest symbol part after the venue, in bytes.
pub const MAX_SYMBOL_BYTES: usize = 24;
/// Longest venue part, in bytes.
pub const MAX_VENUE_BYTES: usize = 16;

fn is_symbol_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'/' | b'-')
}

fn is_venue_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-')
}

/// Is `name` a valid venue name (the part before `:`)?
pub fn is_valid_venue(name: &str) -> bool {
    (1..=MAX_VENUE_BYTES).contains(&name.len()) && name.bytes().all(is_venue_byte)
}

/// Is `name` a well-formed symbol, with or without a venue prefix?
pub fn is_valid_symbol(name: &str) -> bool {
    let (venue, bare) = match name.split_once(':') {
        Some((venue, bare)) => (Some(venue), bare),
        None => (None, name),
    };
    venue.is_none_or(is_valid_venue)
        && (1..=MAX_SYMBOL_BYTES).contains(&bare.len())
        && bare.bytes().all(is_symbol_byte)
}

/// The venue of a valid symbol, if it has one: `NASDAQ` for `NASDAQ:AAPL`.
pub fn venue_of(symbol: &str) -> Option<&str> {
    // A byte scan, which the compiler inlines as one small loop wherever it is used (the
    // generic `split_once` it replaced was inlined or not depending on the crates around
    // it: 40% more instructions in the pattern guard when it was not). `:` is ASCII, so its
    // index is a char boundary.
    symbol.bytes().position(|b| b == b':').map(|colon| &symbol[..colon])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_contract_examples() {
        for ok in ["NASDAQ:AAPL", "COINBASE:BTC-USD", "FX:EUR/USD", "AAPL", "a.b_c/d-e", "X"] {
            assert!(is_valid_symbol(ok), "{ok}");
        }
    }

    #[test]
    fn rejects_everything_else() {
        let long_symbol = "A".repeat(25);
        let long_venue = format!("{}:A", "V".repeat(17));
        for bad in [
            "", ":", "A:", ":A", "A:B:C", "A B", "A\"", "A\\", "é", "*", "FX:*",
            long_symbol.as_str(), long_venue.as_str(), "V.X:A", "A\n",
        ] {
            assert!(!is_valid_symbol(bad), "{bad:?}");
        }
        assert!(is_valid_symbol(&"A".repeat(24)));
        assert!(is_valid_symbol(&format!("{}:A", "V".repeat(16))));
    }

    #[test]
    fn venue_is_the_prefix() {
        assert_eq!(venue_of("FX:EUR/USD"), Some("FX"));
        assert_eq!(venue_of("AAPL"), None);
    }
}
