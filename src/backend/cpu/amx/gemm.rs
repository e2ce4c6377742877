//! The blocked f32 product on packed split operands: B packed once (parallel over its panels), then row chunks of
//! the output in parallel, each packing its A rows and running every (B panel, A panel) block.

use std::cell::RefCell;
use std::thread::LocalKey;

use rayon::prelude::*;

use super::micro::{Micro, BLOCK, SPARE};
use super::pack::{kblocks, pack_a, pack_b_panel, KBLOCK, PANEL};
use crate::backend::cpu::matmul::{Epilogue, Mat, Operands};

/// How the product is cut for the caches.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Blocking {
    /// A panels (of 32 rows) per task: they and one B panel stay in a core's L2 while every B panel passes.
    pub chunk_panels: usize,
    /// k-blocks (of 32) per pass over a task's blocks: that much of one B panel stays in L1 while the A panels
    /// pass.
    pub kc: usize,
}

/// Packed A bytes per task: what stays in a core's L2 (2 MiB on the Xeon measured) next to the B panels passing.
const A_CHUNK_BYTES: usize = 640 << 10;

impl Blocking {
    /// The blocking for products of depth `k`. On the host's Xeon (session 6, 1 and 2 threads), 8 panels per task
    /// beat 4 by 2-6 % at k = 384, and lost 40 % at k = 1536 (2.3 MiB of A per task), where 2 and 4 tie: so as many
    /// panels (up to 8) as fit [`A_CHUNK_BYTES`]. Shorter k passes (kc = 2, 4) were 15-25 % slower (each pass
    /// reloads and stores the accumulators), so a pass covers up to 64 k-blocks.
    pub(crate) fn for_depth(k: usize) -> Blocking {
        let panel_bytes = kblocks(k) * KBLOCK * std::mem::size_of::<u16>();
        Blocking { chunk_panels: (A_CHUNK_BYTES / panel_bytes).clamp(1, 8), kc: 64 }
    }
}

