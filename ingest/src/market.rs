//! The simulated market: which symbols exist, how their prices move, and what each tick
//! carries. Pure and deterministic: a [`Market`] built from the same symbol count and seed
//! yields the same sequence of quotes on every run of the same build, whatever the tick rate
//! or the machine's speed, because nothing here reads a clock.
//!
//! - Symbols: about twenty real instruments across venues (`NASDAQ:AAPL`, `NYSE:IBM`,
//!   `COINBASE:BTC-USD`, `FX:EUR/USD`, …) with realistic start prices, then `SIM:S0001`,
//!   `SIM:S0002`, … so that any count gives exactly that many distinct valid symbols.
//! - Prices: each symbol's mid follows a geometric Brownian motion with no drift, one step
//!   per tick of that symbol, each step standing for one second of trading at the
//!   instrument's annual volatility. The mid is then quoted on the instrument's tick grid
//!   with a spread of about a basis point (at least one tick), so `bid < ask` always holds
//!   and both stay positive.
//! - Trades: equities and crypto trade at the bid or the ask, FX publishes the mid (as the
//!   recorded FX data does). Sizes come in lots: round lots of shares, fractions of a coin,
//!   FX in units of 100,000.
//! - Which symbol ticks: first every symbol once, in order, so the whole list exists from
//!   the start; then a weighted draw in which the big names tick more often.
//!
//! The generator is ChaCha8, chosen over `StdRng` because rand does not promise `StdRng`'s
//! algorithm stays the same across releases, and the seed is part of the contract.

use std::sync::Arc;

use feed_engine::Quote;
use rand::{Rng as _, SeedableRng as _};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution as _, Exp1, StandardNormal};

/// An asset class: sets price precision, trading hours, spread and lot sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Equity,
    Crypto,
    Fx,
}

impl Class {
    /// Trading seconds per year, so that an annual volatility becomes a per-second one.
    fn seconds_per_year(self) -> f64 {
        match self {
            Self::Equity => 252.0 * 6.5 * 3600.0,
            Self::Crypto => 365.0 * 86_400.0,
            Self::Fx => 260.0 * 86_400.0,
        }
    }

    /// Typical quoted spread as a fraction of the price.
    fn spread(self) -> f64 {
        match self {
            Self::Equity => 1.0e-4,
            Self::Crypto => 0.5e-4,
            Self::Fx => 0.6e-4,
        }
    }
}

/// A built-in instrument: symbol, class, start price, decimals, annual volatility, and how
/// often it ticks relative to the others.
struct Listing {
    symbol: &'static str,
    class: Class,
    price: f64,
    decimals: i32,
    annual_volatility: f64,
    weight: f64,
}

const fn listing(
    symbol: &'static str,
    class: Class,
    price: f64,
    decimals: i32,
    annual_volatility: f64,
    weight: f64,
) -> Listing {
    Listing { symbol, class, price, decimals, annual_volatility, weight }
}

/// Interleaved by venue so that a small `--sim-symbols` still shows every kind of market.
const LISTINGS: [Listing; 21] = [
    listing("NASDAQ:AAPL", Class::Equity, 189.12, 2, 0.25, 5.0),
    listing("COINBASE:BTC-USD", Class::Crypto, 65_000.00, 2, 0.60, 5.0),
    listing("FX:EUR/USD", Class::Fx, 1.08500, 5, 0.07, 5.0),
    listing("NYSE:IBM", Class::Equity, 182.30, 2, 0.22, 2.0),
    listing("NASDAQ:MSFT", Class::Equity, 415.30, 2, 0.24, 4.0),
    listing("COINBASE:ETH-USD", Class::Crypto, 3_400.00, 2, 0.75, 4.0),
    listing("FX:USD/JPY", Class::Fx, 151.200, 3, 0.09, 4.0),
    listing("NYSE:BAC", Class::Equity, 38.50, 2, 0.28, 3.0),
    listing("NASDAQ:NVDA", Class::Equity, 120.50, 2, 0.50, 5.0),
    listing("COINBASE:SOL-USD", Class::Crypto, 150.00, 2, 0.90, 3.0),
    listing("FX:GBP/USD", Class::Fx, 1.27000, 5, 0.08, 3.0),
    listing("NYSE:JPM", Class::Equity, 200.40, 2, 0.22, 2.5),
    listing("NASDAQ:AMZN", Class::Equity, 185.00, 2, 0.32, 4.0),
    listing("FX:AUD/USD", Class::Fx, 0.66000, 5, 0.10, 2.0),
    listing("NYSE:KO", Class::Equity, 62.10, 2, 0.15, 1.5),
    listing("NASDAQ:GOOGL", Class::Equity, 170.20, 2, 0.30, 3.5),
    listing("FX:USD/CHF", Class::Fx, 0.90000, 5, 0.08, 1.5),
    listing("NYSE:XOM", Class::Equity, 115.20, 2, 0.25, 2.0),
    listing("NASDAQ:TSLA", Class::Equity, 250.00, 2, 0.60, 5.0),
    listing("NASDAQ:META", Class::Equity, 500.10, 2, 0.40, 3.5),
    listing("ARCA:SPY", Class::Equity, 520.00, 2, 0.15, 5.0),
];

