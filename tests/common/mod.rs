//! Shared test helpers: float64 reference implementations of every op, a single-op runner that goes through the
//! CPU backend with poisoned, oversized buffers, and a closeness check that names the seed.
#![allow(dead_code)]

use mlx_native::backend::cpu::{CpuBackend, CpuBuffer};
use mlx_native::backend::{Backend, OpCall};
use mlx_native::graph::infer;
use mlx_native::tensor::HostVec;
use mlx_native::{DType, Op, Result, Tensor, TensorDesc};

/// A dense f64 array, row-major.
#[derive(Clone, Debug)]
pub struct R {
    /// Dimensions.
    pub shape: Vec<usize>,
    /// Elements.
    pub data: Vec<f64>,
}

impl R {
    pub fn new(shape: &[usize], data: Vec<f64>) -> R {
        assert_eq!(shape.iter().product::<usize>(), data.len());
        R { shape: shape.to_vec(), data }
    }
    pub fn of(t: &Tensor) -> R {
        R::new(t.shape().dims(), t.to_f32_vec().iter().map(|&x| x as f64).collect())
    }
    pub fn map(&self, f: impl Fn(f64) -> f64) -> R {
        R::new(&self.shape, self.data.iter().map(|&x| f(x)).collect())
    }
}

pub fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

/// The multi-index of flat position `i` in `shape`.
pub fn unravel(mut i: usize, shape: &[usize]) -> Vec<usize> {
    let mut idx = vec![0; shape.len()];
    for d in (0..shape.len()).rev() {
        idx[d] = i % shape[d];
        i /= shape[d];
    }
    idx
}

/// Offset in `shape` of the element an index of a (right-aligned, broadcast) larger shape reads.
pub fn bcast_offset(idx: &[usize], shape: &[usize]) -> usize {
    let off = idx.len() - shape.len();
    let st = strides(shape);
    (0..shape.len()).map(|d| if shape[d] == 1 { 0 } else { idx[off + d] * st[d] }).sum()
}

/// numpy broadcast of two shapes, or None.
pub fn broadcast_shape(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let r = a.len().max(b.len());
    let get = |s: &[usize], i: usize| if i + s.len() >= r { s[i + s.len() - r] } else { 1 };
    (0..r)
        .map(|i| match (get(a, i), get(b, i)) {
            (x, y) if x == y => Some(x),
            (1, y) => Some(y),
            (x, 1) => Some(x),
            _ => None,
        })
        .collect()
}

pub fn binary(a: &R, b: &R, f: impl Fn(f64, f64) -> f64) -> R {
    let shape = broadcast_shape(&a.shape, &b.shape).expect("broadcastable");
    let n = shape.iter().product();
    let data = (0..n)
        .map(|i| {
            let idx = unravel(i, &shape);
            f(a.data[bcast_offset(&idx, &a.shape)], b.data[bcast_offset(&idx, &b.shape)])
        })
        .collect();
    R::new(&shape, data)
}

pub fn matmul(a: &R, b: &R, ta: bool, tb: bool) -> R {
    let (ra, rb) = (a.shape.len(), b.shape.len());
    let (m, k) = if ta { (a.shape[ra - 1], a.shape[ra - 2]) } else { (a.shape[ra - 2], a.shape[ra - 1]) };
    let n = if tb { b.shape[rb - 2] } else { b.shape[rb - 1] };
    let (ab, bb) = (&a.shape[..ra - 2], &b.shape[..rb - 2]);
    let batch = broadcast_shape(ab, bb).expect("batch broadcasts");
    let nb: usize = batch.iter().product();
    let mut out = vec![0.0; nb * m * n];
    for bi in 0..nb {
        let idx = unravel(bi, &batch);
        let (oa, ob) = (bcast_offset(&idx, ab) * m * k, bcast_offset(&idx, bb) * k * n);
        for i in 0..m {
            for j in 0..n {
                let mut s = 0.0;
                for kk in 0..k {
                    let x = if ta { a.data[oa + kk * m + i] } else { a.data[oa + i * k + kk] };
                    let y = if tb { b.data[ob + j * k + kk] } else { b.data[ob + kk * n + j] };
                    s += x * y;
                }
                out[(bi * m + i) * n + j] = s;
            }
        }
    }
    let mut shape = batch;
    shape.extend([m, n]);
    R::new(&shape, out)
}

pub fn gelu_erf(x: f64) -> f64 {
    0.5 * x * (1.0 + libm::erf(x / std::f64::consts::SQRT_2))
}

pub fn gelu_tanh(x: f64) -> f64 {
    let u = (2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x * x * x);
    0.5 * x * (1.0 + u.tanh())
}

pub fn silu(x: f64) -> f64 {
    x / (1.0 + (-x).exp())
}

