//! Benchmark rows: the JSON record and the printed table.

use serde::Serialize;

/// One measured case on one device. Serialised with exactly the keys of the JSON report.
#[derive(Clone, Debug, Serialize)]
pub struct BenchRow {
    /// Op name ("MatMul", "Copy", "GemmDirect", ...).
    pub op: String,
    /// [m, k, n] for MatMul and fused linear ops, [batch, heads, seq, head_dim] for Attention, else the shape.
    pub shape: Vec<usize>,
    /// "f32", "f16" or "bf16".
    pub dtype: String,
    /// "cpu" or "cuda".
    pub device: String,
    /// Median time of one run in microseconds.
    pub median_us: f64,
    /// Achieved GFLOP/s for compute-bound ops.
    pub gflops: Option<f64>,
    /// Achieved GB/s (bytes read + written) for memory-bound ops.
    pub gbps: Option<f64>,
}

impl BenchRow {
    fn key(&self) -> (&str, &[usize], &str) {
        (&self.op, &self.shape, &self.dtype)
    }
}

/// Speedup over the CPU for each non-CPU row that has a CPU twin (same op, shape and dtype).
pub fn speedups(rows: &[BenchRow]) -> Vec<Option<f64>> {
    rows.iter()
        .map(|r| {
            if r.device == "cpu" {
                return None;
            }
            rows.iter().find(|c| c.device == "cpu" && c.key() == r.key()).map(|c| c.median_us / r.median_us)
        })
        .collect()
}

/// Prints the rows as an aligned table, with the speedup column when a GPU ran.
pub fn print_table(rows: &[BenchRow]) {
    let sp = speedups(rows);
    let any_gpu = rows.iter().any(|r| r.device != "cpu");
    println!(
        "{:<22} {:<22} {:<5} {:<6} {:>12} {:>10} {:>10}{}",
        "op",
        "shape",
        "dtype",
        "device",
        "median_us",
        "GFLOP/s",
        "GB/s",
        if any_gpu { "    vs CPU" } else { "" }
    );
    for (r, s) in rows.iter().zip(sp) {
        let f = |v: Option<f64>| v.map(|x| format!("{x:.1}")).unwrap_or_else(|| "-".into());
        let speed = match (any_gpu, s) {
            (false, _) => String::new(),
            (true, Some(x)) => format!(" {x:>9.1}x"),
            (true, None) => format!(" {:>10}", "-"),
        };
        println!(
            "{:<22} {:<22} {:<5} {:<6} {:>12.1} {:>10} {:>10}{}",
            r.op,
            format!("{:?}", r.shape),
            r.dtype,
            r.device,
            r.median_us,
            f(r.gflops),
            f(r.gbps),
            speed
        );
    }
}
