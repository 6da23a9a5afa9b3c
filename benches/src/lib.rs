//! # benches
//!
//! Tools that measure tickfeed: the criterion benches of the hot paths (in `benches/`) and
//! the fan-out load tool (`cargo run --release -p benches --bin fanout`), which any
//! WebSocket or SSE feed speaking tickfeed's protocol can be measured with.

pub mod fanout;
