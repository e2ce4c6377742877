//! Operands of the AMX product, split and packed. Each f32 becomes three bf16 parts whose sum is the f32 exactly
//! (rounded to nearest, each part takes the next 8 bits of the significand), and each part is packed in the tile
//! layouts `tdpbf16ps` reads:
//! - A, 32-row panels: per 32-wide k-block, `[part 0..3][row half 0..2][16 rows][32 k]` (row-major tiles);
//! - B, 32-column panels: per k-block, `[part][column half][16 k pairs][16 columns][2]` (pairs of k side by side,
//!   the "VNNI" layout).
//!
//! One k-block of a panel is [`KBLOCK`] values, a tile [`TILE`]. Rows, columns and k past the matrix are zeros.

use crate::backend::cpu::matmul::Mat;
use crate::backend::cpu::simd::multiversion;

/// bf16 values in one 16 x 32 tile (1 KiB).
pub(crate) const TILE: usize = 16 * 32;
/// bf16 values of one panel's k-block: 3 parts x 2 halves of 16 rows (or columns).
pub(crate) const KBLOCK: usize = 3 * 2 * TILE;
/// Rows (A) or columns (B) of a panel; k-block width.
pub(crate) const PANEL: usize = 32;

/// `x` rounded to the nearest bf16 (ties to even), as bits; NaN stays NaN. Branch-free so that loops vectorise.
#[inline(always)]
fn bf16_bits(x: f32) -> u16 {
    let b = x.to_bits();
    let rounded = (b.wrapping_add(0x7fff + ((b >> 16) & 1)) >> 16) as u16;
    if b & 0x7fff_ffff > 0x7f80_0000 {
        0x7fc0
    } else {
        rounded
    }
}

#[inline(always)]
fn f32_of(bits: u16) -> f32 {
    f32::from_bits((bits as u32) << 16)
}

/// The three bf16 parts of `x`, largest first; `hi + mid + lo == x` for finite x whose parts are not subnormal.
/// Infinities and NaN (and values that round to infinity) keep that value in the first part, the others zero, so
/// they propagate as in f32.
#[inline(always)]
pub(crate) fn split3(x: f32) -> [u16; 3] {
    let hi = bf16_bits(x);
    let r = x - f32_of(hi);
    let mid = bf16_bits(r);
    let lo = bf16_bits(r - f32_of(mid));
    let finite = hi & 0x7f80 != 0x7f80;
    [hi, if finite { mid } else { 0 }, if finite { lo } else { 0 }]
}

multiversion! {
    /// Splits `src` into `parts[p][..src.len()]`, p = 0, 1, 2.
    fn split_run(src: &[f32], hi: &mut [u16], mid: &mut [u16], lo: &mut [u16]) {
        for (((&x, h), m), l) in src.iter().zip(hi.iter_mut()).zip(mid.iter_mut()).zip(lo.iter_mut()) {
            [*h, *m, *l] = split3(x);
        }
    }
}

/// Number of 32-wide k-blocks for a depth of `k`.
pub(crate) fn kblocks(k: usize) -> usize {
    k.div_ceil(PANEL)
}

/// The three parts of one k-block's run of up to 32 values (`get(t)` is value t), in three 32-value arrays.
#[inline(always)]
fn split_block(len: usize, contiguous: Option<&[f32]>, get: impl Fn(usize) -> f32) -> [[u16; PANEL]; 3] {
    let mut parts = [[0u16; PANEL]; 3];
    let mut tmp = [0f32; PANEL];
    let src = match contiguous {
        Some(s) => s,
        None => {
            tmp[..len].iter_mut().enumerate().for_each(|(t, v)| *v = get(t));
            &tmp[..len]
        }
    };
    let [h, m, l] = &mut parts;
    split_run(src, h, m, l);
    parts
}

/// Packs rows `rows` of the [.., k] matrix `a` (view `am`) as `rows.len().div_ceil(32)` panels into `dst` (at least
/// that many panels long; every value of those panels is written, padding included).
pub(crate) fn pack_a(a: &[f32], am: Mat, rows: std::ops::Range<usize>, k: usize, dst: &mut [u16]) {
    let panels = rows.len().div_ceil(PANEL);
    // A transposed view is gathered a panel at a time into contiguous rows first (rare: only `ta` products).
    let mut gathered = if am.cs == 1 { Vec::new() } else { vec![0f32; PANEL * k] };
    for (p, panel) in dst.chunks_mut(kblocks(k) * KBLOCK).take(panels).enumerate() {
        let r0 = rows.start + p * PANEL;
        let n = PANEL.min(rows.end - r0);
        if am.cs == 1 {
            split_panel(&a[am.off + r0 * am.rs..], am.rs, n, k, panel);
        } else {
            for (r, row) in gathered.chunks_exact_mut(k).take(n).enumerate() {
                let first = am.off + (r0 + r) * am.rs;
                row.iter_mut().enumerate().for_each(|(t, v)| *v = a[first + t * am.cs]);
            }
            split_panel(&gathered, k, n, k, panel);
        }
    }
}

