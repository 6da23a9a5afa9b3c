//! What a verified token allows: the patterns its holder may subscribe to, and until when.
//!
//! Entitlements are never narrowed: a request is allowed only when one entitlement pattern
//! covers it whole. Narrowing (`*` by a `NASDAQ:*` holder quietly becoming `NASDAQ:*`) would
//! make the reply lie about what the client gets; refusing it with `forbidden` tells the
//! client exactly what to ask for instead. Because only covered selectors ever reach the
//! engine subscriber, no tick outside the entitlement can reach the holder.

use std::{
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use feed_engine::Selector;
use tokio::time::Instant;

use crate::reply::WireError;

/// Longest a grant is honoured: an `exp` further out (up to `u64::MAX` seconds, which no
/// clock can add) counts as this, so the arithmetic below can never overflow.
const LONGEST: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// The rights of one connection. With authentication off, [`Grant::everything`].
///
/// One pointer: every connection holds one for its whole life, and with authentication
/// off it is just `None`.
#[derive(Debug, Clone)]
pub(crate) struct Grant(Option<Arc<Claims>>);

/// What a verified token says.
#[derive(Debug)]
struct Claims {
    /// The token's `exp`, seconds since the Unix epoch.
    exp_s: u64,
    /// When the connection must end: `exp` plus the clock leeway, on the runtime's clock.
    expires_at: Instant,
    /// The `symbols` claim; `None` (claim absent) allows every symbol.
    patterns: Option<Box<[Selector]>>,
}

impl Grant {
    /// Everything, forever: authentication is off.
    pub(crate) fn everything() -> Self {
        Self(None)
    }

    /// A token's grant: `exp_s` from its `exp` claim, `patterns` from its `symbols` claim.
    pub(crate) fn new(exp_s: u64, leeway: Duration, patterns: Option<Vec<Selector>>) -> Self {
        // The token's clock is the wall clock; timers run on the runtime's monotonic clock,
        // so convert once, here.
        let left = Duration::from_secs(exp_s)
            .checked_add(leeway)
            .and_then(|since_epoch| UNIX_EPOCH.checked_add(since_epoch))
            .map_or(LONGEST, |end| end.duration_since(SystemTime::now()).unwrap_or(Duration::ZERO))
            .min(LONGEST);
        let expires_at = Instant::now() + left;
        Self(Some(Arc::new(Claims { exp_s, expires_at, patterns: patterns.map(Into::into) })))
    }

    /// The token's `exp` (seconds since the Unix epoch), echoed in `authenticated`.
    pub(crate) fn exp_s(&self) -> Option<u64> {
        self.0.as_ref().map(|claims| claims.exp_s)
    }

    /// When a connection holding this grant must end (`exp` + leeway).
    pub(crate) fn expires_at(&self) -> Option<Instant> {
        self.0.as_ref().map(|claims| claims.expires_at)
    }

    /// May the holder subscribe to `wanted`? Only when one entitlement pattern covers it.
    pub(crate) fn permits(&self, wanted: &Selector) -> bool {
        let patterns = self.0.as_ref().and_then(|claims| claims.patterns.as_deref());
        patterns.is_none_or(|patterns| patterns.iter().any(|p| covers(p, wanted)))
    }

    /// The selectors of `wanted` the holder may not have, each once, in order.
    pub(crate) fn forbidden<'a>(&self, wanted: impl IntoIterator<Item = &'a Selector>) -> Vec<Selector> {
        let mut out: Vec<Selector> = Vec::new();
        for selector in wanted {
            if !self.permits(selector) && !out.contains(selector) {
                out.push(selector.clone());
            }
        }
        out
    }

    /// `Ok` when every selector is permitted.
    ///
    /// # Errors
    /// A `forbidden` wire error naming the selectors that are not (HTTP 403).
    pub(crate) fn check(&self, wanted: &[Selector]) -> Result<(), WireError> {
        let forbidden = self.forbidden(wanted);
        if forbidden.is_empty() {
            Ok(())
        } else {
            Err(WireError::forbidden(&forbidden))
        }
    }
}

