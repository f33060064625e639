//! Kinfold's benchmarks against well-known baselines, and the load generator.
//!
//! The library holds [`generator`], a deterministic synthetic event stream of a Chinese retail
//! chain (POS, e-commerce, WeChat and membership events) that the benchmarks and load tests draw
//! from; the benchmarks themselves live under `benches/`.

pub mod generator;

pub use generator::{Generator, GeneratorConfig};