/// Applies `f` to each row of the last axis.
pub fn rows(x: &R, f: impl Fn(&[f64]) -> Vec<f64>) -> R {
    let n = *x.shape.last().unwrap_or(&1);
    let data = if n == 0 { vec![] } else { x.data.chunks(n).flat_map(f).collect() };
    R::new(&x.shape, data)
}

pub fn layer_norm(x: &R, w: &R, b: &R, eps: f64) -> R {
    rows(x, |r| {
        let n = r.len() as f64;
        let mean = r.iter().sum::<f64>() / n;
        let var = r.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
        r.iter().enumerate().map(|(j, v)| (v - mean) / (var + eps).sqrt() * w.data[j] + b.data[j]).collect()
    })
}

pub fn rms_norm(x: &R, w: &R, eps: f64) -> R {
    rows(x, |r| {
        let ms = r.iter().map(|v| v * v).sum::<f64>() / r.len() as f64;
        r.iter().enumerate().map(|(j, v)| v / (ms + eps).sqrt() * w.data[j]).collect()
    })
}

pub fn softmax(x: &R) -> R {
    rows(x, |r| {
        let m = r.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let e: Vec<f64> = r.iter().map(|v| (v - m).exp()).collect();
        let s: f64 = e.iter().sum();
        e.iter().map(|v| v / s).collect()
    })
}

/// Naive attention: full score matrix per (batch, head, query); rows that see no key give 0.
pub fn attention(q: &R, k: &R, v: &R, mask: Option<&R>, scale: f64, causal: bool) -> R {
    let [b, hq, sq, d] = [q.shape[0], q.shape[1], q.shape[2], q.shape[3]];
    let [hkv, skv] = [k.shape[1], k.shape[2]];
    let dv = v.shape[3];
    let group = hq / hkv;
    let mut out = vec![0.0; b * hq * sq * dv];
    for bi in 0..b {
        for h in 0..hq {
            let kh = h / group;
            for i in 0..sq {
                let mut s = vec![f64::NEG_INFINITY; skv];
                for (j, sj) in s.iter_mut().enumerate() {
                    if causal && (j + sq) as i64 > (i + skv) as i64 {
                        continue;
                    }
                    let mut dot = 0.0;
                    for c in 0..d {
                        dot += q.data[((bi * hq + h) * sq + i) * d + c] * k.data[((bi * hkv + kh) * skv + j) * d + c];
                    }
                    let add = mask.map_or(0.0, |m| m.data[bcast_offset(&[bi, h, i, j], &m.shape)]);
                    *sj = dot * scale + add;
                }
                let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                if m == f64::NEG_INFINITY {
                    continue;
                }
                let e: Vec<f64> = s.iter().map(|x| (x - m).exp()).collect();
                let tot: f64 = e.iter().sum();
                for c in 0..dv {
                    let mut acc = 0.0;
                    for (j, ej) in e.iter().enumerate() {
                        acc += ej * v.data[((bi * hkv + kh) * skv + j) * dv + c];
                    }
                    out[((bi * hq + h) * sq + i) * dv + c] = acc / tot;
                }
            }
        }
    }
    R::new(&[b, hq, sq, dv], out)
}

/// Op::PackedAttention: split qkv `[b, s, (heads + 2 kv) d]` into `[b, h, s, d]` heads, attention, merge the heads.
pub fn packed_attention(qkv: &R, mask: Option<&R>, heads: usize, kv: usize, scale: f64, causal: bool) -> R {
    let (b, s, w) = (qkv.shape[0], qkv.shape[1], qkv.shape[2]);
    let d = w / (heads + 2 * kv);
    let part = |first: usize, n: usize| {
        let x = slice(qkv, 2, first * d, (first + n) * d);
        transpose(&R::new(&[b, s, n, d], x.data), &[0, 2, 1, 3])
    };
    let o = attention(&part(0, heads), &part(heads, kv), &part(heads + kv, kv), mask, scale, causal);
    R::new(&[b, s, heads * d], transpose(&o, &[0, 2, 1, 3]).data)
}

pub fn transpose(x: &R, perm: &[usize]) -> R {
    let shape: Vec<usize> = perm.iter().map(|&p| x.shape[p]).collect();
    let st = strides(&x.shape);
    let n = x.data.len();
    let data = (0..n)
        .map(|i| {
            let idx = unravel(i, &shape);
            x.data[(0..perm.len()).map(|d| idx[d] * st[perm[d]]).sum::<usize>()]
        })
        .collect();
    R::new(&shape, data)
}

pub fn slice(x: &R, axis: usize, start: usize, end: usize) -> R {
    let mut shape = x.shape.clone();
    shape[axis] = end - start;
    let st = strides(&x.shape);
    let n = shape.iter().product();
    let data = (0..n)
        .map(|i| {
            let mut idx = unravel(i, &shape);
            idx[axis] += start;
            x.data[idx.iter().zip(&st).map(|(a, b)| a * b).sum::<usize>()]
        })
        .collect();
    R::new(&shape, data)
}