/// Does entitlement `pattern` cover all of `wanted`? `*` covers everything; `VENUE:*` covers
/// itself and that venue's symbols; a symbol covers only itself.
fn covers(pattern: &Selector, wanted: &Selector) -> bool {
    match (pattern, wanted) {
        (Selector::All, _) => true,
        (Selector::Venue(have), Selector::Venue(want)) => have == want,
        (_, Selector::Exact(symbol)) => pattern.matches(symbol),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now_s() -> u64 {
        SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970").as_secs()
    }

    fn selector(text: &str) -> Selector {
        Selector::parse(text).expect("valid selector")
    }

    fn grant(patterns: &[&str]) -> Grant {
        Grant::new(now_s() + 3600, Duration::ZERO, Some(patterns.iter().map(|p| selector(p)).collect()))
    }

    #[test]
    fn a_symbol_is_covered_by_star_its_venue_or_itself() {
        let wanted = selector("NASDAQ:AAPL");
        for patterns in [&["*"][..], &["NASDAQ:*"], &["NASDAQ:AAPL"], &["FX:*", "NASDAQ:AAPL"]] {
            assert!(grant(patterns).permits(&wanted), "{patterns:?}");
        }
        for patterns in [&["NYSE:*"][..], &["NASDAQ:MSFT"], &["AAPL"], &[]] {
            assert!(!grant(patterns).permits(&wanted), "{patterns:?}");
        }
    }

    #[test]
    fn patterns_are_never_narrowed() {
        let holder = grant(&["NASDAQ:*", "FX:EUR/USD"]);
        assert!(!holder.permits(&selector("*")));
        assert!(!holder.permits(&selector("FX:*")));
        assert!(holder.permits(&selector("NASDAQ:*")));
        assert!(!grant(&["NASDAQ:AAPL"]).permits(&selector("NASDAQ:*")));
        assert!(grant(&["*"]).permits(&selector("*")));
    }

    #[test]
    fn no_symbols_claim_allows_everything() {
        let all = Grant::new(now_s() + 3600, Duration::ZERO, None);
        assert!(all.permits(&selector("*")));
        assert!(Grant::everything().permits(&selector("*")));
        assert_eq!(Grant::everything().expires_at(), None);
    }

    #[test]
    fn forbidden_lists_each_refused_selector_once() {
        let holder = grant(&["NASDAQ:*"]);
        let wanted = [selector("*"), selector("NASDAQ:AAPL"), selector("FX:*"), selector("*")];
        assert_eq!(holder.forbidden(&wanted), [selector("*"), selector("FX:*")]);
        assert!(holder.check(&wanted[1..2]).is_ok());
        let error = holder.check(&wanted).expect_err("forbidden");
        assert!(error.message.contains("FX:*"), "{}", error.message);
    }

    #[test]
    fn an_exp_beyond_any_clock_does_not_overflow() {
        for exp in [u64::MAX, u64::MAX / 2, i64::MAX as u64 + 1] {
            let expires = Grant::new(exp, Duration::from_secs(5), None).expires_at().expect("expires");
            assert!(expires > Instant::now() + Duration::from_secs(3600 * 24 * 365));
        }
    }

    #[test]
    fn expiry_includes_the_leeway() {
        let now_s = now_s();
        let strict = Grant::new(now_s + 10, Duration::ZERO, None).expires_at().expect("expires");
        let lenient = Grant::new(now_s + 10, Duration::from_secs(5), None).expires_at().expect("expires");
        assert!(lenient.duration_since(strict) >= Duration::from_millis(4_900));
        let past = Grant::new(now_s - 100, Duration::from_secs(5), None).expires_at().expect("expires");
        assert!(past <= Instant::now());
    }
}
