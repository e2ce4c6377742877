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
/// Values of one batch's packed qkv rows up to which a task reads them ahead (1 MiB).
const READ_AHEAD_MAX: usize = 1 << 18;
/// Multiply-adds of a whole problem below which it runs on the calling thread.
const PARALLEL_MIN: usize = 1 << 17;
/// Multiply-adds of a tile (both products) below which plain loops beat gemm's setup.
const SMALL_TILE: usize = 16 * 1024;

/// Sizes and operands shared by every task.
struct Problem<'a> {
    q: &'a [f32],
    k: &'a [f32],
    v: &'a [f32],
    /// Element (b, h, i, c) of q is `q[b·qs[0] + h·qs[1] + i·qs[2] + c]`; likewise k and v with the kv head.
    qs: [usize; 3],
    ks: [usize; 3],
    vs: [usize; 3],
    /// The output is `[b, s, hq · dv]` (heads side by side) instead of `[b, hq, s, dv]`.
    packed_out: bool,
    /// The mask and its strides broadcast to [b, hq, sq, skv].
    mask: Option<(&'a [f32], [usize; 4])>,
    hq: usize,
    group: usize,
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
    let mask = mask.as_ref().map(|(m, s)| (&m[..], *s));
    let p = Problem::dense(&q, &k, &v, [hq, hkv, sq, skv, d, dv], mask, scale, causal);
    write_f32(out, od.shape.numel(), |o| p.run(b, o))
}

/// [`attention`] over a packed projection qkv `[b, s, (heads + 2 kv_heads) · d]` (and an optional mask), output
/// `[b, s, heads · d]`: the same tiled kernel, reading the heads in place through their strides.
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
    let mask = mask_input(xs.get(1), ds.get(1), [b, heads, s, s])?;
    // Every head is read in place: row i of head h in batch bi starts at (bi·s + i)·w + h·d of its part.
    let strides = [s * w, d, w];
    let p = Problem {
        q: &qkv,
        k: &qkv[(heads * d).min(qkv.len())..],
        v: &qkv[((heads + kv_heads) * d).min(qkv.len())..],
        qs: strides,
        ks: strides,
        vs: strides,
        packed_out: true,
        mask: mask.as_ref().map(|(m, s)| (&m[..], *s)),
        hq: heads,
        group: heads / kv_heads.max(1),
        sq: s,
        skv: s,
        d,
        dv: d,
        scale,
        causal,
    };
    write_f32(out, od.shape.numel(), |o| p.run(b, o))
}

