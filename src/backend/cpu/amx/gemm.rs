//! The blocked f32 product on packed split operands: B packed once (parallel over its panels), then row chunks of
//! the output in parallel, each packing its A rows and running every (B panel, A panel) block.

use std::cell::RefCell;
use std::thread::LocalKey;

use rayon::prelude::*;

use super::micro::{Micro, BLOCK, SPARE};
use super::pack::{kblocks, pack_a, pack_b_panel, KBLOCK, PANEL};
#[cfg(test)]
use crate::backend::cpu::matmul::Mat;
use crate::backend::cpu::matmul::Operands;

/// How the product is cut for the caches.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Blocking {
    /// A panels (of 32 rows) per task: they and one B panel stay in a core's L2 while every B panel passes.
    pub chunk_panels: usize,
    /// k-blocks (of 32) per pass over a task's blocks: that much of one B panel stays in L1 while the A panels
    /// pass.
    pub kc: usize,
}

/// The blocking the products use. Shorter k passes (kc = 1 to 6) measured no faster at MiniLM's shapes (k = 384,
/// 1536) on the one AMX machine tried; 64 k-blocks bound a pass's A panels to L2 for deeper products.
pub(crate) const BLOCKING: Blocking = Blocking { chunk_panels: 4, kc: 64 };

