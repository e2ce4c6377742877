//! Device rates for the cost model, measured once through the backend contract (well under a second) and cached
//! on disk by device name.

use std::path::PathBuf;
use std::time::Instant;

use super::placement::{DeviceRates, LinkRates};
use crate::backend::Backend;
use crate::bench::{time_case, Budget};
use crate::error::Result;
use crate::graph::{BinaryOp, Op, TensorDesc};
use crate::tensor::DType;
use crate::util::random;

fn budget() -> Budget {
    Budget { seconds: 0.03, max_samples: 5, min_sample_seconds: 0.001 }
}

fn cache_path(device_name: &str) -> Option<PathBuf> {
    let base = std::env::var_os("MLX_NATIVE_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("XDG_CACHE_HOME").map(|p| PathBuf::from(p).join("mlx-native")))
        .or_else(|| std::env::var_os("HOME").map(|p| PathBuf::from(p).join(".cache").join("mlx-native")))?;
    let safe: String = device_name.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
    Some(base.join(format!("rates-v2-{safe}.json")))
}

/// Reads cached rates for `device_name`, or measures them with `measure` and caches the result. A missing or
/// unreadable cache is not an error: the rates are measured again.
pub fn cached<T: serde::Serialize + serde::de::DeserializeOwned>(
    device_name: &str,
    measure: impl FnOnce() -> Result<T>,
) -> Result<T> {
    let path = cache_path(device_name);
    if let Some(p) = &path {
        if let Some(r) = std::fs::read(p).ok().and_then(|b| serde_json::from_slice(&b).ok()) {
            return Ok(r);
        }
    }
    let r = measure()?;
    if let Some(p) = &path {
        if let (Some(dir), Ok(text)) = (p.parent(), serde_json::to_vec(&r)) {
            let tmp = p.with_extension(format!("tmp{}", std::process::id()));
            let _ = std::fs::create_dir_all(dir)
                .and_then(|_| std::fs::write(&tmp, text))
                .and_then(|_| std::fs::rename(&tmp, p));
        }
    }
    Ok(r)
}

/// Measures a device: launch overhead from a one-element add, matmul rates from 512³ products, bandwidth from a
/// 16M-element copy.
pub fn measure_device<B: Backend>(backend: &B) -> Result<DeviceRates> {
    use crate::bench::BenchCase;
    let add = BenchCase::for_op(Op::Binary(BinaryOp::Add), vec![TensorDesc::new(DType::F32, [1]); 2]);
    let launch_us = time_case(backend, &add, budget())?;
    let mm = |dt| {
        BenchCase::for_op(
            Op::MatMul { transpose_a: false, transpose_b: false },
            vec![TensorDesc::new(dt, [512, 512]); 2],
        )
    };
    let flops = 2.0 * 512f64.powi(3);
    let f32_us = time_case(backend, &mm(DType::F32), budget())?;
    let half_us = time_case(backend, &mm(DType::BF16), budget())?;
    let n = 1 << 24;
    let copy = crate::bench::suite_copy(n);
    let copy_us = time_case(backend, &copy, budget())?;
    Ok(DeviceRates {
        replay_launch_us: measure_replay_launch(backend)?,
        launch_us,
        gflops_f32: flops / (f32_us - launch_us).max(1e-3) / 1e3,
        gflops_half: flops / (half_us - launch_us).max(1e-3) / 1e3,
        gbps: (8 * n) as f64 / (copy_us - launch_us).max(1e-3) / 1e3,
    })
}

/// Per-node cost of a recorded plan: 64 one-element adds recorded once, then replayed. `None` when the device
/// cannot record.
fn measure_replay_launch<B: Backend>(backend: &B) -> Result<Option<f64>> {
    const NODES: usize = 64;
    if !backend.supports_recording() {
        return Ok(None);
    }
    let d = TensorDesc::new(DType::F32, [1]);
    let op = Op::Binary(BinaryOp::Add);
    let descs = [d.clone(), d.clone()];
    let call = crate::backend::OpCall { op: &op, inputs: &descs, output: &d };
    let x = backend.upload(&random::uniform(DType::F32, [1], 1.0, 5))?;
    let mut out = backend.alloc(&d)?;
    backend.execute(&call, &[&x, &x], &mut out)?; // compiles the kernel before recording
    backend.synchronize()?;
    if !backend.begin_recording()? {
        return Ok(None);
    }
    let queued = (0..NODES).try_for_each(|_| backend.execute(&call, &[&x, &x], &mut out));
    let replay = backend.end_recording();
    let (Ok(()), Ok(replay)) = (queued, replay) else { return Ok(None) };
    let mut best = f64::INFINITY;
    for _ in 0..5 {
        let t = Instant::now();
        replay.replay()?;
        backend.synchronize()?;
        best = best.min(t.elapsed().as_secs_f64() * 1e6);
    }
    Ok(Some(best / NODES as f64))
}

/// Measures the host-device link of `backend`: upload of a small and a 64 MiB tensor, download of the latter.
pub fn measure_link<B: Backend>(backend: &B) -> Result<LinkRates> {
    let time_upload = |n: usize| -> Result<f64> {
        let t = random::uniform(DType::F32, [n], 1.0, 3);
        let mut best = f64::INFINITY;
        for _ in 0..3 {
            let s = Instant::now();
            let b = backend.upload(&t)?;
            backend.synchronize()?;
            best = best.min(s.elapsed().as_secs_f64() * 1e6);
            drop(b);
        }
        Ok(best)
    };
    let small = time_upload(16)?;
    let n = 1 << 24;
    let big = time_upload(n)?;
    let desc = TensorDesc::new(DType::F32, [n]);
    let buf = backend.upload(&random::uniform(DType::F32, [n], 1.0, 4))?;
    let mut down = f64::INFINITY;
    for _ in 0..3 {
        let s = Instant::now();
        backend.download(&buf, &desc)?;
        down = down.min(s.elapsed().as_secs_f64() * 1e6);
    }
    let rate = |us: f64| (4 * n) as f64 / (us - small).max(1e-3) / 1e3;
    Ok(LinkRates { latency_us: small, gbps: rate(big), download_gbps: rate(down) })
}
