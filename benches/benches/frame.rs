//! WebSocket framing of ticks: a server frame header written in front of each tick's shared
//! JSON bytes, straight into the connection's output buffer, the way a session batches the
//! ticks it drains (one buffer, one write syscall). `copy_only` is the bare copy of the same
//! bytes, so the difference is what framing costs.
#![allow(missing_docs)] // criterion's macros generate undocumented items

mod corpus;

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use gateway::frame::{write_header, Opcode};

fn framing(c: &mut Criterion) {
    let (_engine, ticks) = corpus::framing_ticks();
    let mut group = c.benchmark_group("ws_frame");
    group.throughput(Throughput::Elements(ticks.len() as u64));
    corpus::bench_copy_only(&mut group, &ticks);
    let mut out = Vec::with_capacity(64 * 1024);
    for (name, snapshot, conflated) in [("live", false, false), ("snapshot", true, false), ("conflated", false, true)] {
        group.bench_function(name, |b| {
            b.iter(|| {
                out.clear();
                for tick in &ticks {
                    let (snapshot, conflated) = (black_box(snapshot), black_box(conflated));
                    write_header(&mut out, Opcode::Text, tick.json_len_with_flags(snapshot, conflated));
                    tick.write_json_with_flags(&mut out, snapshot, conflated);
                }
                black_box(out.len())
            });
        });
    }
    group.finish();
}

criterion_group!(benches, framing);
criterion_main!(benches);
