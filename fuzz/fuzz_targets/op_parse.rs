//! One WebSocket text message as a client op: whatever the bytes, parsing never panics, and
//! the reply or error the session would send is JSON that echoes a valid `id`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| gateway::fuzzing::parse_op(data));
