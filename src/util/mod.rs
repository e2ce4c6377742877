//! Small helpers shared by tests, benchmarks and the CLI.

pub mod random;
