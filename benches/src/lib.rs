//! Benchmarks for tickfeed (see BENCHMARKS.md).
