//! Attention's memory stays at one score tile per task: a counting allocator watches the peak while a long
//! sequence runs, where a full score matrix would need batch·heads·seq² floats.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use mlx_native::backend::cpu::CpuBackend;
use mlx_native::backend::{Backend, OpCall};
use mlx_native::graph::infer;
use mlx_native::util::random::uniform;
use mlx_native::{DType, Op, TensorDesc};

struct Counting;
static NOW: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts bytes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let now = NOW.fetch_add(l.size(), Relaxed) + l.size();
        PEAK.fetch_max(now, Relaxed);
        // SAFETY: same layout contract as the caller's.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        NOW.fetch_sub(l.size(), Relaxed);
        // SAFETY: `p` came from `alloc` with this layout.
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn long_sequence_attention_needs_no_seq_squared_memory() {
    let (b, h, s, d) = (2, 4, 2048, 16);
    let scores_bytes = b * h * s * s * 4; // what a materialised score matrix would take: 128 MiB
    let q = uniform(DType::F32, [b, h, s, d], 1.0, 1);
    let k = uniform(DType::F32, [b, h, s, d], 1.0, 2);
    let v = uniform(DType::F32, [b, h, s, d], 1.0, 3);
    let op = Op::Attention { scale: 0.25, causal: true };
    let descs: Vec<TensorDesc> = [&q, &k, &v].iter().map(|t| TensorDesc::new(t.dtype(), t.shape().clone())).collect();
    let od = infer(&op, &descs).unwrap();
    let be = CpuBackend::new();
    let bufs: Vec<_> = [&q, &k, &v].iter().map(|t| be.upload(t).unwrap()).collect();
    let refs: Vec<_> = bufs.iter().collect();
    let mut out = be.alloc(&od).unwrap();
    // Warm rayon's pool first so its threads' own allocations are not counted.
    be.execute(&OpCall { op: &op, inputs: &descs, output: &od }, &refs, &mut out).unwrap();
    let base = NOW.load(Relaxed);
    PEAK.store(base, Relaxed);
    be.execute(&OpCall { op: &op, inputs: &descs, output: &od }, &refs, &mut out).unwrap();
    let extra = PEAK.load(Relaxed) - base;
    println!("attention [{b}, {h}, {s}, {d}]: {extra} bytes of scratch at peak (full scores: {scores_bytes})");
    assert!(extra < 4 << 20, "attention used {extra} bytes of scratch; a score matrix is {scores_bytes}");
    // Spot-check a few rows against a float64 computation.
    let out = be.download(&out, &od).unwrap().to_f32_vec();
    let (qv, kv, vv) = (q.to_f32_vec(), k.to_f32_vec(), v.to_f32_vec());
    for (bh, i) in [(0usize, 0usize), (3, 1000), (7, s - 1)] {
        let row = |t: &[f32], j: usize| {
            t[(bh * s + j) * d..(bh * s + j + 1) * d].iter().map(|&x| x as f64).collect::<Vec<_>>()
        };
        let qi = row(&qv, i);
        let sc: Vec<f64> =
            (0..=i).map(|j| 0.25 * row(&kv, j).iter().zip(&qi).map(|(a, b)| a * b).sum::<f64>()).collect();
        let m = sc.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let e: Vec<f64> = sc.iter().map(|x| (x - m).exp()).collect();
        let z: f64 = e.iter().sum();
        for c in 0..d {
            let want: f64 = e.iter().enumerate().map(|(j, w)| w * vv[(bh * s + j) * d + c] as f64).sum::<f64>() / z;
            let got = out[(bh * s + i) * d + c] as f64;
            assert!((got - want).abs() < 1e-5, "head {bh} row {i} col {c}: {got} vs {want}");
        }
    }
}
