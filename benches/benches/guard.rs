//! The CI guard: instruction counts of the hot paths under valgrind (callgrind, through
//! gungraun), compared with `benches/guard/baseline.json` by `scripts/bench-guard`.
//!
//! Instruction counts, unlike times, do not depend on what else the machine is doing, so a
//! CI run can fail on a 10% regression without flaking. Each benchmark runs once: the inputs are built
//! by the argument expression in `#[bench::…]`, which gungraun evaluates outside the
//! measured function, and every one of them is warmed (parser scratch buffers grown,
//! symbols known to the engine, subscribers past their snapshots) so the count is the
//! steady path, not first-use setup. Each benchmark returns its state, so dropping it is
//! not counted either.
//!
//! Inputs are the same seeded corpus as the criterion benches, with a fixed engine epoch.
//! What still varies between runs: the clock read in `publish` (its microsecond value
//! always has 16 digits, so the encoder's work is the same) and the engine's symbol maps,
//! whose hasher is seeded per process. Together they move `publish` by at most a few
//! hundred instructions in half a million (under 0.1%, seen). Code that picks SIMD paths
//! at run time (simd-json, memchr, glibc) sees the CPU valgrind presents, AVX2 at most, so
//! counts agree across x86-64 machines with AVX2; a new toolchain shifts them a little.
#![allow(missing_docs)] // gungraun's macros generate undocumented items

mod corpus;

use std::{hint::black_box, sync::Arc};

use feed_engine::{Engine, Selector, Subscriber, Tick};
use gateway::{
    frame::{write_header, Opcode},
    sse::write_tick_event,
};
use gungraun::{library_benchmark, library_benchmark_group, main};
use ingest::{
    line::{CsvParser, JsonParser},
    TsUnit,
};

/// Items per benchmark: enough that a one-off branch does not dominate the count.
const BATCH: usize = 64;

struct JsonLines {
    parser: JsonParser,
    lines: Vec<Vec<u8>>,
}

fn json_lines() -> JsonLines {
    let mut parser = JsonParser::new(TsUnit::Ns);
    let lines: Vec<Vec<u8>> = corpus::samples(BATCH).iter().map(corpus::Sample::json_line).collect();
    // Parsing once (on copies) grows the scratch buffers and settles simd-json's CPU
    // feature dispatch, both first-use costs.
    for line in &lines {
        parser.parse(&mut line.clone()).expect("seeded lines are valid");
    }
    JsonLines { parser, lines }
}

#[library_benchmark]
#[bench::lines_64(json_lines())]
fn parse_json(mut state: JsonLines) -> JsonLines {
    for line in &mut state.lines {
        black_box(state.parser.parse(line).expect("seeded lines are valid"));
    }
    state
}

fn csv_lines() -> (CsvParser, Vec<Vec<u8>>) {
    let parser = CsvParser::from_header(corpus::CSV_HEADER, TsUnit::Ns).expect("the header names known columns");
    (parser, corpus::samples(BATCH).iter().map(corpus::Sample::csv_line).collect())
}

#[library_benchmark]
#[bench::lines_64(csv_lines())]
fn parse_csv(state: (CsvParser, Vec<Vec<u8>>)) -> (CsvParser, Vec<Vec<u8>>) {
    for line in &state.1 {
        black_box(state.0.parse(line).expect("seeded lines are valid"));
    }
    state
}

/// An engine that already knows every symbol (creating one is first-use cost, not the hot
/// path). The measured publishes allocate one new bus-ring chunk on the way, as the steady
/// path does once per `ring::CHUNK` ticks, at the same position on every run.
fn warm_engine() -> (Engine, Vec<corpus::Sample>) {
    let samples = corpus::samples(BATCH);
    let engine = corpus::engine(4096, 65_536);
    corpus::publish_all(&engine, &samples);
    (engine, samples)
}

#[library_benchmark]
#[bench::quotes_64(warm_engine())]
fn publish(state: (Engine, Vec<corpus::Sample>)) -> (Engine, Vec<corpus::Sample>) {
    for sample in &state.1 {
        black_box(state.0.publish(&sample.quote()).expect("valid"));
    }
    state
}

