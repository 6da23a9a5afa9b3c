//! Server-Sent Events framing of ticks: `id: <cursor>\nevent: tick\ndata: <json>\n\n` per
//! tick, appended to the stream's chunk the way the SSE task batches what it drains.
//! `copy_only` is the bare copy of the same JSON bytes, so the difference is what the event
//! framing (mostly formatting the cursor's position) costs.
#![allow(missing_docs)] // criterion's macros generate undocumented items

mod corpus;

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use gateway::sse::write_tick_event;

fn events(c: &mut Criterion) {
    let (engine, ticks) = corpus::framing_ticks();
    let prefix = corpus::cursor_prefix(&engine);
    let mut group = c.benchmark_group("sse_event");
    group.throughput(Throughput::Elements(ticks.len() as u64));
    corpus::bench_copy_only(&mut group, &ticks);
    let mut out = Vec::with_capacity(64 * 1024);
    for (name, snapshot, conflated) in [("live", false, false), ("snapshot", true, false), ("conflated", false, true)] {
        group.bench_function(name, |b| {
            b.iter(|| {
                out.clear();
                for tick in &ticks {
                    write_tick_event(&mut out, &prefix, tick, black_box(snapshot), black_box(conflated));
                }
                black_box(out.len())
            });
        });
    }
    group.finish();
}

criterion_group!(benches, events);
criterion_main!(benches);
