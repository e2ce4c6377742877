//! `mlx-native bench`: the op suite on each device, a table, optional JSON.

use std::path::Path;

use indicatif::{ProgressBar, ProgressStyle};
use mlx_native::backend::cpu::CpuBackend;
use mlx_native::backend::Backend;
use mlx_native::bench::{
    block_tokens, gemm_direct, policy_label, print_table, suite, time_block, time_case, time_plan_replay, BenchCase,
    BenchRow, Budget, Mode,
};
use mlx_native::exec::{ExecOptions, Executor, PlacementPolicy};
use mlx_native::{Error, Result};

use super::DeviceArg;

/// Runs the suite (or the rows named in `only`, when not empty) and reports.
pub fn run(device: DeviceArg, quick: bool, json: Option<&Path>, only: &[String]) -> Result<()> {
    let mode = if quick { Mode::Quick } else { Mode::Full };
    let budget = if quick { Budget::quick() } else { Budget::full() };
    let wanted = |name: &str| only.is_empty() || only.iter().any(|o| o.eq_ignore_ascii_case(name));
    let known = ["GemmDirect", "PlanReplay100", "TransformerBlock"];
    let all = suite(mode);
    if let Some(bad) = only.iter().find(|o| {
        !all.iter().any(|c| c.name.eq_ignore_ascii_case(o)) && !known.iter().any(|k| k.eq_ignore_ascii_case(o))
    }) {
        let mut names: Vec<&str> = vec![];
        for n in all.iter().map(|c| c.name).chain(known) {
            if !names.contains(&n) {
                names.push(n);
            }
        }
        return Err(Error::arg("bench --only", format!("no benchmark named {bad:?}; names: {}", names.join(", "))));
    }
    let cases: Vec<BenchCase> = all.into_iter().filter(|c| wanted(c.name)).collect();
    let (direct, replay, blocks) = (wanted("GemmDirect"), wanted("PlanReplay100"), wanted("TransformerBlock"));
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
    let total = cases.len() * (run_cpu as usize + gpu.is_some() as usize) + if run_cpu && direct { 2 } else { 0 };
    let bar = ProgressBar::new(total as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} {msg} [{elapsed}]")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut rows = Vec::new();
    if run_cpu {
        rows.extend(run_device(&CpuBackend::new(), &cases, budget, &bar)?);
        for n in [1024, 2048].into_iter().filter(|_| direct) {
            bar.set_message(format!("cpu GemmDirect {n}"));
            rows.push(gemm_direct(n, budget));
            bar.inc(1);
        }
    }
    // Taken by value so the suite's GPU memory is released before the graph benchmarks open the device again.
    if let Some(g) = gpu {
        rows.extend(super::gpu::run_suite(&g, &cases, budget, &bar)?);
    }
    rows.extend(block_rows(device, quick, budget, &bar, replay, blocks)?);
    bar.finish_and_clear();
    print_table(&rows);
    print_checks(&rows);
    print_seed_table(&rows, &cases)?;
    if let Some(path) = json {
        let text = serde_json::to_string_pretty(&rows).map_err(|e| Error::arg("bench", e.to_string()))?;
        std::fs::write(path, text).map_err(|e| Error::io(path, e))?;
        eprintln!("wrote {} rows to {}", rows.len(), path.display());
    }
    Ok(())
}

/// TransformerBlock rows: every placement policy the devices allow, over token counts and widths.
fn block_rows(
    device: DeviceArg,
    quick: bool,
    budget: Budget,
    bar: &ProgressBar,
    replay: bool,
    blocks: bool,
) -> Result<Vec<BenchRow>> {
    if !replay && !blocks {
        return Ok(vec![]);
    }
    let base = Executor::new(ExecOptions::default())?;
    let mut policies = vec![];
    if device != DeviceArg::Cuda {
        policies.push(PlacementPolicy::ForceCpu);
    }
    if base.gpu().is_some() && device != DeviceArg::Cpu {
        policies.extend([PlacementPolicy::ForceGpu, PlacementPolicy::Auto, PlacementPolicy::seed_thresholds()]);
    } else if device != DeviceArg::Cuda {
        policies.push(PlacementPolicy::Auto);
    }
    let hiddens: &[usize] = match (blocks, quick) {
        (false, _) => &[],
        (true, true) => &[384],
        (true, false) => &[384, 1024],
    };
    let mut rows = vec![];
    for &p in policies.iter().filter(|p| replay && matches!(p, PlacementPolicy::ForceCpu | PlacementPolicy::ForceGpu)) {
        let (row, wall) = time_plan_replay(&base.with_policy(p), policy_label(p), budget)?;
        bar.println(format!(
            "PlanReplay100 on {}: {:.1} us host per run ({:.1} us wall per run)",
            row.device, row.median_us, wall
        ));
        rows.push(row);
    }
    bar.inc_length((policies.len() * hiddens.len() * block_tokens(quick).len()) as u64);
    for &hidden in hiddens {
        for tokens in block_tokens(quick) {
            for &p in &policies {
                bar.set_message(format!("TransformerBlock [{tokens}, {hidden}] {}", policy_label(p)));
                rows.push(time_block(&base.with_policy(p), tokens, hidden, budget)?);
                bar.inc(1);
            }
        }
    }
    Ok(rows)
}