thread_local! {
    /// Packed B panels of the thread that runs a product.
    static B_SCRATCH: RefCell<Vec<u16>> = const { RefCell::new(Vec::new()) };
    /// Packed A panels of a thread that runs a row chunk.
    static A_SCRATCH: RefCell<Vec<u16>> = const { RefCell::new(Vec::new()) };
    /// The blocks of a row chunk.
    static C_SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Bytes in a cache line, the alignment of the packed operands and the blocks.
const LINE: usize = 64;

/// Scratch buffers longer than this (32 Mi values: 64 MiB of bf16) are not kept between products.
const KEEP_SCRATCH: usize = 32 << 20;

/// The first index of `v` on a 64-byte boundary (`v` holds at least 64 values).
fn line_offset<T>(v: &[T]) -> usize {
    ((LINE - v.as_ptr() as usize % LINE) % LINE) / std::mem::size_of::<T>()
}

/// Runs `f` on `len` values of this thread's `slot`, kept between products so that packing does not page in fresh
/// memory every time (the packed operands are 1.5 times the f32 ones). The values start on a 64-byte boundary: tile
/// rows are 64 bytes, and a row that straddles two cache lines made every tile load cost twice (the products ran
/// 2.5x the tile unit's time instead of 1.25x, measured on the host's Xeon). A nested use on the same thread (a rayon
/// worker that picks up another product while it waits) gets a fresh buffer.
fn with_scratch<T: Copy + Default, R>(
    slot: &'static LocalKey<RefCell<Vec<T>>>,
    len: usize,
    f: impl FnOnce(&mut [T]) -> R,
) -> R {
    // Enough spare values to reach the next line boundary, whatever T's size (at most 64 bytes).
    const SPARE_VALUES: usize = 64;
    let aligned = |v: &mut Vec<T>| {
        if v.len() < len + SPARE_VALUES {
            v.resize(len + SPARE_VALUES, T::default());
        }
        let off = line_offset(v);
        f(&mut v[off..off + len])
    };
    slot.with(|cell| match cell.try_borrow_mut() {
        Ok(mut v) if len <= KEEP_SCRATCH => aligned(&mut v),
        _ => aligned(&mut Vec::new()),
    })
}

/// B split and packed in panels (pack.rs) for one view of one constant, kept with it (`Tensor::derived`).
pub(crate) struct PackedB {
    buf: Vec<u16>,
    off: usize,
    len: usize,
}

impl PackedB {
    /// The panels, from a cache line boundary.
    fn values(&self) -> &[u16] {
        &self.buf[self.off..self.off + self.len]
    }
}

/// What a packed B depends on besides the data: its view and shape.
#[derive(PartialEq)]
struct PackKey {
    off: usize,
    rs: usize,
    cs: usize,
    k: usize,
    n: usize,
}

/// Packs every panel of `ops.b` into `dst` (`b_panels * kblocks * KBLOCK` values).
fn pack_b(ops: &Operands, dst: &mut [u16], parallel: bool) {
    let [_, k, n] = ops.dims;
    let pack = |(q, d): (usize, &mut [u16])| pack_b_panel(ops.b, ops.bm, q, k, n, d);
    if parallel {
        dst.par_chunks_mut(kblocks(k) * KBLOCK).enumerate().for_each(pack);
    } else {
        dst.chunks_mut(kblocks(k) * KBLOCK).enumerate().for_each(pack);
    }
}

/// out[m×n] (row stride n) = a·b, or += when `accumulate`, then `epilogue` on each row segment of each block as it
/// is written. Views and lengths were checked by the caller. A constant B (`ops.b_const`) is packed once and kept
/// with its tensor; any other B is packed for this product.
pub(crate) fn gemm<M: Micro>(
    micro: &M,
    blocking: Blocking,
    ops: &Operands,
    out: &mut [f32],
    parallel: bool,
    accumulate: bool,
    epilogue: Option<&Epilogue>,
) {
    let [_, k, n] = ops.dims;
    let len = n.div_ceil(PANEL) * kblocks(k) * KBLOCK;
    if let Some(t) = ops.b_const {
        let Mat { off, rs, cs } = ops.bm;
        let packed = t.derived(PackKey { off, rs, cs, k, n }, || {
            let mut buf = vec![0u16; len + SPARE + LINE];
            let off = line_offset(&buf);
            pack_b(ops, &mut buf[off..off + len], parallel);
            PackedB { buf, off, len: len + SPARE }
        });
        return rows_times_panels(micro, blocking, ops, packed.values(), out, parallel, accumulate, epilogue);
    }
    with_scratch(&B_SCRATCH, len + SPARE, |bp| {
        pack_b(ops, &mut bp[..len], parallel);
        rows_times_panels(micro, blocking, ops, bp, out, parallel, accumulate, epilogue)
    })
}

/// The row chunks of the output against the packed B panels `bp`.
#[allow(clippy::too_many_arguments)]
fn rows_times_panels<M: Micro>(
    micro: &M,
    blocking: Blocking,
    ops: &Operands,
    bp: &[u16],
    out: &mut [f32],
    parallel: bool,
    accumulate: bool,
    epilogue: Option<&Epilogue>,
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
            // One column panel at a time, so that its blocks are written out (and finished by the epilogue) while
            // they are in L1: all the chunk's blocks at once were 1.5 MiB at MiniLM's widest product, most of it
            // gone from L2 by the time it was copied.
            with_scratch(&C_SCRATCH, a_panels * BLOCK, |c| {
                for j in 0..b_panels {
                    micro.products(ap, a_panels, &bp[j * kb * KBLOCK..], kb, blocking.kc, c);
                    let col0 = j * PANEL;
                    let cols = PANEL.min(n - col0);
                    for (i, c) in c.chunks_exact(BLOCK).enumerate() {
                        let row0 = i * PANEL;
                        for r in 0..PANEL.min(rows - row0) {
                            let dst = &mut o[(row0 + r) * n + col0..][..cols];
                            let src = &c[r * PANEL..][..cols];
                            if accumulate {
                                dst.iter_mut().zip(src).for_each(|(d, s)| *d += s);
                            } else {
                                dst.copy_from_slice(src);
                            }
                            if let Some(epi) = epilogue {
                                epi(dst, r0 + row0 + r, col0);
                            }
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
        worst_with(m, k, n, (ta, tb), micro, accumulate, Blocking::for_depth(k))
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
        gemm(micro, blocking, &Operands::new([m, k, n], &a, am, &b, bm), &mut out, true, accumulate, None);
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
    fn a_constant_b_is_packed_once_and_gives_the_same_products() {
        let (m, k, n) = (70, 100, 45);
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        let a: Vec<f32> = (0..m * k).map(|_| rng.random_range(-1.0f32..1.0)).collect();
        let b: Vec<f32> = (0..k * n).map(|_| rng.random_range(-1.0f32..1.0)).collect();
        let t = crate::tensor::Tensor::from_vec(b, [k * n]).unwrap();
        let b = t.as_slice::<f32>().unwrap();
        let am = Mat::dense(0, k, false);
        for tb in [false, true] {
            let bm = Mat::dense(0, if tb { k } else { n }, tb);
            let run = |ops: &Operands| {
                let mut out = vec![f32::NAN; m * n];
                gemm(&Emulated, Blocking::for_depth(k), ops, &mut out, true, false, None);
                out
            };
            let plain = run(&Operands::new([m, k, n], &a, am, b, bm));
            let kept = Operands::new([m, k, n], &a, am, b, bm).with_const_b(Some(&t));
            assert_eq!(run(&kept), plain, "tb = {tb}: first product with the packing kept");
            assert_eq!(run(&kept), plain, "tb = {tb}: with the kept packing");
            let Mat { off, rs, cs } = bm;
            t.derived(PackKey { off, rs, cs, k, n }, || -> PackedB { panic!("tb = {tb}: packed again") });
        }
    }

    #[test]
    fn the_epilogue_sees_every_segment_once_at_its_place() {
        for &(m, k, n) in &[(1, 5, 1), (33, 40, 70), (300, 64, 45)] {
            let mut rng = rand::rngs::StdRng::seed_from_u64(m as u64);
            let a: Vec<f32> = (0..m * k).map(|_| rng.random_range(-1.0f32..1.0)).collect();
            let b: Vec<f32> = (0..k * n).map(|_| rng.random_range(-1.0f32..1.0)).collect();
            let ops = Operands::new([m, k, n], &a, Mat::dense(0, k, false), &b, Mat::dense(0, n, false));
            let mut plain = vec![f32::NAN; m * n];
            gemm(&Emulated, Blocking::for_depth(k), &ops, &mut plain, true, false, None);
            // Adds a value that names the element, so a segment given the wrong place, or twice, shows.
            let epi = |seg: &mut [f32], row: usize, col: usize| {
                for (j, v) in seg.iter_mut().enumerate() {
                    *v += (row * n + col + j) as f32 * 8.0;
                }
            };
            let mut fused = vec![f32::NAN; m * n];
            gemm(&Emulated, Blocking::for_depth(k), &ops, &mut fused, true, false, Some(&epi));
            for (i, (f, p)) in fused.iter().zip(&plain).enumerate() {
                assert_eq!(*f, p + i as f32 * 8.0, "[{m}, {k}, {n}] element {i}");
            }
        }
    }

    #[test]
    fn scratch_starts_on_a_cache_line() {
        for len in [1, 31, 4097, 100_000] {
            with_scratch(&A_SCRATCH, len, |s| assert_eq!((s.as_ptr() as usize % LINE, s.len()), (0, len)));
            with_scratch(&C_SCRATCH, len, |s| assert_eq!((s.as_ptr() as usize % LINE, s.len()), (0, len)));
            // Nested: a fresh buffer, aligned as well.
            with_scratch(&A_SCRATCH, len, |_| {
                with_scratch(&A_SCRATCH, len, |s| assert_eq!(s.as_ptr() as usize % LINE, 0));
            });
        }
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