pub fn concat(xs: &[R], axis: usize) -> R {
    let mut shape = xs[0].shape.clone();
    shape[axis] = xs.iter().map(|x| x.shape[axis]).sum();
    let n = shape.iter().product();
    let data = (0..n)
        .map(|i| {
            let mut idx = unravel(i, &shape);
            let mut which = 0;
            while idx[axis] >= xs[which].shape[axis] {
                idx[axis] -= xs[which].shape[axis];
                which += 1;
            }
            let st = strides(&xs[which].shape);
            xs[which].data[idx.iter().zip(&st).map(|(a, b)| a * b).sum::<usize>()]
        })
        .collect();
    R::new(&shape, data)
}

/// kind: 0 sum, 1 mean, 2 max.
pub fn reduce(x: &R, kind: u8, axis: usize, keep: bool) -> R {
    let mut shape = x.shape.clone();
    let len = shape[axis];
    shape[axis] = 1;
    let st = strides(&x.shape);
    let n: usize = shape.iter().product();
    let data = (0..n)
        .map(|i| {
            let idx = unravel(i, &shape);
            let base: usize = idx.iter().zip(&st).map(|(a, b)| a * b).sum();
            let vals = (0..len).map(|a| x.data[base + a * st[axis]]);
            match kind {
                0 => vals.sum(),
                1 => vals.sum::<f64>() / len as f64,
                _ => vals.fold(f64::NEG_INFINITY, f64::max),
            }
        })
        .collect();
    if !keep {
        shape.remove(axis);
    }
    R::new(&shape, data)
}

/// Asserts |got - want| <= atol + rtol·|want| everywhere (NaN never passes), naming `ctx` (with the seed).
pub fn assert_close(got: &Tensor, want: &R, atol: f64, rtol: f64, ctx: &str) {
    assert_eq!(got.shape().dims(), &want.shape[..], "{ctx}: shape");
    let g = got.to_f32_vec();
    let mut worst = (0.0f64, 0usize);
    for (i, (&x, &w)) in g.iter().zip(&want.data).enumerate() {
        let err = (x as f64 - w).abs();
        let ok = err <= atol + rtol * w.abs() || (x as f64 == w);
        assert!(ok, "{ctx}: element {i} (of shape {:?}) is {x}, expected {w} (err {err:e})", want.shape);
        if err > worst.0 {
            worst = (err, i);
        }
    }
}

/// Tolerances (atol, rtol) for results of magnitude about `scale` rounded once to `dtype`.
pub fn tol(dtype: DType, scale: f64) -> (f64, f64) {
    match dtype {
        DType::F32 => (2e-6 * scale, 1e-5),
        DType::F16 => (2e-3 * scale, 2e-3),
        _ => (1.6e-2 * scale, 1.6e-2),
    }
}

/// A copy of `t` in an owned buffer with junk after its elements (NaN for floats), as the memory planner's
/// reused buffers have.
pub fn padded(t: &Tensor) -> CpuBuffer {
    let mut hv = t.to_host_vec();
    match &mut hv {
        HostVec::F32(v) => v.extend([f32::NAN; 5]),
        HostVec::F16(v) => v.extend([half::f16::NAN; 5]),
        HostVec::BF16(v) => v.extend([half::bf16::NAN; 5]),
        HostVec::I64(v) => v.extend([i64::MAX; 5]),
        HostVec::U32(v) => v.extend([u32::MAX; 5]),
    }
    CpuBuffer::Owned(hv)
}

/// Runs one op on the CPU backend: inputs shared or padded (alternating with `pad`), output into an oversized
/// buffer poisoned with NaN, so reading past an input or leaving an output element unwritten shows.
pub fn run_op(op: &Op, inputs: &[&Tensor], pad: bool) -> Result<Tensor> {
    let be = CpuBackend::new();
    let descs: Vec<TensorDesc> = inputs.iter().map(|t| TensorDesc::new(t.dtype(), t.shape().clone())).collect();
    let od = infer(op, &descs)?;
    let bufs: Vec<CpuBuffer> =
        inputs.iter().map(|t| if pad { Ok(padded(t)) } else { be.upload(t) }).collect::<Result<_>>()?;
    let refs: Vec<&CpuBuffer> = bufs.iter().collect();
    let big = TensorDesc::new(od.dtype, [od.shape.numel() + 3]);
    let mut out = be.alloc(&big)?;
    be.poison(&mut out, &big)?;
    be.execute(&OpCall { op, inputs: &descs, output: &od }, &refs, &mut out)?;
    be.download(&out, &od)
}

/// A fresh seed, printed so a failure can be replayed.
pub fn seed() -> u64 {
    let s = std::env::var("MLX_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(mlx_native::util::random::fresh_seed);
    println!("seed {s} (replay with MLX_SEED={s})");
    s
}