/// `bench --explain`: placement, estimate and measurement per node of the transformer block.
pub fn explain(device: DeviceArg, tokens: usize, hidden: usize) -> Result<()> {
    let policy = match device {
        DeviceArg::Cpu => PlacementPolicy::ForceCpu,
        DeviceArg::Cuda => PlacementPolicy::ForceGpu,
        DeviceArg::All => PlacementPolicy::Auto,
    };
    let exec = Executor::new(ExecOptions { policy, ..Default::default() })?;
    if let Some(why) = exec.gpu_unavailable_reason() {
        println!("GPU: none ({why})");
    }
    let rates = exec.rates()?;
    println!("cost model rates: {rates:?}");
    println!("TransformerBlock [{tokens}, {hidden}] under {policy:?}:");
    println!("{:>4} {:<22} {:<18} {:<6} {:>12} {:>12}", "node", "op", "shape", "device", "estimate_us", "measured_us");
    let rows = mlx_native::bench::explain(&exec, tokens, hidden)?;
    for r in &rows {
        println!(
            "{:>4} {:<22} {:<18} {:<6} {:>12.1} {:>12.1}",
            r.index,
            r.op,
            format!("{:?}", r.shape),
            format!("{:?}", r.device).to_lowercase(),
            r.estimated_us,
            r.measured_us
        );
    }
    let (e, m): (f64, f64) = rows.iter().fold((0.0, 0.0), |(e, m), r| (e + r.estimated_us, m + r.measured_us));
    println!("total: estimated {e:.1} us, measured {m:.1} us (nodes alone, transfers not included)");
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

/// The seed design's table: GPU speedup over the engine's own CPU backend for MatMul, Add, GELU and the fused
/// linear op, and whether `Auto` places that op on the GPU.
fn print_seed_table(rows: &[BenchRow], cases: &[BenchCase]) -> Result<()> {
    let exec = Executor::new(ExecOptions::default())?;
    if exec.gpu().is_none() {
        return Ok(());
    }
    let rates = exec.rates()?;
    println!("\nGPU vs the engine's CPU backend ({} CPU threads):", rayon::current_num_threads());
    println!("  {:<20} {:<20} {:<5} {:>10} {:>10}", "op", "shape", "dtype", "speedup", "Auto picks");
    for c in cases.iter().filter(|c| matches!(c.name, "MatMul" | "Add" | "Gelu" | "FusedLinearAddGelu")) {
        let find = |dev: &str| {
            rows.iter().find(|r| r.device == dev && r.op == c.name && r.shape == c.shape && r.dtype == c.dtype.name())
        };
        if let (Some(cpu), Some(gpu)) = (find("cpu"), find("cuda")) {
            let pick = if mlx_native::bench::auto_picks_gpu(c, rates)? { "GPU" } else { "CPU" };
            println!(
                "  {:<20} {:<20} {:<5} {:>9.1}x {:>10}",
                c.name,
                format!("{:?}", c.shape),
                c.dtype.name(),
                cpu.median_us / gpu.median_us,
                pick
            );
        }
    }
    Ok(())
}

/// Ratios the issues ask for, computed from rows of this run.
fn print_checks(rows: &[BenchRow]) {
    let blocks: Vec<&BenchRow> = rows.iter().filter(|r| r.op == "TransformerBlock" && r.device == "auto").collect();
    if !blocks.is_empty() {
        println!("\nAuto placement vs the better of ForceCpu and ForceGpu (TransformerBlock):");
    }
    for a in blocks {
        let best = rows
            .iter()
            .filter(|r| r.op == "TransformerBlock" && r.shape == a.shape && (r.device == "cpu" || r.device == "cuda"))
            .map(|r| r.median_us)
            .fold(f64::INFINITY, f64::min);
        println!(
            "  {:<14} auto {:>12.1} us, best forced {:>12.1} us: {:.2}x",
            format!("{:?}", a.shape),
            a.median_us,
            best,
            a.median_us / best
        );
    }
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
