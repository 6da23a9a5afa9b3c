//! The fan-out load tool: many connections, each subscribing to some symbols, measuring
//! delivery rate, end-to-end latency (receive time − the tick's `ts`) and `seq` continuity.
//!
//! The client is deliberately lean (raw sockets, a hand-written frame reader, byte scans
//! instead of full JSON parsing) so that it, not the server, is the last thing to saturate;
//! it reports its own CPU so a client-bound run is never mistaken for a server limit.

pub mod kernel_time;
pub mod procstat;
pub mod report;
pub mod scan;
pub mod sse;
pub mod ws;
