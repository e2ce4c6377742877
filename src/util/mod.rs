//! Small helpers shared by tests, benchmarks and the CLI.

pub mod random;

/// Reports a skipped test (no GPU, model not fetched) on stderr directly, past the test harness's capture of
/// `println!`, so every test run shows what did not run.
pub fn skipped(msg: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "{msg}");
}