struct FanOut {
    engine: Engine,
    samples: Vec<corpus::Sample>,
    subscribers: Vec<Subscriber>,
}

fn fan_out(subscribers: usize) -> FanOut {
    let (engine, samples) = warm_engine();
    let subscribers = corpus::subscribers(&engine, subscribers, |_| vec![Selector::All]);
    FanOut { engine, samples, subscribers }
}

// Four ticks, each read by every subscriber.
#[library_benchmark]
#[bench::subscribers_100(fan_out(100))]
fn publish_fan_out(mut state: FanOut) -> FanOut {
    for sample in &state.samples[..4] {
        state.engine.publish(&sample.quote()).expect("valid");
        corpus::drain_all(&mut state.subscribers);
    }
    state
}

/// A dashboard's shape: each subscriber names 3 of the 32 symbols, so most positions it
/// reads are other symbols' ticks, passed over through the bus's symbol index.
fn filtered_fan_out(subscribers: usize) -> FanOut {
    let (engine, samples) = warm_engine();
    let names = engine.symbols();
    let subscribers = corpus::subscribers(&engine, subscribers, |i| corpus::three_symbols(&names, i));
    FanOut { engine, samples, subscribers }
}

// A burst of 32 ticks, then every subscriber drains what is its own.
#[library_benchmark]
#[bench::subscribers_100(filtered_fan_out(100))]
fn publish_fan_out_filtered(mut state: FanOut) -> FanOut {
    for sample in &state.samples[..32] {
        state.engine.publish(&sample.quote()).expect("valid");
    }
    corpus::drain_all(&mut state.subscribers);
    state
}

fn selectors_and_symbols() -> (Vec<Selector>, Vec<String>) {
    let selectors = ["NASDAQ:AAPL", "FX:*", "*"].map(|text| Selector::parse(text).expect("valid selector"));
    let symbols = corpus::samples(corpus::SYMBOLS).into_iter().map(|sample| sample.symbol).collect();
    (selectors.into(), symbols)
}

// Every symbol of the market against an exact symbol, a venue pattern and `*`.
#[library_benchmark]
#[bench::symbols_32(selectors_and_symbols())]
fn pattern_match(state: (Vec<Selector>, Vec<String>)) -> (Vec<Selector>, Vec<String>) {
    let (selectors, symbols) = &state;
    for selector in selectors {
        black_box(symbols.iter().filter(|symbol| black_box(selector).matches(symbol)).count());
    }
    state
}

struct Ticks {
    ticks: Vec<Arc<Tick>>,
    cursor_prefix: String,
    out: Vec<u8>,
}

fn ticks() -> Ticks {
    let (engine, _) = warm_engine();
    Ticks {
        ticks: corpus::last_ticks(&engine),
        cursor_prefix: corpus::cursor_prefix(&engine),
        out: Vec::with_capacity(64 * 1024),
    }
}

// The newest tick of each symbol framed as WebSocket text messages into one buffer.
#[library_benchmark]
#[bench::ticks_32(ticks())]
fn ws_frame(mut state: Ticks) -> Ticks {
    for tick in &state.ticks {
        let len = tick.json_len_with_flags(false, false);
        write_header(&mut state.out, Opcode::Text, len);
        tick.write_json_with_flags(&mut state.out, black_box(false), black_box(false));
    }
    state
}

// The newest tick of each symbol written as SSE tick events into one chunk.
#[library_benchmark]
#[bench::ticks_32(ticks())]
fn sse_event(mut state: Ticks) -> Ticks {
    for tick in &state.ticks {
        write_tick_event(&mut state.out, &state.cursor_prefix, tick, black_box(false), black_box(false));
    }
    state
}

library_benchmark_group!(
    name = hot_paths,
    benchmarks = [parse_json, parse_csv, publish, publish_fan_out, publish_fan_out_filtered, pattern_match, ws_frame, sse_event]
);

main!(library_benchmark_groups = hot_paths);
