//! Scaled dot-product attention with a tiled online softmax (flash-attention style): each task owns a block of
//! query rows of one head and walks the keys in blocks, so at most one [BQ × BK] tile of scores exists per task
//! and memory never grows with batch × heads × seq².

use std::borrow::Cow;

use rayon::prelude::*;

use super::buffer::{f32_input, write_f32};
use super::math;
use super::matmul::{gemm_f32, Mat};
use super::simd::multiversion;
use super::CpuBuffer;
use crate::error::Result;
use crate::graph::TensorDesc;
use crate::tensor::{HostVec, Shape};

/// Query rows per task.
const BQ: usize = 64;
/// Keys per score tile.
const BK: usize = 256;
/// Multiply-adds of a whole problem below which it runs on the calling thread.
const PARALLEL_MIN: usize = 1 << 17;
/// Multiply-adds of a tile (both products) below which plain loops beat gemm's setup.
const SMALL_TILE: usize = 16 * 1024;

/// Sizes and operands shared by every task.
struct Problem<'a> {
    q: &'a [f32],
    k: &'a [f32],
    v: &'a [f32],
    /// The mask and its strides broadcast to [b, hq, sq, skv].
    mask: Option<(&'a [f32], [usize; 4])>,
    hq: usize,
    group: usize,
    hkv: usize,
    sq: usize,
    skv: usize,
    d: usize,
    dv: usize,
    scale: f32,
    causal: bool,
}

fn dims4(s: &Shape) -> [usize; 4] {
    let d = s.dims();
    [d[0], d[1], d[2], d[3]]
}

/// A mask as f32 with its strides broadcast to [b, hq, sq, skv].
type MaskInput<'a> = (Cow<'a, [f32]>, [usize; 4]);

/// The mask input (if any) as f32 with its strides broadcast to `full` = [b, hq, sq, skv].
fn mask_input<'a>(
    x: Option<&&'a CpuBuffer>,
    d: Option<&TensorDesc>,
    full: [usize; 4],
) -> Result<Option<MaskInput<'a>>> {
    Ok(match (x, d) {
        (Some(m), Some(md)) => {
            let st = md.shape.broadcast_strides(&Shape::new(full));
            Some((f32_input(m, md)?, [st[0], st[1], st[2], st[3]]))
        }
        _ => None,
    })
}

/// softmax(scale·q·kᵀ + mask, causal) · v over inputs q, k, v[, mask]. A query row that sees no key gives 0.
pub(crate) fn attention(
    xs: &[&CpuBuffer],
    ds: &[TensorDesc],
    scale: f32,
    causal: bool,
    out: &mut HostVec,
    od: &TensorDesc,
) -> Result<()> {
    let q = f32_input(xs[0], &ds[0])?;
    let k = f32_input(xs[1], &ds[1])?;
    let v = f32_input(xs[2], &ds[2])?;
    let [b, hq, sq, d] = dims4(&ds[0].shape);
    let [_, hkv, skv, _] = dims4(&ds[1].shape);
    let dv = ds[2].shape.dims()[3];
    let mask = mask_input(xs.get(3), ds.get(3), [b, hq, sq, skv])?;
    let p = Problem {
        q: &q,
        k: &k,
        v: &v,
        mask: mask.as_ref().map(|(m, s)| (&m[..], *s)),
        hq,
        group: hq / hkv.max(1),
        hkv,
        sq,
        skv,
        d,
        dv,
        scale,
        causal,
    };
    write_f32(out, od.shape.numel(), |o| p.run(b, o))
}

