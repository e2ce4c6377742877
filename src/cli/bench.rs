//! `mlx-native bench`: the op suite on each device, a table, optional JSON.

use std::path::Path;

use indicatif::{ProgressBar, ProgressStyle};
use mlx_native::backend::cpu::CpuBackend;
use mlx_native::backend::Backend;
use mlx_native::bench::{gemm_direct, print_table, suite, time_case, BenchCase, BenchRow, Budget, Mode};
use mlx_native::{Error, Result};

use super::DeviceArg;

/// Runs the suite and reports.
pub fn run(device: DeviceArg, quick: bool, json: Option<&Path>) -> Result<()> {
    let mode = if quick { Mode::Quick } else { Mode::Full };
    let budget = if quick { Budget::quick() } else { Budget::full() };
    let cases = suite(mode);
    let gpu = match device {
        DeviceArg::Cpu => None,
        DeviceArg::Cuda => Some(super::gpu::backend()?),
        DeviceArg::All => match super::gpu::backend() {
            Ok(b) => Some(b),
            Err(e) => {
                eprintln!("note: benchmarking the CPU only: {e}");
                None
            }
        },
    };
    let run_cpu = device != DeviceArg::Cuda;
    let total = cases.len() * (run_cpu as usize + gpu.is_some() as usize) + if run_cpu { 2 } else { 0 };
    let bar = ProgressBar::new(total as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} {msg} [{elapsed}]")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut rows = Vec::new();
    if run_cpu {
        rows.extend(run_device(&CpuBackend::new(), &cases, budget, &bar)?);
        for n in [1024, 2048] {
            bar.set_message(format!("cpu GemmDirect {n}"));
            rows.push(gemm_direct(n, budget));
            bar.inc(1);
        }
    }
    if let Some(g) = &gpu {
        rows.extend(super::gpu::run_suite(g, &cases, budget, &bar)?);
    }
    bar.finish_and_clear();
    print_table(&rows);
    print_checks(&rows);
    if let Some(path) = json {
        let text = serde_json::to_string_pretty(&rows).map_err(|e| Error::arg("bench", e.to_string()))?;
        std::fs::write(path, text).map_err(|e| Error::io(path, e))?;
        eprintln!("wrote {} rows to {}", rows.len(), path.display());
    }
    Ok(())
}

/// Times every case on one backend.
pub fn run_device<B: Backend>(
    backend: &B,
    cases: &[BenchCase],
    budget: Budget,
    bar: &ProgressBar,
) -> Result<Vec<BenchRow>> {
    let mut rows = Vec::with_capacity(cases.len());
    for c in cases {
        bar.set_message(format!("{} {} {:?} {}", backend.name(), c.name, c.shape, c.dtype));
        let us = time_case(backend, c, budget)?;
        rows.push(BenchRow {
            op: c.name.to_string(),
            shape: c.shape.clone(),
            dtype: c.dtype.name().to_string(),
            device: backend.name().to_string(),
            median_us: us,
            gflops: c.flops.map(|f| f / us / 1e3),
            gbps: c.bytes.map(|b| b / us / 1e3),
        });
        bar.inc(1);
    }
    Ok(rows)
}

/// Ratios the issues ask for, computed from rows of this run.
fn print_checks(rows: &[BenchRow]) {
    for dev in ["cpu", "cuda"] {
        let find = |op: &str, shape: &[usize]| rows.iter().find(|r| r.device == dev && r.op == op && r.shape == shape);
        let copies: Vec<&BenchRow> = rows.iter().filter(|r| r.device == dev && r.op == "Copy").collect();
        let Some(copy) = copies.iter().max_by(|a, b| a.shape[0].cmp(&b.shape[0])) else { continue };
        let ceiling = copy.gbps.unwrap_or(f64::NAN);
        println!("\n{dev}: copy bandwidth {ceiling:.1} GB/s (Copy {:?})", copy.shape);
        for r in rows.iter().filter(|r| r.device == dev && r.gbps.is_some() && r.op != "Copy") {
            println!(
                "  {:<10} {:<16} {:>6.1}% of copy bandwidth",
                r.op,
                format!("{:?}", r.shape),
                100.0 * r.gbps.unwrap_or(0.0) / ceiling
            );
        }
        if dev == "cpu" {
            for n in [1024, 2048] {
                if let (Some(e), Some(g)) = (find("MatMul", &[n, n, n]), find("GemmDirect", &[n, n, n])) {
                    println!(
                        "  MatMul f32 {n}^3: engine {:.1} GFLOP/s = {:.2}x gemm direct",
                        e.gflops.unwrap_or(0.0),
                        g.median_us / e.median_us
                    );
                }
            }
        }
    }
}
