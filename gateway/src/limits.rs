//! The limits that protect the server from its clients: live streaming connections per
//! server and per IP (checked before any upgrade or stream starts), and ops per second per
//! WebSocket connection.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{Arc, Mutex, PoisonError},
    time::Instant,
};

use crate::reply::WireError;

/// Live WebSocket and SSE connections, in total and per client IP.
#[derive(Debug)]
pub(crate) struct ConnectionLimits {
    max_total: usize,
    max_per_ip: usize,
    // A std mutex: the critical sections are a few integer updates and never span an await.
    counts: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

/// Holds one connection's place; dropping it gives the place back.
#[derive(Debug)]
pub(crate) struct ConnectionGuard {
    limits: Arc<ConnectionLimits>,
    ip: IpAddr,
}

impl ConnectionLimits {
    /// Limits of `max_total` connections, `max_per_ip` of them from one address.
    pub(crate) fn new(max_total: usize, max_per_ip: usize) -> Arc<Self> {
        Arc::new(Self { max_total, max_per_ip, counts: Mutex::new(Counts::default()) })
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, Counts> {
        // Counts stay consistent even if a holder panicked: each update is one statement.
        self.counts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes a place for a connection from `ip`.
    ///
    /// # Errors
    /// The `limit` wire error (HTTP 503) naming which limit was hit.
    pub(crate) fn acquire(self: &Arc<Self>, ip: IpAddr) -> Result<ConnectionGuard, WireError> {
        // IPv4 clients of a dual-stack listener appear as ::ffff:a.b.c.d; count them as IPv4.
        let ip = ip.to_canonical();
        let mut counts = self.counts();
        if counts.total >= self.max_total {
            return Err(WireError::too_many_connections());
        }
        let from_ip = counts.per_ip.entry(ip).or_insert(0);
        if *from_ip >= self.max_per_ip {
            return Err(WireError::too_many_connections_from_ip());
        }
        *from_ip += 1;
        counts.total += 1;
        Ok(ConnectionGuard { limits: Arc::clone(self), ip })
    }

    /// Live connections now.
    pub(crate) fn live(&self) -> usize {
        self.counts().total
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        let mut counts = self.limits.counts();
        counts.total = counts.total.saturating_sub(1);
        if let Some(from_ip) = counts.per_ip.get_mut(&self.ip) {
            *from_ip -= 1;
            // Forget idle addresses so the map does not grow with every client ever seen.
            if *from_ip == 0 {
                counts.per_ip.remove(&self.ip);
            }
        }
    }
}

/// How many consecutive over-limit seconds count as sustained abuse (close 1008).
pub(crate) const ABUSE_SECONDS: u32 = 5;

/// What to do with one client op.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Within the budget.
    Allowed,
    /// Over the budget: answer with a `limit` error, do not perform it.
    Limited,
    /// Over the budget for [`ABUSE_SECONDS`] consecutive seconds: close 1008.
    Abuse,
}

/// Ops per second for one connection, in one-second windows counted from its start.
///
/// Fixed windows rather than a token bucket: the rule a client reads ("at most N per
/// second") maps to it directly, and it needs no floating point per op.
#[derive(Debug)]
pub(crate) struct OpsLimiter {
    max_per_sec: u32,
    started: Instant,
    /// Whole seconds since `started` (32 bits: every connection holds one, and 136 years of
    /// windows is enough).
    window: u32,
    count: u32,
    /// The last window that went over the limit, and how many in a row did.
    last_over: Option<u32>,
    strikes: u32,
}

impl OpsLimiter {
    /// A limiter allowing `max_per_sec` ops in each second after `started`.
    pub(crate) fn new(max_per_sec: u32, started: Instant) -> Self {
        Self { max_per_sec, started, window: 0, count: 0, last_over: None, strikes: 0 }
    }

    /// Counts one op arriving at `now`.
    pub(crate) fn check(&mut self, now: Instant) -> Verdict {
        let secs = now.saturating_duration_since(self.started).as_secs();
        let window = u32::try_from(secs).unwrap_or(u32::MAX);
        if window != self.window {
            self.window = window;
            self.count = 0;
        }
        self.count = self.count.saturating_add(1);
        if self.count <= self.max_per_sec {
            return Verdict::Allowed;
        }
        if self.last_over != Some(window) {
            // First op over the limit in this window: a strike, continuing the run only if
            // the previous window was over too.
            let run_goes_on = self.last_over.is_some_and(|w| w.checked_add(1) == Some(window));
            self.strikes = if run_goes_on { self.strikes + 1 } else { 1 };
            self.last_over = Some(window);
        }
        if self.strikes >= ABUSE_SECONDS {
            Verdict::Abuse
        } else {
            Verdict::Limited
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("valid address")
    }

    #[test]
    fn per_ip_and_total_limits_hold_and_release() {
        let limits = ConnectionLimits::new(3, 2);
        let a1 = limits.acquire(ip("10.0.0.1")).expect("first");
        let _a2 = limits.acquire(ip("10.0.0.1")).expect("second");
        assert_eq!(limits.acquire(ip("10.0.0.1")).map(|_| ()), Err(WireError::too_many_connections_from_ip()));
        let _b1 = limits.acquire(ip("10.0.0.2")).expect("other address");
        assert_eq!(limits.acquire(ip("10.0.0.3")).map(|_| ()), Err(WireError::too_many_connections()));
        assert_eq!(limits.live(), 3);
        drop(a1);
        assert_eq!(limits.live(), 2);
        assert!(limits.acquire(ip("10.0.0.1")).is_ok());
    }

    #[test]
    fn mapped_ipv4_counts_as_ipv4() {
        let limits = ConnectionLimits::new(10, 1);
        let _v4 = limits.acquire(ip("10.0.0.1")).expect("first");
        assert!(limits.acquire(ip("::ffff:10.0.0.1")).is_err());
    }

    #[test]
    fn ops_over_the_limit_are_refused_and_the_window_resets() {
        let start = Instant::now();
        let mut limiter = OpsLimiter::new(3, start);
        let verdicts: Vec<_> = (0..5).map(|_| limiter.check(start)).collect();
        assert_eq!(
            verdicts,
            [Verdict::Allowed, Verdict::Allowed, Verdict::Allowed, Verdict::Limited, Verdict::Limited]
        );
        assert_eq!(limiter.check(start + Duration::from_millis(1000)), Verdict::Allowed);
    }

    #[test]
    fn five_consecutive_over_limit_seconds_are_abuse() {
        let start = Instant::now();
        let mut limiter = OpsLimiter::new(1, start);
        for second in 0..u64::from(ABUSE_SECONDS) {
            let now = start + Duration::from_secs(second);
            assert_eq!(limiter.check(now), Verdict::Allowed);
            let expected = if second + 1 == u64::from(ABUSE_SECONDS) { Verdict::Abuse } else { Verdict::Limited };
            assert_eq!(limiter.check(now), expected, "second {second}");
        }
    }

    #[test]
    fn a_calm_second_breaks_the_abuse_run() {
        let start = Instant::now();
        let mut limiter = OpsLimiter::new(1, start);
        for second in [0, 1, 2, 3, 5, 6, 7] {
            let now = start + Duration::from_secs(second);
            limiter.check(now);
            assert_eq!(limiter.check(now), Verdict::Limited, "second {second}");
        }
    }
}