/// Notional of a typical crypto trade in dollars, from which coin lot sizes follow.
const CRYPTO_TRADE_DOLLARS: f64 = 5_000.0;

/// How many lots a trade or a resting quote has: at least one, exponentially distributed
/// so that most are small and a few are large, as on a real tape.
#[derive(Debug, Clone, Copy)]
struct Lots {
    /// Size of one lot in units of `10^-size_decimals`.
    lot_units: u64,
    /// Mean number of lots beyond the first.
    mean_extra: f64,
}

impl Lots {
    fn sample(self, rng: &mut ChaCha8Rng) -> u64 {
        let extra: f64 = Exp1.sample(rng);
        // Capped so that a freak draw cannot overflow; 1000 lots is already a block trade.
        let lots = 1 + (extra * self.mean_extra).min(1000.0) as u64;
        lots * self.lot_units
    }
}

/// One simulated instrument and its state.
#[derive(Debug, Clone)]
struct Instrument {
    class: Class,
    /// `10^decimals` of the price grid.
    price_scale: f64,
    /// Standard deviation of the log price per tick.
    step_volatility: f64,
    /// `10^decimals` of sizes.
    size_scale: f64,
    trade: Lots,
    resting: Lots,
    /// Current mid price, off the grid.
    mid: f64,
}

impl Instrument {
    fn new(class: Class, price: f64, decimals: i32, annual_volatility: f64) -> Self {
        let (size_decimals, trade, resting) = match class {
            Class::Equity => (0, Lots { lot_units: 100, mean_extra: 2.0 }, Lots { lot_units: 100, mean_extra: 5.0 }),
            Class::Fx => {
                (0, Lots { lot_units: 100_000, mean_extra: 5.0 }, Lots { lot_units: 1_000_000, mean_extra: 3.0 })
            }
            Class::Crypto => {
                let units_per_trade = (CRYPTO_TRADE_DOLLARS / price * 1e4).max(1.0);
                (
                    4,
                    Lots { lot_units: 1, mean_extra: units_per_trade },
                    Lots { lot_units: 1, mean_extra: 4.0 * units_per_trade },
                )
            }
        };
        Self {
            class,
            price_scale: 10f64.powi(decimals),
            step_volatility: annual_volatility / class.seconds_per_year().sqrt(),
            size_scale: 10f64.powi(size_decimals),
            trade,
            resting,
            mid: price,
        }
    }
}

/// One generated tick, without its symbol name (so a batch of them does not borrow the
/// market while it keeps generating).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Step {
    index: usize,
    price: f64,
    size: f64,
    bid: f64,
    ask: f64,
    bid_size: f64,
    ask_size: f64,
}

impl Step {
    /// The quote for this step, naming its symbol from `names` (the market's [`Market::names`]).
    pub(crate) fn quote<'n>(&self, names: &'n [Box<str>]) -> Quote<'n> {
        Quote {
            symbol: &names[self.index],
            price: self.price,
            size: Some(self.size),
            bid: Some(self.bid),
            ask: Some(self.ask),
            bid_size: Some(self.bid_size),
            ask_size: Some(self.ask_size),
            src_ts_us: None,
        }
    }
}

