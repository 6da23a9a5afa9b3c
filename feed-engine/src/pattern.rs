//! What a subscriber asks for: an exact symbol, every symbol of a venue (`VENUE:*`) or every
//! symbol (`*`). Patterns match symbols that first appear after the subscription was made,
//! so matching is done per tick (and cached per symbol id by the subscriber's filter).

use std::{fmt, sync::Arc};

use crate::{symbol, Error};

/// One entry of a subscribe or unsubscribe request.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Selector {
    /// `*`: every symbol.
    All,
    /// `VENUE:*`: every symbol whose venue prefix is exactly this.
    Venue(Arc<str>),
    /// One symbol, matched exactly (case-sensitive).
    Exact(Arc<str>),
}

impl Selector {
    /// Parses a symbol or a pattern.
    ///
    /// # Errors
    /// [`Error::BadSymbol`] when `text` follows neither grammar.
    pub fn parse(text: &str) -> Result<Self, Error> {
        if text == "*" {
            return Ok(Self::All);
        }
        if let Some(venue) = text.strip_suffix(":*") {
            if symbol::is_valid_venue(venue) {
                return Ok(Self::Venue(venue.into()));
            }
        } else if symbol::is_valid_symbol(text) {
            return Ok(Self::Exact(text.into()));
        }
        Err(Error::BadSymbol(text.to_owned()))
    }

    /// Parses a comma-separated list as found in `?symbols=A,B`. Empty items are skipped.
    ///
    /// # Errors
    /// [`Error::BadSymbol`] naming the first item that is not a symbol or pattern.
    pub fn parse_list(list: &str) -> Result<Vec<Self>, Error> {
        list.split(',').filter(|s| !s.is_empty()).map(Self::parse).collect()
    }

    /// Does this selector take ticks of `symbol`?
    pub fn matches(&self, symbol: &str) -> bool {
        match self {
            Self::All => true,
            Self::Venue(venue) => symbol::venue_of(symbol) == Some(venue),
            Self::Exact(name) => **name == *symbol,
        }
    }

    /// True for `*` and `VENUE:*`.
    pub fn is_pattern(&self) -> bool {
        !matches!(self, Self::Exact(_))
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::All => f.write_str("*"),
            Self::Venue(venue) => write!(f, "{venue}:*"),
            Self::Exact(name) => f.write_str(name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn star_matches_everything() {
        let all = Selector::parse("*").expect("valid");
        assert!(all.matches("NASDAQ:AAPL") && all.matches("AAPL"));
    }

    #[test]
    fn venue_pattern_matches_only_its_venue() {
        let fx = Selector::parse("FX:*").expect("valid");
        assert!(fx.matches("FX:EUR/USD"));
        assert!(!fx.matches("FXX:EUR/USD"));
        assert!(!fx.matches("EUR/USD"));
        assert!(!fx.matches("NASDAQ:FX"));
    }

    #[test]
    fn exact_is_case_sensitive() {
        let s = Selector::parse("NASDAQ:AAPL").expect("valid");
        assert!(s.matches("NASDAQ:AAPL"));
        assert!(!s.matches("nasdaq:AAPL"));
        assert!(!s.matches("AAPL"));
    }

    #[test]
    fn bad_patterns_are_rejected() {
        for bad in ["**", "FX:**", "*:*", "FX*", ":*", "A:B:*", ""] {
            assert!(Selector::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn display_round_trips() {
        for text in ["*", "FX:*", "NASDAQ:AAPL"] {
            assert_eq!(Selector::parse(text).expect("valid").to_string(), text);
        }
    }

    #[test]
    fn list_parse_names_first_bad_item() {
        assert_eq!(Selector::parse_list("A,B").expect("valid").len(), 2);
        assert_eq!(Selector::parse_list("A,b d,C"), Err(Error::BadSymbol("b d".into())));
    }
}
