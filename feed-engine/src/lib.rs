//! # feed-engine
//!
//! The broadcast heart of tickfeed. It owns symbols, per-symbol `seq`, the engine `epoch`,
//! the per-symbol history rings used for resume, last-value snapshots, pattern subscriptions
//! and the fan-out of every tick to every subscriber.
//!
//! It must not touch sockets or speak HTTP: sources push [`Quote`]s in through
//! [`Engine::publish`], transports pull [`Event`]s out through a [`Subscriber`].
//!
//! Publishing never waits for a subscriber: ticks go into one lock-free broadcast ring
//! ([`ring`]) that every subscriber reads at its own pace. A subscriber that falls off the
//! end of that ring is handled by its [`SlowConsumer`] policy, never by slowing anyone else.

mod bus;
pub mod cursor;
pub mod engine;
mod interest;
pub mod pattern;
pub mod registry;
pub mod ring;
pub mod subscriber;
pub mod symbol;
pub mod tick;

pub use cursor::{Cursor, CursorError};
pub use engine::{now_us, Engine, EngineConfig, EngineStats, Published, SlowConsumer};
pub use interest::WakeBatch;
pub use pattern::Selector;
pub use subscriber::{Drain, Event, Resume, Subscriber};
pub use tick::{Quote, Tick};

/// What can go wrong when a tick or a request enters the engine.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The text is neither a valid symbol nor a valid pattern (see the contract's grammar).
    #[error("bad symbol {0:?}: expected [VENUE:]SYMBOL, VENUE:* or *")]
    BadSymbol(String),
    /// A numeric field is not a finite number (NaN or infinity cannot be sent as JSON).
    #[error("field {0} is not a finite number")]
    NotFinite(&'static str),
}