thread_local! {
    /// Packed B panels of the thread that runs a product.
    static B_SCRATCH: RefCell<Vec<u16>> = const { RefCell::new(Vec::new()) };
    /// Packed A panels of a thread that runs a row chunk.
    static A_SCRATCH: RefCell<Vec<u16>> = const { RefCell::new(Vec::new()) };
    /// The blocks of a row chunk.
    static C_SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Scratch buffers longer than this (32 Mi values: 64 MiB of bf16) are not kept between products.
const KEEP_SCRATCH: usize = 32 << 20;

/// Runs `f` on `len` values of this thread's `slot`, kept between products so that packing does not page in fresh
/// memory every time (the packed operands are 1.5 times the f32 ones). A nested use on the same thread (a rayon
/// worker that picks up another product while it waits) gets a fresh buffer.
fn with_scratch<T: Copy + Default, R>(
    slot: &'static LocalKey<RefCell<Vec<T>>>,
    len: usize,
    f: impl FnOnce(&mut [T]) -> R,
) -> R {
    slot.with(|cell| match cell.try_borrow_mut() {
        Ok(mut v) if len <= KEEP_SCRATCH => {
            if v.len() < len {
                v.resize(len, T::default());
            }
            f(&mut v[..len])
        }
        _ => f(&mut vec![T::default(); len]),
    })
}

/// out[m×n] (row stride n) = a·b, or += when `accumulate`. Views and lengths were checked by the caller.
pub(crate) fn gemm<M: Micro>(
    micro: &M,
    blocking: Blocking,
    ops: &Operands,
    out: &mut [f32],
    parallel: bool,
    accumulate: bool,
) {
    let [_, k, n] = ops.dims;
    let kb = kblocks(k);
    let b_panels = n.div_ceil(PANEL);
    with_scratch(&B_SCRATCH, b_panels * kb * KBLOCK + SPARE, |bp| {
        let pack_b = |(q, dst): (usize, &mut [u16])| pack_b_panel(ops.b, ops.bm, q, k, n, dst);
        let panels = &mut bp[..b_panels * kb * KBLOCK];
        if parallel {
            panels.par_chunks_mut(kb * KBLOCK).enumerate().for_each(pack_b);
        } else {
            panels.chunks_mut(kb * KBLOCK).enumerate().for_each(pack_b);
        }
        rows_times_panels(micro, blocking, ops, bp, out, parallel, accumulate)
    })
}

/// The row chunks of the output against the packed B panels `bp`.
fn rows_times_panels<M: Micro>(
    micro: &M,
    blocking: Blocking,
    ops: &Operands,
    bp: &[u16],
    out: &mut [f32],
    parallel: bool,
    accumulate: bool,
) {
    let ([m, k, n], a, am) = (ops.dims, ops.a, ops.am);
    let kb = kblocks(k);
    let b_panels = n.div_ceil(PANEL);
    // Smaller chunks when there are few rows, so that every thread gets some.
    let threads = if parallel { rayon::current_num_threads() } else { 1 };
    let panels = m.div_ceil(PANEL);
    let chunk_panels = if panels >= 2 * threads * blocking.chunk_panels { blocking.chunk_panels } else { 1 };
    let rows_per_chunk = chunk_panels * PANEL;
    let run = |(ci, o): (usize, &mut [f32])| {
        let r0 = ci * rows_per_chunk;
        let rows = o.len() / n;
        let a_panels = rows.div_ceil(PANEL);
        with_scratch(&A_SCRATCH, a_panels * kb * KBLOCK + SPARE, |ap| {
            pack_a(a, am, r0..r0 + rows, k, ap);
            with_scratch(&C_SCRATCH, a_panels * b_panels * BLOCK, |c| {
                micro.products(ap, a_panels, bp, b_panels, kb, blocking.kc, c);
                for (blk, c) in c.chunks_exact(BLOCK).enumerate() {
                    let (row0, col0) = ((blk % a_panels) * PANEL, (blk / a_panels) * PANEL);
                    let cols = PANEL.min(n - col0);
                    for r in 0..PANEL.min(rows - row0) {
                        let dst = &mut o[(row0 + r) * n + col0..][..cols];
                        let src = &c[r * PANEL..][..cols];
                        if accumulate {
                            dst.iter_mut().zip(src).for_each(|(d, s)| *d += s);
                        } else {
                            dst.copy_from_slice(src);
                        }
                    }
                }
            });
        });
    };
    let out = &mut out[..m * n];
    if parallel {
        out.par_chunks_mut(rows_per_chunk * n).enumerate().for_each(run);
    } else {
        out.chunks_mut(rows_per_chunk * n).enumerate().for_each(run);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cpu::amx::micro::Emulated;
    use rand::{Rng, SeedableRng};

    /// Largest |got - exact| / sum_k |a b| over the output, with the exact product in f64.
    /// `tb`: b stored [n, k] and read transposed; `ta` likewise for a (stored [k, m]).
    fn worst(m: usize, k: usize, n: usize, (ta, tb): (bool, bool), micro: &impl Micro, accumulate: bool) -> f64 {
        worst_with(m, k, n, (ta, tb), micro, accumulate, BLOCKING)
    }

    fn worst_with(
        m: usize,
        k: usize,
        n: usize,
        (ta, tb): (bool, bool),
        micro: &impl Micro,
        accumulate: bool,
        blocking: Blocking,
    ) -> f64 {
        let mut rng = rand::rngs::StdRng::seed_from_u64((m * 131 + k * 17 + n) as u64);
        let a: Vec<f32> = (0..m * k).map(|_| rng.random_range(-1.0f32..1.0)).collect();
        let b: Vec<f32> = (0..k * n).map(|_| rng.random_range(-1.0f32..1.0)).collect();
        let start: Vec<f32> = (0..m * n).map(|_| rng.random_range(-1.0f32..1.0)).collect();
        let bm = Mat::dense(0, if tb { k } else { n }, tb);
        let am = Mat::dense(0, if ta { m } else { k }, ta);
        let mut out = if accumulate { start.clone() } else { vec![f32::NAN; m * n] };
        gemm(micro, blocking, &Operands { dims: [m, k, n], a: &a, am, b: &b, bm }, &mut out, true, accumulate);
        let mut worst = 0f64;
        for i in 0..m {
            for j in 0..n {
                let (mut exact, mut mag) = (if accumulate { start[i * n + j] as f64 } else { 0.0 }, 0f64);
                for kk in 0..k {
                    let bv = b[bm.off + kk * bm.rs + j * bm.cs] as f64;
                    let av = a[am.off + i * am.rs + kk * am.cs] as f64;
                    exact += av * bv;
                    mag += (av * bv).abs();
                }
                let got = out[i * n + j] as f64;
                assert!(got.is_finite(), "[{m}, {k}, {n}] ({i}, {j}) not written: {got}");
                worst = worst.max((got - exact).abs() / mag.max(1e-30));
            }
        }
        worst
    }

    /// f32 accuracy: within k f32 roundings of the magnitudes (the split keeps 24 bits); bf16 or a dropped term
    /// would be 1e-3 to 1e-5.
    fn bound(k: usize) -> f64 {
        (k as f64 + 4.0) * 2f64.powi(-24)
    }

    #[test]
    fn emulated_products_are_f32_accurate_on_awkward_shapes() {
        for &(m, k, n) in &[(1, 1, 1), (1, 7, 33), (33, 1, 5), (31, 33, 17), (32, 32, 32), (65, 100, 47), (130, 64, 70)]
        {
            for t in [(false, false), (false, true), (true, false), (true, true)] {
                let w = worst(m, k, n, t, &Emulated, false);
                assert!(w <= bound(k), "[{m}, {k}, {n}] (ta, tb) = {t:?}: {w:e} > {:e}", bound(k));
            }
        }
        let w = worst(45, 40, 35, (false, false), &Emulated, true);
        assert!(w <= bound(40), "accumulate: {w:e}");
    }

    #[test]
    fn amx_products_are_f32_accurate_on_awkward_shapes() {
        let Some(amx) = crate::backend::cpu::amx::micro::Amx::new() else {
            crate::util::skipped(
                "SKIPPED: this CPU (or OS) gives no AMX bf16; the emulated products are tested instead",
            );
            return;
        };
        for &(m, k, n) in &[(1, 1, 1), (1, 7, 33), (31, 33, 17), (65, 100, 47), (300, 384, 1536), (257, 1536, 385)] {
            for t in [(false, false), (false, true), (true, false)] {
                let w = worst(m, k, n, t, &amx, false);
                assert!(w <= bound(k), "[{m}, {k}, {n}] (ta, tb) = {t:?}: {w:e} > {:e}", bound(k));
                println!(
                    "AMX [{m}, {k}, {n}] (ta, tb) = {t:?}: worst error {w:.2e} of sum |ab| (bound {:.2e})",
                    bound(k)
                );
            }
        }
        for blocking in [
            Blocking { chunk_panels: 1, kc: 1 },
            Blocking { chunk_panels: 2, kc: 2 },
            Blocking { chunk_panels: 4, kc: 64 },
        ] {
            for &(m, k, n) in &[(65, 100, 47), (257, 1536, 385)] {
                let w = worst_with(m, k, n, (false, true), &amx, false, blocking);
                assert!(w <= bound(k), "[{m}, {k}, {n}] {blocking:?}: {w:e} > {:e}", bound(k));
            }
        }
        let w = worst(45, 40, 35, (false, false), &amx, true);
        assert!(w <= bound(40), "accumulate: {w:e}");
    }
}