/// See the module docs.
#[derive(Debug, Clone)]
pub struct Market {
    names: Arc<[Box<str>]>,
    instruments: Vec<Instrument>,
    /// Running sums of the symbols' weights, for the weighted draw.
    cumulative_weights: Vec<f64>,
    /// Symbols that have had their opening tick; the draw starts once all have.
    opened: usize,
    rng: ChaCha8Rng,
}

impl Market {
    /// A market of exactly `symbols` symbols (at least one) driven by `seed`.
    pub fn new(symbols: usize, seed: u64) -> Self {
        let symbols = symbols.max(1);
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut names = Vec::with_capacity(symbols);
        let mut instruments = Vec::with_capacity(symbols);
        let mut weights = Vec::with_capacity(symbols);
        for listing in LISTINGS.iter().take(symbols) {
            names.push(Box::from(listing.symbol));
            instruments.push(Instrument::new(
                listing.class,
                listing.price,
                listing.decimals,
                listing.annual_volatility,
            ));
            weights.push(listing.weight);
        }
        for number in 1..=symbols.saturating_sub(LISTINGS.len()) {
            // Log-uniform between $5 and $500, on the cent grid, like a broad equity index.
            let price = (rng.random_range(5f64.ln()..500f64.ln()).exp() * 100.0).round() / 100.0;
            let volatility = rng.random_range(0.15..0.60);
            names.push(format!("SIM:S{number:04}").into_boxed_str());
            instruments.push(Instrument::new(Class::Equity, price, 2, volatility));
            weights.push(rng.random_range(0.2..1.5));
        }
        let cumulative_weights = weights
            .iter()
            .scan(0.0, |total, weight| {
                *total += weight;
                Some(*total)
            })
            .collect();
        Self { names: names.into(), instruments, cumulative_weights, opened: 0, rng }
    }

    /// The symbol names, in the order of their opening ticks.
    pub fn symbols(&self) -> impl ExactSizeIterator<Item = &str> {
        self.names.iter().map(|name| &**name)
    }

    /// The names, shared, for building quotes from [`Step`]s while the market moves on.
    pub(crate) fn names(&self) -> Arc<[Box<str>]> {
        Arc::clone(&self.names)
    }