multiversion! {
    /// Splits `rows` (at most 32) contiguous rows of A, `rs` apart in `a`, into one panel `dst`: k-block b's part p
    /// of row r at `dst[b * KBLOCK + p * 2 * TILE + (r / 16) * TILE + (r % 16) * 32..][..32]`, zeros past k and in
    /// rows from `rows` to 32. Panel by panel, k-block by k-block, each k-block's 6 KiB is written front to back (row
    /// by row, one row's writes were 6 KiB apart, all in two sets of L1, and took 2.8x as long at k = 1536 on the dev
    /// machine). One call per panel with everything inlined, so the split runs in vector registers straight into the
    /// panel. On the host's Xeon (one thread) this takes 0.6-0.8 ns a value; a call per k-block through a stack copy
    /// took 1.1 ns at k = 384 and 2-2.6 ns at k = 1536, a fifth of the products' time in the MiniLM forward.
    fn split_panel(a: &[f32], rs: usize, rows: usize, k: usize, dst: &mut [u16]) {
        for (b, kd) in dst.chunks_exact_mut(KBLOCK).take(kblocks(k)).enumerate() {
            let (k0, len) = (b * PANEL, PANEL.min(k - b * PANEL));
            for r in 0..PANEL {
                let run: &[f32] = if r < rows { &a[r * rs + k0..][..len] } else { &[] };
                let (d0, rest) = kd[(r / 16) * TILE + (r % 16) * PANEL..].split_at_mut(2 * TILE);
                let (d1, d2) = rest.split_at_mut(2 * TILE);
                let (d0, d1, d2) = (&mut d0[..PANEL], &mut d1[..PANEL], &mut d2[..PANEL]);
                if let Ok(run) = <&[f32; PANEL]>::try_from(run) {
                    for t in 0..PANEL {
                        [d0[t], d1[t], d2[t]] = split3(run[t]);
                    }
                } else {
                    for t in 0..PANEL {
                        [d0[t], d1[t], d2[t]] = if t < run.len() { split3(run[t]) } else { [0; 3] };
                    }
                }
            }
        }
    }
}

/// Packs columns `32 q .. 32 q + 32` (those below `n`) of the [k, n] matrix `b` (view `bm`) as one panel into `dst`
/// (one panel long; every value is written, padding included).
pub(crate) fn pack_b_panel(b: &[f32], bm: Mat, q: usize, k: usize, n: usize, dst: &mut [u16]) {
    let cols = q * PANEL..((q + 1) * PANEL).min(n);
    if cols.len() < PANEL || k % PANEL != 0 {
        // Edge panels only (or every panel of a depth that is not a multiple of 32): the padding must be zeros.
        dst.fill(0);
    }
    // Position of (k index within its block, column within the panel) inside a k-block.
    let at = |kr: usize, jj: usize| (jj / 16) * TILE + (kr / 2) * PANEL + (jj % 16) * 2 + kr % 2;
    for blk in 0..kblocks(k) {
        let (k0, len) = (blk * PANEL, PANEL.min(k - blk * PANEL));
        let kdst = &mut dst[blk * KBLOCK..][..KBLOCK];
        if bm.rs == 1 {
            // Each column is a contiguous run along k (a weight stored [n, k]): split 32 of them, then one tile row
            // takes the (k, k + 1) pair of each of 16 columns, a 16 x 16 transpose of pairs.
            for half in 0..2 {
                let mut parts = [[[0u16; PANEL]; 16]; 3];
                let j0 = q * PANEL + half * 16;
                for (c, j) in (j0..(j0 + 16).min(n)).enumerate() {
                    let first = bm.off + k0 + j * bm.cs;
                    let [h, m, l] = split_block(len, Some(&b[first..first + len]), |_| 0.0);
                    (parts[0][c], parts[1][c], parts[2][c]) = (h, m, l);
                }
                for (p, part) in parts.iter().enumerate() {
                    let tile = &mut kdst[(2 * p + half) * TILE..][..TILE];
                    for (r, row) in tile.chunks_exact_mut(PANEL).enumerate() {
                        for (c, pair) in row.chunks_exact_mut(2).enumerate() {
                            pair.copy_from_slice(&part[c][2 * r..2 * r + 2]);
                        }
                    }
                }
            }
        } else {
            for kr in 0..len {
                let first = bm.off + (k0 + kr) * bm.rs + cols.start * bm.cs;
                let run = (bm.cs == 1).then(|| &b[first..first + cols.len()]);
                let parts = split_block(cols.len(), run, |t| b[first + t * bm.cs]);
                for (p, part) in parts.iter().enumerate() {
                    for (jj, &v) in part[..cols.len()].iter().enumerate() {
                        kdst[p * 2 * TILE + at(kr, jj)] = v;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use half::bf16;
    use rand::{Rng, SeedableRng};

    #[test]
    fn split3_parts_sum_to_the_value() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for _ in 0..100_000 {
            let x: f32 = rng.random_range(-1.0f32..1.0) * 2f32.powi(rng.random_range(-60..60));
            let [h, m, l] = split3(x).map(|b| bf16::from_bits(b).to_f32());
            assert_eq!(x as f64, h as f64 + m as f64 + l as f64, "{x:e} = {h:e} + {m:e} + {l:e}");
            assert!(m.abs() <= h.abs() * 2f32.powi(-8) && l.abs() <= m.abs() * 2f32.powi(-8));
        }
        assert_eq!(split3(f32::INFINITY), [bf16::INFINITY.to_bits(), 0, 0]);
        assert_eq!(split3(f32::NEG_INFINITY), [bf16::NEG_INFINITY.to_bits(), 0, 0]);
        assert!(bf16::from_bits(split3(f32::NAN)[0]).is_nan());
        assert!(bf16::from_bits(split3(f32::from_bits(0x7f80_0001))[0]).is_nan());
        // Rounding agrees with half's bf16 (ties to even).
        for _ in 0..100_000 {
            let x = f32::from_bits(rng.random::<u32>());
            if x.is_finite() {
                assert_eq!(split3(x)[0], bf16::from_f32(x).to_bits(), "{x:e}");
            }
        }
    }
}
