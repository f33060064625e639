//! Kinfold's benchmarks against well-known baselines, and the load generator.
//!
//! The library holds [`generator`], a deterministic synthetic event stream of a Chinese retail
//! chain (POS, e-commerce, WeChat and membership events) that the benchmarks and load tests draw
//! from; the benchmarks themselves live under `benches/`.

pub mod generator;
pub mod online_retail;

pub use generator::{Generator, GeneratorConfig};

/// `KINFOLD_BENCH_QUICK` is set (and not `0`): smaller sizes and fewer rounds, for CI.
pub fn quick() -> bool {
    std::env::var("KINFOLD_BENCH_QUICK").is_ok_and(|value| !value.is_empty() && value != "0")
}

/// The median of `runs` (sorted in place); the upper one of an even count.
pub fn median<T: Ord + Copy>(runs: &mut [T]) -> T {
    runs.sort();
    runs[runs.len() / 2]
}