/// [`attention`] over a packed projection qkv `[b, s, (heads + 2 kv_heads) · d]` (and an optional mask), output
/// `[b, s, heads · d]`. The heads are split into `[b, h, s, d]` copies and merged back around the same tiled
/// kernel: on the CPU these copies cost what the Transpose nodes they replace did.
#[allow(clippy::too_many_arguments)]
pub(crate) fn packed_attention(
    xs: &[&CpuBuffer],
    ds: &[TensorDesc],
    scale: f32,
    causal: bool,
    heads: usize,
    kv_heads: usize,
    out: &mut HostVec,
    od: &TensorDesc,
) -> Result<()> {
    let qkv = f32_input(xs[0], &ds[0])?;
    let dims = ds[0].shape.dims();
    let (b, s, w) = (dims[0], dims[1], dims[2]);
    let d = w / (heads + 2 * kv_heads).max(1);
    // Head h of position i in batch bi starts at (bi·s + i)·w + col0 + h·d.
    let split = |col0: usize, hs: usize| -> Vec<f32> {
        let mut t = vec![0f32; b * hs * s * d];
        t.par_chunks_mut((s * d).max(1)).enumerate().for_each(|(bh, th)| {
            let (bi, h) = (bh / hs, bh % hs);
            for (i, row) in th.chunks_mut(d.max(1)).enumerate() {
                let src = (bi * s + i) * w + col0 + h * d;
                row.copy_from_slice(&qkv[src..src + d]);
            }
        });
        t
    };
    let q = split(0, heads);
    let k = split(heads * d, kv_heads);
    let v = split((heads + kv_heads) * d, kv_heads);
    let mask = mask_input(xs.get(1), ds.get(1), [b, heads, s, s])?;
    let p = Problem {
        q: &q,
        k: &k,
        v: &v,
        mask: mask.as_ref().map(|(m, s)| (&m[..], *s)),
        hq: heads,
        group: heads / kv_heads.max(1),
        hkv: kv_heads,
        sq: s,
        skv: s,
        d,
        dv: d,
        scale,
        causal,
    };
    let mut heads_out = vec![0f32; b * heads * s * d];
    p.run(b, &mut heads_out)?;
    write_f32(out, od.shape.numel(), |o| {
        o.par_chunks_mut((s * heads * d).max(1)).enumerate().for_each(|(bi, ob)| {
            for (i, orow) in ob.chunks_mut((heads * d).max(1)).enumerate() {
                for (h, oh) in orow.chunks_mut(d.max(1)).enumerate() {
                    let src = ((bi * heads + h) * s + i) * d;
                    oh.copy_from_slice(&heads_out[src..src + d]);
                }
            }
        });
        Ok(())
    })
}

impl Problem<'_> {
    /// The whole problem into `o` ([b, hq, sq, dv]), in parallel over heads and query blocks when large enough.
    fn run(&self, b: usize, o: &mut [f32]) -> Result<()> {
        let (hq, sq, skv, d, dv) = (self.hq, self.sq, self.skv, self.d, self.dv);
        if o.is_empty() {
            return Ok(());
        }
        if b * hq * sq * skv * (d + dv) < PARALLEL_MIN {
            // Waking the other threads would cost more than the whole job (decoding one token, tiny heads).
            return o.chunks_mut(sq * dv).enumerate().try_for_each(|(bh, oh)| {
                oh.chunks_mut(BQ * dv).enumerate().try_for_each(|(qb, ob)| self.block(bh, qb * BQ, ob))
            });
        }
        o.par_chunks_mut(sq * dv).enumerate().try_for_each(|(bh, oh)| {
            oh.par_chunks_mut(BQ * dv).enumerate().try_for_each(|(qb, ob)| self.block(bh, qb * BQ, ob))
        })
    }

    /// Query rows `i0..` (as many as `out` holds) of head `bh` (= batch · hq + head).
    fn block(&self, bh: usize, i0: usize, out: &mut [f32]) -> Result<()> {
        let (d, dv, sq, skv) = (self.d, self.dv, self.sq, self.skv);
        let bq = out.len() / dv;
        let (bi, h) = (bh / self.hq, bh % self.hq);
        let kvh = bi * self.hkv + h / self.group;
        let q_off = (bh * sq + i0) * d;
        let (k_base, v_base) = (kvh * skv * d, kvh * skv * dv);
        let mut scores = vec![0f32; bq * BK.min(skv.max(1))];
        let mut m = vec![f32::NEG_INFINITY; bq];
        let mut l = vec![0f32; bq];
        out.fill(0.0);
        // Keys past the last row's causal limit are hidden from the whole block.
        let block_limit = (i0 + bq - 1 + skv) as isize - sq as isize;
        let mut j0 = 0;
        while j0 < skv && !(self.causal && j0 as isize > block_limit) {
            let bk = BK.min(skv - j0);
            let s = &mut scores[..bq * bk];
            // Tiny tiles (decoding, short sequences) cost less as plain loops than as two gemm calls.
            let small = bq * bk * (d + dv) <= SMALL_TILE;
            let k_tile = &self.k[k_base + j0 * d..k_base + (j0 + bk) * d];
            let v_tile = &self.v[v_base + j0 * dv..v_base + (j0 + bk) * dv];
            if small {
                small_scores(&self.q[q_off..q_off + bq * d], k_tile, d, s);
            } else {
                gemm_f32(
                    [bq, d, bk],
                    self.q,
                    Mat::dense(q_off, d, false),
                    k_tile,
                    Mat::dense(0, d, true),
                    s,
                    false,
                    false,
                )?;
            }
            for (r, srow) in s.chunks_mut(bk).enumerate() {
                let i = i0 + r;
                match self.mask {
                    Some((mv, ms)) => {
                        let base = bi * ms[0] + h * ms[1] + i * ms[2] + j0 * ms[3];
                        if ms[3] == 0 {
                            scale_add(srow, self.scale, &mv[base..base + 1], 0);
                        } else {
                            scale_add(srow, self.scale, &mv[base..base + bk], 1);
                        }
                    }
                    None => scale_add(srow, self.scale, &[0.0], 0),
                }
                if self.causal {
                    // Key j0 + c is visible when j0 + c <= i + skv - sq.
                    let visible = (i + skv) as isize - sq as isize - j0 as isize + 1;
                    srow[visible.clamp(0, bk as isize) as usize..].fill(f32::NEG_INFINITY);
                }
                let m_new = m[r].max(math::max(srow));
                if m_new == f32::NEG_INFINITY {
                    srow.fill(0.0);
                    continue;
                }
                let corr = math::exp(m[r] - m_new);
                l[r] = l[r] * corr + exp_shift_sum(srow, m_new);
                m[r] = m_new;
                if corr != 1.0 {
                    for o in &mut out[r * dv..(r + 1) * dv] {
                        *o *= corr;
                    }
                }
            }
            if small {
                small_pv(s, v_tile, bk, out);
            } else {
                gemm_f32(
                    [bq, bk, dv],
                    s,
                    Mat::dense(0, bk, false),
                    v_tile,
                    Mat::dense(0, dv, false),
                    out,
                    false,
                    true,
                )?;
            }
            j0 += bk;
        }
        for (r, orow) in out.chunks_mut(dv).enumerate() {
            if l[r] > 0.0 {
                let inv = 1.0 / l[r];
                for o in orow {
                    *o *= inv;
                }
            } else {
                orow.fill(0.0);
            }
        }
        Ok(())
    }
}