    /// The next quote of the market.
    pub fn next_quote(&mut self) -> Quote<'_> {
        let step = self.step();
        step.quote(&self.names)
    }

    /// Moves one symbol and returns its tick.
    pub(crate) fn step(&mut self) -> Step {
        let index = self.pick();
        let rng = &mut self.rng;
        let instrument = &mut self.instruments[index];
        let z: f64 = StandardNormal.sample(rng);
        let sigma = instrument.step_volatility;
        // Itô correction: keeps the expected price constant under zero drift.
        instrument.mid *= (sigma * z - 0.5 * sigma * sigma).exp();

        let scale = instrument.price_scale;
        let spread_ticks = ((instrument.mid * instrument.class.spread() * scale).round() as i64).max(1)
            + i64::from(rng.random_bool(0.3));
        let bid_ticks = ((instrument.mid * scale - spread_ticks as f64 / 2.0).floor() as i64).max(1);
        let ask_ticks = bid_ticks + spread_ticks;
        // Integers divided by a power of ten: the nearest double to the decimal, so prices
        // print as `189.12`, not `189.12000000000001`.
        let bid = bid_ticks as f64 / scale;
        let ask = ask_ticks as f64 / scale;
        let hits_bid = rng.random_bool(0.5);
        let price = match instrument.class {
            Class::Fx => (bid_ticks + ask_ticks) as f64 / (2.0 * scale),
            Class::Equity | Class::Crypto if hits_bid => bid,
            Class::Equity | Class::Crypto => ask,
        };
        let size_scale = instrument.size_scale;
        let trade = instrument.trade;
        let resting = instrument.resting;
        Step {
            index,
            price,
            size: trade.sample(rng) as f64 / size_scale,
            bid,
            ask,
            bid_size: resting.sample(rng) as f64 / size_scale,
            ask_size: resting.sample(rng) as f64 / size_scale,
        }
    }

    fn pick(&mut self) -> usize {
        if self.opened < self.instruments.len() {
            self.opened += 1;
            return self.opened - 1;
        }
        let total = self.cumulative_weights.last().copied().unwrap_or(0.0);
        let draw = self.rng.random::<f64>() * total;
        let index = self.cumulative_weights.partition_point(|&sum| sum <= draw);
        index.min(self.instruments.len() - 1)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use feed_engine::symbol::is_valid_symbol;

    use super::*;

    /// Quotes as owned values, comparable across markets.
    fn stream(symbols: usize, seed: u64, count: usize) -> Vec<(String, Quote<'static>)> {
        let mut market = Market::new(symbols, seed);
        (0..count)
            .map(|_| {
                let quote = market.next_quote();
                (quote.symbol.to_owned(), Quote { symbol: "", ..quote })
            })
            .collect()
    }

    #[test]
    fn gives_exactly_the_requested_number_of_valid_distinct_symbols() {
        for count in [1, 5, 21, 22, 100, 12_345] {
            let market = Market::new(count, 1);
            let names: HashSet<&str> = market.symbols().collect();
            assert_eq!(names.len(), count);
            assert_eq!(market.symbols().len(), count);
            assert!(market.symbols().all(is_valid_symbol), "{count}");
        }
        let market = Market::new(23, 1);
        let names: Vec<&str> = market.symbols().collect();
        assert_eq!(&names[..3], ["NASDAQ:AAPL", "COINBASE:BTC-USD", "FX:EUR/USD"]);
        assert_eq!(&names[21..], ["SIM:S0001", "SIM:S0002"]);
    }

    #[test]
    fn every_symbol_ticks_first_in_order() {
        let mut market = Market::new(50, 9);
        let names: Vec<String> = market.symbols().map(str::to_owned).collect();
        for name in &names {
            assert_eq!(market.next_quote().symbol, name);
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_stream() {
        assert_eq!(stream(100, 42, 5_000), stream(100, 42, 5_000));
    }

    #[test]
    fn a_different_seed_gives_a_different_stream() {
        assert_ne!(stream(100, 42, 500), stream(100, 43, 500));
    }

    #[test]
    fn quotes_are_sane() {
        for (symbol, quote) in stream(200, 7, 50_000) {
            let (bid, ask) = (quote.bid.expect("bid"), quote.ask.expect("ask"));
            assert!(bid > 0.0 && bid < ask, "{symbol}: {bid} {ask}");
            assert!(quote.price >= bid && quote.price <= ask, "{symbol}: {quote:?}");
            assert!(quote.size.expect("size") > 0.0);
            assert!(quote.bid_size.expect("bid size") > 0.0 && quote.ask_size.expect("ask size") > 0.0);
            assert!(quote.check_finite().is_ok());
            assert_eq!(quote.src_ts_us, None);
        }
    }

    #[test]
    fn prices_stay_near_their_start_and_print_on_their_grid() {
        let mut market = Market::new(21, 3);
        let mut last = std::collections::HashMap::new();
        for _ in 0..100_000 {
            let quote = market.next_quote();
            last.insert(quote.symbol.to_owned(), quote.bid.expect("bid"));
        }
        let aapl = last["NASDAQ:AAPL"];
        assert!((150.0..230.0).contains(&aapl), "{aapl}");
        let eur = last["FX:EUR/USD"];
        assert!((1.0..1.2).contains(&eur), "{eur}");
        let text = aapl.to_string();
        assert!(text.split('.').nth(1).is_none_or(|decimals| decimals.len() <= 2), "{text}");
    }

    #[test]
    fn busy_names_tick_more_often_than_generated_ones() {
        let mut market = Market::new(1000, 5);
        let mut aapl = 0;
        let mut generated = 0;
        for _ in 0..200_000 {
            let symbol = market.next_quote().symbol;
            if symbol == "NASDAQ:AAPL" {
                aapl += 1;
            } else if symbol == "SIM:S0500" {
                generated += 1;
            }
        }
        assert!(aapl > 2 * generated, "{aapl} vs {generated}");
    }
}