impl<'a> Problem<'a> {
    /// Dense q `[b, hq, sq, d]`, k `[b, hkv, skv, d]`, v `[b, hkv, skv, dv]`, output `[b, hq, sq, dv]`.
    #[allow(clippy::too_many_arguments)]
    fn dense(
        q: &'a [f32],
        k: &'a [f32],
        v: &'a [f32],
        [hq, hkv, sq, skv, d, dv]: [usize; 6],
        mask: Option<(&'a [f32], [usize; 4])>,
        scale: f32,
        causal: bool,
    ) -> Self {
        Problem {
            q,
            k,
            v,
            qs: [hq * sq * d, sq * d, d],
            ks: [hkv * skv * d, skv * d, d],
            vs: [hkv * skv * dv, skv * dv, dv],
            packed_out: false,
            mask,
            hq,
            group: hq / hkv.max(1),
            sq,
            skv,
            d,
            dv,
            scale,
            causal,
        }
    }

    /// The whole problem into `o` ([b, hq, sq, dv]), in parallel over heads and query blocks when large enough.
    fn run(&self, b: usize, o: &mut [f32]) -> Result<()> {
        let (hq, sq, skv, d, dv) = (self.hq, self.sq, self.skv, self.d, self.dv);
        if o.is_empty() {
            return Ok(());
        }
        let serial = b * hq * sq * skv * (d + dv) < PARALLEL_MIN;
        if self.packed_out {
            // One task per (batch, query block): its output rows are one contiguous chunk holding every head.
            let row = hq * dv;
            let task = |bi: usize, qb: usize, ob: &mut [f32]| -> Result<()> {
                // This batch's rows of q, k and v (and its other heads') read front to back first: the heads' strided
                // reads below then find them in cache instead of each waiting for its line (the qkv product just
                // wrote them, and they are larger than L2). On the host's Xeon the attention took 10-30 % less in four
                // of five alternating runs (session 7; the machine was too noisy for a firmer number). Only where
                // they fit a core's L2 with room to spare: longer sequences would evict what they read ahead.
                let rows = &self.q[(bi * self.qs[0]).min(self.q.len())..((bi + 1) * self.qs[0]).min(self.q.len())];
                if rows.len() <= READ_AHEAD_MAX {
                    std::hint::black_box(rows.iter().step_by(16).fold(0f32, |a, &x| a + x));
                }
                let mut head = vec![0f32; ob.len() / hq];
                for h in 0..hq {
                    self.block(bi * hq + h, qb * BQ, &mut head)?;
                    for (dst, src) in ob.chunks_exact_mut(row).zip(head.chunks_exact(dv)) {
                        dst[h * dv..(h + 1) * dv].copy_from_slice(src);
                    }
                }
                Ok(())
            };
            if serial {
                return o.chunks_mut(sq * row).enumerate().try_for_each(|(bi, obt)| {
                    obt.chunks_mut(BQ * row).enumerate().try_for_each(|(qb, ob)| task(bi, qb, ob))
                });
            }
            return o.par_chunks_mut(sq * row).enumerate().try_for_each(|(bi, obt)| {
                obt.par_chunks_mut(BQ * row).enumerate().try_for_each(|(qb, ob)| task(bi, qb, ob))
            });
        }
        if serial {
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
        let hk = h / self.group;
        let (qs, ks, vs) = (self.qs, self.ks, self.vs);
        let q_off = bi * qs[0] + h * qs[1] + i0 * qs[2];
        let (k_base, v_base) = (bi * ks[0] + hk * ks[1], bi * vs[0] + hk * vs[1]);
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
            // Rows j0 .. j0 + bk of this kv head (the last one only d / dv long: rows may be strided).
            let k_tile = &self.k[k_base + j0 * ks[2]..k_base + (j0 + bk - 1) * ks[2] + d];
            let v_tile = &self.v[v_base + j0 * vs[2]..v_base + (j0 + bk - 1) * vs[2] + dv];
            if small {
                small_scores(&self.q[q_off..q_off + (bq - 1) * qs[2] + d], qs[2], k_tile, ks[2], d, bk, s);
            } else {
                gemm_f32(
                    [bq, d, bk],
                    self.q,
                    Mat::dense(q_off, qs[2], false),
                    k_tile,
                    Mat::dense(0, ks[2], true),
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
                small_pv(s, v_tile, vs[2], bk, out);
            } else {
                gemm_f32(
                    [bq, bk, dv],
                    s,
                    Mat::dense(0, bk, false),
                    v_tile,
                    Mat::dense(0, vs[2], false),
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
    /// s[r, c] = q_r · k_c for q rows `qrs` apart and k rows `krs` apart (`cols` keys, d values each).
    fn small_scores(q: &[f32], qrs: usize, k: &[f32], krs: usize, d: usize, cols: usize, s: &mut [f32]) {
        for (r, sr) in s.chunks_exact_mut(cols.max(1)).enumerate() {
            let qr = &q[r * qrs..r * qrs + d];
            for (c, sv) in sr.iter_mut().enumerate() {
                *sv = math::dot(qr, &k[c * krs..c * krs + d]);
            }
        }
    }
}

multiversion! {
    /// out[r, :] += Σ_c p[r, c] · v[c, :] for p [rows, cols] and v rows `vrs` apart.
    fn small_pv(p: &[f32], v: &[f32], vrs: usize, cols: usize, out: &mut [f32]) {
        let rows = p.len() / cols.max(1);
        let dv = out.len() / rows.max(1);
        if dv == 0 {
            return;
        }
        for (pr, or) in p.chunks_exact(cols.max(1)).zip(out.chunks_exact_mut(dv)) {
            for (c, &w) in pr.iter().enumerate() {
                for (o, x) in or.iter_mut().zip(&v[c * vrs..c * vrs + dv]) {
                    *o = w.mul_add(*x, *o);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// Output (b, h, i, c) of softmax(scale q kᵀ + mask, causal) v, in f64.
    fn reference(p: &Problem, bi: usize, h: usize, i: usize, c: usize) -> f64 {
        let hk = h / p.group;
        let mut w = Vec::new();
        for j in 0..p.skv {
            let visible = !p.causal || (j + p.sq) as isize <= (i + p.skv) as isize;
            if !visible {
                w.push(f64::NEG_INFINITY);
                continue;
            }
            let mut dot = 0f64;
            for t in 0..p.d {
                let q = p.q[bi * p.qs[0] + h * p.qs[1] + i * p.qs[2] + t] as f64;
                dot += q * p.k[bi * p.ks[0] + hk * p.ks[1] + j * p.ks[2] + t] as f64;
            }
            let m = p.mask.map_or(0.0, |(mv, ms)| mv[bi * ms[0] + h * ms[1] + i * ms[2] + j * ms[3]] as f64);
            w.push(dot * p.scale as f64 + m);
        }
        let mx = w.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        if mx == f64::NEG_INFINITY {
            return 0.0;
        }
        let e: Vec<f64> = w.iter().map(|x| (x - mx).exp()).collect();
        let sum: f64 = e.iter().sum();
        (0..p.skv).map(|j| e[j] * p.v[bi * p.vs[0] + hk * p.vs[1] + j * p.vs[2] + c] as f64).sum::<f64>() / sum
    }

    #[test]
    fn blocks_match_a_float64_reference() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        // (batch, heads, kv heads, sq, skv, d, causal, mask): one query row, odd sizes, a key tile and a half
        // (skv > 256), grouped heads, a 32-wide head like MiniLM's, tiles past the plain-loop size (gemm).
        for &(b, hq, hkv, sq, skv, d, causal, masked) in &[
            (1, 1, 1, 1, 1, 1, false, false),
            (2, 3, 3, 64, 64, 32, false, true),
            (1, 4, 2, 70, 300, 24, true, false),
            (1, 2, 1, 33, 47, 17, true, true),
            (1, 1, 1, 129, 129, 64, false, false),
        ] {
            let q: Vec<f32> = (0..b * hq * sq * d).map(|_| rng.random_range(-1.0f32..1.0)).collect();
            let k: Vec<f32> = (0..b * hkv * skv * d).map(|_| rng.random_range(-1.0f32..1.0)).collect();
            let v: Vec<f32> = (0..b * hkv * skv * d).map(|_| rng.random_range(-1.0f32..1.0)).collect();
            let mask: Vec<f32> = (0..sq * skv).map(|_| rng.random_range(-2.0f32..0.0)).collect();
            let mask = masked.then_some((&mask[..], [0, 0, skv, 1]));
            let p = Problem::dense(&q, &k, &v, [hq, hkv, sq, skv, d, d], mask, 1.0 / (d as f32).sqrt(), causal);
            let mut o = vec![f32::NAN; b * hq * sq * d];
            p.run(b, &mut o).unwrap();
            for bi in 0..b {
                for h in 0..hq {
                    for i in 0..sq {
                        for c in 0..d {
                            let got = o[((bi * hq + h) * sq + i) * d + c] as f64;
                            let want = reference(&p, bi, h, i, c);
                            assert!(
                                (got - want).abs() <= 2e-6,
                                "[{b}, {hq}/{hkv}, {sq}, {skv}, {d}] ({bi}, {h}, {i}, {c}): {got} vs {want}"
                            );
                        }
                    }
                }
            }
        }
    }
}