multiversion! {
    /// row = row·scale + add (add's step is 1, or 0 for one broadcast value).
    fn scale_add(row: &mut [f32], scale: f32, add: &[f32], step: usize) {
        if step == 1 {
            for (x, a) in row.iter_mut().zip(add) {
                *x = *x * scale + a;
            }
        } else {
            let a = add[0];
            for x in row.iter_mut() {
                *x = *x * scale + a;
            }
        }
    }
}

multiversion! {
    /// row = exp(row - m); returns the row's sum.
    fn exp_shift_sum(row: &mut [f32], m: f32) -> f32 {
        math::map_in_place(row, |x| math::exp_neg(x - m));
        math::sum(row)
    }
}

multiversion! {
    /// s[r, c] = q_r · k_c for row-major q [rows, d] and k [cols, d].
    fn small_scores(q: &[f32], k: &[f32], d: usize, s: &mut [f32]) {
        let cols = k.len() / d.max(1);
        for (qr, sr) in q.chunks_exact(d.max(1)).zip(s.chunks_exact_mut(cols.max(1))) {
            for (kc, sv) in k.chunks_exact(d.max(1)).zip(sr.iter_mut()) {
                *sv = math::dot(qr, kc);
            }
        }
        if d == 0 {
            s.fill(0.0);
        }
    }
}

multiversion! {
    /// out[r, :] += Σ_c p[r, c] · v[c, :] for p [rows, cols] and v [cols, dv].
    fn small_pv(p: &[f32], v: &[f32], cols: usize, out: &mut [f32]) {
        let dv = v.len() / cols.max(1);
        if dv == 0 {
            return;
        }
        for (pr, or) in p.chunks_exact(cols).zip(out.chunks_exact_mut(dv)) {
            for (&w, vc) in pr.iter().zip(v.chunks_exact(dv)) {
                for (o, x) in or.iter_mut().zip(vc) {
                    *o = w.mul_add(*x, *o);
                }
            }
        }
    }
}
